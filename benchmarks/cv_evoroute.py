"""K-fold cross-validation of the query-aware estimators on a dataset's TRAIN split only.

Every hyperparameter of ``estimator="knn"`` (k, kernel temperature, prior strength, cross-role
weight) and ``estimator="linear"`` (ridge, prior strength) is chosen here, never on a test
split. Per fold the router's experience base holds every model's outcome on the other folds
(the ``full`` protocol's setting) and routes each held-out query with its posterior means, at
every cost weight w_c of a sweep; the score is the AIQ of that sweep on the held-out fold
(RouterBench's metric, on a cost axis up to the fold's most expensive single model), averaged
over folds. Also printed: Brier score of P̂ against the recorded success (every model, every
held-out query) and the quality / cost share vs the fold's best single model at the default
weights. The estimates come from the router's own code path (``EvoRouteRouter.query_estimates``);
the choice among them mirrors its posterior-mean branch (Pareto filter, C_ref / D_ref over the
explored candidates) and is checked against ``decide`` on a sample of queries.

    python benchmarks/cv_evoroute.py --data routerbench --folds 5
    python benchmarks/cv_evoroute.py --data path/to/long_format.csv --quick

Caveat: held-out queries do not add records as they are routed (the bench's test phase
does), so this scores the estimator on a fixed base.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from evoroute.policy.base import COST_WEIGHT_GRID
from evoroute.settings import DEFAULTS, offline_env

#: the w_c sweep each fold's AIQ is scored on: the bench's own grid, so a choice made here is
#: judged the way the bench judges it (until 2026-12-03 a 14-point grid ending at 5, which
#: the tables in docs/query_aware.md before that date used; ``--old-grid`` reruns it)
WC_SWEEP = COST_WEIGHT_GRID
OLD_WC_SWEEP = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)

# Searched coordinate-wise (one parameter at a time over its values, the others fixed at the
# best so far, until a pass changes nothing), starting from the first value of each.
GRID_KNN = {"cost_ref": ("global", "step", "role"),
            "prior_strength": (64.0, "auto", 4.0, 16.0, 32.0, 128.0, 256.0),
            "k": (32, 16, 64, 128),
            "kernel_tau": (1.0, 0.5, 2.0, 1e9),
            "cross_role": (0.0, 1.0)}
GRID_LIN = {"cost_ref": ("global", "step", "role"),
            "ridge": (3.0, 1.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)}
QUICK_KNN = {"cost_ref": ("global", "step"), "prior_strength": (64.0, 16.0),
             "k": (32, 64), "kernel_tau": (1.0,), "cross_role": (0.0,)}
QUICK_LIN = {"cost_ref": ("global", "step"), "ridge": (10.0, 3.0)}


def load_train(dataset: str, seed: int = 0) -> tuple[Any, list[Any]]:
    """Every model's outcome on the train split (an OutcomeTable) with embeddings."""
    from evoroute.backends.replay import ReplayBackend, dataset_models, load_replay_data
    from evoroute.retrieval.embedder import get_embedder

    data = load_replay_data(dataset)
    infos = dataset_models(data)
    backend = ReplayBackend(data, infos, seed=seed)
    tab = backend.outcome_table("train")
    texts = list(dict.fromkeys(tab.instructions))
    vecs = dict(zip(texts, get_embedder().encode(texts)))
    tab.embeddings = np.stack([vecs[t] for t in tab.instructions])
    return tab, infos


def load_splits(dataset: str, seed: int = 0) -> tuple[Any, Any, list[Any]]:
    """(train, test, model infos): every model's outcome on both splits, with embeddings
    (measurement scripts only: choices are made on the train split)."""
    from evoroute.backends.replay import ReplayBackend, dataset_models, load_replay_data
    from evoroute.retrieval.embedder import get_embedder

    data = load_replay_data(dataset)
    infos = dataset_models(data)
    backend = ReplayBackend(data, infos, seed=seed)
    tr, te = backend.outcome_table("train"), backend.outcome_table("test")
    texts = list(dict.fromkeys(tr.instructions + te.instructions))
    vecs = dict(zip(texts, get_embedder().encode(texts)))
    for tab in (tr, te):
        tab.embeddings = np.stack([vecs[t] for t in tab.instructions])
    return tr, te, infos


def folds_of(tab: Any, k: int, seed: int = 0) -> np.ndarray:
    """Fold number per row, whole tasks together (a multi-step task never straddles folds)."""
    keys = np.unique(np.asarray(tab.task_keys, dtype=object), return_inverse=True)[1]
    perm = np.random.default_rng(seed).permutation(int(keys.max()) + 1)
    return perm[keys] % k


def _router(infos: list[Any], cfg: Any) -> Any:
    from evoroute.policy.evoroute import EvoRouteRouter
    return EvoRouteRouter(infos, cfg)


def _load(router: Any, tab: Any, rows: np.ndarray) -> None:
    """The ``full`` protocol's bulk load, restricted to ``rows`` (the layout of
    ``evoroute.runs.prepare.bulk_load``)."""
    perf_all = tab.task_success()
    sub = np.zeros(len(tab), bool)
    sub[rows] = True
    r, c = np.nonzero(~np.isnan(tab.scores) & sub[:, None])
    pred = router.tool_predictor
    tools = [t or pred.predict(q) for t, q in zip(tab.tools, tab.instructions)]
    router.index.add_batch(roles=[tab.roles[i] for i in r], models=[tab.models[j] for j in c],
                           texts=[tab.instructions[i] for i in r],
                           embeddings=tab.embeddings[r], tools=[tools[i] for i in r],
                           costs=tab.costs[r, c], durations=tab.latencies[r, c],
                           perf=perf_all[r, c])


def estimates(router: Any, tab: Any, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """(P̂, Ĉ, D̂, explored, C scale, D scale) per held-out row and model from the router's own
    estimator (the scales are what C_ref / D_ref are the maximum of)."""
    from evoroute.retrieval.index import one_blas_thread

    with one_blas_thread():
        return _estimates(router, tab, rows)


def _estimates(router: Any, tab: Any, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    from evoroute.core.types import StepContext

    names = tab.models
    M = len(names)
    P, C, D = (np.full((rows.size, M), np.nan) for _ in range(3))
    E = np.zeros((rows.size, M), bool)
    CS, DS = np.full((rows.size, M), np.nan), np.full((rows.size, M), np.nan)
    for i, r in enumerate(rows):
        step = StepContext(task_key=str(tab.task_keys[r]), step_index=int(tab.step_index[r]),
                           role=tab.roles[r], instruction=tab.instructions[r], phase="inference",
                           tools=tab.tools[r], embedding=tab.embeddings[r])
        if router.config.estimator == "paper":
            est = router.retrieve(step).for_models(names)
        else:
            est = router.query_estimates(step, names)
        P[i], C[i], D[i] = est.p_mean, est.c_mean, est.d_mean
        E[i] = est.n >= router.config.n_min
        CS[i], DS[i] = est.c_mean, est.d_mean
        if router.config.estimator != "paper" and router.config.cost_ref != "step":
            CS[i], DS[i] = est.scales[router.config.cost_ref]
    return P, C, D, E, CS, DS


def choose(P: np.ndarray, C: np.ndarray, D: np.ndarray, E: np.ndarray, CS: np.ndarray,
           DS: np.ndarray, w: tuple[float, float, float], pareto: bool = True) -> np.ndarray:
    """The router's posterior-mean choice per row (mirrors EvoRouteRouter._choose)."""
    from evoroute.core.pareto import pareto_mask
    from evoroute.core.utility import reference_scale

    out = np.zeros(P.shape[0], int)
    for i in range(P.shape[0]):
        pool = np.flatnonzero(E[i])
        if pool.size == 0:
            pool = np.arange(P.shape[1])
        keep = pool[pareto_mask(P[i, pool], C[i, pool], D[i, pool])] if pareto else pool
        cr, dr = reference_scale(CS[i, pool]), reference_scale(DS[i, pool])
        u = w[0] * np.clip(P[i, keep], 0, 1) - w[1] * C[i, keep] / cr - w[2] * D[i, keep] / dr
        out[i] = keep[int(np.argmax(u))]
    return out


W_SCORE: tuple[float, float, float] = DEFAULTS.weights   # --w-l changes its latency weight


def score_fold(P, C, D, E, CS, DS, y, cost, w_default=None) -> dict[str, float]:
    from evoroute.evaluation import metrics

    w_default = W_SCORE if w_default is None else w_default
    ok = np.isfinite(P) & np.isfinite(y)
    brier = float(np.mean((np.clip(P[ok], 0, 1) - y[ok]) ** 2))
    pts = []
    for wc in WC_SWEEP:
        pick = choose(P, C, D, E, CS, DS, (w_default[0], wc, w_default[2]))
        rows = np.arange(P.shape[0])
        pts.append((float(np.nansum(cost[rows, pick])), float(np.nanmean(y[rows, pick]))))
    single_q = np.nanmean(y, axis=0)
    single_c = np.nansum(cost, axis=0)
    best = int(np.argmax(single_q - 1e-9 * single_c))
    axis = max(float(single_c.max()), max(c for c, _ in pts)) * (1 + 1e-9)
    aiq = metrics.aiq(np.array(pts), max_cost=axis)
    pick = choose(P, C, D, E, CS, DS, w_default)
    rows = np.arange(P.shape[0])
    q0, c0 = float(np.nanmean(y[rows, pick])), float(np.nansum(cost[rows, pick]))
    hull = metrics.aiq(np.stack([single_c, single_q], axis=1), max_cost=axis)
    return {"aiq": aiq, "brier": brier, "q_default": q0, "cost_share_default": c0 / single_c[best],
            "q_best_single": float(single_q[best]), "single_hull_aiq": hull}


def cross_validate(tab: Any, infos: list[Any], cfg: Any, n_folds: int, seed: int = 0,
                   check: int = 0) -> dict[str, float]:
    fold = folds_of(tab, n_folds, seed)
    y = tab.task_success()
    res = []
    for f in range(n_folds):
        train_rows, test_rows = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        router = _router(infos, cfg)
        _load(router, tab, train_rows)
        est = estimates(router, tab, test_rows)
        res.append(score_fold(*est, y[test_rows], tab.costs[test_rows]))
        if check:
            _check_against_decide(router, tab, test_rows[:check], *est)
    return {k: float(np.mean([r[k] for r in res])) for k in res[0]} | \
        {"aiq_sd": float(np.std([r["aiq"] for r in res], ddof=1)) if n_folds > 1 else 0.0,
         "aiq_folds": [round(r["aiq"], 4) for r in res]}     # per fold: paired comparisons


def _check_against_decide(router, tab, rows, *est) -> None:
    from evoroute.core.types import StepContext
    picks = choose(*(a[: rows.size] for a in est), router.config.weights.as_tuple(),
                   router.config.pareto)
    for i, r in enumerate(rows):
        step = StepContext(task_key="cv", step_index=0, role=tab.roles[r],
                           instruction=tab.instructions[r], phase="inference", tools=tab.tools[r],
                           embedding=tab.embeddings[r])
        got = router.decide(step, np.random.default_rng(0)).model
        if got != tab.models[picks[i]]:
            raise AssertionError(f"cv choice {tab.models[picks[i]]} != router {got} on row {r}")


def grid(space: dict[str, tuple]) -> list[dict[str, Any]]:
    keys = list(space)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(space[k] for k in keys))]


def coordinate_search(space: dict[str, tuple], evaluate, max_passes: int = 3) -> list[dict[str, Any]]:
    """Every evaluated point (params + scores), by coordinate ascent on ``aiq`` over ``space``."""
    seen: dict[tuple, dict[str, Any]] = {}

    def ev(params: dict[str, Any]) -> dict[str, Any]:
        key = tuple(sorted(params.items()))
        if key not in seen:
            seen[key] = {"params": dict(params), **evaluate(params)}
        return seen[key]

    best = {k: v[0] for k, v in space.items()}
    cur = ev(best)
    for _ in range(max_passes):
        changed = False
        for k, values in space.items():
            for v in values:
                r = ev({**best, k: v})
                if r["aiq"] > cur["aiq"] + 1e-9:
                    best, cur, changed = {**best, k: v}, r, True
        if not changed:
            break
    return list(seen.values())


def main(argv: list[str] | None = None) -> int:
    from evoroute.policy.evoroute import EvoRouteConfig

    offline_env()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="routerbench")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a smaller grid")
    ap.add_argument("--estimators", default="knn,linear,paper")
    ap.add_argument("--json", default=None)
    ap.add_argument("--old-grid", action="store_true",
                    help="score on the 14-point w_c grid used before 2026-12-03")
    ap.add_argument("--defaults-only", action="store_true",
                    help="score each estimator's shipped defaults only (no search)")
    ap.add_argument("--w-l", type=float, default=None,
                    help="latency weight of the scoring utility (default: the product's)")
    args = ap.parse_args(argv)
    if args.old_grid:
        global WC_SWEEP
        WC_SWEEP = OLD_WC_SWEEP
    if args.w_l is not None:
        global W_SCORE
        W_SCORE = (DEFAULTS.weights[0], DEFAULTS.weights[1], float(args.w_l))
    t0 = time.perf_counter()
    tab, infos = load_train(args.data, args.seed)
    print(f"{args.data}: train split {len(tab)} steps, {len(tab.models)} models, roles "
          f"{sorted(set(tab.roles))}; {args.folds}-fold CV, w_c sweep {list(WC_SWEEP)}")
    base = EvoRouteConfig()
    spaces = {"knn": QUICK_KNN if args.quick else GRID_KNN,
              "linear": QUICK_LIN if args.quick else GRID_LIN, "paper": {}}
    if args.defaults_only:
        spaces = {k: {} for k in spaces}
    out: dict[str, Any] = {"data": args.data, "folds": args.folds, "n_train": len(tab),
                           "score_weights": list(W_SCORE),
                           "models": tab.models, "wc_sweep": list(WC_SWEEP), "results": {}}
    for est in args.estimators.split(","):
        def evaluate(params: dict[str, Any], est: str = est) -> dict[str, float]:
            cfg = replace(base, estimator=est, **params)
            r = cross_validate(tab, infos, cfg, args.folds, args.seed, check=3)
            print(f"  {est:6} {json.dumps(params):90} AIQ {r['aiq']:.4f}±{r['aiq_sd']:.4f} "
                  f"Brier {r['brier']:.4f} q@default {r['q_default']:.3f} "
                  f"cost share {r['cost_share_default']:.2f} folds {r['aiq_folds']}", flush=True)
            return r

        rows = coordinate_search(spaces[est], evaluate)
        best = max(rows, key=lambda x: x["aiq"])
        out["results"][est] = {"grid": rows, "best": best}
        print(f"-> {est}: best {json.dumps(best['params'])} AIQ {best['aiq']:.4f} "
              f"(single-model hull {best['single_hull_aiq']:.4f}, best single "
              f"{best['q_best_single']:.3f})", flush=True)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"{out['seconds']} s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
