"""The studio's covering index, created on an existing base when the studio opens it."""

from __future__ import annotations

from sqlalchemy import Column, Index, MetaData, Table
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from evoroute.storage.tables import StepRecord

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
    name, cols = STUDIO_INDEX
    real = StepRecord.__table__
    shadow = Table(real.name, MetaData(), *[Column(c, real.c[c].type) for c in cols])
    try:
        Index(name, *[shadow.c[c] for c in cols]).create(engine, checkfirst=True)
    except DBAPIError as exc:
        if "already exists" not in str(exc) and "Duplicate key name" not in str(exc):
            raise
