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
so a new router is handled by what it declares. The curves sweep each router's declared cost
knob (EvoRoute's cost weight w_c and the learned baselines' λ over
:data:`~evoroute.policy.base.COST_WEIGHT_GRID`, the threshold router's share of strong calls,
the confidence cascade's threshold, the oracle cascade's ladder length; EvoRoute's ablations
only with ``sweep_ablations``); a router without one is a single point. Knobs calibrated on
data are calibrated on the train split: nothing here is tuned on the test split.

Headline metrics (both protocols): AIQ; the quality gain over the single-model hull at equal
cost, at the default setting and best over the sweep; the cost share at parity with the best
single model; and the ranking of the non-oracle routers by AIQ.

Runs are independent, so they are spread over worker processes (default: one per core).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from evoroute.core.errors import EvoRouteError, ValidationError
from evoroute.core.types import ModelInfo, Weights
from evoroute.evaluation.bench.report import build_report
from evoroute.evaluation.bench.worker import _STATE, _backend, _DictEmbedder, _execute, _init_worker, _spec
from evoroute.settings import DEFAULTS


def default_routers(models: Sequence[str]) -> list[str]:
    """Every registered router in the order the routers declare (``Capabilities.order``, then
    name: EvoRoute and its variants, the oracles, the baselines, the learned baselines), then
    one ``single:<model>`` per model."""
    from evoroute.policy.registry import ROUTERS, make_router

    probe = [ModelInfo(m) for m in models]
    order = {n: make_router(n, probe).capabilities().order for n in ROUTERS if n != "single"}
    return sorted(order, key=lambda n: (order[n], n)) + [f"single:{m}" for m in models]


def run_bench(dataset: str = "routerbench", routers: Sequence[str] | None = None,
              weights: tuple[float, float, float] | Weights = DEFAULTS.weights,
              protocol: str = "bandit", seeds: int | Sequence[int] = 1,
              json_path: str | Path | None = None, progress: bool = True, *,
              db: str | None = None, models: Sequence[str] | None = None,
              n_tasks: int | None = None, n_train: int | None = None,
              cold_start_tasks: int = DEFAULTS.cold_start_tasks, steps_per_task: int = 1,
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

    t_start = time.perf_counter()
    w = weights.as_tuple() if isinstance(weights, Weights) else Weights(*weights).as_tuple()
    if protocol not in DEFAULTS.protocols:
        raise ValidationError(f"protocol must be one of {', '.join(DEFAULTS.protocols)}", "protocol")
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
    caps, sweeps, probes, left_out = {}, {}, {}, {}
    for r in list(wanted):
        router = probes[r] = _probe_router(r, seed_list[0], w)
        why = None if train_table is None else router.unsupported_data(train_table)
        if why and not routers:      # a default router this data cannot run: left out, said why
            left_out[r] = why
            wanted.remove(r)
            continue
        if why:
            raise EvoRouteError(f"router {r}: {why}")
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
            s.instruction for split in DEFAULTS.splits for t in probe.tasks(split) for s in t.steps))
        vecs = get_embedder().encode(texts)
        state["embedder"] = _DictEmbedder(dict(zip(texts, vecs)))
    else:
        state["embedder"] = None
    _STATE["embedder"] = state["embedder"]
    emb_s = time.perf_counter() - t_emb
    # Train the trained routers once here: their fitted predictors are cached by train table
    # (evoroute.policy.training), so forked workers inherit them and a sweep does not refit.
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

    report = build_report(results, wanted, seed_list, w, protocol, dataset, probe, test_table,
                     train_table, names, caps, sweeps, validation, len(sweep_list))
    report["sweep_seeds"] = sweep_list
    report["cold_start_tasks"] = state["cold_start_tasks"]
    report["steps_per_task"] = int(steps_per_task)
    if cold_note:
        report["notes"].append(cold_note)
    for r, why in left_out.items():
        report["notes"].append(f"{r} left out of the default routers: {why}")
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
    from evoroute.policy.registry import ROUTERS, router_names

    for n in names:
        base = "single" if n.startswith("single:") else n
        if base not in ROUTERS:
            raise ValidationError(f"unknown router {n!r}; known: {', '.join(router_names())}",
                                  "routers")


def _probe_router(router: str, seed: int, w: tuple[float, float, float]) -> Any:
    """The router as a run would build it (its capabilities may depend on its parameters)."""
    from evoroute.runs.prepare import build_router

    return build_router(_spec(router, seed, None, w), _STATE["models"])


def _seed_invariant(router: str, state: dict[str, Any]) -> bool:
    """Deterministic routers that do not learn, on a test set every seed shares (a dataset
    without a full split column gets a seeded split: then each seed has its own test set)."""
    if state["n_tasks"] is not None or state["steps_per_task"] != 1 or not state["fixed_split"]:
        return False
    return bool(state["caps"][router].seed_invariant)


def _knobs(router: str, sweep_ablations: bool) -> list[float]:
    """The sweep's settings other than the default run's (an ablation's only on request)."""
    if _STATE["caps"][router].ablation_of is not None and not sweep_ablations:
        return []
    values, default = _STATE["sweeps"][router]
    return [float(k) for k in values if default is None or not np.isclose(k, default)]


def _job_weight(job: tuple[str, int, float | None], protocol: str, caps: dict[str, Any]) -> float:
    c = caps[job[0]]
    if c.learns_online:
        return 4.0 if protocol == "bandit" else 2.0
    return 2.0 if c.needs_training else 1.0
