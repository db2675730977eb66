"""Repository functions over the experience base: plain functions taking ``session``.

Every write commits in one transaction, so a failed call leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
from sqlalchemy import func, or_, update
from sqlalchemy.engine import Row
from sqlmodel import Session, col, select

from evoroute.core.errors import EvoRouteError
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


def save_model(entry: ModelEntry, *, session: Session) -> ModelEntry:
    """Insert or update a registry entry in one transaction (rolled back if it fails, e.g. the
    UNIQUE name: IntegrityError)."""
    session.add(entry)
    try:
        session.commit()
    except BaseException:
        session.rollback()
        raise
    session.refresh(entry)
    return entry


def delete_model(entry: ModelEntry, *, session: Session) -> None:
    session.delete(entry)
    session.commit()


# ---------------------------------------------------------------- runs
def create_run(*, session: Session, config: dict[str, Any], **fields: Any) -> Run:
    """A run row; it records the creating process as its owner until a worker claims it, so a
    pending run whose creator died is seen as interrupted instead of waiting forever."""
    if "pid" not in fields:
        fields = {**process_identity().fields(), "heartbeat_at": now(), **fields}
    run = Run(config_json=json.dumps(config, sort_keys=True, default=str), **fields)
    session.add(run)
    session.commit()
    session.refresh(run)
    return run


def get_run(run_id: int, *, session: Session, reconcile: bool = True) -> Run | None:
    """The run's current row; a run whose process is gone reads as ``interrupted``."""
    run = session.get(Run, run_id, populate_existing=True)
    if run is not None and reconcile:
        reconcile_runs([run], session=session)
    return run


def list_runs(*, session: Session, limit: int = 100, status: str | None = None) -> list[Run]:
    stmt = select(Run).order_by(col(Run.id).desc()).limit(limit) \
        .execution_options(populate_existing=True)
    if status:
        stmt = stmt.where(Run.status == status)
    runs = list(session.exec(stmt))
    reconcile_runs(runs, session=session)
    return runs if not status else [r for r in runs if r.status == status]


# ---------------------------------------------------------------- run lifecycle
#: A run owned by a process on another host (which cannot be checked) is interrupted when its
#: heartbeat is older than this; above the 30 s busy timeout, so a writer waiting for the lock
#: is not mistaken for a dead one.
HEARTBEAT_STALE_S = 60.0
ACTIVE_STATUSES = ("pending", "running")
RESUMABLE_STATUSES = ("interrupted", "stopped")


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    proc_started: float
    host: str

    def fields(self) -> dict[str, Any]:
        return {"pid": self.pid, "proc_started": self.proc_started, "host": self.host}


def process_identity(pid: int | None = None) -> ProcessIdentity:
    """pid, start time and host of a process (default: this one)."""
    import psutil

    pid = os.getpid() if pid is None else int(pid)
    return ProcessIdentity(pid, float(psutil.Process(pid).create_time()), socket.gethostname())


def process_alive(pid: int | None, proc_started: float | None, host: str | None) -> bool | None:
    """True / False for a process of this host (same pid *and* same start time, not a zombie);
    None when it cannot be told here (another host, or no pid recorded)."""
    if pid is None or host != socket.gethostname():
        return None
    import psutil

    try:
        p = psutil.Process(int(pid))
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return proc_started is None or abs(p.create_time() - float(proc_started)) < 0.05
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return False


def as_utc(t: datetime | None) -> datetime | None:
    """SQLite gives datetimes back without their zone; ours are UTC."""
    if t is None:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


def orphan_reason(run: Run, *, at: datetime | None = None) -> str | None:
    """Why an active run has no live process any more (None: it has one, or may have)."""
    if run.status not in ACTIVE_STATUSES:
        return None
    if run.pid is None and run.heartbeat_at is None:
        # written by code older than the heartbeat (or its creator recorded nothing): no process
        # can ever be checked or finish it, so it reads as interrupted and can be resumed/deleted
        return (f"no process is recorded for this run (written by an older EvoRoute); "
                f"{run.n_steps_done} steps are stored")
    alive = process_alive(run.pid, run.proc_started, run.host)
    if alive:
        return None
    beat = as_utc(run.heartbeat_at)
    if alive is None:
        if beat is None:
            return None
        age = ((at or now()) - beat).total_seconds()
        if age <= HEARTBEAT_STALE_S:
            return None
        return (f"no heartbeat for {age:.0f} s from its process (pid {run.pid} on {run.host}); "
                f"{run.n_steps_done} steps are stored")
    when = f"; last heartbeat {beat:%Y-%m-%d %H:%M:%S} UTC" if beat else ""
    what = "its worker process" if run.status == "running" else "the process that created it"
    return (f"{what} (pid {run.pid} on {run.host}) is gone{when}; {run.n_steps_done} steps are "
            f"stored")


def reconcile_runs(runs: Sequence[Run] | None = None, *, session: Session) -> list[int]:
    """Mark active runs whose process is gone as ``interrupted``, on read (see
    docs: persisted lazily, so every reader agrees and resume / delete can rely on it).

    ``runs`` default: every pending or running run. The update is conditional on the row still
    being owned by the dead process, so a run another process just resumed is left alone. A
    reader that cannot write (database locked) still sees ``interrupted`` for this read.
    Returns the ids marked."""
    from sqlalchemy.exc import OperationalError

    if runs is None:
        runs = list(session.exec(select(Run).where(col(Run.status).in_(ACTIVE_STATUSES))
                                 .execution_options(populate_existing=True)))
    marked = []
    t = now()
    for run in runs:
        reason = orphan_reason(run, at=t)
        if reason is None:
            continue
        stmt = update(Run).where(Run.id == run.id).where(Run.status == run.status)
        stmt = stmt.where(Run.pid == run.pid) if run.pid is not None else stmt
        stmt = stmt.values(status="interrupted", error=reason, finished_at=t)
        try:
            n = session.exec(stmt).rowcount  # type: ignore[call-overload]
            session.commit()
        except OperationalError:
            session.rollback()
            n = 1
        if n:
            run.status, run.error, run.finished_at = "interrupted", reason, t
            marked.append(int(run.id))
    return marked


def update_run(run_id: int, *, session: Session, **fields: Any) -> None:
    session.exec(update(Run).where(Run.id == run_id).values(**fields))  # type: ignore[call-overload]
    session.commit()


def request_stop(run_id: int, *, session: Session) -> None:
    update_run(run_id, session=session, stop_requested=True)


# ---------------------------------------------------------------- tasks
def finish_task(task_id: int, success: float, *, session: Session, commit: bool = True) -> None:
    """Record the task's success and fill P(τ) into all of its steps (spec §3 step 11)."""
    agg = session.exec(select(func.count().label("n_steps"),
                              func.coalesce(func.sum(StepRecord.cost_usd), 0.0).label("cost_usd"),
                              func.coalesce(func.sum(StepRecord.duration_s), 0.0).label("duration_s"))
                       .where(StepRecord.task_id == task_id)).one()
    session.exec(update(Task).where(Task.id == task_id).values(  # type: ignore[call-overload]
        success=success, n_steps=agg.n_steps, cost_usd=agg.cost_usd, duration_s=agg.duration_s,
        finished_at=now()))
    session.exec(update(StepRecord).where(StepRecord.task_id == task_id)  # type: ignore[call-overload]
                 .values(task_success=success))
    if commit:
        session.commit()


# ---------------------------------------------------------------- steps
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


#: the step columns the experience index reads (rows come back with these as attributes)
EXPERIENCE_COLUMNS = ("id", "run_id", "task_key", "role", "model", "instruction", "embedding",
                      "tools", "cost_usd", "duration_s", "step_success", "task_success", "task_id")


def load_experience(*, session: Session, run_ids: Sequence[int] | None = None,
                    since_id: int = 0, batch: int = 50_000,
                    embeddings: bool = True) -> Iterable[list[Row]]:
    """Stream the experience rows the index needs, oldest first, in batches (no ORM objects).

    Rows of a run still ``importing`` (a CSV import being written in chunks; it may yet be
    removed) are not read, and neither is any row above the first of them: the caller pages on
    ``since_id``, so reading past them would skip them for good once the import finishes.

    ``embeddings=False`` reads ``has_embedding`` (a bool) instead of the 1.5 KB ``embedding``
    blob; the index needs one vector per distinct text, so the caller fetches only those with
    :func:`embeddings_by_id` (100,000 records: 1.4 s of reading blobs -> 0.3 s)."""
    cols = [getattr(StepRecord, c) for c in EXPERIENCE_COLUMNS if embeddings or c != "embedding"]
    if not embeddings:
        cols.append(col(StepRecord.embedding).is_not(None).label("has_embedding"))
    importing = select(func.min(StepRecord.id)).join(Run, col(Run.id) == StepRecord.run_id) \
        .where(Run.status == "importing")
    if run_ids:
        importing = importing.where(col(StepRecord.run_id).in_(list(run_ids)))
    importing = importing.scalar_subquery()
    below = func.coalesce(importing, 2 ** 62)
    last = since_id
    while True:
        stmt = select(*cols).where(col(StepRecord.id) > last).where(StepRecord.error.is_(None)) \
            .where(col(StepRecord.id) < below)
        if run_ids:
            stmt = stmt.where(col(StepRecord.run_id).in_(list(run_ids)))
        # Core rows straight off the cursor (the ORM's column-row loading cost 0.3 s per
        # 100,000 records and adds nothing here)
        rows = session.connection().execute(stmt.order_by(StepRecord.id).limit(batch)).fetchall()
        if not rows:
            return
        last = rows[-1].id
        yield rows


def embeddings_by_id(ids: Sequence[int], *, session: Session,
                     chunk: int = 500) -> dict[int, bytes]:
    """The stored embedding blob of each of the step ids ``ids`` that has one."""
    out: dict[int, bytes] = {}
    ids = list(ids)
    for i in range(0, len(ids), chunk):
        stmt = select(StepRecord.id, StepRecord.embedding) \
            .where(col(StepRecord.id).in_(ids[i:i + chunk])) \
            .where(col(StepRecord.embedding).is_not(None))
        out.update((int(a), b) for a, b in session.exec(stmt))
    return out


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


def delete_run(run_id: int, *, session: Session, force: bool = False) -> dict[str, int]:
    """Delete a run and every row keyed by its id (steps, tasks, any table with a ``run_id``
    column), in one transaction. Refuses a running run whose process is still alive (stop it
    first) unless ``force``; a pending run can go (a worker about to claim it then finds no
    run). Returns the rows deleted per table."""
    from sqlmodel import SQLModel

    run = get_run(run_id, session=session)
    if run is None:
        raise EvoRouteError(f"no run with id {run_id}")
    if not force and run.status == "running" and \
            process_alive(run.pid, run.proc_started, run.host) is not False:
        raise EvoRouteError(f"run {run_id} is still {run.status} (pid {run.pid} on {run.host}); "
                            f"stop it first: python -m evoroute runs stop {run_id}")
    counts: dict[str, int] = {}
    try:
        for table in reversed(SQLModel.metadata.sorted_tables):   # children before parents
            if table.name != Run.__tablename__ and "run_id" in table.c:
                counts[table.name] = session.exec(  # type: ignore[call-overload]
                    table.delete().where(table.c.run_id == run_id)).rowcount
        counts[Run.__tablename__] = session.exec(  # type: ignore[call-overload]
            Run.__table__.delete().where(Run.id == run_id)).rowcount  # type: ignore[attr-defined]
        session.commit()
    except BaseException:
        session.rollback()
        raise
    session.expunge(run)
    return counts
