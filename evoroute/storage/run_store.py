"""The SQL of executing a run (evoroute.runs) and of sampling its steps again (the
counterfactual): plain functions taking an engine or a session.

Every write of a running run is fenced on ownership (:func:`owned`): it only touches the run
row while the row is still this process's, so a worker whose run was marked interrupted,
resumed elsewhere or deleted writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from evoroute.storage import db, repo
from evoroute.storage.tables import OUTCOME_COLUMNS, Run, StepRecord, Task

_RUN = Run.__table__  # type: ignore[attr-defined]


# ---------------------------------------------------------------- ownership
def owned(run_id: int, owner: repo.ProcessIdentity):
    """UPDATE of the run row, only while it is still this process's (Core: no ORM overhead in
    the per-step commit)."""
    c = _RUN.c
    return (update(_RUN).where(c.id == run_id).where(c.status == "running")
            .where(c.pid == owner.pid).where(c.proc_started == owner.proc_started)
            .where(c.host == owner.host))


def claim_run(engine: Engine, run_id: int, owner: repo.ProcessIdentity,
              allowed: Sequence[str], resume: bool) -> tuple[bool, Run | None]:
    """Atomically make ``owner`` the run's owner if its status is one of ``allowed``; returns
    whether it did and the run as it is now (a dead owner reads as interrupted first)."""
    now = repo.now()
    values: dict[str, Any] = dict(status="running", stop_requested=False, error=None,
                                  finished_at=None, heartbeat_at=now, **owner.fields())
    values["started_at"] = func.coalesce(Run.started_at, now) if resume else now
    with db.session(engine) as s:
        run = repo.get_run(run_id, session=s)
        if run is None:
            return False, None
        claimed = s.exec(update(Run).where(Run.id == run_id)  # type: ignore[call-overload]
                         .where(col(Run.status).in_(list(allowed))).values(**values)).rowcount
        s.commit()
        return bool(claimed), (run if claimed else repo.get_run(run_id, session=s))


def beat(engine: Engine, run_id: int, owner: repo.ProcessIdentity) -> None:
    """Refresh the run's heartbeat (while it is the owner's)."""
    with db.session(engine) as s:
        s.exec(owned(run_id, owner).values(heartbeat_at=repo.now()))  # type: ignore[call-overload]
        s.commit()


def set_run(engine: Engine, run_id: int, **fields: Any) -> None:
    with db.session(engine) as s:
        repo.update_run(run_id, session=s, **fields)


def run_cost(engine: Engine, run_id: int) -> float:
    with db.session(engine) as s:
        return float(s.exec(select(Run.cost_usd).where(Run.id == run_id)).one())


def set_stage(engine: Engine, run_id: int, owner: repo.ProcessIdentity, stage: str,
              progress: float | None, detail: str | None) -> bool | None:
    """Commit what the run is doing now (with its heartbeat), fenced on ownership; returns the
    run's stop flag, or None when the run is no longer ``owner``'s."""
    with db.session(engine) as s:
        row = s.execute(owned(run_id, owner).values(
            stage=stage, stage_progress=progress, stage_detail=detail,
            heartbeat_at=repo.now()).returning(_RUN.c.stop_requested)).first()
        s.commit()
    return None if row is None else bool(row.stop_requested)


def finish_run(engine: Engine, run_id: int, owner: repo.ProcessIdentity, status: str,
               error: str | None, **fields: Any) -> None:
    """The run's final status (and ``fields``, e.g. its last stage), fenced on ownership."""
    with db.session(engine) as s:
        now = repo.now()
        s.exec(owned(run_id, owner).values(status=status, error=error,  # type: ignore[call-overload]
                                           finished_at=now, heartbeat_at=now, **fields))
        s.commit()


def stop_pending(session: Session, run_id: int) -> bool:
    """Stop a run that has not started; False when it is no longer pending."""
    n = session.exec(update(Run).where(Run.id == run_id).where(Run.status == "pending")  # type: ignore[call-overload]
                     .values(status="stopped", stop_requested=True, finished_at=repo.now(),
                             error="stopped on request before it started")).rowcount
    session.commit()
    return bool(n)


def reopen_for_resume(session: Session, run_id: int, owner: repo.ProcessIdentity) -> bool:
    """An interrupted or stopped run back to ``pending``, owned by ``owner`` until a worker
    claims it; False when the run is not resumable."""
    n = session.exec(update(Run).where(Run.id == run_id)  # type: ignore[call-overload]
                     .where(col(Run.status).in_(repo.RESUMABLE_STATUSES))
                     .values(status="pending", stop_requested=False, finished_at=None,
                             heartbeat_at=repo.now(), error="waiting for a worker to resume it",
                             **owner.fields())).rowcount
    session.commit()
    return bool(n)


def hand_over(engine: Engine, run_id: int, me: repo.ProcessIdentity,
              child: repo.ProcessIdentity) -> None:
    """Record ``child`` as the owner of a pending run ``me`` owns."""
    with db.session(engine) as s:
        s.exec(update(Run).where(Run.id == run_id).where(Run.status == "pending")  # type: ignore[call-overload]
               .where(Run.pid == me.pid).where(Run.host == me.host).values(**child.fields()))
        s.commit()


# ---------------------------------------------------------------- the per-step commit
def insert_tasks(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert task rows; their ids in the order of ``rows``."""
    tasks = Task.__table__  # type: ignore[attr-defined]
    ids = session.execute(insert(tasks).returning(tasks.c.id, sort_by_parameter_order=True),
                          rows).scalars().all()
    return [int(i) for i in ids]


def insert_steps(session: Session, rows: list[dict[str, Any]]) -> None:
    session.execute(insert(StepRecord.__table__), rows)  # type: ignore[attr-defined]


def record_progress(session: Session, run_id: int, owner: repo.ProcessIdentity,
                    **values: Any) -> bool | None:
    """The run's progress (fenced, not committed); returns its stop flag, or None when the run
    is no longer ``owner``'s."""
    row = session.execute(owned(run_id, owner).values(heartbeat_at=repo.now(), **values)
                          .returning(_RUN.c.stop_requested)).first()
    return None if row is None else bool(row.stop_requested)


# ---------------------------------------------------------------- resuming
#: what a resumed run reads back of each stored step: its outcome, its number and task
STORED_STEP_COLUMNS = ("step_no", "task_id", *OUTCOME_COLUMNS)


def stored_steps(engine: Engine, run_id: int
                 ) -> tuple[list[dict[str, Any]], dict[int, tuple[str, float | None]]]:
    """A run's stored steps in insertion order (the outcome columns of
    :data:`STORED_STEP_COLUMNS`) and its tasks (id -> key, success)."""
    cols = [getattr(StepRecord, name) for name in STORED_STEP_COLUMNS]
    with db.session(engine) as s:
        rows = [dict(r._mapping) for r in s.exec(
            select(*cols).where(StepRecord.run_id == run_id).order_by(StepRecord.id)).all()]
        tasks = {int(t.id): (t.task_key, t.success) for t in s.exec(
            select(Task.id, Task.task_key, Task.success).where(Task.run_id == run_id)).all()}
    return rows, tasks


def drop_tasks(engine: Engine, run_id: int, owner: repo.ProcessIdentity, task_ids: Sequence[int],
               n_steps_done: int, lost_cost: float) -> bool:
    """Delete the given tasks of a run and their steps, and set its progress back, in one
    transaction; False (nothing done) when the run is no longer ``owner``'s."""
    ids = list(task_ids)
    with db.session(engine) as s:
        s.exec(delete(StepRecord).where(StepRecord.run_id == run_id)  # type: ignore[call-overload]
               .where(col(StepRecord.task_id).in_(ids)))
        s.exec(delete(Task).where(col(Task.id).in_(ids)))  # type: ignore[call-overload]
        n = s.exec(owned(run_id, owner).values(n_steps_done=n_steps_done,  # type: ignore[call-overload]
                                               cost_usd=Run.cost_usd - lost_cost)).rowcount
        if not n:
            s.rollback()
            return False
        s.commit()
    return True


# ---------------------------------------------------------------- counterfactual sampling
def step_ids(session: Session, flt: repo.StepFilter | None) -> np.ndarray:
    """Sorted ids of the steps in ``flt`` without an error."""
    stmt = sa_select(StepRecord.id).where(StepRecord.error.is_(None))
    if flt:
        stmt = flt.apply(stmt)
    # no ORDER BY: SQLite can then read the ids from a narrow covering index; sorted here
    return np.sort(np.fromiter((r.id for r in session.exec(stmt)), dtype=np.int64))


def sampled_rows(session: Session, ids: Sequence[int]) -> list[Any]:
    """The rows the counterfactual re-decides (``quality``: task success, else step success),
    by id."""
    quality = func.coalesce(StepRecord.task_success, StepRecord.step_success).label("quality")
    return list(session.exec(select(StepRecord.id, StepRecord.role, StepRecord.instruction,
                                    StepRecord.embedding, StepRecord.tools, StepRecord.model,
                                    quality, StepRecord.cost_usd, StepRecord.duration_s)
                             .where(col(StepRecord.id).in_(list(ids)))
                             .order_by(StepRecord.id)).all())
