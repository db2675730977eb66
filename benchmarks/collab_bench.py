"""Collaboration modes and the MasRouter-style router on the multiple-choice RouterBench tasks.

    python -m benchmarks.collab_bench                       # prints the table, writes the JSON
    python -m benchmarks.collab_bench --no-cv               # the shipped defaults, no CV (fast)

Replayed: every number is scored from the recorded responses and costs of the bundled files
(ARC-Challenge + Winogrande, 2,723 queries every model answered; train 1,906 / test 817).
Hyperparameters of ``masrouter`` are chosen by 5-fold CV on the train split only; the test
split is read once, to report. EvoRoute's numbers on the same queries come from
``python -m evoroute bench --data routerbench-choice --protocol full --seeds 5 --json
docs/results/bench_choice_full.json`` when that file exists.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from evoroute.collab.answers import choice_table
from evoroute.collab.masrouter import MasRouter, cross_validate, sweep
from evoroute.collab.modes import candidate_modes, order_by_strength, replay
from evoroute.evaluation import metrics
from evoroute.policy.base import COST_WEIGHT_GRID
from evoroute.settings import PROJECT_ROOT, offline_env

OUT = PROJECT_ROOT / "docs" / "results" / "collab.json"
EVOROUTE_BENCH = PROJECT_ROOT / "docs" / "results" / "bench_choice_full.json"


def _headline(name: str, pts: np.ndarray, singles: np.ndarray, top: float) -> dict:
    best = singles[np.argmax(singles[:, 1])]
    # AIQ needs a sweep: a fixed mode is one point (its quality and cost are printed below)
    return {"router": name, "aiq": metrics.aiq(pts, max_cost=top) if len(pts) > 1 else None,
            "best_gain_over_hull": metrics.best_gain_over_hull(singles, pts),
            "cost_share_at_parity": metrics.cost_share_at_parity(pts, best[1], best[0]),
            "points": pts.round(6).tolist()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-cv", action="store_true", help="use the shipped defaults")
    ap.add_argument("--json", type=Path, default=OUT)
    args = ap.parse_args()
    offline_env()
    from evoroute.datasets.routerbench import load_routerbench
    from evoroute.retrieval.embedder import Embedder

    t0 = time.perf_counter()
    long = load_routerbench(("arc_challenge", "winogrande"))
    table = choice_table(long)
    text = long.drop_duplicates("query_id").set_index("query_id")["query"]
    emb = Embedder().encode([text[q] for q in table.query_ids])
    tr, te = table.splits == "train", table.splits == "test"
    train, test = table.rows(tr), table.rows(te)

    print(f"queries: {len(table.query_ids)} (train {tr.sum()}, test {te.sum()}); responses parsed "
          f"{table.parse_rate:.1%}; no gold (no model correct) {int((table.gold == '').sum())}; "
          f"parse contradicting the recorded score: {table.disagreements} cells; "
          f"conflicting correct answers: {table.conflicts} queries")

    singles = np.array([(test.cost[:, j].sum(), test.score[:, j].mean())
                        for j in range(len(test.models))])
    ranked = order_by_strength(train)
    modes = list(candidate_modes(ranked))
    on_train = {m: replay(m, train) for m in modes}
    fixed = {}
    for kind in ("vote", "escalate"):
        m = max((m for m in modes if m.kind == kind), key=lambda m: (on_train[m].quality,
                                                                      -on_train[m].total_cost))
        o = replay(m, test)
        fixed[kind] = {"mode": m.name, "train_quality": on_train[m].quality,
                       "quality": o.quality, "cost": o.total_cost}

    if args.no_cv:
        params, cv_rows = {"k": MasRouter.k, "kappa": MasRouter.kappa, "tau": MasRouter.tau}, []
    else:
        params, cv_rows = cross_validate(train, emb[tr], COST_WEIGHT_GRID)
    router = MasRouter(k=int(params["k"]), kappa=float(params["kappa"]),
                       tau=float(params["tau"])).fit(train, emb[tr])
    pts = sweep(router, test, emb[te], COST_WEIGHT_GRID)
    curves = {"masrouter": pts, "single-model hull": singles}
    for kind, f in fixed.items():
        curves[f"best fixed {kind}"] = np.array([[f["cost"], f["quality"]]])
    sources = {}
    if EVOROUTE_BENCH.is_file():
        rep = json.loads(EVOROUTE_BENCH.read_text())
        for name, sweep_rows in rep.get("sweeps", {}).items():   # mean over the sweep seeds
            if name.startswith("single:"):
                continue                          # the single models are the hull already
            curves[name] = np.array([[s["cost_usd"], s["quality"]] for s in sweep_rows], dtype=float)
            sources[name] = str(EVOROUTE_BENCH.relative_to(PROJECT_ROOT))
    top = float(max(c[:, 0].max() for c in curves.values()))
    rows = [{**_headline(name, c, singles, top), **({"source": sources[name]} if name in sources else {})}
            for name, c in curves.items()]
    default = router.route(test, emb[te], 0.1)
    print(f"\nmasrouter hyperparameters ({'5-fold CV on train' if cv_rows else 'defaults'}): "
          f"{params}; candidate modes per role: "
          f"{ {r: len(m) for r, m in router.modes_by_role.items()} }")
    print(f"{'router':28} {'AIQ':>7} {'gain/hull':>10} {'cost@parity':>12}")
    for r in rows:
        par = "–" if r["cost_share_at_parity"] is None else f"{r['cost_share_at_parity']:.0%}"
        aiq = "–" if r["aiq"] is None else f"{r['aiq']:.3f}"
        print(f"{r['router']:28} {aiq:>7} {r['best_gain_over_hull']:+10.3f} {par:>12}")
    best = singles[np.argmax(singles[:, 1])]
    print(f"\nbest single model: quality {best[1]:.3f} for ${best[0]:.3f} (test split)")
    for kind, f in fixed.items():
        print(f"best fixed {kind} (chosen on train): {f['mode']}: quality {f['quality']:.3f} "
              f"for ${f['cost']:.3f}")
    print(f"masrouter at lambda 0.1: quality {default.quality:.3f} for ${default.total_cost:.3f}; "
          f"calls per query {default.calls.mean():.2f}")
    out = {"label": "replayed", "dataset": "routerbench arc_challenge + winogrande",
           "n_train": int(tr.sum()), "n_test": int(te.sum()), "parse_rate": table.parse_rate,
           "no_gold": int((table.gold == "").sum()), "disagreements": table.disagreements,
           "params": params, "cv": cv_rows, "fixed": fixed, "rows": rows,
           "default": {"lambda": 0.1, "quality": default.quality, "cost": default.total_cost},
           "seconds": time.perf_counter() - t0}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1, default=float))
    print(f"\nwrote {args.json} ({out['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
