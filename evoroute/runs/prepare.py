"""Preparing a run: resolve its models, backend, router, the task phases of its protocol, the
router's training and one embedding batch, into a :class:`RunPlan` the loop executes.

What the router needs is read from ``router.capabilities()``, never guessed from its name.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from evoroute.backends.base import Backend, TaskSpec
from evoroute.backends.names import OWN_MODELS
from evoroute.backends.registry import make_backend
from evoroute.core.errors import EvoRouteError, ValidationError
from evoroute.core.types import ModelInfo, Weights
from evoroute.policy.base import Capabilities, Router
from evoroute.policy.registry import make_router
from evoroute.runs import stages
from evoroute.runs.spec import RunSpec
from evoroute.storage import db

ROUTING_STREAM = 101          # seed stream of routing decisions (task order uses others)
#: the embedding batch is encoded in about this many parts when its progress is reported
#: (each at least EMBED_PART_MIN texts, the embedder's batch size, so little is lost)
EMBED_PARTS, EMBED_PART_MIN = 20, 64

#: ``report(stage, progress, detail)``: what the preparation is doing now (evoroute.runs.stages)
StageReport = Callable[[str, float | None, str | None], None]


@dataclass
class RunPlan:
    """A prepared run: backend, router and the ordered phases of tasks."""

    spec: RunSpec
    backend: Backend
    router: Router
    phases: list[tuple[str, list[TaskSpec]]]
    embeddings: dict[str, np.ndarray] | None
    details: dict[str, Any]

    @property
    def n_steps_total(self) -> int:
        return sum(t.n_steps for _, tasks in self.phases for t in tasks)

    @property
    def n_tasks_total(self) -> int:
        return sum(len(tasks) for _, tasks in self.phases)


def build_router(spec: RunSpec, models: list[ModelInfo]) -> Router:
    """The spec's router with its parameters, plus the run-level settings its capabilities
    say it takes (``run_params``: the run's weights, its cold start, its dataset's name)."""
    params = dict(spec.router_params)
    if "channels" in params:            # JSON gives a list; the router's config keeps a tuple
        params["channels"] = tuple(params["channels"])
    router = _make(spec, models, params)
    taken = router.capabilities().run_params
    if not taken:
        return router
    if "weights" in taken:
        params["weights"] = Weights(*spec.weights)
    if "cold_start_tasks" in taken:
        params.setdefault("cold_start_tasks", spec.cold_start_tasks)
    if "dataset" in taken:               # to name it when the router cannot run on it
        params["dataset"] = str(spec.dataset)
    return _make(spec, models, params)


def _make(spec: RunSpec, models: list[ModelInfo], params: dict[str, Any]) -> Router:
    try:
        return make_router(spec.router, models, **params)
    except TypeError as exc:   # an unknown parameter for this router
        raise ValidationError(f"bad parameters for router {spec.router!r}: {exc}",
                              "router_params") from None


def registered_models(spec: RunSpec, engine: Engine | None) -> list[ModelInfo]:
    from evoroute import registry
    with db.session(engine or db.get_engine()) as s:
        return registry.model_infos(session=s, names=list(spec.models) if spec.models else None)


def prepare_run(spec: RunSpec, *, engine: Engine | None = None,
                models: list[ModelInfo] | None = None, backend: Backend | None = None,
                embedder: Any = None, report: StageReport | None = None) -> RunPlan:
    """Resolve models, backend, router, task phases, training and embeddings of a run.

    ``models`` / ``backend`` may be given (the benchmark reuses them across routers);
    otherwise registered models come from the experience base of ``engine``. ``report`` is
    told each stage as it starts (and the embedding's progress), so a watcher sees what a
    preparation of many seconds is doing.
    """
    t0 = time.perf_counter()
    if report is not None:
        report(stages.LOADING, None, f"{spec.backend} · {spec.dataset or 'default'} · "
                                     f"{spec.router}")
    if backend is None:
        if models is None and spec.backend not in OWN_MODELS:
            models = registered_models(spec, engine)
        backend = make_backend(spec.backend, spec.dataset, models=models,
                               model_names=list(spec.models) if spec.models else None,
                               seed=spec.seed, steps_per_task=spec.steps_per_task,
                               **spec.backend_params)
    router = build_router(spec, backend.models)
    caps = router.capabilities()
    train = backend.tasks("train")
    test = backend.tasks("test")
    if spec.n_tasks is not None:
        test = test[: spec.n_tasks]
    if not test:
        raise EvoRouteError(f"dataset {spec.dataset!r} has no test tasks for the chosen models")
    cold_n = spec.cold_start_tasks if caps.cold_start else 0
    phases: list[tuple[str, list[TaskSpec]]] = []
    preload = None
    if spec.protocol == "bandit" and caps.learns_online:
        cold = train[:cold_n]
        rest = train[len(cold):]
        opt = rest if spec.n_train is None else rest[: spec.n_train]
        phases = [("cold_start", cold), ("optimize", opt)]
    elif spec.protocol == "full" and caps.learns_online:
        if caps.experience_preload is None:
            raise EvoRouteError(f"the full protocol needs a router with an experience base "
                                f"(or a preload hook); {router.name} has none")
        preload = _train_table(backend, report, router, spec.budget_usd)
        if preload is None:
            raise EvoRouteError(f"the {backend.label} backend cannot give every model's outcome "
                                f"on the train split, which the full protocol needs"
                                + backend.missing_table_hint())
        if spec.n_train is not None:
            keep_keys = {t.key for t in train[: spec.n_train]}
            preload = _subset_table(preload, [k in keep_keys for k in preload.task_keys])
    phases.append(("inference", test))
    phases = [(p, ts) for p, ts in phases if ts]

    training = None
    if caps.needs_training:
        training = _train_table(backend, report, router, spec.budget_usd)
        if training is None:
            raise EvoRouteError(f"router {router.name} needs every model's outcome on the train "
                                f"split; the {backend.label} backend has none"
                                + backend.missing_table_hint())
        if len(training) == 0:   # e.g. a long file whose every row is split=test
            raise EvoRouteError(f"router {router.name} learns from the train split, and dataset "
                                f"{spec.dataset!r} has no train tasks for the chosen models; "
                                f"mark some rows split=train or pick a router that needs no "
                                f"training")
    if caps.needs_oracle:
        if type(backend).oracle_scores is Backend.oracle_scores:
            raise EvoRouteError(f"router {router.name} reads every model's recorded outcome; the "
                                f"{backend.label} backend cannot give them (replay or simulated "
                                f"only)")
        router.attach_oracle(backend.oracle_scores)

    # One embedding batch for every instruction of the run (the embedder caches repeats).
    embeddings = None
    emb_s = 0.0
    if caps.needs_embedding:
        texts = [s.instruction for _, ts in phases for t in ts for s in t.steps]
        for tab in (preload, training):
            if tab is not None:
                texts.extend(tab.instructions)
        unique = list(dict.fromkeys(texts))
        if embedder is None:
            from evoroute.retrieval.embedder import get_embedder
            embedder = get_embedder()
        t_emb = time.perf_counter()
        embeddings = embed_texts(embedder, unique, report)
        emb_s = time.perf_counter() - t_emb
    if training is not None:
        if embeddings is not None:
            training.embeddings = np.stack([embeddings[t] for t in training.instructions])
        if report is not None:
            report(stages.TRAINING, None, f"every model's outcome on the train split "
                                          f"({len(training):,} steps)")
        router.fit(training)
    # Baselines that rank by price fall back to recorded costs when no price is known (a replay
    # file without token counts); only backends that hold every model's outcome can give them.
    costs_from = None
    if caps.ranks_by_price and router.prices_unknown():
        costs = training if training is not None else backend.outcome_table("train")
        if costs is not None:
            router.fit_costs(costs)
            if router.recorded_cost:
                costs_from = (f"every registered price is 0: models ranked by mean recorded cost "
                              f"on the train split ({len(costs)} steps)")
    if preload is not None:
        if report is not None:
            report(stages.INDEXING, None, f"every model's outcome on the train split "
                                          f"({len(preload):,} steps)")
        if caps.experience_preload == "index":
            bulk_load(router, preload, embeddings)
        else:   # an online learner without an experience base (lints) starts from the table
            if embeddings is not None:
                preload.embeddings = np.stack([embeddings[t] for t in preload.instructions])
            router.preload(preload)

    details: dict[str, Any] = {
        "backend": backend.describe(),
        "router": router.describe(),
        "phases": {p: len(ts) for p, ts in phases},
        "steps_total": sum(t.n_steps for _, ts in phases for t in ts),
        "protocol_note": _protocol_note(spec, router, caps, preload),
        "trained_on": None if training is None else f"every model's outcome on the full train "
                                                   f"split ({len(training)} steps)",
        "ranked_by": costs_from,
        "preloaded_records": 0 if preload is None else int((~np.isnan(preload.scores)).sum()),
        "embedded_texts": 0 if embeddings is None else len(embeddings),
        "embedding_s": round(emb_s, 3),
        "prepare_s": round(time.perf_counter() - t0, 3),
        "routing_seed": [spec.seed, ROUTING_STREAM],
    }
    return RunPlan(spec, backend, router, phases, embeddings, details)


def embed_texts(embedder: Any, texts: list[str], report: StageReport | None = None
                ) -> dict[str, np.ndarray]:
    """Text -> embedding of every text, in one batch, or (``report``) in about
    :data:`EMBED_PARTS` parts with the progress reported after each."""
    if report is None or not texts:
        return dict(zip(texts, embedder.encode(texts)))
    n = len(texts)
    part = max(EMBED_PART_MIN, math.ceil(n / EMBED_PARTS))
    out: dict[str, np.ndarray] = {}
    report(stages.EMBEDDING, 0.0, f"0 of {n:,} instructions")
    for start in range(0, n, part):
        chunk = texts[start:start + part]
        out.update(zip(chunk, embedder.encode(chunk)))
        report(stages.EMBEDDING, len(out) / n, f"{len(out):,} of {n:,} instructions")
    return out


def _subset_table(tab: Any, keep: Sequence[bool]) -> Any:
    k = np.asarray(keep, dtype=bool)
    pick = np.flatnonzero(k)
    return replace(tab, task_keys=[tab.task_keys[i] for i in pick], step_index=tab.step_index[k],
                   roles=[tab.roles[i] for i in pick], instructions=[tab.instructions[i] for i in pick],
                   tools=[tab.tools[i] for i in pick], scores=tab.scores[k], costs=tab.costs[k],
                   latencies=tab.latencies[k],
                   embeddings=None if tab.embeddings is None else tab.embeddings[k],
                   responses=None if tab.responses is None else tab.responses[k],
                   task_scores=None if tab.task_scores is None else tab.task_scores[k])


def _train_table(backend: Backend, report: StageReport | None, router: Router,
                 budget_usd: float | None) -> Any:
    """Every model's outcome on the train split: the backend's own, or one it collects now
    (a live pass, reported as the ``collecting`` stage with its progress), once the router's
    data check has passed on the table's shape and the pass fits the run's budget."""
    tab = backend.outcome_table("train")
    if tab is not None:
        return tab
    why = unsupported_on_shape(router, backend)
    if why:
        raise EvoRouteError(f"router {router.name}: {why}")

    def progress(done: int, total: int, detail: str) -> None:
        if report is not None:
            report(stages.COLLECTING, done / total if total else None,
                   f"{done} of {total} task runs: {detail}")

    return backend.collect_table("train", progress, budget_usd)


def unsupported_on_shape(router: Router, backend: Backend) -> str | None:
    """Why ``router`` cannot run on the train table ``backend`` would collect (None: it can,
    or the backend collects none): checked before a pass is paid for."""
    if type(router).unsupported_data is Router.unsupported_data:
        return None
    shape = backend.table_shape("train")
    return None if shape is None or len(shape) == 0 else router.unsupported_data(shape)


def bulk_load(router: Any, tab: Any, embeddings: dict[str, np.ndarray] | None) -> None:
    """Every model's train outcome into the router's index, in one vectorised batch.

    The performance signal is the router's: task success (had every step of the task gone to
    that model) or step success."""
    perf_all = tab.task_success() if router.config.perf_signal == "task" else tab.scores
    predictor = router.tool_predictor
    tools = [t or predictor.predict(q) for t, q in zip(tab.tools, tab.instructions)]
    rows, cols = np.nonzero(~np.isnan(tab.scores))
    names = tab.models
    emb = None
    if embeddings is not None:
        emb = [embeddings.get(tab.instructions[r]) for r in rows]
    router.index.add_batch(roles=[tab.roles[r] for r in rows], models=[names[c] for c in cols],
                           texts=[tab.instructions[r] for r in rows], embeddings=emb,
                           tools=[tools[r] for r in rows], costs=tab.costs[rows, cols],
                           durations=tab.latencies[rows, cols], perf=perf_all[rows, cols])


def _protocol_note(spec: RunSpec, router: Router, caps: Capabilities, preload: Any) -> str:
    if not caps.learns_online:
        return (f"{router.name} does not learn online: it runs the test split only"
                + (" (trained on every model's outcome on the full train split first)"
                   if caps.needs_training else ""))
    if spec.protocol == "full":
        return ("full: the experience base starts with every model's outcome on the train split "
                f"({0 if preload is None else len(preload)} steps), then the test split")
    return ("bandit: cold start with random models, online optimisation on the train split "
            "(only the chosen model's outcome is observed), then the test split")
