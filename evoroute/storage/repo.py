"""Repository functions over the experience base: plain functions taking ``session``.

Every write commits in one transaction, so a failed call leaves nothing half-written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
from sqlalchemy import func, or_, update
from sqlmodel import Session, col, select

from evoroute.errors import EvoRouteError
from evoroute.storage.tables import ModelEntry, Run, StepRecord, Task

EMBED_DTYPE = np.float32


def now() -> datetime:
    return datetime.now(timezone.utc)


# ---------------------------------------------------------------- embeddings as bytes
def embedding_to_bytes(vec: np.ndarray | None) -> bytes | None:
    return None if vec is None else np.asarray(vec, dtype=EMBED_DTYPE).tobytes()


def embedding_from_bytes(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, dtype=EMBED_DTYPE)


# ---------------------------------------------------------------- models
def list_models(*, session: Session, enabled_only: bool = False) -> list[ModelEntry]:
    stmt = select(ModelEntry).order_by(ModelEntry.name)
    if enabled_only:
        stmt = stmt.where(ModelEntry.enabled == True)  # noqa: E712
    return list(session.exec(stmt))


def get_model(name: str, *, session: Session) -> ModelEntry | None:
    return session.exec(select(ModelEntry).where(ModelEntry.name == name)).first()


# ---------------------------------------------------------------- runs
def create_run(*, session: Session, config: dict[str, Any], **fields: Any) -> Run:
    run = Run(config_json=json.dumps(config, sort_keys=True, default=str), **fields)
    session.add(run)
    session.commit()
    session.refresh(run)
    return run


def get_run(run_id: int, *, session: Session) -> Run | None:
    return session.get(Run, run_id)


def list_runs(*, session: Session, limit: int = 100, status: str | None = None) -> list[Run]:
    stmt = select(Run).order_by(col(Run.id).desc()).limit(limit)
    if status:
        stmt = stmt.where(Run.status == status)
    return list(session.exec(stmt))


def update_run(run_id: int, *, session: Session, **fields: Any) -> None:
    session.exec(update(Run).where(Run.id == run_id).values(**fields))  # type: ignore[call-overload]
    session.commit()


def request_stop(run_id: int, *, session: Session) -> None:
    update_run(run_id, session=session, stop_requested=True)


def stop_requested(run_id: int, *, session: Session) -> bool:
    return bool(session.exec(select(Run.stop_requested).where(Run.id == run_id)).first())


# ---------------------------------------------------------------- tasks
def create_task(*, session: Session, run_id: int, task_key: str, split: str = "",
                phase: str = "", commit: bool = True) -> Task:
    task = Task(run_id=run_id, task_key=task_key, split=split, phase=phase)
    session.add(task)
    if commit:
        session.commit()
        session.refresh(task)
    else:
        session.flush()
    return task


def finish_task(task_id: int, success: float, *, session: Session, commit: bool = True) -> None:
    """Record the task's success and fill P(τ) into all of its steps (spec §3 step 11)."""
    agg = session.exec(select(func.count(), func.coalesce(func.sum(StepRecord.cost_usd), 0.0),
                              func.coalesce(func.sum(StepRecord.duration_s), 0.0))
                       .where(StepRecord.task_id == task_id)).one()
    session.exec(update(Task).where(Task.id == task_id).values(  # type: ignore[call-overload]
        success=success, n_steps=agg[0], cost_usd=agg[1], duration_s=agg[2], finished_at=now()))
    session.exec(update(StepRecord).where(StepRecord.task_id == task_id)  # type: ignore[call-overload]
                 .values(task_success=success))
    if commit:
        session.commit()


# ---------------------------------------------------------------- steps
def add_steps(records: Iterable[StepRecord], *, session: Session, commit: bool = True) -> list[StepRecord]:
    recs = list(records)
    session.add_all(recs)
    if commit:
        session.commit()
    else:
        session.flush()
    return recs


@dataclass
class StepFilter:
    """Filters of the experience table; every one is applied in SQL."""

    run_ids: Sequence[int] | None = None
    roles: Sequence[str] | None = None
    models: Sequence[str] | None = None
    success: str | None = None          # "success" | "failure" | "unknown" | None
    text: str | None = None
    phase: str | None = None
    since_id: int = 0

    def apply(self, stmt):
        if self.run_ids:
            stmt = stmt.where(col(StepRecord.run_id).in_(list(self.run_ids)))
        if self.roles:
            stmt = stmt.where(col(StepRecord.role).in_(list(self.roles)))
        if self.models:
            stmt = stmt.where(col(StepRecord.model).in_(list(self.models)))
        if self.phase:
            stmt = stmt.where(StepRecord.phase == self.phase)
        if self.since_id:
            stmt = stmt.where(col(StepRecord.id) > self.since_id)
        perf = func.coalesce(StepRecord.task_success, StepRecord.step_success)
        if self.success == "success":
            stmt = stmt.where(perf >= 0.5)
        elif self.success == "failure":
            stmt = stmt.where(perf < 0.5)
        elif self.success == "unknown":
            stmt = stmt.where(perf.is_(None))
        if self.text:
            like = f"%{self.text}%"
            stmt = stmt.where(or_(col(StepRecord.instruction).like(like),
                                  col(StepRecord.model).like(like),
                                  col(StepRecord.error).like(like)))
        return stmt


def count_steps(flt: StepFilter | None = None, *, session: Session) -> int:
    stmt = select(func.count()).select_from(StepRecord)
    if flt:
        stmt = flt.apply(stmt)
    return int(session.exec(stmt).one())


def query_steps(flt: StepFilter | None = None, *, session: Session, limit: int = 100,
                offset: int = 0, newest_first: bool = True) -> list[StepRecord]:
    stmt = select(StepRecord)
    if flt:
        stmt = flt.apply(stmt)
    order = col(StepRecord.id).desc() if newest_first else col(StepRecord.id)
    return list(session.exec(stmt.order_by(order).offset(offset).limit(limit)))


EXPERIENCE_COLUMNS = ("id", "run_id", "task_key", "role", "model", "instruction", "embedding",
                      "tools", "cost_usd", "duration_s", "step_success", "task_success", "task_id")


def load_experience(*, session: Session, run_ids: Sequence[int] | None = None,
                    since_id: int = 0, batch: int = 50_000) -> Iterable[list[tuple]]:
    """Stream the experience rows the index needs, oldest first, in batches (no ORM objects)."""
    cols = [getattr(StepRecord, c) for c in EXPERIENCE_COLUMNS]
    last = since_id
    while True:
        stmt = select(*cols).where(col(StepRecord.id) > last).where(StepRecord.error.is_(None))
        if run_ids:
            stmt = stmt.where(col(StepRecord.run_id).in_(list(run_ids)))
        rows = list(session.exec(stmt.order_by(StepRecord.id).limit(batch)))
        if not rows:
            return
        last = rows[-1][0]
        yield rows


def finished_task_successes(task_ids: Sequence[int], *, session: Session,
                            chunk: int = 500) -> list[tuple[int, float]]:
    """(task id, success) for those of ``task_ids`` that have finished."""
    out: list[tuple[int, float]] = []
    ids = list(task_ids)
    for i in range(0, len(ids), chunk):
        stmt = select(Task.id, Task.success).where(col(Task.id).in_(ids[i:i + chunk])) \
            .where(Task.success.is_not(None))
        out.extend((int(a), float(b)) for a, b in session.exec(stmt))
    return out


def delete_run(run_id: int, *, session: Session) -> None:
    """Delete a run with its tasks and steps, in one transaction."""
    run = session.get(Run, run_id)
    if run is None:
        raise EvoRouteError(f"no run with id {run_id}")
    session.exec(StepRecord.__table__.delete().where(StepRecord.run_id == run_id))  # type: ignore[attr-defined]
    session.exec(Task.__table__.delete().where(Task.run_id == run_id))  # type: ignore[attr-defined]
    session.delete(run)
    session.commit()
