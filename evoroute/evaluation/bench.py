"""Replay benchmark: every router on the same data and seeds, with the metrics of spec §6.

``run_bench`` runs each router once per seed through the runner's in-memory loop (no step
records are written unless a database is given, so the user's experience base is not
flooded), then reports per router: test quality (mean task success), total test cost, mean
latency per query (modelled on RouterBench), their sd over seeds, cost per success,
p50 / p95 latency, gap to the oracle, cumulative regret, the cost of exploration on the train
split (bandit protocol), and the trade-off metrics computed on a sweep of each router's cost
knob: AIQ (RouterBench), APGR and CPT(50 %) / CPT(80 %) (RouteLLM) and the cost at the best
single model's quality.

What is swept, run once per seed, trained or kept out of the rankings is read from each
router's capabilities (:class:`~evoroute.policy.base.Capabilities`: ``cost_knob``,
``learns_online``, ``needs_training``, ``is_oracle``, ``seed_invariant``), not from name lists,
so any new router (e.g. an ``evoroute-*`` variant) is handled by what it declares. Cost knobs
swept for the curves: EvoRoute's cost weight w_c and the learned baselines' cost weight λ over
:data:`WC_GRID` (14 settings; EvoRoute's ablations, the names with ``-no-``, only with
``sweep_ablations``), the threshold router's share of strong calls over :data:`SHARE_GRID`
(13; its threshold is calibrated on train predictions, never on test), the confidence
cascade's threshold (14), the oracle cascade's ladder length. Every other router is a single
point. Nothing here is tuned on the test split.

Headline metrics (both protocols): AIQ; the quality gain over the single-model hull at equal
cost, at the default setting and best over the sweep; the cost share at parity with the best
single model; and the ranking of the non-oracle routers by AIQ.

Runs are independent, so they are spread over worker processes (default: one per core).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from evoroute.core.types import ModelInfo, Weights
from evoroute.errors import EvoRouteError, ValidationError
from evoroute.evaluation import metrics
from evoroute.policy.base import COST_WEIGHT_GRID as WC_GRID
from evoroute.policy.baselines import DEFAULT_SHARE, SHARE_GRID

PARITY_TOLERANCE = 0.005     # "at parity": within 0.5 points of the best single model
ORACLES = ("oracle", "oracle-cascade")
LEARNED = ("per-role", "knn", "logistic", "lints", "cascade")
BASELINES = ORACLES + ("threshold",) + LEARNED + ("random", "round_robin", "cheapest")


def default_routers(models: Sequence[str]) -> list[str]:
    """Every registered ``evoroute*`` router (``evoroute`` first), the baselines and every
    single model."""
    from evoroute.policy.base import ROUTERS, router_names

    router_names()       # imports the modules that register routers
    evo = sorted((n for n in ROUTERS if n.startswith("evoroute")), key=lambda n: (n != "evoroute", n))
    return evo + [b for b in BASELINES if b in ROUTERS] + [f"single:{m}" for m in models]


def is_ablation(router: str) -> bool:
    """EvoRoute's ablations (``evoroute-no-*``, ``evoroute-paper-no-*``): swept only on request."""
    return router.startswith("evoroute") and "-no-" in router


# ------------------------------------------------------------------------------ one run
@dataclass
class RunStats:
    """What the benchmark keeps of one run (arrays per test task, totals of the train phases)."""

    router: str
    seed: int
    knob: float | None
    task_success: np.ndarray
    task_cost: np.ndarray
    task_latency: np.ndarray
    step_score: np.ndarray
    step_oracle: np.ndarray
    train_cost: float = 0.0
    train_quality: float | None = None
    train_steps: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    models_used: dict[str, int] = field(default_factory=dict)


class _DictEmbedder:
    """Embeddings computed once by the parent process, looked up by text in the workers."""

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        try:
            return np.stack([self.vectors[t] for t in texts]) if texts else np.empty((0, 384), np.float32)
        except KeyError as exc:
            raise EvoRouteError(f"benchmark text without a precomputed embedding: {str(exc)[:80]}") from None


_STATE: dict[str, Any] = {}     # per process: data, models, backends per seed, embedder


def _backend(seed: int) -> Any:
    from evoroute.backends.replay import ReplayBackend

    cache = _STATE.setdefault("backends", {})
    if seed not in cache:
        cache[seed] = ReplayBackend(_STATE["data"], _STATE["models"], seed=seed,
                                    steps_per_task=_STATE["steps_per_task"],
                                    **_STATE["backend_params"])
    return cache[seed]


def _spec(router: str, seed: int, knob: float | None, weights: tuple[float, float, float]) -> Any:
    from evoroute.evaluation.runner import RunSpec

    params: dict[str, Any] = {}
    w = weights
    spec_knob = _STATE.get("caps", {}).get(router)
    spec_knob = None if spec_knob is None else spec_knob.cost_knob
    if knob is not None:
        if spec_knob is None:
            raise EvoRouteError(f"router {router!r} has no cost knob to sweep")
        if spec_knob.param == "w_c":
            w = (weights[0], float(knob), weights[2])
        else:
            params[spec_knob.param] = int(knob) if spec_knob.integer else float(knob)
    s = _STATE
    params = {**s.get("router_params", {}).get(router, {}), **params}
    return RunSpec(backend="replay", dataset=s["dataset"], router=router, weights=w,
                   router_params=params, seed=seed, protocol=s["protocol"], n_tasks=s["n_tasks"],
                   n_train=s["n_train"], cold_start_tasks=s["cold_start_tasks"],
                   steps_per_task=s["steps_per_task"], backend_params=s["backend_params"])


def _run_one(job: tuple[str, int, float | None]) -> RunStats:
    """One run in memory (or through the database when the benchmark was given one)."""
    from evoroute.evaluation.runner import RunLoop, prepare_run, run_spec

    router, seed, knob = job
    t0, c0 = time.perf_counter(), time.process_time()
    spec = _spec(router, seed, knob, _STATE["weights"])
    succ, cost, lat, sc, orc, used = [], [], [], [], [], {}
    tr_cost, tr_q, tr_n = 0.0, 0.0, 0
    cur_cost = cur_lat = 0.0
    if _STATE.get("db_url"):
        from evoroute.storage.db import get_engine
        stream = ((d["split"], d["phase"], d["score"], d["cost_usd"], d["latency_s"],
                   d["oracle_score"], d["model"], d["task_success"], d["step_index"])
                  for d in run_spec(spec, engine=get_engine(_STATE["db_url"]),
                                    embedder=_STATE["embedder"]))
    else:
        plan = prepare_run(spec, models=_STATE["models"], backend=_backend(seed),
                           embedder=_STATE["embedder"])
        stream = ((r.split, r.phase, r.outcome.step_success, r.outcome.cost_usd,
                   r.outcome.duration_s, r.oracle_score, r.outcome.model, r.task_success,
                   r.step_index) for r in RunLoop(plan).steps())
    for split, phase, score, c, d, best, model, task_succ, idx in stream:
        score = 0.0 if score is None else float(score)
        if phase != "inference":
            tr_cost += c
            tr_q += score
            tr_n += 1
            continue
        if idx == 0:
            cur_cost = cur_lat = 0.0
        cur_cost += c
        cur_lat += d
        sc.append(score)
        orc.append(score if best is None else best)
        used[model] = used.get(model, 0) + 1
        if task_succ is not None:
            succ.append(task_succ)
            cost.append(cur_cost)
            lat.append(cur_lat)
    return RunStats(router=router, seed=seed, knob=knob, task_success=np.asarray(succ),
                    task_cost=np.asarray(cost), task_latency=np.asarray(lat),
                    step_score=np.asarray(sc), step_oracle=np.asarray(orc), train_cost=tr_cost,
                    train_quality=(tr_q / tr_n) if tr_n else None, train_steps=tr_n,
                    seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0,
                    models_used=used)


def _init_worker(state: dict[str, Any]) -> None:
    _STATE.clear()
    _STATE.update(state)


# ------------------------------------------------------------------------------ the bench
def run_bench(dataset: str = "routerbench", routers: Sequence[str] | None = None,
              weights: tuple[float, float, float] | Weights = (1.0, 0.1, 0.05),
              protocol: str = "bandit", seeds: int | Sequence[int] = 1,
              json_path: str | Path | None = None, progress: bool = True, *,
              db: str | None = None, models: Sequence[str] | None = None,
              n_tasks: int | None = None, n_train: int | None = None,
              cold_start_tasks: int = 50, steps_per_task: int = 1,
              backend_params: dict[str, Any] | None = None, sweep: bool = True,
              sweep_ablations: bool = False, workers: int | None = None,
              router_params: dict[str, dict[str, Any]] | None = None,
              validation: float | None = None, sweep_seeds: int | None = 3) -> dict[str, Any]:
    """Run every router on the same replay data and seeds; return (and optionally write) the
    JSON report: ``dataset``, ``n_test``, ``routers`` -> {name: {quality, cost_usd,
    latency_s, ...}} and the sweeps, pair and notes behind the trade-off metrics.

    ``db``: a database URL to write every run's step records to (default: none, nothing is
    written). ``models``: registered models to route between (default: with ``db``, its
    enabled models; without, every model in the data with its recorded costs).
    ``router_params``: extra parameters per router name (e.g. ``{"evoroute": {"theta": 0.8}}``).
    ``validation``: tune without touching the test split: the test split is dropped and a
    seeded ``validation`` fraction of the *train* tasks plays its role.
    ``sweep_seeds``: the extra cost-knob settings of the sweeps run on the first this many
    seeds (None = all); the router's own setting always runs on every seed.
    """
    from evoroute.backends.replay import load_replay_data
    from evoroute.evaluation.runner import PROTOCOLS

    t_start = time.perf_counter()
    w = weights.as_tuple() if isinstance(weights, Weights) else Weights(*weights).as_tuple()
    if protocol not in PROTOCOLS:
        raise ValidationError(f"protocol must be one of {', '.join(PROTOCOLS)}", "protocol")
    seed_list = list(range(int(seeds))) if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    if not seed_list:
        raise ValidationError("give at least one seed", "seeds")
    data = load_replay_data(dataset)
    if validation is not None:
        data = validation_split(data, validation)
    infos = _bench_models(data, db, models)
    names = [m.name for m in infos]
    wanted = list(routers) if routers else default_routers(names)
    _check_routers(wanted)
    if len(set(wanted)) != len(wanted):
        raise ValidationError("a router is listed twice", "routers")
    bp = dict(backend_params or {})
    state = {"data": data, "dataset": str(dataset), "models": infos, "protocol": protocol,
             "n_tasks": n_tasks, "n_train": n_train, "cold_start_tasks": cold_start_tasks,
             "steps_per_task": steps_per_task, "backend_params": bp, "weights": w,
             "db_url": db, "router_params": dict(router_params or {}),
             "fixed_split": "split" in data.columns and bool(data["split"].notna().all())}
    _init_worker(state)
    probe = _backend(seed_list[0])
    cold_note = (_clamp_cold_start(state, len(probe.tasks("train"))) if protocol == "bandit"
                 else None)
    test_table = probe.outcome_table("test")
    if n_tasks is not None:
        keep = {t.key for t in probe.tasks("test")[:n_tasks]}
        if len(keep) < len(probe.tasks("test")):
            test_table = None     # the capped test set differs per seed; no fixed reference
    train_table = probe.outcome_table("train")
    # What each router declares (built once here, with the benchmark's parameters)
    caps, sweeps, probes = {}, {}, {}
    for r in wanted:
        router = probes[r] = _probe_router(r, seed_list[0], w)
        caps[r] = router.capabilities()
        if caps[r].needs_training and train_table is not None and len(train_table) == 0:
            raise EvoRouteError(f"router {r} learns from the train split, and dataset "
                                f"{str(dataset)!r} has no train tasks for the chosen models; "
                                f"mark some rows split=train or choose --routers that need no "
                                f"training")
        sweeps[r] = router.sweep(train_table, w)
    state["caps"], state["sweeps"] = caps, sweeps
    _STATE.update(caps=caps, sweeps=sweeps)

    # One embedding batch for every text of the benchmark (cached on disk by the embedder).
    t_emb = time.perf_counter()
    if any(caps[r].needs_embedding for r in wanted):
        from evoroute.retrieval.embedder import get_embedder
        texts = list(dict.fromkeys(
            s.instruction for split in ("train", "test") for t in probe.tasks(split) for s in t.steps))
        vecs = get_embedder().encode(texts)
        state["embedder"] = _DictEmbedder(dict(zip(texts, vecs)))
    else:
        state["embedder"] = None
    _STATE["embedder"] = state["embedder"]
    emb_s = time.perf_counter() - t_emb
    # Train the trained routers once here: their fitted predictors are cached by train table
    # (evoroute.policy.learned), so forked workers inherit them and a sweep does not refit.
    t_fit = time.perf_counter()
    if train_table is not None:
        if state["embedder"] is not None:
            train_table.embeddings = state["embedder"].encode(list(train_table.instructions))
        for r in wanted:
            if caps[r].needs_training:
                probes[r].fit(train_table)
    fit_s = time.perf_counter() - t_fit

    # Routers whose decisions depend on the step alone give the same result for every seed
    # when every seed sees the same test tasks: they run once and count for all seeds.
    invariant = {r for r in wanted if _seed_invariant(r, state)}
    jobs: list[tuple[str, int, float | None]] = []
    for r in wanted:
        for s in (seed_list[:1] if r in invariant else seed_list):
            jobs.append((r, s, None))
    sweep_list = seed_list if sweep_seeds is None else seed_list[: max(1, int(sweep_seeds))]
    if sweep:
        for r in wanted:
            for knob in _knobs(r, sweep_ablations):
                for s in (seed_list[:1] if r in invariant else sweep_list):
                    jobs.append((r, s, knob))
    # longest first, so the pool does not end on one slow run
    order = sorted(range(len(jobs)), key=lambda i: -_job_weight(jobs[i], protocol, caps))
    jobs = [jobs[i] for i in order]
    n_workers = workers if workers is not None else min(len(jobs), os.cpu_count() or 1)
    results = _execute(jobs, state, n_workers, progress)
    cpu_total = float(sum(x.cpu_seconds for x in results))
    results += [replace(x, seed=s) for x in results if x.router in invariant
                for s in seed_list[1:]]

    report = _report(results, wanted, seed_list, w, protocol, dataset, probe, test_table,
                     train_table, names, caps, sweeps, validation, len(sweep_list))
    report["sweep_seeds"] = sweep_list
    report["cold_start_tasks"] = state["cold_start_tasks"]
    if cold_note:
        report["notes"].append(cold_note)
    report["timing"] = {"total_s": round(time.perf_counter() - t_start, 2),
                        "seed_invariant_routers": sorted(invariant),
                        "embedding_s": round(emb_s, 2), "prefit_s": round(fit_s, 2),
                        "runs": len(jobs), "workers": n_workers,
                        "cpu_s": round(cpu_total, 2),
                        "run_s_by_router": {r: round(float(np.mean(
                            [x.seconds for x in results if x.router == r and x.knob is None])), 3)
                            for r in wanted},
                        "run_cpu_s_by_router": {r: round(float(np.mean(
                            [x.cpu_seconds for x in results if x.router == r and x.knob is None])), 3)
                            for r in wanted}}
    if json_path:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1, allow_nan=False, default=_json_num) + "\n")
    return report


COLD_START_MAX_SHARE = 0.5    # of the train tasks (bandit protocol)


def _clamp_cold_start(state: dict[str, Any], n_train_tasks: int) -> str | None:
    """On a small dataset the default 50 cold-start tasks would take most of the train split
    (the bundled agent steps have 62 train tasks): cap the cold start at half the train tasks,
    so the bandit keeps the other half to learn online, and say so in the report."""
    cap = int(n_train_tasks * COLD_START_MAX_SHARE)
    asked = int(state["cold_start_tasks"])
    if asked <= cap:
        return None
    state["cold_start_tasks"] = _STATE["cold_start_tasks"] = cap
    return (f"cold start clamped from {asked} to {cap} tasks: at most "
            f"{COLD_START_MAX_SHARE:.0%} of the {n_train_tasks} train tasks, so the bandit "
            f"protocol keeps the other half to learn online.")


def validation_split(data: Any, fraction: float, seed: int = 20_240) -> Any:
    """The train split alone, re-split: a seeded ``fraction`` of its tasks becomes "test"."""
    from evoroute.datasets.longformat import seeded_split

    train = data[data["split"] == "train"].copy()
    if train.empty:
        raise ValidationError("the dataset has no train split to validate on", "validation")
    train["split"] = None
    return seeded_split(train, seed, test_fraction=fraction)


def _json_num(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(type(o).__name__)


def _bench_models(data: Any, db: str | None, models: Sequence[str] | None) -> list[ModelInfo]:
    from evoroute.backends.replay import dataset_models

    if db:
        from evoroute import registry
        from evoroute.storage import db as dbm
        with dbm.session(dbm.get_engine(db)) as s:
            return registry.model_infos(session=s, names=list(models) if models else None)
    infos = dataset_models(data)
    if models:
        by = {m.name: m for m in infos}
        bad = [m for m in models if m not in by]
        if bad:
            raise ValidationError(f"model(s) {', '.join(map(repr, bad))} are not in the dataset "
                                  f"(models: {', '.join(by)})", "models")
        infos = [by[m] for m in models]
    return infos


def _check_routers(names: Sequence[str]) -> None:
    from evoroute.policy.base import ROUTERS, router_names

    for n in names:
        base = "single" if n.startswith("single:") else n
        if base not in ROUTERS:
            raise ValidationError(f"unknown router {n!r}; known: {', '.join(router_names())}",
                                  "routers")


def _probe_router(router: str, seed: int, w: tuple[float, float, float]) -> Any:
    """The router as a run would build it (its capabilities may depend on its parameters)."""
    from evoroute.evaluation.runner import build_router

    return build_router(_spec(router, seed, None, w), _STATE["models"])


def _seed_invariant(router: str, state: dict[str, Any]) -> bool:
    """Deterministic routers that do not learn, on a test set every seed shares (a dataset
    without a full split column gets a seeded split: then each seed has its own test set)."""
    if state["n_tasks"] is not None or state["steps_per_task"] != 1 or not state["fixed_split"]:
        return False
    return bool(state["caps"][router].seed_invariant)


def _knobs(router: str, sweep_ablations: bool) -> list[float]:
    """The sweep's settings other than the default run's."""
    if is_ablation(router) and not sweep_ablations:
        return []
    values, default = _STATE["sweeps"][router]
    return [float(k) for k in values if default is None or not np.isclose(k, default)]


def _job_weight(job: tuple[str, int, float | None], protocol: str, caps: dict[str, Any]) -> float:
    c = caps[job[0]]
    if c.learns_online:
        return 4.0 if protocol == "bandit" else 2.0
    return 2.0 if c.needs_training else 1.0


def _execute(jobs: list[tuple[str, int, float | None]], state: dict[str, Any], n_workers: int,
             progress: bool) -> list[RunStats]:
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(jobs), desc="bench", unit="run", file=sys.stderr, leave=False)
    out: list[RunStats] = []
    try:
        if n_workers <= 1 or len(jobs) <= 1:
            for j in jobs:
                out.append(_run_one(j))
                if bar:
                    bar.update(1)
            return out
        import multiprocessing as mp
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(state,)) as pool:
            for res in pool.map(_run_one, jobs, chunksize=1):
                out.append(res)
                if bar:
                    bar.update(1)
        return out
    finally:
        if bar:
            bar.close()


# ------------------------------------------------------------------------------ report
def _sd(x: Sequence[float]) -> float:
    return float(np.std(x, ddof=1)) if len(x) > 1 else 0.0


def _report(results: list[RunStats], wanted: list[str], seeds: list[int],
            w: tuple[float, float, float], protocol: str, dataset: Any, probe: Any,
            test_table: Any, train_table: Any, model_names: list[str],
            caps: dict[str, Any], sweeps: dict[str, tuple[list[float], float | None]],
            validation: float | None = None, n_sweep_seeds: int | None = None) -> dict[str, Any]:
    main = {r: [x for x in results if x.router == r and x.knob is None] for r in wanted}
    out: dict[str, dict[str, Any]] = {}
    for r, runs in main.items():
        runs.sort(key=lambda x: x.seed)
        summ = [metrics.summarize(x.task_success, x.task_cost, x.task_latency) for x in runs]
        q = [s["quality"] for s in summ]
        c = [s["cost_usd"] for s in summ]
        lat = [s["latency_mean"] for s in summ]
        regret = [float(metrics.cumulative_regret(x.step_score, x.step_oracle)[-1]) if x.step_score.size
                  else 0.0 for x in runs]
        cps = [s["cost_per_success"] for s in summ]
        used: dict[str, int] = {}
        for x in runs:
            for m, k in x.models_used.items():
                used[m] = used.get(m, 0) + k
        total_used = sum(used.values()) or 1
        out[r] = {
            "quality": float(np.mean(q)), "quality_sd": _sd(q),
            "cost_usd": float(np.mean(c)), "cost_usd_sd": _sd(c),
            "latency_s": float(np.mean(lat)), "latency_s_sd": _sd(lat),
            "latency_p50_s": float(np.mean([s["latency_p50"] for s in summ])),
            "latency_p95_s": float(np.mean([s["latency_p95"] for s in summ])),
            "cost_per_query_usd": float(np.mean([s["cost_per_query"] for s in summ])),
            "cost_per_success_usd": None if not np.all(np.isfinite(cps)) else float(np.mean(cps)),
            "regret": float(np.mean(regret)),
            "train_cost_usd": float(np.mean([x.train_cost for x in runs])),
            "train_quality": None if runs[0].train_quality is None else
            float(np.mean([x.train_quality for x in runs])),
            "train_steps": int(runs[0].train_steps),
            "n_seeds": len(runs),
            "model_share": {m: round(k / total_used, 4) for m, k in
                            sorted(used.items(), key=lambda kv: -kv[1])},
        }

    # sweeps (mean over seeds per knob value) -> AIQ and the RouteLLM metrics
    curves: dict[str, list[dict[str, float]]] = {}
    for r in wanted:
        pts: dict[float | None, list[RunStats]] = {}
        for x in results:
            if x.router == r:
                pts.setdefault(x.knob, []).append(x)
        rows = []
        for k, xs in pts.items():
            knob = k if k is not None else sweeps[r][1]
            qs = [float(x.task_success.mean()) for x in xs]
            cs = [float(x.task_cost.sum()) for x in xs]
            rows.append({"knob": knob, "cost_usd": float(np.mean(cs)), "cost_usd_sd": _sd(cs),
                         "quality": float(np.mean(qs)), "quality_sd": _sd(qs),
                         "latency_s": float(np.mean([x.task_latency.mean() for x in xs])),
                         "train_cost_usd": float(np.mean([x.train_cost for x in xs])),
                         "n_seeds": len(xs)})
        rows.sort(key=lambda p: (p["cost_usd"], p["quality"]))
        curves[r] = rows
    points = {r: np.array([[p["cost_usd"], p["quality"]] for p in rows]) for r, rows in curves.items()}
    aiq = metrics.aiq_table(points)
    aiq_max_cost = max(float(metrics.upper_convex_hull(p)[-1, 0]) for p in points.values())

    pair = _pair(train_table, model_names)
    ref = _reference(test_table, pair, model_names)
    oracle_q = out["oracle"]["quality"] if "oracle" in out else (ref or {}).get("oracle_quality")
    single_pts = None if ref is None else np.array([[v["cost_usd"], v["quality"]]
                                                    for v in ref["singles"].values()])
    for r in wanted:
        o = out[r]
        o["aiq"] = aiq[r]
        o["sweep_points"] = len(curves[r])
        knob = caps[r].cost_knob
        o["is_oracle"] = bool(caps[r].is_oracle)
        o["cost_knob"] = None if knob is None else knob.param
        o["default_knob"] = sweeps[r][1]
        if single_pts is not None:
            o["gain_over_hull"] = metrics.gain_over_hull(single_pts, o["cost_usd"], o["quality"])
            o["gain_over_hull_best"] = metrics.best_gain_over_hull(single_pts, points[r])
            o["parity_cost_share"] = (metrics.cost_share_at_parity(
                points[r], ref["best_single_quality"], ref["best_single_cost"], PARITY_TOLERANCE)
                if ref["best_single_cost"] > 0 else None)
        else:
            o["gain_over_hull"] = o["gain_over_hull_best"] = o["parity_cost_share"] = None
        o["gap_to_oracle"] = None if oracle_q is None else metrics.gap_to_oracle(o["quality"], oracle_q)
        if ref is not None and ref["strong_cost"] > ref["weak_cost"] and ref["strong_quality"] > ref["weak_quality"]:
            share = metrics.strong_call_share(points[r][:, 0], ref["weak_cost"], ref["strong_cost"])
            qs = points[r][:, 1]
            o["apgr"] = metrics.apgr(share, qs, ref["weak_quality"], ref["strong_quality"])
            o["cpt50"] = metrics.cpt(share, qs, ref["weak_quality"], ref["strong_quality"], 0.5)
            o["cpt80"] = metrics.cpt(share, qs, ref["weak_quality"], ref["strong_quality"], 0.8)
            o["cost_at_best_single_usd"] = metrics.cost_at_quality(points[r], ref["best_single_quality"])
        else:
            o["apgr"] = o["cpt50"] = o["cpt80"] = o["cost_at_best_single_usd"] = None

    ranking = [{"router": r, "aiq": out[r]["aiq"], "quality": out[r]["quality"],
                "cost_usd": out[r]["cost_usd"], "gain_over_hull": out[r]["gain_over_hull"],
                "gain_over_hull_best": out[r]["gain_over_hull_best"],
                "parity_cost_share": out[r]["parity_cost_share"]}
               for r in sorted((r for r in wanted if not caps[r].is_oracle),
                               key=lambda r: (-out[r]["aiq"], r))]
    knob_notes = "; ".join(
        f"{r} {caps[r].cost_knob.param} over {len(sweeps[r][0])} settings"
        for r in wanted if caps[r].cost_knob is not None and len(curves[r]) > 1)
    info = probe.describe()
    n_test = int(main[wanted[0]][0].task_success.size)
    notes = [
        f"{len(seeds)} seed(s) {seeds}; quality = mean task success on the test split, cost_usd = "
        f"total test cost, latency_s = mean per query ({info.get('latency', 'modelled')}).",
        f"protocol {protocol}: " + ("EvoRoute learns online on the train split (cold start, then "
                                    "optimisation; its cost is train_cost_usd), then routes the "
                                    "test split" if protocol == "bandit" else
                                    "EvoRoute's experience base starts with every model's outcome "
                                    "on the train split, then it routes the test split") +
        "; baselines route the test split only.",
        "routers that are deterministic and do not learn (declared seed_invariant: single models, "
        "cheapest, oracle, threshold, oracle-cascade, per-role, knn, logistic, cascade) run once "
        "per setting and count for every seed (sd 0) when every seed routes the same test tasks.",
        "routers that need training (threshold, oracle-cascade, per-role, knn, logistic, cascade) "
        "are trained on every model's outcome on the full train split in both protocols "
        "(RouteLLM's setting); their hyperparameters come from cross-validation on the train "
        "split only. lints learns online from its own choices (bandit) or starts from every "
        "model's train outcome (full).",
        "oracle-cascade escalates on the recorded correctness: an oracle-like verifier no "
        "deployed system has, so it is listed with the oracles and kept out of the non-oracle "
        "ranking; cascade escalates on its own predicted confidence only.",
        "gain_over_hull: quality minus the single models' convex hull at the same cost (default "
        "setting; _best: the best sweep point); parity_cost_share: the cheapest sweep point "
        f"within {100 * PARITY_TOLERANCE:g} points of the best single model's quality, as a "
        "share of its cost (None: not reached).",
        f"split: {info.get('split')}; queries dropped because some model has no recorded outcome: "
        f"{info.get('dropped_incomplete_queries', 0)}.",
        f"AIQ on one cost axis up to ${aiq_max_cost:.4f}; sweeps: {knob_notes or 'none'}; "
        f"every other router is one point; sweep settings other than a router's own run on "
        f"the first {n_sweep_seeds or len(seeds)} seed(s).",
    ]
    return {
        "dataset": str(dataset) if validation is None else f"{dataset} (validation: "
                                                             f"{validation:.0%} of train)",
        "n_test": n_test,
        "n_train": len(probe.tasks("train")), "protocol": protocol, "weights": list(w),
        "seeds": seeds, "label": f"{info.get('label')}, latency {info.get('latency_label')}",
        "split": info.get("split"),
        "dropped_incomplete_queries": info.get("dropped_incomplete_queries", 0),
        "pair": pair, "reference": ref, "aiq_max_cost_usd": aiq_max_cost,
        "routers": out, "sweeps": curves,
        "oracles": [r for r in wanted if caps[r].is_oracle],
        "ranking_non_oracle": ranking,
        "best_non_oracle": ranking[0]["router"] if ranking else None,
        "notes": notes,
    }


def _pair(train_table: Any, names: list[str]) -> dict[str, str] | None:
    """RouteLLM's strong / weak pair, chosen on the train split as the threshold router does."""
    from evoroute.policy.baselines import strong_weak_pair

    if train_table is None or len(train_table) == 0 or len(names) < 2:
        return None
    strong, weak = strong_weak_pair(names, train_table)
    return {"strong": strong, "weak": weak}


def _reference(test_table: Any, pair: dict[str, str] | None, names: list[str]) -> dict[str, Any] | None:
    """Test-split numbers of the pair, the best single model and the oracle (for PGR / CPT /
    cost at the best single quality; reading them from test is reporting, not tuning)."""
    if test_table is None or pair is None:
        return None
    tab = test_table
    cols = {n: j for j, n in enumerate(tab.models)}
    sc = tab.task_success()
    keys = np.unique(np.asarray(tab.task_keys, dtype=object), return_index=True)[1]
    per_task_q = {n: float(np.nanmean(sc[keys, cols[n]])) for n in names}
    per_task_c = {n: float(np.nansum(tab.costs[:, cols[n]])) for n in names}
    best = max(names, key=lambda n: (per_task_q[n], -per_task_c[n]))
    ok = ~np.isnan(sc[keys])
    singles = {n: {"quality": per_task_q[n], "cost_usd": per_task_c[n]} for n in names
               if np.isfinite(per_task_q[n])}
    return {
        "weak": pair["weak"], "weak_quality": per_task_q[pair["weak"]],
        "weak_cost": per_task_c[pair["weak"]],
        "strong": pair["strong"], "strong_quality": per_task_q[pair["strong"]],
        "strong_cost": per_task_c[pair["strong"]],
        "best_single": best, "best_single_quality": per_task_q[best],
        "best_single_cost": per_task_c[best],
        "oracle_quality": float(np.mean(np.nanmax(np.where(ok, sc[keys], -np.inf), axis=1))),
        "singles": singles,
    }


# ------------------------------------------------------------------------------ table
def format_table(result: dict[str, Any]) -> str:
    """The benchmark as a fixed-width text table (the CLI prints it), then the ranking of the
    non-oracle routers by AIQ. Oracles are marked with ``*``."""
    rows = result["routers"]

    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    def pts(v: Any) -> str:
        return "-" if v is None else f"{100 * v:+.1f}"

    def share(v: Any, o: dict[str, Any]) -> str:
        if v is not None:
            return f"{100 * v:.0f}%"
        return "n.r." if o.get("gain_over_hull") is not None else "-"

    head = (f"{'router':40} {'quality':>13} {'cost $':>15} {'lat s':>6} {'$/succ':>9} "
            f"{'AIQ':>6} {'gain':>6} {'gain*':>6} {'parity':>6} {'APGR':>6} {'CPT50':>6} "
            f"{'CPT80':>6} {'gap':>6} {'train $':>8}")
    lines = [f"{result['dataset']}: {result['n_test']} test queries, protocol {result['protocol']}, "
             f"weights {tuple(result['weights'])}, seeds {result['seeds']} "
             f"({result['label']})", head, "-" * len(head)]
    order = sorted(rows, key=lambda r: (not r.startswith("evoroute"), r.startswith("single:"),
                                        -rows[r]["quality"]))
    for name in order:
        o = rows[name]
        q = f"{o['quality']:.3f}±{o['quality_sd']:.3f}"
        c = f"{o['cost_usd']:.3f}±{o['cost_usd_sd']:.3f}"
        label = (name[:38] + " *") if o.get("is_oracle") else name[:40]
        lines.append(
            f"{label:40} {q:>13} {c:>15} {o['latency_s']:6.2f} "
            f"{f(o['cost_per_success_usd'], '9.5f'):>9} {f(o['aiq'], '6.3f'):>6} "
            f"{pts(o.get('gain_over_hull')):>6} {pts(o.get('gain_over_hull_best')):>6} "
            f"{share(o.get('parity_cost_share'), o):>6} "
            f"{f(o['apgr'], '6.3f'):>6} {f(o['cpt50'], '6.3f'):>6} {f(o['cpt80'], '6.3f'):>6} "
            f"{f(o['gap_to_oracle'], '6.3f'):>6} {o['train_cost_usd']:8.3f}")
    lines.append("* oracle (reads recorded outcomes), not ranked. gain: quality points over the "
                 "single-model hull at the same cost (default setting; gain*: best sweep point); "
                 f"parity: cost share of the cheapest sweep point within {100 * PARITY_TOLERANCE:g} "
                 "pt of the best single model (n.r. = not reached)")
    ref = result.get("reference")
    if ref:
        lines.append(f"best single: {ref['best_single']} {ref['best_single_quality']:.3f} for "
                     f"${ref['best_single_cost']:.3f}; RouteLLM pair strong {ref['strong']} / weak "
                     f"{ref['weak']}; AIQ axis up to ${result['aiq_max_cost_usd']:.3f}")
    ranking = result.get("ranking_non_oracle") or []
    if ranking:
        top = ", ".join(f"{i + 1}. {x['router']} {x['aiq']:.3f}" for i, x in enumerate(ranking[:8]))
        lines.append(f"best non-oracle by AIQ: {top}")
    t = result.get("timing")
    if t:
        lines.append(f"{t['runs']} runs in {t['total_s']:.1f} s on {t['workers']} worker(s)")
    return "\n".join(lines)


__all__ = ["run_bench", "format_table", "default_routers", "is_ablation", "WC_GRID", "SHARE_GRID",
           "DEFAULT_SHARE", "PARITY_TOLERANCE"]
