"""Replay checks: re-run EvoRoute's replays with the benchmark's own settings and measure what
the bench JSON does not hold; and their tables."""

from __future__ import annotations

import collections
import math
import time
from typing import Any

import numpy as np

from .common import BEST, EVOROUTE, PAPER, pm, short


# ------------------------------------------------------------------------------ replay checks
def replay_checks(reps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Re-run the replays of ``evoroute`` and ``evoroute-paper`` with the benchmark's settings and
    measure what the JSON does not hold."""
    from evoroute.backends.replay import ReplayBackend, dataset_models, load_replay_data
    from evoroute.policy.evoroute import EvoRouteConfig
    from evoroute.retrieval.embedder import get_embedder
    from evoroute.runs.loop import RunLoop
    from evoroute.runs.prepare import prepare_run
    from evoroute.runs.spec import RunSpec

    t0 = time.perf_counter()
    gpt4 = BEST.removeprefix("single:")
    df = load_replay_data("routerbench")
    infos = dataset_models(df)
    emb = get_embedder()
    out: dict[str, Any] = {}

    # the data: test queries before / after dropping incomplete ones, cost of the train logs
    test = df[df["split"] == "test"]
    piv = test.pivot_table(index="query_id", columns="model", values="score", aggfunc="first")
    complete = piv.notna().all(axis=1)
    roles = test.drop_duplicates("query_id").set_index("query_id")["role"]
    out["test_queries"] = int(len(piv))
    out["test_complete"] = int(complete.sum())
    out["dropped_by_role"] = {str(k): int(v) for k, v in roles[~complete.reindex(roles.index)
                                                                .fillna(False)].value_counts().items()}
    out["test_by_role"] = {str(k): int(v) for k, v in roles[complete.reindex(roles.index)
                                                            .fillna(False)].value_counts().items()}
    g4 = test[test["model"] == BEST.removeprefix("single:")].dropna(subset=["score"])
    out["gpt4_all_test"] = {"n": int(g4["query_id"].nunique()), "quality": float(g4["score"].mean()),
                            "cost": float(g4["cost_usd"].sum())}
    train = df[df["split"] == "train"]
    out["train_log_cost"] = float(train["cost_usd"].sum())

    # Static check of the semantic channel: for each test query, is there a train query with
    # cosine >= theta at all, and is there one from another benchmark?
    theta = EvoRouteConfig().theta
    probe = ReplayBackend(df, infos, seed=0)
    tr = [(s.role, s.instruction) for t in probe.tasks("train") for s in t.steps]
    te = [(s.role, s.instruction) for t in probe.tasks("test") for s in t.steps]
    e_tr = emb.encode([x for _, x in tr])
    e_te = emb.encode([x for _, x in te])
    sims = e_te @ e_tr.T
    r_tr = np.array([r for r, _ in tr])
    r_te = np.array([r for r, _ in te])
    out["theta"] = theta
    out["semantic_static"] = {
        role: {"any": float((sims[r_te == role].max(axis=1) >= theta).mean()),
               "other_benchmark": float((sims[r_te == role][:, r_tr != role].max(axis=1) >= theta).mean())}
        for role in sorted(set(r_te))}

    def run(router: str, protocol: str, seed: int, weights: tuple[float, float, float]) -> dict[str, Any]:
        t_run = time.perf_counter()
        backend = ReplayBackend(df, infos, seed=seed)
        spec = RunSpec(router=router, protocol=protocol, seed=seed, weights=weights)
        plan = prepare_run(spec, models=infos, backend=backend, embedder=emb)
        by_role: dict[str, dict[str, Any]] = collections.defaultdict(
            lambda: {"n": 0, "q": 0.0, "c": 0.0, "sem": 0, "models": collections.Counter(),
                     "terms": collections.defaultdict(lambda: np.zeros(5)), "gpt4_train": [],
                     "evidence": np.zeros(5)})
        for r in RunLoop(plan).steps():
            role = by_role[r.ctx.role]
            if r.phase != "inference":
                if r.outcome.model == gpt4:
                    role["gpt4_train"].append(float(r.outcome.step_success or 0.0))
                continue
            ex = r.decision.explanation
            if role["n"] == 0:   # the state EvoRoute enters the test split with, per benchmark
                kept = [c for c in ex.candidates if c.utility is not None]
                g4 = next((c for c in ex.candidates if c.model == gpt4), None)
                # the explored candidate whose Ĉ is C_ref (None: the scale is not one candidate's
                # step estimate, e.g. the kNN design's role scale)
                ref = [c for c in ex.candidates if not c.unexplored and c.c_hat is not None
                       and ex.c_ref is not None and math.isclose(c.c_hat, ex.c_ref, rel_tol=1e-9)]
                role["start"] = {
                    "kept": [c.model for c in kept],
                    "c_ref_model": ref[0].model if ref else None,
                    "gpt4_n": None if g4 is None else g4.n,
                    "gpt4_p": None if g4 is None else g4.p_hat,
                    "gpt4_kept": g4 is not None and g4.utility is not None}
            role["n"] += 1
            role["q"] += float(r.task_success or 0.0)
            role["c"] += r.outcome.cost_usd
            role["models"][r.outcome.model] += 1
            role["sem"] += int(ex.channels.get("semantic", 0) > 0)
            chosen = next((c for c in ex.candidates if c.model == r.outcome.model), None)
            if chosen is not None and chosen.n_eff is not None:
                # the kNN design's evidence for the model it chose: records among the k neighbours,
                # effective sample size, shrinkage toward the role prior, |P̂ − role prior|
                role["evidence"] += (1.0, chosen.neighbours or 0, chosen.n_eff, chosen.prior_weight,
                                     abs((chosen.p_hat or 0.0) - (chosen.p_prior or 0.0)))
            kept = [c for c in ex.candidates if c.utility is not None]
            if kept:
                c_ref, d_ref = ex.c_ref or 1.0, ex.d_ref or 1.0     # the scales the decision used
                for c in kept:
                    role["terms"][c.model] += (1.0, weights[0] * min(max(c.theta_p, 0.0), 1.0),
                                               weights[1] * c.theta_c / c_ref,
                                               weights[2] * c.theta_d / d_ref, c.utility)
        n = sum(v["n"] for v in by_role.values())
        res = {"quality": sum(v["q"] for v in by_role.values()) / n,
               "cost": sum(v["c"] for v in by_role.values()), "roles": {}}
        for name, v in sorted(by_role.items()):
            terms = {m: (t[1:] / t[0]).tolist() for m, t in v["terms"].items() if t[0] > 0}
            ev = v["evidence"]
            res["roles"][name] = {
                "n": v["n"], "quality": v["q"] / v["n"], "cost": v["c"], "semantic_hit": v["sem"] / v["n"],
                "models": dict(v["models"].most_common()), "terms": terms,
                "terms_share": {m: float(v["terms"][m][0] / v["n"]) for m in terms},
                "gpt4_train": v["gpt4_train"], "start": v.get("start"),
                "evidence": None if ev[0] == 0 else dict(zip(
                    ("neighbours", "n_eff", "prior_weight", "p_shift"), (ev[1:] / ev[0]).tolist()))}
        res["seconds"] = time.perf_counter() - t_run
        return res

    # evoroute: every report it is in (the cost-leaning files hold only it and gpt-4);
    # evoroute-paper: the two default-weight files
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {EVOROUTE: {}, PAPER: {}}
    for router, keys in ((EVOROUTE, ("bandit", "full", "bandit_costlean", "full_costlean")),
                         (PAPER, ("bandit", "full"))):
        for key in keys:
            if key in reps and router in reps[key]["routers"]:
                w = tuple(float(x) for x in reps[key]["weights"])
                runs[router][key] = [run(router, reps[key]["protocol"], s, w) for s in reps[key]["seeds"]]
    out["runs"] = runs
    out["seconds"] = time.perf_counter() - t0
    return out


def _sd(x: list[float]) -> float:
    return float(np.std(x, ddof=1)) if len(x) > 1 else 0.0


def reproduction_line(reps: dict[str, Any], checks: dict[str, Any]) -> str:
    """Replay check against the JSON, per (router, file): the runs are the benchmark's runs."""
    rows = []
    for router, by_key in checks["runs"].items():
        for key, runs in by_key.items():
            q = [r["quality"] for r in runs]
            c = [r["cost"] for r in runs]
            j = reps[key]["routers"][router]
            rows.append(f"| `{router}` | {key} | {np.mean(q):.4f} ± {_sd(q):.4f} "
                        f"| {j['quality']:.4f} ± {j['quality_sd']:.4f} "
                        f"| {np.mean(c):.4f} ± {_sd(c):.4f} | {j['cost_usd']:.4f} ± {j['cost_usd_sd']:.4f} |")
    return "\n".join(["| router | file | replay check: quality | JSON: quality | replay check: cost $ "
                      "| JSON: cost $ |",
                      "|---|---|---:|---:|---:|---:|"] + rows)


def _models_txt(runs: list[dict[str, Any]], role: str, top: int = 4) -> str:
    cnt: collections.Counter[str] = collections.Counter()
    for r in runs:
        cnt.update(r["roles"][role]["models"])
    tot = sum(cnt.values())
    return ", ".join(f"{short(m)} {100 * k / tot:.1f} %" for m, k in cnt.most_common(top))


def role_choice_table(runs: list[dict[str, Any]], theta: float) -> str:
    """Per benchmark: models chosen over all seeds, quality, cost, and the evidence the design
    decided on: for the paper union how often its semantic channel (cosine ≥ θ) found a
    neighbour; for the kNN design the chosen model's records among the k neighbours, their
    effective sample size n_eff, the shrinkage weight of the role prior κ/(κ + n_eff) and how far
    its P̂ moved from the role prior (mean over test steps and seeds)."""
    roles = sorted(runs[0]["roles"])
    knn = all(runs[0]["roles"][r].get("evidence") for r in roles)
    if knn:
        head = ("| benchmark | test queries | models chosen (share of steps, all seeds) | quality | test "
                "cost $ "
                "| chosen model: records among the k neighbours | n_eff | prior weight κ/(κ + n_eff) "
                "| |P̂ − role prior| (points) |")
        lines = [head, "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    else:
        lines = ["| benchmark | test queries | models chosen (share of steps, all seeds) | quality | test "
                 "cost $ "
                 f"| semantic channel found a neighbour (θ = {theta:g}) |",
                 "|---|---:|---|---:|---:|---:|"]
    for role in roles:
        q = [r["roles"][role]["quality"] for r in runs]
        c = [r["roles"][role]["cost"] for r in runs]
        row = (f"| {role} | {runs[0]['roles'][role]['n']} | {_models_txt(runs, role)} | "
               f"{pm(np.mean(q), _sd(q))} "
               f"| {pm(np.mean(c), _sd(c))} |")
        if knn:
            ev = {k: np.mean([r["roles"][role]["evidence"][k] for r in runs])
                  for k in ("neighbours", "n_eff", "prior_weight", "p_shift")}
            row += (f" {ev['neighbours']:.1f} | {ev['n_eff']:.1f} | {ev['prior_weight']:.2f} "
                    f"| {100 * ev['p_shift']:.1f} |")
        else:
            row += f" {100 * np.mean([r['roles'][role]['semantic_hit'] for r in runs]):.1f} % |"
        lines.append(row)
    return "\n".join(lines)


def evidence_summary(runs: list[dict[str, Any]]) -> dict[str, float]:
    """The kNN design's evidence over every test step of every run (weighted by steps)."""
    tot = {k: 0.0 for k in ("neighbours", "n_eff", "prior_weight", "p_shift")}
    n = 0
    for r in runs:
        for v in r["roles"].values():
            if v.get("evidence"):
                n += v["n"]
                for k in tot:
                    tot[k] += v["n"] * v["evidence"][k]
    return {k: t / n for k, t in tot.items()} if n else {}


def utility_terms_table(run: dict[str, Any], top: int = 4) -> str:
    lines = ["| benchmark | model | estimated P̃ | cost term w_c·C/C_ref | delay term w_d·D/D_ref "
             "| utility (posterior mean) |", "|---|---|---:|---:|---:|---:|"]
    for role, v in sorted(run["roles"].items()):
        terms = v["terms"]
        best = sorted(terms, key=lambda m: -terms[m][3])[:top]
        gpt4 = BEST.removeprefix("single:")
        if gpt4 in terms and gpt4 not in best:
            best.append(gpt4)
        for m in best:
            p, c, d, u = terms[m]
            lines.append(f"| {role} | {short(m)} | {p:.3f} | {c:.4f} | {d:.4f} | {u:.3f} |")
    return "\n".join(lines)


def bandit_seed_table(runs: list[dict[str, Any]], seeds: list[int], c_ref: bool = True) -> str:
    """Per seed and benchmark: gpt-4's train outcomes, the state at the start of the test split
    (is gpt-4 in the Pareto set; with ``c_ref``, which model's estimated cost is C_ref) and what the
    test split got."""
    roles = sorted(runs[0]["roles"])
    gpt4 = BEST.removeprefix("single:")
    head = "| seed | test quality | test cost $ | " + " | ".join(roles) + " |"
    lines = [head, "|---:|---:|---:|" + "---|" * len(roles)]
    for s, run in zip(seeds, runs):
        cells = []
        for role in roles:
            v = run["roles"][role]
            obs = "".join("✓" if x >= 0.5 else "✗" for x in v["gpt4_train"][:6])
            more = "…" if len(v["gpt4_train"]) > 6 else ""
            st = v.get("start") or {}
            main = max(v["models"], key=v["models"].get)
            g = v["models"].get(gpt4, 0) / v["n"]
            state = "in Pareto set" if st.get("gpt4_kept") else "**pruned**"
            ref = f"; C_ref: {short(st.get('c_ref_model') or '–')}" if c_ref else ""
            cells.append(f"gpt-4 {len(v['gpt4_train'])}× {obs}{more}, {state}{ref} → {short(main)} "
                         f"{100 * v['models'][main] / v['n']:.0f} %, gpt-4 {100 * g:.0f} %")
        lines.append(f"| {s} | {run['quality']:.3f} | {run['cost']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pruning_counts(runs: list[dict[str, Any]], full_choice: dict[str, str] | None = None) -> dict[str, Any]:
    """How often gpt-4 entered the test split outside the Pareto set, and after how many calls;
    where gpt-4 took most of a benchmark, whether the model EvoRoute picks there with full
    information (``full_choice``: benchmark -> model) had been pruned."""
    gpt4 = BEST.removeprefix("single:")
    cells = [(run["roles"][role]) for run in runs for role in run["roles"]]
    out_gpt4 = [(role, run["roles"][role]) for run in runs for role in run["roles"]
                if run["roles"][role]["models"].get(gpt4, 0) >= 0.5 * run["roles"][role]["n"]]
    full_choice = full_choice or {}
    lost_choice = [1 for role, c in out_gpt4 if c.get("start") and full_choice.get(role)
                   and full_choice[role] not in c["start"]["kept"]]
    pruned = [c for c in cells if c.get("start") and not c["start"]["gpt4_kept"]]
    few = [c for c in pruned if len(c["gpt4_train"]) <= 3]
    lucky = [c for c in pruned if c["gpt4_train"] and all(x >= 1 for x in c["gpt4_train"])]
    not_gpt4_ref = [c for c in cells
                    if c.get("start") and c["start"]["c_ref_model"] != BEST.removeprefix("single:")]
    return {"cells": len(cells), "pruned": len(pruned), "pruned_few_calls": len(few),
            "calls_when_pruned": sorted(len(c["gpt4_train"]) for c in pruned),
            "pruned_all_success": len(lucky),
            "c_ref_not_gpt4": len(not_gpt4_ref), "gpt4_majority": len(out_gpt4),
            "gpt4_majority_choice_pruned": len(lost_choice)}


def full_choices(runs: list[dict[str, Any]]) -> dict[str, str]:
    """Benchmark -> the model a design uses most there with full information (first seed)."""
    return {role: max(v["models"], key=v["models"].get) for role, v in runs[0]["roles"].items()}


