"""The SQL of CSV export and import (evoroute.csvio): keyset-paged step reads, an import run
written in chunks, its removal, and the runs that write to the base."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine, Row
from sqlmodel import col

from evoroute.core import labels
from evoroute.storage import db
from evoroute.storage.repo import StepFilter
from evoroute.storage.tables import Run, StepRecord, Task

IMPORTING = "importing"


def step_pages(flt: StepFilter, columns: Sequence[str], *, engine: Engine | None = None,
               batch: int) -> Iterator[list[Row]]:
    """The filtered step records' ``columns`` (``id`` first), oldest first, ``batch`` rows a
    page (keyset paging on the id)."""
    cols = [getattr(StepRecord, c) for c in columns]
    last = 0
    with db.session(engine) as s:
        while True:
            stmt = flt.apply(select(*cols)).where(col(StepRecord.id) > last) \
                .order_by(StepRecord.id).limit(batch)
            rows = list(s.exec(stmt).all())
            if not rows:
                return
            yield rows
            last = rows[-1].id


def create_import_run(engine: Engine, *, source_name: str, config: dict[str, Any],
                      n_tasks: int, started_at: datetime) -> int:
    """The run of an import, status ``importing`` until :func:`finish_import`."""
    with db.session(engine) as s:
        run = Run(name=f"import: {source_name}", status=IMPORTING, backend="import",
                  dataset=source_name, router="import", label=labels.run_label("import"),
                  config_json=json.dumps(config), n_tasks_total=n_tasks, n_steps_done=0,
                  cost_usd=0.0, started_at=started_at)
        s.add(run)
        s.commit()
        return int(run.id)


def insert_tasks(engine: Engine, run_id: int, tasks: list[dict[str, Any]]) -> dict[str, int]:
    """Insert task rows of ``run_id`` in one transaction; returns their ids by task key."""
    with engine.begin() as conn:
        first = conn.execute(select(Task.id).where(Task.run_id == run_id)
                             .order_by(col(Task.id).desc()).limit(1)).scalar() or 0
        conn.execute(insert(Task), [{"run_id": run_id, **t} for t in tasks])
        return {r.task_key: int(r.id) for r in conn.execute(
            select(Task.task_key, Task.id).where(Task.run_id == run_id)
            .where(col(Task.id) > first).order_by(Task.id))}


def insert_steps(engine: Engine, run_id: int, rows: list[dict[str, Any]]) -> int:
    """Insert step rows (tables.step_row) of ``run_id`` and count them in the run, in one
    transaction."""
    with engine.begin() as conn:
        conn.execute(insert(StepRecord), rows)
        conn.execute(update(Run).where(col(Run.id) == run_id).values(
            n_steps_done=Run.n_steps_done + len(rows)))
    return len(rows)


def finish_import(engine: Engine, run_id: int, *, n_steps: int, cost_usd: float,
                  finished_at: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(update(Run).where(col(Run.id) == run_id).values(
            status="finished", n_steps_done=n_steps, cost_usd=float(cost_usd),
            finished_at=finished_at))


def delete_run_in_chunks(engine: Engine, run_id: int, *, chunk: int) -> None:
    """Delete a run and its steps and tasks, ``chunk`` rows per transaction."""
    for table in (StepRecord, Task):
        while True:
            with engine.begin() as conn:
                sub = select(table.id).where(table.run_id == run_id).limit(chunk)
                if conn.execute(delete(table).where(col(table.id).in_(sub))).rowcount == 0:
                    break
    with engine.begin() as conn:
        conn.execute(delete(Run).where(col(Run.id) == run_id))


def runs_with_status(statuses: Sequence[str], *, engine: Engine | None = None) -> list[Run]:
    """Runs in one of ``statuses``, oldest first (plain reads: they work while another
    process writes)."""
    with db.session(engine) as s:
        return list(s.exec(select(Run).where(col(Run.status).in_(list(statuses)))
                           .order_by(Run.id)).scalars())
