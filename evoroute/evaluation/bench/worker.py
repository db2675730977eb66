"""One benchmark run, in the parent or in a worker process: the process state the runs share
(data, models, backends per seed, the one embedding batch), the run itself through the
runner's in-memory loop, and the process pool that spreads the runs over the cores."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evoroute.core.errors import EvoRouteError
from evoroute.retrieval.model import DIM


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
            return np.stack([self.vectors[t] for t in texts]) if texts else np.empty((0, DIM), np.float32)
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
    from evoroute.runs.spec import RunSpec

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
    from evoroute.runs.execute import run_spec
    from evoroute.runs.loop import RunLoop
    from evoroute.runs.prepare import prepare_run

    router, seed, knob = job
    t0, c0 = time.perf_counter(), time.process_time()
    spec = _spec(router, seed, knob, _STATE["weights"])
    succ, cost, lat, sc, orc, used = [], [], [], [], [], {}
    tr_cost, tr_q, tr_n = 0.0, 0.0, 0
    cur_cost = cur_lat = 0.0
    if _STATE.get("db_url"):
        from evoroute.storage.db import get_engine
        stream = ((d["phase"], d["score"], d["cost_usd"], d["latency_s"],
                   d["oracle_score"], d["model"], d["task_success"], d["step_index"])
                  for d in run_spec(spec, engine=get_engine(_STATE["db_url"]),
                                    embedder=_STATE["embedder"]))
    else:
        plan = prepare_run(spec, models=_STATE["models"], backend=_backend(seed),
                           embedder=_STATE["embedder"])
        stream = ((r.phase, r.outcome.step_success, r.outcome.cost_usd,
                   r.outcome.duration_s, r.oracle_score, r.outcome.model, r.task_success,
                   r.step_index) for r in RunLoop(plan).steps())
    for phase, score, c, d, best, model, task_succ, idx in stream:
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
