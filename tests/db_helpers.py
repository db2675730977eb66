"""Writes only tests make (the runner and the importer write through storage/run_store.py and
storage/steps_io.py): a task, step records, the stop flag. pytest puts this folder on the path
(tests/conftest.py lives here), so any test can ``import db_helpers``."""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import Session, select

from evoroute.storage.tables import Run, StepRecord, Task


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


def add_steps(records: Iterable[StepRecord], *, session: Session,
              commit: bool = True) -> list[StepRecord]:
    recs = list(records)
    session.add_all(recs)
    if commit:
        session.commit()
    else:
        session.flush()
    return recs


def stop_requested(run_id: int, *, session: Session) -> bool:
    return bool(session.exec(select(Run.stop_requested).where(Run.id == run_id)).first())
