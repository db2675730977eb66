"""How much of an AIQ difference on the RouterBench test split is noise?

Every router is evaluated on a static base (every model's train outcomes; each test query routed
once per cost weight of the bench's grid, ``COST_WEIGHT_GRID``, with posterior means, no
learning from test outcomes): EvoRoute's default (`evoroute`, query-aware kNN), the paper's
union (`evoroute-paper`) and the learned baselines the issue compares it with (`per-role`,
`logistic`, `knn`; the product's own classes, fitted on the train split). Then

* the same routers by 5-fold cross-validation on the TRAIN split (the only place a choice may be
  made): mean AIQ and the per-fold paired difference against `evoroute`;
* a paired bootstrap over the test queries (resampled with replacement within each role, every
  router scored on the same resample): the 95 % interval of each router's AIQ and of its
  difference from `evoroute`.

Measurement only: nothing here chooses a default.

    python benchmarks/aiq_noise.py [--boot 1000] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cv_evoroute as cv  # noqa: E402  (this folder's sibling script)

from evoroute.evaluation.metrics.curves import aiq  # noqa: E402
from evoroute.policy.base import COST_WEIGHT_GRID  # noqa: E402
from evoroute.policy.evoroute import EvoRouteConfig  # noqa: E402
from evoroute.settings import DEFAULTS, offline_env  # noqa: E402

W_P, _, W_L = DEFAULTS.weights
EVOROUTE = {"evoroute": {}, "evoroute-paper": {"estimator": "paper"}}
LEARNED = ("per-role", "logistic", "knn")


def _table_rows(tab, rows):
    """The outcome table restricted to ``rows`` (the learned routers fit on it)."""
    from dataclasses import replace as dc_replace

    per_row = {}
    for name in ("task_keys", "roles", "instructions", "tools"):
        per_row[name] = [getattr(tab, name)[i] for i in rows]
    for name in ("step_index", "scores", "costs", "latencies", "embeddings", "responses",
                 "task_scores"):
        val = getattr(tab, name)
        per_row[name] = None if val is None else val[rows]
    return dc_replace(tab, **per_row)


def picks_evoroute(infos, cfg, base, base_rows, query, query_rows) -> np.ndarray:
    """(grid, queries) model index chosen at every w_c of the grid."""
    r = cv._router(infos, cfg)
    cv._load(r, base, base_rows)
    P, C, D, E, CS, DS = cv.estimates(r, query, query_rows)
    return np.stack([cv.choose(P, C, D, E, CS, DS, (W_P, wc, W_L), r.config.pareto)
                     for wc in COST_WEIGHT_GRID])


def picks_learned(name, infos, base, base_rows, query, query_rows) -> np.ndarray:
    from evoroute.core.types import StepContext
    from evoroute.policy.routers.learned import ROUTERS

    r = ROUTERS[name](infos)
    r.fit(_table_rows(base, base_rows))
    st = r.stats
    col = [st.models.index(m) for m in query.models]
    out = np.zeros((len(COST_WEIGHT_GRID), len(query_rows)), int)
    for i, row in enumerate(query_rows):
        step = StepContext(task_key="noise", step_index=0, role=query.roles[row],
                           instruction=query.instructions[row], phase="inference",
                           tools=query.tools[row], embedding=query.embeddings[row])
        q, c, _ = r.estimate(step)
        q, c = q[col], c[col]
        for g, lam in enumerate(COST_WEIGHT_GRID):       # LearnedRouter.decide's utility and ties
            u = q - lam * c / st.c_ref
            out[g, i] = min(range(len(col)), key=lambda j: (-u[j], c[j], query.models[j]))
    return out


def curve_aiq(picks, y, cost, rows) -> float:
    """AIQ of one router's sweep on the query rows ``rows`` (indices into y / cost)."""
    pts = [(float(cost[rows, p[rows]].sum()), float(y[rows, p[rows]].mean())) for p in picks]
    axis = max(float(np.nansum(cost[rows], axis=0).max()), max(c for c, _ in pts)) * (1 + 1e-9)
    return aiq(np.array(pts), max_cost=axis)


def all_picks(infos, base, base_rows, query, query_rows) -> dict[str, np.ndarray]:
    out = {}
    for name, kw in EVOROUTE.items():
        out[name] = picks_evoroute(infos, replace(EvoRouteConfig(), **kw), base, base_rows,
                                   query, query_rows)
    for name in LEARNED:
        out[name] = picks_learned(name, infos, base, base_rows, query, query_rows)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    offline_env()
    t0 = time.time()
    tr, te, infos = cv.load_splits("routerbench")

    # 1. cross-validation on the train split
    y_tr, fold = tr.task_success(), cv.folds_of(tr, args.folds, args.seed)
    cv_aiq: dict[str, list[float]] = {}
    for f in range(args.folds):
        a, b = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        picks = all_picks(infos, tr, a, tr, b)
        local = np.arange(b.size)
        for name, p in picks.items():
            cv_aiq.setdefault(name, []).append(curve_aiq(p, y_tr[b], tr.costs[b], local))
    print(f"train {args.folds}-fold CV done ({time.time() - t0:.0f} s)", flush=True)

    # 2. the test split, and a paired bootstrap over its queries (within each role)
    y, cost = te.task_success(), te.costs
    rows = np.arange(len(te))
    picks = all_picks(infos, tr, np.arange(len(tr)), te, rows)
    test = {n: curve_aiq(p, y, cost, rows) for n, p in picks.items()}
    rng = np.random.default_rng(args.seed)
    roles = np.asarray(te.roles)
    strata = [np.flatnonzero(roles == r) for r in dict.fromkeys(te.roles)]
    boot = {n: [] for n in picks}
    for _ in range(args.boot):
        res = np.concatenate([rng.choice(s, s.size, replace=True) for s in strata])
        for n, p in picks.items():
            boot[n].append(curve_aiq(p, y, cost, res))
    boot_arr = {n: np.array(v) for n, v in boot.items()}
    print(f"test split and {args.boot} bootstrap resamples done ({time.time() - t0:.0f} s)\n")

    ref = "evoroute"
    out = {"grid": list(COST_WEIGHT_GRID), "boot": args.boot, "folds": args.folds, "routers": {}}
    print("| router | AIQ, train CV (mean ± sd) | CV − evoroute, per fold | AIQ, test | "
          "test 95 % interval | test − evoroute | its 95 % interval |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for n in picks:
        cvs = np.array(cv_aiq[n])
        dcv = cvs - np.array(cv_aiq[ref])
        d = boot_arr[n] - boot_arr[ref]
        lo, hi = np.percentile(boot_arr[n], [2.5, 97.5])
        dlo, dhi = np.percentile(d, [2.5, 97.5])
        out["routers"][n] = {"cv_aiq": cvs.round(4).tolist(), "test_aiq": round(test[n], 4),
                             "test_ci": [round(lo, 4), round(hi, 4)],
                             "test_diff": round(test[n] - test[ref], 4),
                             "test_diff_ci": [round(dlo, 4), round(dhi, 4)]}
        print(f"| {n} | {cvs.mean():.4f} ± {cvs.std(ddof=1):.4f} | "
              f"{', '.join(f'{x:+.4f}' for x in dcv)} | {test[n]:.4f} | [{lo:.4f}, {hi:.4f}] | "
              f"{test[n] - test[ref]:+.4f} | [{dlo:+.4f}, {dhi:+.4f}] |")
    share = float(np.mean(boot_arr[ref] >= 0.845))
    print(f"\nshare of bootstrap resamples in which evoroute's test AIQ is >= 0.845: {share:.3f}")
    out["share_evoroute_ge_0845"] = share
    print(f"({time.time() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
