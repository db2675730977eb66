"""Read queries of the studio pages: aggregates and narrow column sets, one function each.

Aggregates run in SQL over the covering index (:mod:`evoroute.storage.indexes`) rather than
the step table and its embeddings. Rows come back with named columns (attributes of a
``Row``, or the columns of a DataFrame), never read by position.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import String, distinct, func, select
from sqlalchemy.engine import Row
from sqlmodel import Session, col

from evoroute.storage.repo import StepFilter, count_steps
from evoroute.storage.tables import ModelEntry, Run, StepRecord, Task

#: A step's performance signal: task success P(τ) where known, else step success σ.
PERF = func.coalesce(StepRecord.task_success, StepRecord.step_success)


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _frame(session: Session, stmt) -> pd.DataFrame:
    """The rows of ``stmt`` as a DataFrame whose columns are the statement's labels."""
    result = session.execute(stmt)
    return pd.DataFrame([tuple(r) for r in result.all()], columns=list(result.keys()))


# ----------------------------------------------------------------------------- counts
def count_records(*, session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(StepRecord)).scalar_one())


def count_models(*, session: Session, enabled_only: bool = False) -> int:
    stmt = select(func.count()).select_from(ModelEntry)
    if enabled_only:
        stmt = stmt.where(ModelEntry.enabled == True)  # noqa: E712
    return int(session.execute(stmt).scalar_one())


def count_runs(*, session: Session, statuses: Sequence[str] | None = None) -> int:
    stmt = select(func.count()).select_from(Run)
    if statuses is not None:
        stmt = stmt.where(col(Run.status).in_(list(statuses)))
    return int(session.execute(stmt).scalar_one())


def counts_by_role(*, session: Session) -> list[Row]:
    """Per role (sorted): ``role``, ``records``, ``tasks`` (distinct run and task key)."""
    # "role || ''" lets SQLite answer from the covering index (a GROUP BY on the bare column
    # would walk the role index and read every row for its task key)
    role = (StepRecord.role + "").label("role")
    task = func.cast(StepRecord.run_id, String) + ":" + StepRecord.task_key
    return list(session.execute(select(role, func.count().label("records"),
                                       func.count(distinct(task)).label("tasks"))
                                .group_by(role).order_by(role)).all())


def run_task_stats(run_ids: Sequence[int], *, session: Session) -> dict[int, dict[str, float | None]]:
    """Per run: finished tasks, mean task success, mean task latency, task cost (one GROUP BY)."""
    if not run_ids:
        return {}
    rows = session.execute(
        select(Task.run_id, func.count(Task.success).label("n"),
               func.avg(Task.success).label("quality"), func.avg(Task.duration_s).label("latency"),
               func.sum(Task.cost_usd).label("cost"))
        .where(col(Task.run_id).in_(list(run_ids)))
        .where(Task.success.is_not(None)).group_by(Task.run_id)).all()
    return {int(r.run_id): {"tasks_done": int(r.n), "quality": _finite(r.quality),
                            "latency_s": _finite(r.latency), "task_cost_usd": _finite(r.cost)}
            for r in rows}


# ----------------------------------------------------------------------------- runs and steps
def runs_by_ids(run_ids: Sequence[int], *, session: Session) -> list[Run]:
    """The runs of ``run_ids`` that exist, in the order given."""
    ids = [int(i) for i in run_ids]
    found = {r.id: r for r in session.execute(select(Run).where(col(Run.id).in_(ids))).scalars()}
    return [found[i] for i in ids if i in found]


def run_ids_of_dataset(dataset: str, *, session: Session) -> list[int]:
    return list(session.execute(select(Run.id).where(Run.dataset == dataset)).scalars())


def distinct_step_values(column: str, *, session: Session) -> list[str]:
    """The distinct values of a step column (``role``, ``model``), sorted."""
    c = StepRecord.__table__.c[column]
    return list(session.execute(select(c).distinct().order_by(c)).scalars())


def get_step(step_id: int, *, session: Session) -> StepRecord | None:
    return session.get(StepRecord, step_id)


# ----------------------------------------------------------------------------- live feed
def steps_after(run_id: int, after_id: int, *, session: Session) -> list[Row]:
    """The light columns (``id``, ``model``, ``cost_usd``, ``duration_s``, ``latency_label``)
    of a run's steps with an id above ``after_id``, by id: one indexed range scan."""
    return list(session.execute(
        select(StepRecord.id, StepRecord.model, StepRecord.cost_usd, StepRecord.duration_s,
               StepRecord.latency_label)
        .where(StepRecord.run_id == run_id).where(col(StepRecord.id) > after_id)
        .order_by(StepRecord.id)).all())


def feed_steps(step_ids: Sequence[int], *, session: Session, instruction_chars: int = 160) -> list[Row]:
    """What a line of the decision feed shows, for ``step_ids`` (by id)."""
    return list(session.execute(
        select(StepRecord.id, StepRecord.task_key, StepRecord.role, StepRecord.phase,
               func.substr(StepRecord.instruction, 1, instruction_chars).label("instruction"),
               StepRecord.model, StepRecord.step_success, StepRecord.cost_usd,
               StepRecord.duration_s, StepRecord.latency_label, StepRecord.explanation,
               StepRecord.error)
        .where(col(StepRecord.id).in_(list(step_ids))).order_by(StepRecord.id)).all())


def tasks_after(run_id: int, after_id: int, *, session: Session) -> list[Row]:
    """``id`` and ``success`` (None while unfinished) of a run's tasks above ``after_id``."""
    return list(session.execute(select(Task.id, Task.success).where(Task.run_id == run_id)
                                .where(col(Task.id) > after_id).order_by(Task.id)).all())


def step_created_at(run_id: int, *, session: Session) -> dict[int, datetime]:
    """When each step of a run was built (before its commit), by step id."""
    return {int(r.id): r.created_at for r in session.execute(
        select(StepRecord.id, StepRecord.created_at).where(StepRecord.run_id == run_id)).all()}


# ----------------------------------------------------------------------------- Pareto scope
def model_run_sums(*, session: Session, role: str | None = None,
                   run_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Per (run, model) over the steps without error: ``n``, ``p_sum`` / ``p_n`` (sum and
    count of the performance signal), ``c_sum`` (cost), ``d_sum`` (latency). One GROUP BY
    over the covering index, filtered by role or by runs."""
    stmt = select(StepRecord.run_id.label("run"), StepRecord.model, func.count().label("n"),
                  func.sum(PERF).label("p_sum"), func.count(PERF).label("p_n"),
                  func.sum(StepRecord.cost_usd).label("c_sum"),
                  func.sum(StepRecord.duration_s).label("d_sum")).where(StepRecord.error.is_(None))
    if role is not None:
        stmt = stmt.where((StepRecord.role + "") == role)
    if run_ids is not None:
        stmt = stmt.where(col(StepRecord.run_id).in_(list(run_ids)))
    return _frame(session, stmt.group_by(StepRecord.run_id, StepRecord.model))


# ----------------------------------------------------------------------------- experience log
#: The columns of one page of the experience log, in table order.
STEP_PAGE_COLUMNS = ("id", "run_id", "task_key", "step_index", "phase", "role", "model",
                     "instruction", "tools", "step_success", "task_success", "cost_usd",
                     "duration_s", "latency_label", "error")


def step_page(flt: StepFilter, *, session: Session, page: int, page_size: int,
              instruction_chars: int = 200) -> tuple[pd.DataFrame, int]:
    """One page (newest first) of the filtered step records, and the filtered total."""
    total = count_steps(flt, session=session)
    cols = [StepRecord.__table__.c[c] for c in STEP_PAGE_COLUMNS]
    cols[STEP_PAGE_COLUMNS.index("instruction")] = \
        func.substr(StepRecord.instruction, 1, instruction_chars).label("instruction")
    stmt = flt.apply(select(*cols)).order_by(col(StepRecord.id).desc()) \
        .offset((page - 1) * page_size).limit(page_size)
    return _frame(session, stmt), total


# ----------------------------------------------------------------------------- compare
def finished_tasks(run_id: int, *, session: Session) -> pd.DataFrame:
    """A run's finished tasks by id: ``id``, ``split``, ``phase``, ``success``, ``cost``,
    ``duration``."""
    return _frame(session, select(Task.id, Task.split, Task.phase, Task.success,
                                  Task.cost_usd.label("cost"), Task.duration_s.label("duration"))
                  .where(Task.run_id == run_id).where(Task.success.is_not(None))
                  .order_by(Task.id))


def step_outcomes(run_id: int, *, session: Session) -> pd.DataFrame:
    """A run's steps by id: ``task_id``, ``cost_usd``, ``step_success``, ``query_id``."""
    return _frame(session, select(StepRecord.task_id, StepRecord.cost_usd,
                                  StepRecord.step_success, StepRecord.query_id)
                  .where(StepRecord.run_id == run_id).order_by(StepRecord.id))
