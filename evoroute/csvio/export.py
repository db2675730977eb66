"""CSV export of step records: every column of :data:`~evoroute.storage.tables.EXPORT_COLUMNS`,
each cell spreadsheet-safe and redacted (:mod:`evoroute.csvio.cells`)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from sqlalchemy.engine import Engine

from evoroute import secrets
from evoroute.core.errors import EvoRouteError
from evoroute.csvio.cells import escape_cell, redact_explanation, redact_secrets
from evoroute.storage import steps_io
from evoroute.storage.repo import StepFilter
from evoroute.storage.tables import EXPORT_COLUMNS

BATCH = 5000       # rows per export page


def iter_export_rows(flt: StepFilter | None = None, *, engine: Engine | None = None
                     ) -> Iterator[list[Any]]:
    """Export rows (header first), oldest first, read in keyset-paged batches."""
    env = secrets.env_secrets()
    yield list(EXPORT_COLUMNS)
    for rows in steps_io.step_pages(flt or StepFilter(), EXPORT_COLUMNS, engine=engine,
                                    batch=BATCH):
        for r in rows:
            yield [escape_cell(redact_explanation(v, env)) if c == "explanation" and v
                   else _export_value(v, env) for c, v in zip(EXPORT_COLUMNS, r)]


def _export_value(v: Any, env: list[tuple[str, str]]) -> Any:
    if v is None:
        return ""
    if isinstance(v, str):
        return escape_cell(redact_secrets(v, env))
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def export_csv(dest: str | Path | IO[str], flt: StepFilter | None = None, *,
               engine: Engine | None = None) -> int:
    """Write the filtered step records as CSV to a path or text stream; returns the row count."""
    if isinstance(dest, (str, Path)):
        path = Path(dest)
        if path.is_dir():
            raise EvoRouteError(f"cannot export to {path}: it is a directory; give a file name")
        if not path.parent.is_dir():
            raise EvoRouteError(f"cannot export to {path}: the folder {path.parent} does not exist")
        try:
            with open(path, "w", newline="", encoding="utf-8") as f:
                return export_csv(f, flt, engine=engine)
        except OSError as exc:
            raise EvoRouteError(f"cannot write {path}: {exc.strerror or exc}") from None
    w = csv.writer(dest)
    n = -1
    for row in iter_export_rows(flt, engine=engine):
        w.writerow(row)
        n += 1
    return n


def export_csv_bytes(flt: StepFilter | None = None, *, engine: Engine | None = None
                     ) -> tuple[bytes, int]:
    buf = io.StringIO()
    n = export_csv(buf, flt, engine=engine)
    return buf.getvalue().encode("utf-8"), n
