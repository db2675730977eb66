"""Atropos-style mid-run rescue on multi-step tasks, replayed (docs/rescue.md).

    python -m benchmarks.atropos_bench              # prints the tables, writes the JSON
    python -m benchmarks.atropos_bench --seeds 0     # one composition / CV / torch seed

Replayed: every number is scored from the recorded outcomes, responses and costs of the bundled
files. Datasets: RouterBench (ARC-Challenge, MBPP, Winogrande) queries composed into tasks of 3
and 5 steps by the replay backend's seeded composition (success = all steps succeed), and the
bundled agent-step trajectories with more than one step. The plan (base policy, strong model,
second opinions) and both failure predictors are fitted on the train split; the headline
threshold is chosen on the train split's out-of-fold sweep; the test split is read once.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from evoroute.evaluation import metrics
from evoroute.rescue.observe import observe
from evoroute.rescue.plan import fit_plan
from evoroute.rescue.predictors import PREDICTORS, cross_val_predict
from evoroute.rescue.replay import (
    LABEL,
    base_failures,
    default_thresholds,
    explain,
    fit_rescue,
    reference_points,
    sweep,
)
from evoroute.settings import PROJECT_ROOT, offline_env

OUT = PROJECT_ROOT / "docs" / "results" / "atropos.json"
PAPER = {"quality_kept": 0.7435, "cost_share": 0.239,
         "source": "Atropos: 74.35 % of the large model's performance at 23.9 % of its cost"}
PAPER_COST_SHARE = PAPER["cost_share"]


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else None


def _pts(rows: list[dict]) -> np.ndarray:
    return np.array([[r["cost"], r["quality"]] for r in rows], dtype=float)


def _at_share(rows: list[dict], share: float) -> dict:
    """The sweep row whose cost share is nearest ``share`` (ties: the higher quality)."""
    return min(rows, key=lambda r: (abs(r["cost_share"] - share), -r["quality"]))


def _dataset(name: str, train, test, plan_train, seed: int) -> dict:
    plan = fit_plan(plan_train)
    obs_tr, obs_te = observe(train, plan), observe(test, plan)
    y_tr = base_failures(train, plan)[obs_tr.task]
    y_te = base_failures(test, plan)[obs_te.task]
    refs = reference_points(test, plan)
    ref_pts = np.array(list(refs.values()), dtype=float)
    out = {"dataset": name, "label": LABEL, "runs": {"train": train.n_tasks, "test": test.n_tasks},
           "steps": {"train": len(train), "test": len(test)},
           "second_opinion_steps_test": int(obs_te.has_opinion.sum()),
           "plan": plan.describe(), "reference": {k: {"cost": c, "quality": q}
                                                  for k, (c, q) in refs.items()},
           "predictors": {}}
    curves = {"single models + base + strong": ref_pts}
    for kind in PREDICTORS:
        t0 = time.perf_counter()
        oof = cross_val_predict(kind, obs_tr, y_tr, seed=seed)
        grid = default_thresholds(oof)
        cv_rows = sweep(train, plan, obs_tr, oof, grid)
        chosen = _at_share(cv_rows, PAPER_COST_SHARE)["threshold"]
        rescue = fit_rescue(train, plan, kind, seed)
        _, p = rescue.probabilities(test)
        rows = sweep(test, plan, obs_te, p, grid)
        rest_only = sweep(test, plan, obs_te, p, grid, redo=False)
        head = next(r for r in rows if r["threshold"] == chosen)
        train_refs = np.array(list(reference_points(train, plan).values()), dtype=float)
        cv_curves = {"rescue": _pts(cv_rows), "refs": train_refs}
        out["predictors"][kind] = {
            "cv_auc": _auc(y_tr, oof), "test_auc": _auc(y_te, p),
            "cv_aiq": metrics.aiq_table(cv_curves)["rescue"],
            "cv_hull_aiq": metrics.aiq_table(cv_curves)["refs"],
            "threshold": chosen, "headline": head, "sweep": rows,
            "rest_only_headline": next(r for r in rest_only if r["threshold"] == chosen),
            "best_gain_over_hull": metrics.best_gain_over_hull(ref_pts, _pts(rows)),
            "example_explain": explain(rescue.predictor, obs_te, p, chosen,
                                       int(next((t for t in range(test.n_tasks)
                                                 if (p[obs_te.task == t] > chosen).any()), 0))),
            "seconds": time.perf_counter() - t0}
        curves[f"rescue ({kind})"] = _pts(rows)
        curves[f"rescue ({kind}, rest only)"] = _pts(rest_only)
    # control: the same swap rule with a coin instead of a predictor (same swap rates, no signal)
    coin = np.random.default_rng([seed, 13]).uniform(size=len(obs_te))
    rand_rows = sweep(test, plan, obs_te, coin, np.linspace(0.0, 1.0, 41))
    curves["random swap"] = _pts(rand_rows)
    out["random_swap"] = {"sweep": rand_rows,
                          "best_gain_over_hull": metrics.best_gain_over_hull(ref_pts, _pts(rand_rows))}
    out["aiq"] = metrics.aiq_table(curves)
    return out


SWEEP_FIELDS = ("threshold", "cost", "quality", "quality_kept", "cost_share", "rescue_rate",
                "false_swap_rate", "swapped", "broken")


def _slim(res: dict, full: bool) -> dict:
    """The JSON's copy of one dataset's result: the sweeps (few fields) for the first seed only."""
    out = dict(res)
    out["predictors"] = {}
    for kind, r in res["predictors"].items():
        r = dict(r)
        if full:
            r["sweep"] = [{k: row[k] for k in SWEEP_FIELDS} for row in r["sweep"]]
        else:
            r.pop("sweep")
            r.pop("example_explain")
        out["predictors"][kind] = r
    rand = res["random_swap"]
    out["random_swap"] = ({"sweep": [{k: row[k] for k in SWEEP_FIELDS} for row in rand["sweep"]],
                           "best_gain_over_hull": rand["best_gain_over_hull"]} if full
                          else {"best_gain_over_hull": rand["best_gain_over_hull"]})
    return out


def _round(x):
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_round(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return round(float(x), 6)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x:.1%}" if pct else f"{x:.3f}"


def _print(res: dict) -> None:
    print(f"\n== {res['dataset']} ({res['label']}): runs train {res['runs']['train']} / test "
          f"{res['runs']['test']}; steps with a second opinion (test) "
          f"{res['second_opinion_steps_test']} of {res['steps']['test']}")
    plan = res["plan"]
    print(f"base policy {plan['base']}; strong {plan['strong']}; second opinion "
          f"{plan['second_opinion']}")
    ref = res["reference"]
    b, s = ref["base policy"], ref["strong model"]
    print(f"test: base policy quality {b['quality']:.3f} for ${b['cost']:.3f} (alone it keeps "
          f"{_fmt(b['quality'] / s['quality'] if s['quality'] else None, True)} of the strong "
          f"model's quality at {_fmt(b['cost'] / s['cost'] if s['cost'] else None, True)} of its "
          f"cost); strong model {s['quality']:.3f} for ${s['cost']:.3f}")
    print(f"{'predictor':10} {'CV AUC':>7} {'test AUC':>8} {'CV AIQ':>7} {'(hull)':>7} {'thr':>6} "
          f"{'kept':>7} {'cost':>7} {'rescue':>7} {'false':>7} {'swaps':>6} {'broken':>6}")
    for kind, r in res["predictors"].items():
        h = r["headline"]
        print(f"{kind:10} {_fmt(r['cv_auc']):>7} {_fmt(r['test_auc']):>8} {_fmt(r['cv_aiq']):>7} "
              f"{_fmt(r['cv_hull_aiq']):>7} {r['threshold']:6.3f} {_fmt(h['quality_kept'], True):>7} "
              f"{_fmt(h['cost_share'], True):>7} {_fmt(h['rescue_rate'], True):>7} "
              f"{_fmt(h['false_swap_rate'], True):>7} {h['swapped']:>6} {h['broken']:>6}")
    for kind, r in res["predictors"].items():
        h = r["rest_only_headline"]
        print(f"{kind}, swapping only the steps after the flagged one (no redo): kept "
              f"{_fmt(h['quality_kept'], True)} at {_fmt(h['cost_share'], True)} of the cost, "
              f"rescue rate {_fmt(h['rescue_rate'], True)}")
    print("AIQ on the test split (one cost axis): " + ", ".join(
        f"{k} {v:.4f}" for k, v in res["aiq"].items()))
    print("best gain over the single-model hull: " + ", ".join(
        [f"{k} {r['best_gain_over_hull']:+.3f}" for k, r in res["predictors"].items()]
        + [f"random swap {res['random_swap']['best_gain_over_hull']:+.3f}"]))


def _summary(by_seed: list[list[dict]]) -> list[dict]:
    """Per dataset and predictor: mean and standard deviation over the seeds."""
    out = []
    for i, first in enumerate(by_seed[0]):
        runs = [seed_res[i] for seed_res in by_seed]
        row: dict = {"dataset": first["dataset"], "seeds": len(runs), "predictors": {}}
        for kind in first["predictors"]:
            vals = {
                "cv_auc": [r["predictors"][kind]["cv_auc"] for r in runs],
                "test_auc": [r["predictors"][kind]["test_auc"] for r in runs],
                "test_aiq": [r["aiq"][f"rescue ({kind})"] for r in runs],
                **{k: [r["predictors"][kind]["headline"][k] for r in runs]
                   for k in ("quality_kept", "cost_share", "rescue_rate", "false_swap_rate")}}
            row["predictors"][kind] = {k: _mean_sd(v) for k, v in vals.items()}
        row["hull_aiq"] = _mean_sd([r["aiq"]["single models + base + strong"] for r in runs])
        row["random_aiq"] = _mean_sd([r["aiq"]["random swap"] for r in runs])
        row["rest_only_aiq"] = {kind: _mean_sd([r["aiq"][f"rescue ({kind}, rest only)"]
                                                for r in runs]) for kind in first["predictors"]}
        out.append(row)
    return out


def _mean_sd(values: list[float | None]) -> dict[str, float | None]:
    v = np.array([x for x in values if x is not None], dtype=float)
    return {"mean": float(v.mean()) if v.size else None,
            "sd": float(v.std(ddof=1)) if v.size > 1 else None, "n": int(v.size)}


def _print_summary(rows: list[dict]) -> None:
    def ms(d: dict, pct: bool = False) -> str:
        if d["mean"] is None:
            return "–"
        sd = "" if d["sd"] is None else (f"±{d['sd']:.1%}" if pct else f"±{d['sd']:.3f}")
        return (f"{d['mean']:.1%}" if pct else f"{d['mean']:.3f}") + sd

    print(f"\n== over {rows[0]['seeds']} seeds (mean ± sd; test split unless CV)")
    print(f"{'dataset':38} {'predictor':9} {'CV AUC':>12} {'test AUC':>12} {'test AIQ':>12} "
          f"{'kept':>12} {'cost':>12} {'rescue':>12} {'false swap':>12}")
    for row in rows:
        for kind, v in row["predictors"].items():
            print(f"{row['dataset']:38} {kind:9} {ms(v['cv_auc']):>12} {ms(v['test_auc']):>12} "
                  f"{ms(v['test_aiq']):>12} {ms(v['quality_kept'], True):>12} "
                  f"{ms(v['cost_share'], True):>12} {ms(v['rescue_rate'], True):>12} "
                  f"{ms(v['false_swap_rate'], True):>12}")
        print(f"{row['dataset']:38} {'hull AIQ':9} {'':>12} {'':>12} {ms(row['hull_aiq']):>12}   "
              f"random swap AIQ {ms(row['random_aiq'])}; no-redo AIQ " + ", ".join(
                  f"{k} {ms(v)}" for k, v in row["rest_only_aiq"].items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="composition / CV fold / torch seeds (the tables print the first)")
    ap.add_argument("--json", type=Path, default=OUT)
    args = ap.parse_args()
    offline_env()
    from evoroute.rescue.steps import agent_step_tasks, routerbench_tasks

    t0 = time.perf_counter()
    by_seed = []
    for seed in args.seeds:
        results = []
        for n in (3, 5):
            tabs, _ = routerbench_tasks(n, seed=seed)
            results.append(_dataset(f"routerbench, {n} composed steps", tabs["train"],
                                    tabs["test"], tabs["train"], seed))
        multi, every = agent_step_tasks(seed=seed)
        results.append(_dataset("agent_steps, trajectories of 2+ steps", multi["train"],
                                multi["test"], every["train"], seed))
        if not by_seed:
            print(f"seed {seed}:")
            for res in results:
                _print(res)
        by_seed.append(results)
    summary = _summary(by_seed)
    _print_summary(summary)
    out = {"label": LABEL, "seeds": args.seeds, "paper": PAPER, "summary": summary,
           "by_seed": {str(s): [_slim(r, full=i == 0) for r in res]
                       for i, (s, res) in enumerate(zip(args.seeds, by_seed))},
           "seconds": time.perf_counter() - t0}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(_round(out), indent=1))
    shown = args.json.relative_to(PROJECT_ROOT) if args.json.is_relative_to(PROJECT_ROOT) else args.json
    print(f"\nwrote {shown} ({out['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
