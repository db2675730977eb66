"""The runner: executes one run step by step, writes every step to the experience base as it
happens, and yields one dict per step (river's ``evaluate()`` habit), so a live feed, the CLI
and a replay all consume the same stream.

Protocols (issue 4):

- ``bandit`` (default, the paper's): cold start on ``cold_start_tasks`` train tasks with a
  uniformly random model per step (phase ``cold_start``; EvoRoute only, skipped by its
  no-cold-start ablation), then the rest of the train split online (phase ``optimize``: only
  the chosen model's outcome is observed), then the test split (phase ``inference``; the
  router keeps learning from what it observes).
- ``full``: the router's experience starts with every model's recorded outcome on the train
  split (bulk-loaded into the EvoRoute index, not written as step records), then the test
  split.

Routers that do not learn online (``learns_online = False``: the baselines) run the test split
only, in both protocols. Routers that need training (threshold, cascade) are fitted on every
model's outcome on the full train split, in both protocols.

Every run stores its full configuration and seed; decisions draw from one
``numpy.random.Generator`` seeded from the run's seed, and task order and composition from
per-split streams of the same seed, so the same spec gives the same decisions.

Lifecycle (issue 10): a run records its owner process (pid, start time, host) and a heartbeat
(every commit, and every :data:`HEARTBEAT_S` from a thread in between). Every step is
committed on its own, fenced on ownership, so a kill loses at most the step in progress. A run
whose process is gone reads as ``interrupted`` (``repo.reconcile_runs``, persisted by the
first reader). SIGTERM is handled like Ctrl-C (:func:`handle_signals`). ``resume`` replays the
generator from the seed up to the last stored step without writing, then continues: the
result equals an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert, update
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from evoroute import settings as config
from evoroute.backends.base import Backend, TaskSpec
from evoroute.backends.registry import BACKEND_NAMES, make_backend
from evoroute.core import labels
from evoroute.core.types import (PHASES, Decision, Explanation, ModelInfo, StepContext, json_default,
                                 StepOutcome, Weights)
from evoroute.errors import EvoRouteError, ValidationError
from evoroute.policy.base import Router, make_router
from evoroute.retrieval.index import one_blas_thread
from evoroute.retrieval.tools import ToolPredictor
from evoroute.storage import db, repo
from evoroute.storage.tables import Run, StepRecord, Task

PROTOCOLS = ("bandit", "full")
DEFAULT_DATASET = {"replay": "routerbench", "simulated": "default", "live": "default"}
# Every step is committed on its own: a kill loses at most the step in progress.
# benchmarks/commit_cost.py measured the price (see its numbers in docs/decisions.md).
COMMIT_EVERY_STEPS = 1
COMMIT_EVERY_S = 0.25
HEARTBEAT_S = 2.0             # the heartbeat thread refreshes a run this often between commits
ROUTING_STREAM = 101          # seed stream of routing decisions (task order uses others)


# ------------------------------------------------------------------------------ the spec
@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a run; stored as JSON with the run, so it can be repeated."""

    backend: str = "replay"
    dataset: str | None = None           # bundled name or path (replay) / scenario (simulated)
    router: str = "evoroute"
    weights: tuple[float, float, float] = (1.0, 0.1, 0.05)
    router_params: dict = field(default_factory=dict)
    seed: int = 0
    protocol: str = "bandit"
    n_tasks: int | None = None           # cap on test tasks (None = all)
    n_train: int | None = None           # cap on train tasks used for optimisation
    cold_start_tasks: int = 50
    steps_per_task: int = 1              # > 1 composes multi-step tasks from real queries
    budget_usd: float | None = None
    models: tuple[str, ...] | None = None
    name: str = ""
    backend_params: dict = field(default_factory=dict)   # e.g. replay incomplete="restrict"

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_NAMES:
            raise ValidationError(f"backend must be one of {', '.join(BACKEND_NAMES)}, got "
                                  f"{self.backend!r}", "backend")
        if self.dataset in (None, ""):
            object.__setattr__(self, "dataset", DEFAULT_DATASET[self.backend])
        if self.protocol not in PROTOCOLS:
            raise ValidationError(f"protocol must be one of {', '.join(PROTOCOLS)}, got "
                                  f"{self.protocol!r}", "protocol")
        object.__setattr__(self, "weights", Weights(*self.weights).as_tuple())
        object.__setattr__(self, "seed", _int(self.seed, "seed", 0))
        for name, lo in (("n_tasks", 1), ("n_train", 0)):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, _int(v, name, lo))
        object.__setattr__(self, "cold_start_tasks", _int(self.cold_start_tasks, "cold_start_tasks", 0))
        object.__setattr__(self, "steps_per_task", _int(self.steps_per_task, "steps_per_task", 1))
        if self.budget_usd is not None:
            b = float(self.budget_usd)
            if not np.isfinite(b) or b <= 0:
                raise ValidationError("budget must be a positive number of USD", "budget_usd")
            object.__setattr__(self, "budget_usd", b)
        if self.models is not None:
            object.__setattr__(self, "models", tuple(str(m) for m in self.models))
        if not str(self.router):
            raise ValidationError("router is empty", "router")
        for name in ("router_params", "backend_params"):
            v = getattr(self, name)
            if not isinstance(v, Mapping):
                raise ValidationError(f"{name} must be a mapping", name)
            try:
                json.dumps(v)
            except TypeError as exc:
                raise ValidationError(f"{name} must be JSON-able ({exc})", name) from None
            object.__setattr__(self, name, dict(v))

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["weights"] = list(self.weights)
        d["models"] = None if self.models is None else list(self.models)
        d["router_params"], d["backend_params"] = dict(self.router_params), dict(self.backend_params)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunSpec":
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if kw.get("weights") is not None:
            kw["weights"] = tuple(kw["weights"])
        if kw.get("models") is not None:
            kw["models"] = tuple(kw["models"])
        return cls(**kw)


def _int(v: Any, name: str, lo: int) -> int:
    ok = isinstance(v, (int, np.integer)) and not isinstance(v, bool)
    if not ok and isinstance(v, float) and v.is_integer():
        ok = True
    if not ok:
        raise ValidationError(f"{name} must be a whole number, got {v!r}", name)
    if int(v) < lo:
        raise ValidationError(f"{name} must be >= {lo}, got {int(v)}", name)
    return int(v)


# ------------------------------------------------------------------------------ the plan
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


def is_evoroute(router: Router) -> bool:
    from evoroute.policy.evoroute import EvoRouteRouter
    return isinstance(router, EvoRouteRouter)


def build_router(spec: RunSpec, models: list[ModelInfo]) -> Router:
    params = dict(spec.router_params)
    if spec.router.startswith("evoroute"):
        params["weights"] = Weights(*spec.weights)
        if "channels" in params:
            params["channels"] = tuple(params["channels"])
        if "cold_start_tasks" not in params:
            params["cold_start_tasks"] = spec.cold_start_tasks
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
                embedder: Any = None) -> RunPlan:
    """Resolve models, backend, router, task phases, training and embeddings of a run.

    ``models`` / ``backend`` may be given (the benchmark reuses them across routers);
    otherwise registered models come from the experience base of ``engine``.
    """
    t0 = time.perf_counter()
    if backend is None:
        if models is None and spec.backend != "simulated":
            models = registered_models(spec, engine)
        backend = make_backend(spec.backend, spec.dataset, models=models,
                               model_names=list(spec.models) if spec.models else None,
                               seed=spec.seed, steps_per_task=spec.steps_per_task,
                               **spec.backend_params)
    router = build_router(spec, backend.models)
    learns = getattr(router, "learns_online", True)
    train = backend.tasks("train")
    test = backend.tasks("test")
    if spec.n_tasks is not None:
        test = test[: spec.n_tasks]
    if not test:
        raise EvoRouteError(f"dataset {spec.dataset!r} has no test tasks for the chosen models")
    evo = is_evoroute(router)
    cold_n = spec.cold_start_tasks if (evo and router.config.cold_start) else 0
    phases: list[tuple[str, list[TaskSpec]]] = []
    preload = None
    if spec.protocol == "bandit" and learns:
        cold = train[:cold_n]
        rest = train[len(cold):]
        opt = rest if spec.n_train is None else rest[: spec.n_train]
        phases = [("cold_start", cold), ("optimize", opt)]
    elif spec.protocol == "full" and learns:
        if not hasattr(router, "index") and not callable(getattr(router, "preload", None)):
            raise EvoRouteError(f"the full protocol needs a router with an experience base "
                                f"(or a preload hook); {router.name} has none")
        preload = backend.outcome_table("train")
        if preload is None:
            raise EvoRouteError(f"the {backend.label} backend cannot give every model's outcome "
                                f"on the train split, which the full protocol needs")
        if spec.n_train is not None:
            keep_keys = {t.key for t in train[: spec.n_train]}
            preload = _subset_table(preload, [k in keep_keys for k in preload.task_keys])
    phases.append(("inference", test))
    phases = [(p, ts) for p, ts in phases if ts]

    training = None
    if getattr(router, "needs_training", False):
        training = backend.outcome_table("train")
        if training is None:
            raise EvoRouteError(f"router {router.name} needs every model's outcome on the train "
                                f"split; the {backend.label} backend has none")
        if len(training) == 0:   # e.g. a long file whose every row is split=test
            raise EvoRouteError(f"router {router.name} learns from the train split, and dataset "
                                f"{spec.dataset!r} has no train tasks for the chosen models; "
                                f"mark some rows split=train or pick a router that needs no "
                                f"training")
    if getattr(router, "needs_oracle", False):
        if type(backend).oracle_scores is Backend.oracle_scores:
            raise EvoRouteError(f"router {router.name} reads every model's recorded outcome; the "
                                f"{backend.label} backend cannot give them (replay or simulated "
                                f"only)")
        router.attach_oracle(backend.oracle_scores)

    # One embedding batch for every instruction of the run (the embedder caches repeats).
    embeddings = None
    needs_emb = getattr(router, "needs_embedding", False)
    if needs_emb:
        texts = [s.instruction for _, ts in phases for t in ts for s in t.steps]
        for tab in (preload, training):
            if tab is not None:
                texts.extend(tab.instructions)
        unique = list(dict.fromkeys(texts))
        if embedder is None:
            from evoroute.retrieval.embedder import get_embedder
            embedder = get_embedder()
        t_emb = time.perf_counter()
        vecs = embedder.encode(unique)
        embeddings = dict(zip(unique, vecs))
        emb_s = time.perf_counter() - t_emb
    else:
        emb_s = 0.0
    if training is not None:
        if embeddings is not None:
            training.embeddings = np.stack([embeddings[t] for t in training.instructions])
        router.fit(training)
    # Baselines that rank by price fall back to recorded costs when no price is known (a replay
    # file without token counts); only backends that hold every model's outcome can give them.
    costs_from = None
    if getattr(router, "prices_unknown", lambda: False)():
        costs = training if training is not None else backend.outcome_table("train")
        if costs is not None:
            router.fit_costs(costs)
            if router.recorded_cost:
                costs_from = (f"every registered price is 0: models ranked by mean recorded cost "
                              f"on the train split ({len(costs)} steps)")
    if preload is not None:
        if hasattr(router, "index"):
            _bulk_load(router, preload, embeddings)
        else:   # an online learner without an experience base (lints) starts from the table
            if embeddings is not None:
                preload.embeddings = np.stack([embeddings[t] for t in preload.instructions])
            router.preload(preload)

    details: dict[str, Any] = {
        "backend": backend.describe(),
        "router": _router_config(router),
        "phases": {p: len(ts) for p, ts in phases},
        "steps_total": sum(t.n_steps for _, ts in phases for t in ts),
        "protocol_note": _protocol_note(spec, router, learns, preload),
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


def _subset_table(tab: Any, keep: Sequence[bool]) -> Any:
    k = np.asarray(keep, dtype=bool)
    pick = np.flatnonzero(k)
    return replace(tab, task_keys=[tab.task_keys[i] for i in pick], step_index=tab.step_index[k],
                   roles=[tab.roles[i] for i in pick], instructions=[tab.instructions[i] for i in pick],
                   tools=[tab.tools[i] for i in pick], scores=tab.scores[k], costs=tab.costs[k],
                   latencies=tab.latencies[k],
                   embeddings=None if tab.embeddings is None else tab.embeddings[k])


def _bulk_load(router: Any, tab: Any, embeddings: dict[str, np.ndarray] | None) -> None:
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


def _router_config(router: Router) -> dict[str, Any]:
    out: dict[str, Any] = {"name": router.name, "class": type(router).__name__}
    cfg = getattr(router, "config", None)
    if cfg is not None and hasattr(cfg, "to_dict"):
        out["config"] = cfg.to_dict()
    for attr in ("model", "strong", "weak", "threshold", "strong_share", "k", "prior",
                 "weak_cost_ratio", "max_rungs", "verifier_accuracy", "cost_weight", "confidence"):
        if hasattr(router, attr):
            v = getattr(router, attr)
            out[attr] = v if (v is None or isinstance(v, (str, int))) else float(v)
    if hasattr(router, "full_ladder"):
        out["ladder"] = router.full_ladder
    return out


def _protocol_note(spec: RunSpec, router: Router, learns: bool, preload: Any) -> str:
    if not learns:
        return (f"{router.name} does not learn online: it runs the test split only"
                + (" (trained on every model's outcome on the full train split first)"
                   if getattr(router, "needs_training", False) else ""))
    if spec.protocol == "full":
        return ("full: the experience base starts with every model's outcome on the train split "
                f"({0 if preload is None else len(preload)} steps), then the test split")
    return ("bandit: cold start with random models, online optimisation on the train split "
            "(only the chosen model's outcome is observed), then the test split")


# ------------------------------------------------------------------------------ the loop
@dataclass
class StepResult:
    step_no: int
    task_key: str
    split: str
    phase: str
    step_index: int
    ctx: StepContext
    decision: Decision
    outcome: StepOutcome
    propensity: float
    attempts: list[str]
    failed: list[tuple[Decision, StepOutcome]]
    tools: frozenset[str]
    oracle_score: float | None
    task_success: float | None = None    # set on a task's last step
    task_first: bool = False
    task_n_steps: int = 1


class RunLoop:
    """Decide -> (budget check) -> execute (-> escalate) -> learn, step by step.

    Pure in-memory: the database writer and the benchmark both consume :meth:`steps`.
    ``stop_reason`` is set when the budget cap stops the run.
    """

    def __init__(self, plan: RunPlan, budget_usd: float | None = None,
                 recorded: Mapping[int, "RecordedStep"] | None = None) -> None:
        self.plan = plan
        # step number -> its stored outcomes: those steps are not executed again (resuming a
        # live run: no model is called twice), their stored outcomes are fed to the router
        self.recorded = dict(recorded or {})
        self.rng = np.random.default_rng(plan.details["routing_seed"])
        self.budget = budget_usd
        self.stop_reason: str | None = None
        self.cum_cost = 0.0
        self.n_done = 0
        self._model_cost: dict[str, list[float]] = {}
        # the router's own predictor when it has one (custom keywords), else the default
        self._tool_predictor = getattr(plan.router, "tool_predictor", None) or ToolPredictor()
        self._tool_cache: dict[str, frozenset[str]] = {}
        self._escalate = getattr(plan.router, "escalate", None)
        best = getattr(plan.backend, "best_score", None)
        self._best = best if callable(best) else None

    def _expected_cost(self, ctx: StepContext, decision: Decision) -> float:
        """What the next step should cost: the backend's own estimate when it has one (the
        live backend prices the real prompt), else the router's cost estimate for the model,
        else the model's mean cost so far in this run, else the run's mean step cost."""
        estimate = getattr(self.plan.backend, "estimate_cost", None)
        if callable(estimate):
            return float(estimate(ctx, self.plan.backend.model(decision.model)))
        for c in decision.explanation.candidates:
            if c.model == decision.model and c.c_hat is not None and np.isfinite(c.c_hat):
                return float(c.c_hat)
        seen = self._model_cost.get(decision.model)
        if seen:
            return seen[0] / seen[1]
        return self.cum_cost / self.n_done if self.n_done else 0.0

    def steps(self) -> Iterator[StepResult]:
        with one_blas_thread():
            yield from self._steps()

    def _tools(self, s: Any) -> frozenset[str]:
        """The step's tools, or the router's keyword prediction (once per distinct text)."""
        if s.tools:
            return s.tools
        hit = self._tool_cache.get(s.instruction)
        if hit is None:
            hit = self._tool_cache[s.instruction] = self._tool_predictor.predict(s.instruction)
        return hit

    def _steps(self) -> Iterator[StepResult]:
        plan, router, backend = self.plan, self.plan.router, self.plan.backend
        emb = plan.embeddings or {}
        step_no = 0
        for phase, tasks in plan.phases:
            for task in tasks:
                outcomes: list[StepOutcome] = []
                for i, s in enumerate(task.steps):
                    tools = self._tools(s)
                    ctx = StepContext(task_key=task.key, step_index=i, role=s.role,
                                      instruction=s.instruction, phase=phase, tools=tools,
                                      embedding=emb.get(s.instruction), query_id=s.query_id)
                    cands = backend.candidates(ctx)
                    if cands is not None:
                        ctx = replace(ctx, candidates=cands)
                    decision = router.decide(ctx, self.rng)
                    if self.budget is not None:
                        expected = self._expected_cost(ctx, decision)
                        if self.cum_cost + expected > self.budget:
                            self.stop_reason = (
                                f"budget cap: spent ${self.cum_cost:.6f} of ${self.budget:.6f}; the "
                                f"next step ({decision.model}) was expected to cost "
                                f"${expected:.6f}")
                            return
                    rec = self.recorded.get(step_no + 1)
                    if rec is None:
                        outcome, final, attempts, failed = self._execute(ctx, decision)
                    else:
                        outcome, final, attempts, failed = self._recorded_call(decision, rec)
                    router.observe(ctx, final, outcome)
                    outcomes.append(outcome)
                    step_no += 1
                    self.n_done += 1
                    self.cum_cost += outcome.cost_usd + sum(o.cost_usd for _, o in failed)
                    mc = self._model_cost.setdefault(final.model, [0.0, 0])
                    mc[0] += outcome.cost_usd
                    mc[1] += 1
                    res = StepResult(step_no=step_no, task_key=task.key, split=task.split,
                                     phase=phase, step_index=i, ctx=ctx, decision=final,
                                     outcome=outcome, propensity=decision.propensity,
                                     attempts=attempts, failed=failed, tools=tools,
                                     oracle_score=self._best(ctx) if self._best else None,
                                     task_first=(i == 0), task_n_steps=task.n_steps)
                    if i == task.n_steps - 1:
                        res.task_success = (rec.task_success if rec is not None
                                            and rec.task_success is not None
                                            else backend.check_task(task, outcomes))
                        router.finish_task(task.key, res.task_success)
                    yield res
                    if self.budget is not None and self.cum_cost > self.budget:
                        self.stop_reason = (f"budget cap: spent ${self.cum_cost:.6f}, over the "
                                            f"${self.budget:.6f} cap")
                        return

    def _recorded_call(self, decision: Decision, rec: "RecordedStep"
                       ) -> tuple[StepOutcome, Decision, list[str], list[tuple[Decision, StepOutcome]]]:
        """A stored step's attempts in place of calling the backend: the same decisions (the
        first attempt must be the model the router just chose) and the same outcomes."""
        first = rec.attempts[0]
        if first.model != decision.model:
            raise ResumeDivergence(f"cannot resume exactly: a stored step called {first.model} "
                                   f"first but the replayed decision is {decision.model}")
        pairs = [(decision, first)]
        if len(rec.attempts) > 1:
            from evoroute.backends.live import fallback_decision
            failed_outs = [first]
            for o in rec.attempts[1:]:
                pairs.append((fallback_decision(decision, o.model, list(failed_outs)), o))
                failed_outs.append(o)
        final, out = pairs[-1]
        return out, final, [out.model], pairs[:-1]

    def _call(self, ctx: StepContext, decision: Decision, spent: float = 0.0
              ) -> list[tuple[Decision, StepOutcome]]:
        """One routed call; a backend with ``execute_with_fallback`` (live) retries failed
        calls on the decision's next-best candidates and returns every attempt. ``spent``: what
        this step's earlier calls (escalations) cost, not yet in ``cum_cost``."""
        backend = self.plan.backend
        fallback = getattr(backend, "execute_with_fallback", None)
        if callable(fallback):
            left = None if self.budget is None else max(self.budget - self.cum_cost - spent, 0.0)
            attempts = fallback(ctx, decision, budget_left=left)
            if attempts:
                return list(attempts)
        return [(decision, backend.execute(ctx, backend.model(decision.model)))]

    def _execute(self, ctx: StepContext, decision: Decision
                 ) -> tuple[StepOutcome, Decision, list[str], list[tuple[Decision, StepOutcome]]]:
        """Execute a decision, then any escalations the router asks for (cascade).

        Returns the step's outcome (cost and latency summed over escalated calls), the final
        decision, the models called in order, and the failed calls a fallback replaced (they
        are stored as their own records, with their error)."""
        calls = self._call(ctx, decision)
        failed = calls[:-1]
        final, out = calls[-1]
        chain = [out]
        if self._escalate is not None:
            while True:
                nxt = self._escalate(ctx, final, out, self.rng)
                if nxt is None:
                    break
                spent = sum(o.cost_usd for o in chain) + sum(o.cost_usd for _, o in failed)
                more = self._call(ctx, nxt, spent)
                failed.extend(more[:-1])
                final, out = more[-1]
                chain.append(out)
        names = [o.model for o in chain]
        if len(chain) == 1:
            return out, final, names, failed
        final.explanation.reason += (f" | attempts: {' -> '.join(names)}; cost and latency are "
                                     f"the sums over all {len(names)} calls")
        combined = replace(out, cost_usd=float(sum(o.cost_usd for o in chain)),
                           duration_s=float(sum(o.duration_s for o in chain)),
                           input_tokens=sum(o.input_tokens or 0 for o in chain),
                           output_tokens=sum(o.output_tokens or 0 for o in chain))
        return combined, final, names, failed


# ------------------------------------------------------------------------------ DB side
def create_run(spec: RunSpec, *, engine: Engine | None = None) -> int:
    """A Run row (status pending) carrying the spec as JSON and its seed."""
    engine = engine or db.get_engine()
    w = spec.weights
    with db.session(engine) as s:
        run = repo.create_run(session=s, config=spec.to_dict(), name=spec.name,
                              status="pending", backend=spec.backend, dataset=str(spec.dataset),
                              router=spec.router, protocol=spec.protocol, seed=spec.seed,
                              w_p=w[0], w_c=w[1], w_d=w[2], budget_usd=spec.budget_usd,
                              label=labels.run_label(spec.backend))
        return int(run.id)


def run_spec(spec: RunSpec, *, engine: Engine | None = None, embedder: Any = None
             ) -> Iterator[dict[str, Any]]:
    """create_run + execute_run."""
    engine = engine or db.get_engine()
    run_id = create_run(spec, engine=engine)
    yield from execute_run(run_id, engine=engine, embedder=embedder)


def stop_run(run_id: int, *, engine: Engine | None = None) -> str:
    """Stop a run. A pending run is stopped at once; a running one is asked to stop and its
    worker stops cleanly after the step in progress (it reads the flag at every commit).
    Returns ``"stopped"`` or ``"stopping"``; a run that is not active raises (with what to do)."""
    with db.session(engine or db.get_engine()) as s:
        run = repo.get_run(run_id, session=s)
        if run is None:
            raise EvoRouteError(f"no run with id {run_id}")
        if run.status == "pending":
            n = s.exec(update(Run).where(Run.id == run_id).where(Run.status == "pending")  # type: ignore[call-overload]
                       .values(status="stopped", stop_requested=True, finished_at=repo.now(),
                               error="stopped on request before it started")).rowcount
            s.commit()
            if n:
                return "stopped"
            run = repo.get_run(run_id, session=s)
        if run.status == "running":
            repo.request_stop(run_id, session=s)
            return "stopping"
        hint = (f"; resume it with `python -m evoroute runs resume {run_id}` or delete it"
                if run.status in repo.RESUMABLE_STATUSES else "")
        raise EvoRouteError(f"run {run_id} is {run.status}, not running{hint}")


def delete_run(run_id: int, *, engine: Engine | None = None) -> dict[str, int]:
    """Delete a run and everything keyed by its id in one transaction; refuses a run whose
    process is still alive (stop it first)."""
    with db.session(engine or db.get_engine()) as s:
        return repo.delete_run(run_id, session=s)


# ---------------------------------------------------------------- signals
class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM received while :func:`handle_signals` is active."""

    def __init__(self, signame: str) -> None:
        super().__init__(signame)
        self.signame = signame
        self.signum = int(getattr(signal, signame, signal.SIGINT))


class _SignalState:
    depth = 0                      # > 0 inside a commit: the signal waits until it ends
    pending: str | None = None
    received: str | None = None    # the last signal seen (for a run closed by its consumer)


_SIG = _SignalState()


def _on_signal(signum: int, _frame: Any) -> None:
    name = signal.Signals(signum).name
    _SIG.received = name
    if _SIG.depth:
        _SIG.pending = name
        return
    raise Interrupted(name)


@contextmanager
def handle_signals() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C: both raise :class:`Interrupted` (a KeyboardInterrupt), but
    never inside a commit — there it is deferred until the transaction has ended, so a run
    stopped by a signal keeps every committed step and writes its status and reason. Only in
    the main thread (elsewhere Python cannot install handlers); a no-op there."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in old:
        signal.signal(sig, _on_signal)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        _SIG.pending = _SIG.received = None


@contextmanager
def _signals_deferred() -> Iterator[None]:
    _SIG.depth += 1
    try:
        yield
    finally:
        _SIG.depth -= 1
    if not _SIG.depth and _SIG.pending:
        name, _SIG.pending = _SIG.pending, None
        raise Interrupted(name)


# ---------------------------------------------------------------- ownership and heartbeat
class RunTakenOver(EvoRouteError):
    """The run row is no longer this process's (marked interrupted, resumed elsewhere or
    deleted): the worker stops without writing."""


class ResumeDivergence(EvoRouteError):
    """Replaying a run's stored steps did not give the stored decisions and outcomes."""


def _owned(run_id: int, owner: repo.ProcessIdentity):
    """UPDATE of the run row, only while it is still this process's (Core: no ORM overhead in
    the per-step commit)."""
    c = Run.__table__.c  # type: ignore[attr-defined]
    return (update(Run.__table__).where(c.id == run_id).where(c.status == "running")
            .where(c.pid == owner.pid).where(c.proc_started == owner.proc_started)
            .where(c.host == owner.host))


class _Heartbeat:
    """Refreshes ``Run.heartbeat_at`` every :data:`HEARTBEAT_S` when no commit did (a long
    live call, the preparation of a run). A thread with its own connection; not used on an
    in-memory SQLite base (one shared connection, and no other process can read it)."""

    def __init__(self, engine: Engine, run_id: int, owner: repo.ProcessIdentity) -> None:
        self.engine, self.run_id, self.owner = engine, run_id, owner
        self.last = time.monotonic()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        url = engine.url
        if not (url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")):
            self._thread = threading.Thread(target=self._beat, name=f"heartbeat-run-{run_id}",
                                            daemon=True)
            self._thread.start()

    def touch(self) -> None:
        self.last = time.monotonic()

    def _beat(self) -> None:
        while not self._halt.wait(HEARTBEAT_S):
            if time.monotonic() - self.last < HEARTBEAT_S:
                continue
            try:
                with db.session(self.engine) as s:
                    s.exec(_owned(self.run_id, self.owner).values(heartbeat_at=repo.now()))
                    s.commit()
                self.touch()
            except Exception:   # noqa: BLE001 - a missed beat is retried; the run decides its fate
                pass

    def stop(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _Writer:
    """Writes steps, tasks and run progress in small transactions: every
    :data:`COMMIT_EVERY_STEPS` steps (1: at most one step is lost when the process is killed;
    benchmarks/commit_cost.py measured the cost) or :data:`COMMIT_EVERY_S`.

    Each commit is one transaction holding the steps, their tasks and the run's progress and
    heartbeat, fenced on the run still being this process's (else :class:`RunTakenOver`); it
    answers the run's stop flag. A task that starts and ends inside one batch is inserted
    with its success, step count, cost and duration already filled and its steps carry P(τ) —
    what :func:`repo.finish_task` would write; a task that spans batches is finished with
    :func:`repo.finish_task` itself.
    """

    def __init__(self, engine: Engine, run_id: int, router_name: str,
                 owner: repo.ProcessIdentity, heartbeat: _Heartbeat | None = None, *,
                 n_steps: int = 0, cost: float = 0.0,
                 open_tasks: dict[str, int] | None = None) -> None:
        self.session = db.session(engine)
        self.run_id, self.router_name, self.owner, self.heartbeat = run_id, router_name, owner, heartbeat
        self.buffer: list[StepResult] = []
        self.open_tasks: dict[str, int] = dict(open_tasks or {})   # key -> id of an unfinished task
        self.last_commit = time.monotonic()
        self.n_steps, self.cost = n_steps, cost
        self.committed = n_steps

    def add(self, r: StepResult) -> None:
        self.buffer.append(r)
        self.n_steps += 1
        self.cost += r.outcome.cost_usd + sum(o.cost_usd for _, o in r.failed)

    def due(self) -> bool:
        return len(self.buffer) >= COMMIT_EVERY_STEPS or \
            (bool(self.buffer) and time.monotonic() - self.last_commit >= COMMIT_EVERY_S)

    def _flush_buffer(self) -> None:
        s, buf = self.session, self.buffer
        if not buf:
            return
        # tasks first (their ids are the steps' foreign keys)
        groups: dict[str, list[StepResult]] = {}
        for r in buf:
            groups.setdefault(r.task_key, []).append(r)
        new_rows: list[dict[str, Any]] = []
        new_keys: list[tuple[str, bool]] = []
        task_id: dict[str, int] = {}
        spanning: list[tuple[int, float]] = []
        now = repo.now()
        for key, rs in groups.items():
            if key in self.open_tasks:
                task_id[key] = self.open_tasks[key]
                if rs[-1].task_success is not None:
                    spanning.append((self.open_tasks.pop(key), rs[-1].task_success))
                continue
            done = rs[-1].task_success is not None
            row = dict(run_id=self.run_id, task_key=key, split=rs[0].split, phase=rs[0].phase,
                       success=None, n_steps=0, cost_usd=0.0, duration_s=0.0, created_at=now,
                       finished_at=None)
            if done:
                outs = [o for r in rs for o in [*(f for _, f in r.failed), r.outcome]]
                row.update(success=rs[-1].task_success, n_steps=len(outs), finished_at=now,
                           cost_usd=float(sum(o.cost_usd for o in outs)),
                           duration_s=float(sum(o.duration_s for o in outs)))
            new_rows.append(row)
            new_keys.append((key, done))
        done_here = set()
        if new_rows:
            tasks = Task.__table__  # type: ignore[attr-defined]
            ids = s.execute(insert(tasks).returning(tasks.c.id, sort_by_parameter_order=True),
                            new_rows).scalars().all()
            for (key, done), tid in zip(new_keys, ids):
                task_id[key] = int(tid)
                if done:
                    done_here.add(key)
                else:
                    self.open_tasks[key] = int(tid)
        rows = []
        for key, rs in groups.items():
            succ = rs[-1].task_success if key in done_here else None
            for r in rs:
                for d, o in r.failed:
                    rows.append(self._row(r, task_id[key], succ, d, o))
                rows.append(self._row(r, task_id[key], succ, r.decision, r.outcome))
        s.execute(insert(StepRecord.__table__), rows)  # type: ignore[attr-defined]
        for tid, success in spanning:
            repo.finish_task(tid, success, session=s, commit=False)

    def _row(self, r: StepResult, task_id: int, task_success: float | None, decision: Decision,
             o: StepOutcome) -> dict[str, Any]:
        ctx = r.ctx
        return dict(
            run_id=self.run_id, task_id=task_id, task_key=r.task_key, step_index=r.step_index,
            step_no=r.step_no, phase=r.phase, role=ctx.role, model=o.model,
            query_id=ctx.query_id,
            instruction=ctx.instruction, embedding=repo.embedding_to_bytes(ctx.embedding),
            tools=";".join(sorted(r.tools)), cost_usd=o.cost_usd, duration_s=o.duration_s,
            latency_label=o.latency_label, ttft_s=o.ttft_s, step_success=o.step_success,
            task_success=task_success, input_tokens=o.input_tokens,
            output_tokens=o.output_tokens, error=o.error, tool_error=o.tool_error,
            explanation=json.dumps(explanation_dict(decision.explanation),
                                   default=json_default, allow_nan=False),
            propensity=r.propensity, router=self.router_name, created_at=repo.now())

    def commit(self, **run_fields: Any) -> bool:
        """Commit the buffered steps with the run's progress; returns the run's stop flag."""
        s = self.session
        with _signals_deferred():
            try:
                self._flush_buffer()
                row = s.execute(_owned(self.run_id, self.owner).values(
                    n_steps_done=self.n_steps, cost_usd=self.cost, heartbeat_at=repo.now(),
                    **run_fields).returning(Run.__table__.c.stop_requested)).first()  # type: ignore[attr-defined]
                if row is None:
                    raise RunTakenOver(
                        f"run {self.run_id} is no longer this worker's (pid {self.owner.pid}): it "
                        f"was marked interrupted, resumed elsewhere or deleted; stopping without "
                        f"writing")
                s.commit()
            except BaseException:
                s.rollback()
                raise
            # still inside: a signal deferred during the commit is raised only after this
            self.buffer = []
            self.committed = self.n_steps
            self.last_commit = time.monotonic()
            if self.heartbeat is not None:
                self.heartbeat.touch()
        return bool(row[0])

    def close(self) -> None:
        self.session.close()


def _set_run(engine: Engine, run_id: int, **fields: Any) -> None:
    with db.session(engine) as s:
        repo.update_run(run_id, session=s, **fields)


def _finish(engine: Engine, run_id: int, owner: repo.ProcessIdentity, status: str,
            error: str | None) -> None:
    """The run's final status, fenced on ownership; retried twice when the base is locked (a
    run that cannot write must not stay ``running``; if even this fails, readers see its
    process gone once it exits and show it interrupted)."""
    from sqlalchemy.exc import OperationalError

    for attempt in range(3):
        try:
            with db.session(engine) as s:
                s.exec(_owned(run_id, owner).values(status=status, error=error,  # type: ignore[call-overload]
                                                    finished_at=repo.now(),
                                                    heartbeat_at=repo.now()))
                s.commit()
            return
        except OperationalError as exc:
            if attempt == 2:
                print(f"run {run_id}: could not record its end ({status}: {error}): "
                      f"{str(exc).splitlines()[0]}", file=sys.stderr)


def _write_failure(exc: BaseException, run_id: int, n_steps: int) -> str:
    text = str(getattr(exc, "orig", exc) or exc)
    if "locked" in text.lower() or "busy" in text.lower():
        cause = (f"the experience base stayed locked by another writer for more than "
                 f"{db.BUSY_TIMEOUT_MS / 1000:g} s (a long import or another process holding the "
                 f"write lock)")
    else:
        cause = f"the experience base refused the write ({type(exc).__name__}: {text.splitlines()[0]})"
    return (f"interrupted: cannot write to the experience base: {cause}; {n_steps} steps are "
            f"stored — resume with `python -m evoroute runs resume {run_id}`")


def _claim(engine: Engine, run_id: int, resume: bool, claim_from: Sequence[str] | None = None
           ) -> repo.ProcessIdentity:
    """Atomically make this process the run's owner: a pending run (execute) or an
    interrupted / stopped one (resume); anything else raises with what to do."""
    from sqlalchemy import func
    from sqlalchemy.exc import OperationalError

    owner = repo.process_identity()
    allowed = tuple(claim_from or (repo.RESUMABLE_STATUSES if resume else ("pending",)))
    now = repo.now()
    values: dict[str, Any] = dict(status="running", stop_requested=False, error=None,
                                  finished_at=None, heartbeat_at=now, **owner.fields())
    values["started_at"] = func.coalesce(Run.started_at, now) if resume else now
    try:
        with db.session(engine) as s:
            run = repo.get_run(run_id, session=s)     # a dead owner reads as interrupted first
            if run is None:
                raise EvoRouteError(f"no run with id {run_id}")
            claimed = s.exec(update(Run).where(Run.id == run_id)  # type: ignore[call-overload]
                             .where(col(Run.status).in_(allowed)).values(**values)).rowcount
            s.commit()
            if claimed:
                return owner
            run = repo.get_run(run_id, session=s)
    except OperationalError as exc:
        raise EvoRouteError(_write_failure(exc, run_id, 0).replace(
            "interrupted: cannot write", f"cannot start run {run_id}: cannot write", 1)) from None
    status = run.status if run else "gone"
    if status in repo.RESUMABLE_STATUSES and not resume:
        raise EvoRouteError(f"run {run_id} is {status}; resume it with `python -m evoroute runs "
                            f"resume {run_id}`")
    if status in repo.ACTIVE_STATUSES:
        raise EvoRouteError(f"run {run_id} is already {status} (pid {run.pid} on {run.host})")
    what = "resumed (only an interrupted or stopped run can)" if resume else \
        "executed (only a pending run can)"
    raise EvoRouteError(f"run {run_id} is {status}; it cannot be {what}")


@dataclass
class RecordedStep:
    """A stored step of a run being resumed: every attempt's outcome in order (failed calls a
    fallback replaced first) and its task's success when the task finished."""

    attempts: list[StepOutcome]
    task_id: int | None
    task_success: float | None


def _stored_steps(engine: Engine, run_id: int, n_done: int
                  ) -> tuple[dict[int, RecordedStep], dict[int, tuple[str, float | None]]]:
    """The first ``n_done`` steps of a run as stored, and its tasks (id -> key, success)."""
    cols = (StepRecord.step_no, StepRecord.model, StepRecord.step_success, StepRecord.cost_usd,
            StepRecord.duration_s, StepRecord.latency_label, StepRecord.input_tokens,
            StepRecord.output_tokens, StepRecord.ttft_s, StepRecord.error, StepRecord.task_id)
    with db.session(engine) as s:
        rows = s.exec(select(*cols).where(StepRecord.run_id == run_id)
                      .order_by(StepRecord.id)).all()
        tasks = {int(t): (k, succ) for t, k, succ in s.exec(
            select(Task.id, Task.task_key, Task.success).where(Task.run_id == run_id)).all()}
    if rows and all(r[0] is None for r in rows):
        if len(rows) != n_done:
            raise EvoRouteError(f"run {run_id} was written by an older EvoRoute that did not number "
                                f"its steps, with failed attempts among them; it cannot be "
                                f"resumed exactly — delete it and run it again")
        rows = [(i + 1, *r[1:]) for i, r in enumerate(rows)]
    out: dict[int, RecordedStep] = {}
    for no, model, succ, cost, dur, lab, tin, tout, ttft, err, tid in rows:
        if no is None or no > n_done:
            continue
        rec = out.get(no)
        if rec is None:
            rec = out[no] = RecordedStep([], tid, tasks.get(tid, ("", None))[1] if tid else None)
        rec.attempts.append(StepOutcome(model=model, step_success=succ, cost_usd=cost,
                                        duration_s=dur, latency_label=lab, input_tokens=tin,
                                        output_tokens=tout, ttft_s=ttft, error=err))
    missing = [k for k in range(1, n_done + 1) if k not in out]
    if missing:
        raise EvoRouteError(f"run {run_id} records {n_done} steps but step {missing[0]} is not "
                            f"stored; it cannot be resumed exactly")
    return out, tasks


def _drop_open_task(engine: Engine, run_id: int, owner: repo.ProcessIdentity,
                    recorded: dict[int, RecordedStep], tasks: dict[int, tuple[str, float | None]]
                    ) -> int:
    """A live run resumes at a task boundary: the steps of the task that was in progress are
    deleted (its agent transcript — replies and tool results — is not stored, so its next step
    could not be built); returns the number of steps kept. One transaction."""
    open_ids = {tid for tid, (_, succ) in tasks.items() if succ is None}
    first = min((no for no, rec in recorded.items() if rec.task_id in open_ids), default=None)
    if first is None:
        return len(recorded)
    dropped = [recorded.pop(no) for no in sorted(recorded) if no >= first]
    lost_cost = sum(o.cost_usd for rec in dropped for o in rec.attempts)
    from sqlalchemy import delete
    with db.session(engine) as s:
        s.exec(delete(StepRecord).where(StepRecord.run_id == run_id)  # type: ignore[call-overload]
               .where(col(StepRecord.task_id).in_(list(open_ids))))
        s.exec(delete(Task).where(col(Task.id).in_(list(open_ids))))  # type: ignore[call-overload]
        n = s.exec(_owned(run_id, owner).values(n_steps_done=first - 1,  # type: ignore[call-overload]
                                                cost_usd=Run.cost_usd - lost_cost)).rowcount
        if not n:
            s.rollback()
            raise RunTakenOver(f"run {run_id} is no longer this worker's")
        s.commit()
    for tid in open_ids:
        tasks.pop(tid, None)
    return first - 1


def _same_outcome(a: StepOutcome, b: StepOutcome) -> bool:
    def eq(x: float | None, y: float | None) -> bool:
        if x is None or y is None:
            return x is y
        return bool(np.isclose(float(x), float(y), rtol=1e-9, atol=1e-15, equal_nan=True))
    return a.model == b.model and eq(a.step_success, b.step_success) and eq(a.cost_usd, b.cost_usd) \
        and (a.error is None) == (b.error is None)


def _check_replayed(run_id: int, r: StepResult, rec: RecordedStep) -> None:
    got = [o for _, o in r.failed] + [r.outcome]
    if len(got) != len(rec.attempts) or not all(map(_same_outcome, got, rec.attempts)):
        want = rec.attempts[-1]
        raise ResumeDivergence(
            f"cannot resume run {run_id} exactly: step {r.step_no} is stored as {want.model} "
            f"(outcome {want.step_success}, ${want.cost_usd:.6f}) but replays as "
            f"{r.outcome.model} (outcome {r.outcome.step_success}, ${r.outcome.cost_usd:.6f}); "
            f"the data, the registered models or their prices changed since it started — delete "
            f"it and run it again")


def execute_run(run_id: int, *, engine: Engine | None = None, embedder: Any = None,
                resume: bool = False, claim_from: Sequence[str] | None = None
                ) -> Iterator[dict[str, Any]]:
    """Execute a pending run (or, ``resume``, continue an interrupted / stopped one), writing
    each step as it happens; yields one dict per step written.

    Status goes pending -> running -> finished | stopped | failed | interrupted. A run stops
    cleanly on a stop request (read at every commit) or when the next step's expected cost
    would exceed its budget; SIGINT / SIGTERM (under :func:`handle_signals`) and a write the
    base refuses (lock timeout) end it ``interrupted``. The reason is stored in ``Run.error``.
    User errors are stored and re-raised (typed), so the CLI and the studio show the message.

    Resuming replays the run from its seed: the generator re-decides every stored step with
    the same random streams and feeds the router the same outcomes — recomputed (and checked
    against the stored ones) on replay / simulated backends, the stored ones on live (no model
    is called again) — so the router's learning state and the random streams at the first new
    step are exactly those of an uninterrupted run; nothing is written until then.
    """
    engine = engine or db.get_engine()
    owner = _claim(engine, run_id, resume, claim_from)
    heartbeat = _Heartbeat(engine, run_id, owner)
    writer: _Writer | None = None
    status: str | None = "failed"
    error: str | None = None
    done = 0
    try:
        with db.session(engine) as s:
            run = repo.get_run(run_id, session=s, reconcile=False)
        cfg_in = json.loads(run.config_json or "{}")
        spec = RunSpec.from_dict(cfg_in)
        plan = prepare_run(spec, engine=engine, embedder=embedder)
        from evoroute.backends.base import TableBackend
        recomputes = isinstance(plan.backend, TableBackend)
        done, recorded, tasks = run.n_steps_done if resume else 0, {}, {}
        if done:
            recorded, tasks = _stored_steps(engine, run_id, done)
            if not recomputes:
                done = _drop_open_task(engine, run_id, owner, recorded, tasks)
        cfg = {**spec.to_dict(), "resolved": plan.details}
        if resume:
            cfg["resolved"] = {**plan.details, **{k: v for k, v in cfg_in.get("resolved", {}).items()
                                                  if k in ("prepare_s", "embedding_s")},
                               "resumed_at_steps": [*cfg_in.get("resolved", {}).get(
                                   "resumed_at_steps", []), done]}
        _set_run(engine, run_id, config_json=json.dumps(cfg, sort_keys=True, default=str),
                 label=labels.run_label(spec.backend, plan.backend.latency_label), n_tasks_total=plan.n_tasks_total)
        loop = RunLoop(plan, spec.budget_usd, recorded=None if recomputes else recorded)
        open_tasks = {key: tid for tid, (key, succ) in tasks.items() if succ is None}
        with db.session(engine) as s:
            cost0 = float(repo.get_run(run_id, session=s, reconcile=False).cost_usd) if done else 0.0
        writer = _Writer(engine, run_id, plan.router.name, owner, heartbeat, n_steps=done,
                         cost=cost0, open_tasks=open_tasks)
        n_total = plan.n_steps_total
        q_sum, cost_sum, phase_stats = 0.0, 0.0, {p: [0.0, 0] for p in PHASES}
        stopped_by_request = False
        last_no = 0
        for r in loop.steps():
            last_no = r.step_no
            o = r.outcome
            score = 0.0 if o.step_success is None else float(o.step_success)
            q_sum += score
            cost_sum += o.cost_usd + sum(f.cost_usd for _, f in r.failed)
            ps = phase_stats.setdefault(r.phase, [0.0, 0])
            ps[0] += score
            ps[1] += 1
            if r.step_no <= done:                      # replaying a stored step: no write
                if recomputes:
                    _check_replayed(run_id, r, recorded[r.step_no])
                continue
            writer.add(r)
            if writer.due():
                stopped_by_request = writer.commit()
            yield _step_dict(run_id, r, n_total, q_sum / r.step_no, cost_sum, ps[0] / ps[1],
                             plan.backend.label)
            if stopped_by_request:
                break
        if last_no < done and not loop.stop_reason:
            raise ResumeDivergence(f"cannot resume run {run_id} exactly: it stores {done} steps "
                                   f"but its tasks now give only {last_no}; the data changed")
        if writer.buffer:
            stopped_by_request = writer.commit() or stopped_by_request
        if stopped_by_request:
            status, error = "stopped", f"stopped on request after {writer.n_steps} steps"
        elif loop.stop_reason:
            status, error = "stopped", loop.stop_reason
        else:
            status = "finished"
    except GeneratorExit:
        if _SIG.received:
            status, error = "interrupted", _interrupt_reason(_SIG.received, run_id, writer, done)
        else:
            status, error = "stopped", "the consumer stopped reading the run"
        raise
    except RunTakenOver:
        status = None                    # not ours any more: write nothing
        raise
    except ResumeDivergence as exc:
        status, error = "interrupted", str(exc)
        raise
    except EvoRouteError as exc:
        status, error = "failed", str(exc)
        raise
    except KeyboardInterrupt as exc:
        status = "interrupted"
        error = _interrupt_reason(getattr(exc, "signame", "SIGINT"), run_id, writer, done)
        raise
    except Exception as exc:   # noqa: BLE001
        from sqlalchemy.exc import OperationalError
        if isinstance(exc, OperationalError):   # e.g. a lock timeout: resumable, not a bug
            status = "interrupted"
            error = _write_failure(exc, run_id, writer.committed if writer else done)
            raise EvoRouteError(error) from None
        # a bug: record it so the run does not stay "running" forever
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        heartbeat.stop()
        if writer is not None:
            writer.close()
        if status is not None:
            _finish(engine, run_id, owner, status, error)


def _interrupt_reason(signame: str, run_id: int, writer: _Writer | None, done: int) -> str:
    how = "Ctrl-C (SIGINT)" if signame == "SIGINT" else signame
    n = writer.committed if writer is not None else done
    return (f"interrupted by {how} after {n} steps (all stored); resume with "
            f"`python -m evoroute runs resume {run_id}`")


def explanation_dict(e: Explanation) -> dict[str, Any]:
    """``asdict(explanation)`` without its deep copies (10x faster; called once per step)."""
    d = dict(e.__dict__)
    d["weights"] = None if e.weights is None else list(e.weights)
    d["predicted_tools"] = list(e.predicted_tools)
    d["channels"] = dict(e.channels)
    d["candidates"] = [dict(c.__dict__) for c in e.candidates]
    return d


def _step_dict(run_id: int, r: StepResult, n_total: int, cum_q: float, cum_cost: float,
               phase_q: float, label: str) -> dict[str, Any]:
    o = r.outcome
    return {
        "run_id": run_id, "step_no": r.step_no, "n_steps_total": n_total,
        "task_key": r.task_key, "step_index": r.step_index, "split": r.split, "phase": r.phase,
        "role": r.ctx.role, "instruction": r.ctx.instruction, "query_id": r.ctx.query_id,
        "tools": sorted(r.tools), "model": o.model, "attempts": r.attempts,
        "failed_calls": [{"model": f.model, "error": f.error, "latency_s": f.duration_s}
                         for _, f in r.failed],
        "propensity": r.propensity, "score": o.step_success, "cost_usd": o.cost_usd,
        "latency_s": o.duration_s, "latency_label": o.latency_label, "ttft_s": o.ttft_s,
        "input_tokens": o.input_tokens, "output_tokens": o.output_tokens, "error": o.error,
        "task_success": r.task_success, "oracle_score": r.oracle_score,
        "cum_quality": cum_q, "phase_quality": phase_q, "cum_cost_usd": cum_cost,
        "label": label, "explanation": explanation_dict(r.decision.explanation),
    }


# ------------------------------------------------------------------------------ background
def worker_command(run_id: int, resume: bool = False) -> list[str]:
    return [sys.executable, "-m", "evoroute", "worker", str(int(run_id)),
            *(["--resume"] if resume else [])]


def _log_path(url: str, run_id: int) -> Path:
    from sqlalchemy.engine import make_url
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:"):
        base = Path(u.database).resolve().parent
    else:
        base = config.settings().cache_dir.parent
    return base / "logs" / f"run-{run_id}.log"


def _file_url(url: str | None) -> str:
    url = url or config.db_url()
    from sqlalchemy.engine import make_url
    if make_url(url).get_backend_name() == "sqlite" and make_url(url).database in (None, "", ":memory:"):
        raise ValidationError("a background run needs a database file or server, not an "
                              "in-memory SQLite base", "engine_url")
    return url


def _spawn_worker(url: str, run_id: int, resume: bool) -> subprocess.Popen:
    log = _log_path(url, run_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "EVOROUTE_DB_URL": url}
    root = str(config.PROJECT_ROOT)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(log, "ab") as fh:
        return subprocess.Popen(worker_command(run_id, resume), cwd=root, env=env,
                                stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)


def _hand_over(engine: Engine, run_id: int, proc: subprocess.Popen) -> None:
    """Record the spawned worker as the pending run's owner (while it is still pending and
    ours), so a worker that dies before it claims the run shows the run interrupted."""
    try:
        child = repo.process_identity(proc.pid)
    except Exception:   # noqa: BLE001 - it already exited: the spawner stays the owner
        return
    me = repo.process_identity()
    with db.session(engine) as s:
        s.exec(update(Run).where(Run.id == run_id).where(Run.status == "pending")  # type: ignore[call-overload]
               .where(Run.pid == me.pid).where(Run.host == me.host).values(**child.fields()))
        s.commit()


def start_background(spec: RunSpec, *, engine_url: str | None = None) -> int:
    """Create the run and execute it in a detached ``python -m evoroute worker <run_id>``
    process (its own session, so it outlives the caller); returns the run id at once."""
    url = _file_url(engine_url)
    engine = db.get_engine(url)
    run_id = create_run(spec, engine=engine)
    _hand_over(engine, run_id, _spawn_worker(url, run_id, resume=False))
    return run_id


def resume_background(run_id: int, *, engine_url: str | None = None) -> int:
    """Resume an interrupted or stopped run in a detached worker; returns its id at once.

    The run goes back to ``pending`` (owned by the new worker) at once, so the studio follows
    it; the worker claims it from there and continues from its last stored step."""
    url = _file_url(engine_url)
    engine = db.get_engine(url)
    with db.session(engine) as s:
        run = repo.get_run(run_id, session=s)
        if run is None:
            raise EvoRouteError(f"no run with id {run_id}")
        n = s.exec(update(Run).where(Run.id == run_id)  # type: ignore[call-overload]
                   .where(col(Run.status).in_(repo.RESUMABLE_STATUSES))
                   .values(status="pending", stop_requested=False, finished_at=None,
                           heartbeat_at=repo.now(), error="waiting for a worker to resume it",
                           **repo.process_identity().fields())).rowcount
        s.commit()
    if not n:
        raise EvoRouteError(f"run {run_id} is {run.status}; only an interrupted or stopped run "
                            f"can be resumed")
    _hand_over(engine, run_id, _spawn_worker(url, run_id, resume=True))
    return run_id


def worker_main(run_id: int, engine_url: str | None = None, resume: bool = False) -> int:
    """Body of ``python -m evoroute worker <run_id> [--resume]``: run it to the end. A pending
    run is executed, an interrupted one resumed (``resume``: one handed over by
    :func:`resume_background`). Exit
    status 0 when it finished or stopped cleanly, 1 when it failed or could not run (the
    reason is in ``Run.error``), 128 + the signal on SIGINT / SIGTERM."""
    engine = db.get_engine(engine_url)
    n = 0
    with handle_signals():
        with db.session(engine) as s:
            run = repo.get_run(run_id, session=s)
        if run is None:
            print(f"run {run_id}: no such run", file=sys.stderr)
            return 1
        # --resume: a run resume_background handed over (pending again); without it, a
        # pending run is executed and an interrupted one resumed (a stopped one is left stopped)
        gen = execute_run(run_id, engine=engine, resume=resume or run.status == "interrupted",
                          claim_from=("pending",) if resume else None)
        try:
            for _ in gen:
                n += 1
        except EvoRouteError as exc:
            print(f"run {run_id} failed: {exc}", file=sys.stderr)
            return 1
        except Interrupted as exc:
            print(f"run {run_id}: interrupted by {exc.signame} after {n} new steps",
                  file=sys.stderr)
            return 128 + exc.signum
        finally:
            gen.close()
    with db.session(engine) as s:
        run = repo.get_run(run_id, session=s)
    print(f"run {run_id}: {run.status if run else '?'} after {n} steps"
          + (f" — {run.error}" if run and run.error else ""), file=sys.stderr)
    return 0 if run is not None and run.status in ("finished", "stopped") else 1


__all__ = ["RunSpec", "RunPlan", "RunLoop", "StepResult", "create_run", "execute_run", "run_spec",
           "start_background", "resume_background", "stop_run", "delete_run", "worker_main",
           "handle_signals", "Interrupted", "prepare_run", "build_router", "PROTOCOLS"]
