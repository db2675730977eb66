"""docs/results.md, assembled from the tables, targets, replay checks and reading."""

from __future__ import annotations

from typing import Any

from .common import EVOROUTE, FILES, PAPER, best_single, command, pct, router_order, short
from .reading import honest_reading, issue9_why
from .replay import bandit_seed_table, reproduction_line, role_choice_table, utility_terms_table
from .tables import ablation_table, costlean_section, headline_table, router_table, share_table, sweep_table
from .targets import issue9_targets, targets

PROTOCOL_TITLES = {"bandit": "bandit protocol (the paper's)", "full": "full protocol (train logs of every "
                                                                      "model)"}


def setup_section(reps: dict[str, Any], checks: dict[str, Any] | None) -> list[str]:
    b = reps["bandit"]
    ref = b["reference"]
    doc: list[str] = []
    p = doc.append
    p("## Setup")
    p("")
    dropped = ""
    if checks:
        by = ", ".join(f"{k} {v}" for k, v in sorted(checks["dropped_by_role"].items()))
        per = ", ".join(f"{k} {v}" for k, v in sorted(checks["test_by_role"].items()))
        dropped = (f" The test split has {checks['test_queries']} queries; "
                   f"{checks['test_queries'] - checks['test_complete']} "
                   f"({by}) are dropped because some model has no recorded outcome, leaving "
                   f"{checks['test_complete']} "
                   f"({per}) on which every model is scored.")
    p(f"- Data: the bundled RouterBench subset (`data/routerbench/`, three tasks: ARC-Challenge, MBPP, "
      f"Winogrande; 11 models), split from the data's own split column: {b['n_train']} train and "
      f"**{b['n_test']} test queries**.{dropped} One step per task.")
    p(f"- Best single model on the test split: {ref['best_single']}, {ref['best_single_quality']:.3f} for "
      f"${ref['best_single_cost']:.3f}; oracle (cheapest correct model per query) "
      f"{ref['oracle_quality']:.3f}. "
      + (f"(On all {checks['test_queries']} test queries, before the incomplete ones are dropped, "
         f"gpt-4 has a recorded outcome on {checks['gpt4_all_test']['n']} of them and scores "
         f"{checks['gpt4_all_test']['quality']:.3f} for ${checks['gpt4_all_test']['cost']:.3f} there.)"
         if checks else ""))
    p("- Protocols. **bandit** (the paper's): cold start on 50 train tasks with random models, online "
      "learning on the remaining train tasks seeing only the chosen model's outcome, then the test split; "
      "the train-phase spend is the *exploration cost*. **full**: EvoRoute's experience base starts with "
      "every model's recorded outcome on the train split (a team with evaluation logs), then the test split. "
      "EvoRoute keeps learning from its own test outcomes in both. Threshold, oracle cascade and the learned "
      "baselines (per-role, kNN, logistic, confidence cascade) are trained on every model's outcome on the "
      "full train split in **both** protocols (RouteLLM's setting), their hyperparameters by "
      "cross-validation "
      "on the train split; LinTS learns online from its own choices (bandit) or starts from every model's "
      "train outcome (full); the other baselines do not learn, so they are identical in both tables.")
    p(f"- Seeds {b['seeds']}: quality and cost are mean ± sd over seeds. Deterministic routers that do not "
      "learn (single models, cheapest, oracle, threshold, oracle cascade, per-role, kNN, logistic, "
      "confidence "
      f"cascade) run once and count for every seed (sd 0).")
    p(f"- Trade-off metrics come from each router's cost-knob sweep: both EvoRoute designs' w_c over "
      f"{sorted({pt['knob'] for pt in b['sweeps']['evoroute']})}, the threshold router's strong-call share "
      f"over 0–100 %, the learned baselines' cost weight λ over the same grid, the confidence cascade's "
      "threshold, the oracle cascade's ladder length; every other router is a single point. Sweep settings "
      "other "
      f"than a router's own run on seeds {b.get('sweep_seeds')}. AIQ (RouterBench) is the mean hull quality "
      "over "
      f"budgets up to ${b['aiq_max_cost_usd']:.3f}; APGR / CPT (RouteLLM) use the pair chosen on train, "
      "strong "
      f"{b['pair']['strong']} / weak {b['pair']['weak']}, with a router's cost mapped to a strong-call-"
      f"equivalent share (cost − weak) / (strong − weak) — a negative CPT means cheaper than always-weak. "
      f"Definitions: `docs/metrics.md`.")
    p("")
    p("Sources (each table names its file):")
    p("")
    for key in FILES:
        if key in reps:
            t = reps[key].get("timing", {})
            p(f"- `docs/results/{FILES[key]}`: `{command(reps[key], key)}` "
              f"({t.get('total_s', float('nan')):.0f} s wall beside other jobs, "
              f"{t.get('cpu_s', float('nan')):.0f} CPU s)" + _merges(reps[key], key))
    p("- Replay checks and this document: `python benchmarks/make_results.py`" +
      (f" (replay checks took {checks['seconds']:.0f} s wall)" if checks
       else " (run with --no-replay-checks: "
                                                                           "the checks were skipped)"))
    p("")
    p("")
    return doc


def _merges(rep: dict[str, Any], key: str) -> str:
    """The ``bench --merge-into`` reruns recorded in a report (their routers, from its notes)."""
    done = [n[len("merged: "):].split(" rerun and merged")[0] for n in rep.get("notes", [])
            if n.startswith("merged: ")]
    if not done:
        return ""
    base = command(rep, key).replace(f" --json docs/results/{FILES[key]}", "")
    return "; then " + "; ".join(
        f"`{base} --routers {r.replace(', ', ',')} --merge-into docs/results/{FILES[key]}`"
        for r in done)


def protocol_section(rep: dict[str, Any], key: str, title: str, images: dict[str, str]) -> list[str]:
    doc: list[str] = []
    p = doc.append
    p(f"## {title[0].upper() + title[1:]}")
    p("")
    p(f"Source: `{command(rep, key)}` → `docs/results/{FILES[key]}`; {rep['n_test']} test queries, "
      f"weights {tuple(rep['weights'])}, seeds {rep['seeds']}.")
    p("")
    p(router_table(rep))
    p("")
    swept = ", ".join(f"{r} ({len(rep['sweeps'][r])} settings)" for r in router_order(rep)
                      if len(rep["sweeps"].get(r) or []) > 1)
    bs = short(best_single(rep))
    p(f"*Columns.* Quality is mean task success on the test split and cost is the total test cost "
      f"(both replayed); latency is modelled. AIQ, the gains over the single-model hull, the cost share at "
      f"parity (the cheapest sweep point within 0.5 points of the best single model), APGR, CPT and "
      f"\"$ to reach {bs}'s quality\" are read off each router's sweep: {swept}. Every other router is a "
      f"single point, so its AIQ counts budgets below its own cost as quality 0 ({bs} alone: AIQ 0) and "
      f"its CPT is 'not reached' unless that one point reaches the target. CPT is a strong-call-equivalent "
      f"share (see Setup). The gap to the oracle is oracle quality − router quality.")
    p("")
    p(share_table(rep))
    p("")
    for r in (EVOROUTE, PAPER):
        sw = sweep_table(rep, r, "w_c")
        if sw:
            p(f"`{r}`'s cost-weight sweep (w_p = 1, w_d = 0.05; same file):")
            p("")
            p(sw)
            p("")
    if key in images:
        p(f"![quality vs cost, {key}]({images[key]})")
        p("")
    return doc


def agent_steps_section(reps: dict[str, Any]) -> list[str]:
    keys = [k for k in ("agent_steps_bandit", "agent_steps_full") if k in reps]
    if not keys:
        return []
    doc: list[str] = []
    p = doc.append
    r0 = reps[keys[0]]
    ref = r0["reference"]
    one = 100 / r0["n_test"]
    p("## agent_steps: real agent steps (bundled, small)")
    p("")
    p(f"The second bundled dataset (`data/agent_steps/`, README and PROVENANCE there): routed steps of real "
      f"agent trajectories (SWE-bench Verified, mtRAG, QMSum, PinchBench), each labelled with the cheapest "
      f"model tier with which its task still passes; one row per (step, tier model), success 1 when the "
      f"model's tier is at or above that target (**assumed monotone**: higher tiers were not run), cost from "
      f"the step's token count at the model's price. {r0['n_train']} train and **{r0['n_test']} test "
      f"tasks**, {len(ref['singles'])} models. Best single model {ref['best_single']}: "
      f"{ref['best_single_quality']:.3f} for ${ref['best_single_cost']:.3f}; oracle "
      f"{ref['oracle_quality']:.3f}.")
    p("")
    p(f"**Caveat: its size.** One test task is {one:.1f} points of quality, so differences of a few points "
      "are one or two tasks; the best single model solves every test task by the monotonicity assumption, "
      "so "
      f"parity means solving all of them. Read this beside RouterBench, not instead of it.")
    p("")
    if len(keys) == 2:
        p("Headline metrics, both protocols (same columns as the RouterBench table below):")
        p("")
        p(headline_table(reps, tuple(keys)))
        p("")
    for key in keys:
        rep = reps[key]
        p(f"### agent_steps, {PROTOCOL_TITLES[rep['protocol']]}")
        p("")
        p(f"Source: `{command(rep, key)}` → `docs/results/{FILES[key]}`; {rep['n_test']} test tasks, "
          f"weights {tuple(rep['weights'])}, seeds {rep['seeds']}.")
        p("")
        p(router_table(rep))
        p("")
        p("Best non-oracle by AIQ: " + ", ".join(f"{i + 1}. {o['router']} {o['aiq']:.3f}"
                                                  for i, o in enumerate(rep["ranking_non_oracle"][:6])) + ".")
        p("")
    return doc


def choice_section(reps: dict[str, Any]) -> list[str]:
    """The bench on routerbench-choice: ``masrouter``'s collaboration modes beside EvoRoute, the
    learned baselines, the best fixed vote and the single models, through the runner."""
    rep = reps.get("choice_full")
    if not rep:
        return []
    doc: list[str] = []
    p = doc.append
    p("## routerbench-choice: collaboration modes through the bench (replayed)")
    p("")
    p("The multiple-choice part of the bundled RouterBench (ARC-Challenge, Winogrande), where each model's "
      "recorded answer can be parsed, so a vote or an escalation on disagreement can be replayed from the "
      "recorded answers alone (docs/collaboration.md: what the data supports and how each mode is scored). "
      "`masrouter` chooses per query the mode and its models; `best-vote` is the best fixed vote on the "
      "train split; a mode's cost is the calls it makes. Every number is **replayed**. MasRouter's paper "
      "reports +1.8 – 8.2 % on MBPP and −52 % cost on HumanEval against multi-agent baselines (other "
      "benchmarks, live calls): only the direction is comparable.")
    p("")
    p(f"Source: `{command(rep, 'choice_full')}` → `docs/results/{FILES['choice_full']}`; {rep['n_test']} "
      f"test queries, weights {tuple(rep['weights'])}, seeds {rep['seeds']}.")
    p("")
    p(router_table(rep))
    p("")
    p("Best non-oracle by AIQ: " + ", ".join(f"{i + 1}. {o['router']} {o['aiq']:.3f}"
                                              for i, o in enumerate(rep["ranking_non_oracle"][:6])) + ".")
    p("")
    return doc


def side_studies(side: dict[str, dict[str, Any]]) -> list[str]:
    """Pointers to docs/collaboration.md and docs/rescue.md with their headline numbers."""
    if not side:
        return []
    doc: list[str] = []
    p = doc.append
    p("## Beside the bench: collaboration modes and mid-run rescue (replayed)")
    p("")
    c = side.get("collab")
    if c:
        rows = {r["router"]: r for r in c["rows"]}
        m, h, e = rows.get("masrouter"), rows.get("single-model hull"), rows.get(EVOROUTE)
        line = (f"- **Collaboration modes, `masrouter`** (docs/collaboration.md, `docs/results/collab.json`; "
                f"{c['dataset']}, {c['n_test']} test queries): per query one (mode, models) candidate among "
                f"single calls, votes and escalations.")
        if m and h:
            line += (f" AIQ {m['aiq']:.3f} against the single-model hull's {h['aiq']:.3f}, best gain over "
                     "the "
                     f"hull {100 * m['best_gain_over_hull']:+.1f} points, parity with the best single model "
                     "at "
                     f"{pct(m['cost_share_at_parity'])} of its cost")
        if e:
            line += (f"; `{EVOROUTE}` on the same queries (`docs/results/bench_choice_full.json`): AIQ "
                     f"{e['aiq']:.3f}, parity at {pct(e['cost_share_at_parity'])}")
        p(line + ".")
    a = side.get("atropos")
    if a:
        paper = a["paper"]
        cells = []
        for srow in a["summary"]:
            best = max(srow["predictors"], key=lambda k: srow["predictors"][k]["test_aiq"]["mean"])
            pr = srow["predictors"][best]
            cells.append(f"{srow['dataset']}: {best} keeps {100 * pr['quality_kept']['mean']:.1f} % of the "
                         f"strong model's quality at {100 * pr['cost_share']['mean']:.1f} % of its cost, "
                         f"test AIQ {pr['test_aiq']['mean']:.3f} against the hull's "
                         f"{srow['hull_aiq']['mean']:.3f}")
        p("- **Mid-run rescue, `atropos`** (docs/rescue.md, `docs/results/atropos.json`; seeds "
          f"{a['seeds']}): "
          f"predicts from a run's partial trajectory that it will fail and hot-swaps the rest to the strong "
          f"model. The paper: {100 * paper['quality_kept']:.2f} % at {100 * paper['cost_share']:.1f} %. "
          "Here, "
          f"by the predictor with the higher test AIQ: " + "; ".join(cells) + ".")
    s3 = side.get("steps3")
    if s3:
        rows = s3["routers"]
        shown = [r for r in ("atropos", "atropos-graph", "masrouter", "per-role", EVOROUTE) if r in rows]
        p(f"- **Both as routers on composed tasks** (`docs/results/bench_routerbench_3steps_full.json`: "
          f"RouterBench, {s3.get('steps_per_task', 3)} queries per task, {s3['n_test']} test tasks, seeds "
          f"{s3['seeds']}, full protocol): AIQ " + ", ".join(
              f"{short(r)} {rows[r]['aiq']:.3f}" for r in shown) + "; gain over the single-model hull "
          "at the default setting " + ", ".join(
              f"{short(r)} {100 * rows[r]['gain_over_hull']:+.1f}" for r in shown) +
          " points. The rescue pays for the base call before it can swap, so it trails the routers "
          "that pick the strong tier up front (docs/rescue.md).")
    p("")
    return doc


def replay_section(reps: dict[str, Any], checks: dict[str, Any]) -> list[str]:
    doc: list[str] = []
    p = doc.append
    runs = checks["runs"]
    p("### Replay checks behind the reading")
    p("")
    p(f"Measured by `python benchmarks/make_results.py`: `{EVOROUTE}` and `{PAPER}` re-run with the "
      "benchmark's own settings (same RunSpec, backend seed and routing seed). First, that these are the "
      "benchmark's runs:")
    p("")
    p(reproduction_line(reps, checks))
    p("")
    desc = ("Each cell: how often the router called gpt-4 on that benchmark's train queries (cold start and "
            "optimisation) with the first outcomes (✓ success, ✗ failure); whether gpt-4 was in the Pareto "
            "set "
            "when the test split started; {ref}the model used most on the benchmark's test queries and "
            "gpt-4's share of them.")
    refs = {PAPER: "the model whose estimated cost was C_ref then; ",
            EVOROUTE: ""}   # the kNN design's C_ref is a role mean, not one candidate's estimate
    for router in (EVOROUTE, PAPER):
        by = runs.get(router) or {}
        for key in ("full", "bandit", "full_costlean", "bandit_costlean"):
            rs = by.get(key)
            if not rs:
                continue
            w = ",".join(f"{x:g}" for x in reps[key]["weights"])
            proto = reps[key]["protocol"]
            p(f"`{router}`, per benchmark, {proto} protocol, weights {w} (all seeds):")
            p("")
            p(role_choice_table(rs, checks["theta"]))
            p("")
            if key == "full":
                p(f"The utility terms behind `{router}`'s choices (full protocol, seed "
                  f"{reps[key]['seeds'][0]}, "
                  "mean over each benchmark's test steps; top models by utility, and gpt-4):")
                p("")
                p(utility_terms_table(rs[0]))
                p("")
            if proto == "bandit":
                p(f"`{router}`, bandit protocol per seed, weights {w}. " + desc.format(ref=refs[router]))
                p("")
                p(bandit_seed_table(rs, reps[key]["seeds"], c_ref=router == PAPER))
                p("")
    return doc


def write_doc(reps: dict[str, Any], checks: dict[str, Any] | None, images: dict[str, str],
              side: dict[str, dict[str, Any]] | None = None) -> str:
    t4_table, t4_summary = targets(reps, checks)
    t9_table, t9_summary, verdict = issue9_targets(reps)
    doc: list[str] = []
    p = doc.append
    p("# Results: EvoRoute on replayed RouterBench and agent_steps")
    p("")
    p("*Generated by `python benchmarks/make_results.py` from `docs/results/*.json`; do not edit by hand.*")
    p("")
    p("**Labels.** Every quality and cost number here is **replayed**: a router's choice for a query "
      "returns that model's real recorded score and cost (no model was called). Every latency is "
      "**modelled**: time-to-first-token + output tokens / tokens-per-second from the assumed latency "
      "profiles in `data/model_profiles.json` — not a measurement.")
    p("")
    p(f"**Routers.** `{EVOROUTE}` is the query-aware design (estimates from the k nearest past steps, shrunk "
      f"toward the role by an empirical-Bayes prior; docs/query_aware.md); `{PAPER}` is the paper's literal "
      f"union R_role ∪ R_sem ∪ R_tool. Each has the paper's four ablations (`{EVOROUTE}-no-…`, "
      f"`{PAPER}-no-…`). `per-role`, `knn`, `logistic`, `lints` and `cascade` (confidence) are the routers "
      "a user would pick instead; `oracle` and `oracle-cascade` read recorded outcomes and are never "
      "ranked.")
    p("")
    doc += setup_section(reps, checks)
    p("## Headline")
    p("")
    for s in t9_summary + t4_summary:
        p(f"- {s}")
    p("")
    p("## Issue 9 targets")
    p("")
    p("Bundled RouterBench test split, `bench --seeds 5`, both protocols (quality and cost replayed); "
      "nothing was tuned on the test split.")
    p("")
    p(t9_table)
    p("")
    p(issue9_why(reps, checks, verdict))
    p("")
    p("Headline metrics of every router with a cost knob (issue 9 item 4), RouterBench:")
    p("")
    p(headline_table(reps, ("bandit", "full")))
    p("")
    for key in ("bandit", "full"):
        doc += protocol_section(reps[key], key, "RouterBench, " + PROTOCOL_TITLES[key], images)
    doc += agent_steps_section(reps)
    doc += choice_section(reps)
    p("## Ablations beside the paper's")
    p("")
    p("Δ = ablation − its design on the test split: quality in points (× 100) and test cost in $, mean over "
      "the seeds; ± = sd of that difference, √(sd_ablation² + sd_design²) from the per-router sds in the "
      "JSON "
      "(it keeps no per-seed pairs). The paper's numbers are on GAIA (multi-step agent tasks); ours are "
      "one-step RouterBench queries, so only the sign and rough size are comparable. Sources: "
      "`docs/results/bench_bandit.json`, `docs/results/bench_full.json`.")
    p("")
    p(ablation_table(reps))
    p("")
    p("## Targets of issue 4")
    p("")
    p("For `evoroute`, on the replayed test split above; nothing was tuned on the test split. The benches "
      "ran "
      "while other jobs shared the same 2 cores (8 other jobs during the 5-seed benches), so wall times are "
      "upper bounds; the CPU seconds of the runs are the fairer number and are given beside them.")
    p("")
    p(t4_table)
    p("")
    p("## Cost-leaning weights")
    p("")
    p(costlean_section(reps))
    p("")
    doc += side_studies(side or {})
    p("## An honest reading")
    p("")
    p(honest_reading(reps, checks))
    p("")
    if checks:
        doc += replay_section(reps, checks)
    p("## Reproduce")
    p("")
    p("```bash")
    for key in FILES:
        if key in reps:
            p(command(reps[key], key))
    p("python -m benchmarks.collab_bench      # docs/results/collab.json (docs/collaboration.md)")
    p("python -m benchmarks.atropos_bench     # docs/results/atropos.json (docs/rescue.md)")
    p("python benchmarks/make_results.py      # this page and docs/results/quality_cost*.png")
    p("```")
    p("")
    return "\n".join(doc)
