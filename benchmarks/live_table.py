"""The table of live runs in docs/live.md, from an experience base: per run, the test split's
task success (overall and per tier of the task file), step success, cost, measured latency,
failed calls, which model gave each step's result, and the tasks a rescue swapped to the
strong model (atropos: the swapped step is answered again, both calls in its record)::

    EVOROUTE_HOME=/tmp/evo_live2/home python benchmarks/live_table.py            # every live run
    EVOROUTE_HOME=/tmp/evo_live2/home python benchmarks/live_table.py --runs 1,2
    EVOROUTE_HOME=/tmp/evo_live2/home python benchmarks/live_table.py --json docs/results/live_tiered.json

Reads only what the runs stored (nothing is called): the numbers are the runs' own, *live*.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402

from evoroute.agent import workflow as W  # noqa: E402
from evoroute.storage import db  # noqa: E402

TIER_ORDER = {"easy": 0, "medium": 1, "hard": 2}


def rows(conn, sql: str, **kw):
    return conn.execute(text(sql), kw).mappings().all()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default=None, help="comma-separated run ids (default: every live run)")
    p.add_argument("--json", default=None, help="also write the table (and each run's settings) "
                                                "to this JSON file")
    a = p.parse_args(argv)
    out: list[dict] = []
    eng = db.get_engine()
    with eng.connect() as conn:
        runs = rows(conn, "select id, router, protocol, status, dataset, config_json, created_at "
                          "from run where backend = 'live' order by id")
        if a.runs:
            keep = {int(x) for x in a.runs.split(",")}
            runs = [r for r in runs if r["id"] in keep]
        print("| run | router | protocol | task success (test) | per tier | step success | "
              "cost, notional USD | mean latency s | mean TTFT s | failed calls | steps per model "
              "| tasks swapped by a rescue |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in runs:
            tiers = {t.id: t.tier for t in W.load_tasks(r["dataset"])}
            tasks = rows(conn, "select task_key, success from task where run_id = :i and "
                               "phase = 'inference'", i=r["id"])
            recs = rows(conn, "select id, task_key, step_index, model, step_success, cost_usd, "
                              "duration_s, ttft_s, error, explanation from step where run_id = :i and "
                              "phase = 'inference' order by id", i=r["id"])
            last = {}
            for x in recs:                       # a step's result is its last record
                last[(x["task_key"], x["step_index"])] = x
            res = list(last.values())
            ok = [x for x in res if x["error"] is None]
            solved = sum(t["success"] or 0 for t in tasks)
            per = defaultdict(lambda: [0, 0])
            for t in tasks:
                tier = tiers.get(t["task_key"].split(":", 1)[-1]) or "-"
                per[tier][0] += t["success"] or 0
                per[tier][1] += 1
            swapped = set()                      # a rescue's swap (atropos' explanation)
            for x in recs:
                rescue = json.loads(x["explanation"] or "{}").get("rescue") or {}
                if rescue.get("swap"):
                    swapped.add(x["task_key"])
            tier_rows = sorted(per.items(), key=lambda kv: TIER_ORDER.get(kv[0], 9))
            models = Counter(x["model"] for x in res)
            n = max(1, len(tasks))
            mean = lambda v: sum(v) / len(v) if v else float("nan")  # noqa: E731
            cfg = json.loads(r["config_json"] or "{}")
            backend = cfg.get("resolved", {}).get("backend", {})
            row = {
                "run": r["id"], "router": r["router"], "protocol": r["protocol"],
                "status": r["status"], "dataset": r["dataset"], "seed": cfg.get("seed"),
                "created_at": str(r["created_at"]),
                "models": backend.get("models"), "agent_code": backend.get("agent_code"),
                "task_file_sha256": backend.get("task_file_sha256"),
                "tasks_solved": int(solved), "tasks": len(tasks),
                "per_tier": {k: [int(v[0]), v[1]] for k, v in tier_rows},
                "step_success": mean([x["step_success"] or 0 for x in res]),
                "cost_usd": sum(x["cost_usd"] or 0 for x in recs),
                "mean_latency_s": mean([x["duration_s"] for x in ok]),
                "mean_ttft_s": mean([x["ttft_s"] for x in ok if x["ttft_s"] is not None]),
                "failed_calls": sum(x["error"] is not None for x in recs),
                "step_results_per_model": dict(models.most_common()),
                "tasks_swapped": len(swapped)}
            out.append(row)
            print(f"| {r['id']} | {r['router']} | {r['protocol']} | "   # the table: the row's numbers
                  f"{solved / n:.3f} ({int(solved)} / {len(tasks)}) | "
                  + " · ".join(f"{k} {v[0]}/{v[1]}" for k, v in row["per_tier"].items()) + " | "
                  f"{row['step_success']:.3f} | {row['cost_usd']:.6f} | "
                  f"{row['mean_latency_s']:.2f} | {row['mean_ttft_s']:.2f} | {row['failed_calls']} | "
                  + ", ".join(f"{m} {c}" for m, c in row["step_results_per_model"].items()) + " | "
                  f"{row['tasks_swapped']} |")
        if runs:
            cfg = json.loads(runs[-1]["config_json"] or "{}").get("resolved", {}).get("backend", {})
            print(f"\nlast run's agent settings: few_shot={cfg.get('few_shot')}, "
                  f"grammar={cfg.get('grammar')!r}, task file sha256 "
                  f"{str(cfg.get('task_file_sha256'))[:12]}")
    if a.json:
        doc = {"label": "live (measured: real calls to the local llama.cpp servers)",
               "command": "EVOROUTE_HOME=<the base> python benchmarks/live_table.py --json "
                          + a.json, "runs": out}
        Path(a.json).write_text(json.dumps(doc, indent=1, default=str) + "\n")
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
