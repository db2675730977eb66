"""Export step records to CSV and import them back: validated, all or nothing.

Export is safe to open in a spreadsheet: a text cell that starts with ``= + - @`` (or a tab /
carriage return, OWASP's list) is prefixed with a single quote so it is never run as a
formula, and anything that looks like a credential is redacted. API keys are never stored in
the base to begin with (they live in the environment); the redaction guards the free-text
columns (an error message from a provider can echo a key).

Import reads the same columns back. Every row is checked before anything is written; the
first bad row raises :class:`~evoroute.errors.DatasetError` naming its line and column, and
the rows are written in one transaction, so an import either lands completely or not at all.
Imported rows get phase ``import`` in a new run with backend ``import``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from evoroute import secrets
from evoroute.errors import DatasetError, EmptyDatasetError
from evoroute.storage import db, repo
from evoroute.storage.tables import Run, StepRecord, Task, utcnow

EXPORT_COLUMNS = ("id", "run_id", "task_key", "step_index", "phase", "role", "model", "query_id",
                  "instruction", "tools", "cost_usd", "duration_s", "latency_label", "ttft_s",
                  "step_success", "task_success", "input_tokens", "output_tokens", "error",
                  "propensity", "router", "created_at", "explanation")
REQUIRED_COLUMNS = ("role", "model", "instruction", "cost_usd", "duration_s")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
LATENCY_LABELS = ("modelled", "measured", "simulated", "unknown")
_TEXT_COLUMNS = ("task_key", "phase", "role", "model", "query_id", "instruction", "tools",
                 "latency_label", "error", "router", "explanation")
BATCH = 5000


# ----------------------------------------------------------------------------- cells
def escape_cell(value: str) -> str:
    """Prefix a quote to text a spreadsheet would run as a formula (CSV injection)."""
    return "'" + value if value and value.startswith(FORMULA_PREFIXES) else value


def unescape_cell(value: str) -> str:
    """Undo :func:`escape_cell` on import."""
    if len(value) >= 2 and value[0] == "'" and value[1:].startswith(FORMULA_PREFIXES):
        return value[1:]
    return value


def redact_secrets(text: str, env: list[tuple[str, str]] | None = None) -> str:
    """Credentials out of a cell (evoroute.secrets); empty cells stay empty."""
    return secrets.redact(text, env=env) if text else text


# ----------------------------------------------------------------------------- export
def iter_export_rows(flt: repo.StepFilter | None = None, *, engine: Engine | None = None
                     ) -> Iterator[list[Any]]:
    """Export rows (header first), oldest first, read in keyset-paged batches."""
    flt = flt or repo.StepFilter()
    env = secrets.env_secrets()
    cols = [getattr(StepRecord, c) for c in EXPORT_COLUMNS]
    yield list(EXPORT_COLUMNS)
    last = 0
    with db.session(engine) as s:
        while True:
            stmt = flt.apply(select(*cols)).where(col(StepRecord.id) > last) \
                .order_by(StepRecord.id).limit(BATCH)
            rows = s.exec(stmt).all()
            if not rows:
                return
            for r in rows:
                yield [_export_value(v, env) for v in r]
            last = rows[-1][0]


def _export_value(v: Any, env: list[tuple[str, str]]) -> Any:
    if v is None:
        return ""
    if isinstance(v, str):
        return escape_cell(redact_secrets(v, env))
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def export_csv(dest: str | Path | IO[str], flt: repo.StepFilter | None = None, *,
               engine: Engine | None = None) -> int:
    """Write the filtered step records as CSV to a path or text stream; returns the row count."""
    if isinstance(dest, (str, Path)):
        with open(dest, "w", newline="", encoding="utf-8") as f:
            return export_csv(f, flt, engine=engine)
    w = csv.writer(dest)
    n = -1
    for row in iter_export_rows(flt, engine=engine):
        w.writerow(row)
        n += 1
    return n


def export_csv_bytes(flt: repo.StepFilter | None = None, *, engine: Engine | None = None
                     ) -> tuple[bytes, int]:
    buf = io.StringIO()
    n = export_csv(buf, flt, engine=engine)
    return buf.getvalue().encode("utf-8"), n


# ----------------------------------------------------------------------------- import
def _text(source: str | Path | bytes | IO) -> tuple[str, str]:
    """(text, display name) of a CSV source."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise DatasetError("no such file", file=str(path))
        data, name = path.read_bytes(), str(path)
    elif isinstance(source, bytes):
        data, name = source, "upload"
    else:
        data = source.read()
        name = getattr(source, "name", "upload")
        if isinstance(data, str):
            return data, name
    try:
        return data.decode("utf-8-sig"), name
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError("the file is not UTF-8 text", file=name, line=line) from None


def _float(raw: str, column: str, *, lo: float | None = None, hi: float | None = None,
           required: bool = False) -> float | None:
    if raw == "":
        if required:
            raise ValueError("is empty")
        return None
    try:
        v = float(raw)
    except ValueError:
        raise ValueError(f"must be a number, got {raw!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"must be a finite number, got {raw!r}")
    if lo is not None and v < lo:
        raise ValueError(f"must be >= {lo:g}, got {raw}")
    if hi is not None and v > hi:
        raise ValueError(f"must be <= {hi:g}, got {raw}")
    return v


def _int(raw: str, column: str) -> int | None:
    if raw == "":
        return None
    v = _float(raw, column, lo=0)
    if v is None or v != int(v):
        raise ValueError(f"must be a whole number >= 0, got {raw!r}")
    return int(v)


def parse_rows(text: str, name: str = "upload") -> list[dict[str, Any]]:
    """Validate every row; the first problem raises DatasetError with its line and column."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise EmptyDatasetError("the file is empty", file=name, line=1) from None
    except csv.Error as exc:
        raise DatasetError(f"not valid CSV ({exc})", file=name, line=1) from None
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        hint = ("; this looks like a long-format replay dataset (query, model, score): replay it with "
                "`python -m evoroute run --backend replay --data <file>` or `bench --data <file>`, "
                "or give its path as the dataset of a replay run on the Runs page"
                if {"query", "model", "score"} <= set(header) else "")
        raise DatasetError(f"required column missing (required: {', '.join(REQUIRED_COLUMNS)}){hint}",
                           file=name, line=1, column=missing[0])
    dup = [h for h in header if header.count(h) > 1 and h]
    if dup:
        raise DatasetError("column appears twice", file=name, line=1, column=dup[0])
    pos = {h: i for i, h in enumerate(header)}
    rows: list[dict[str, Any]] = []
    task_success: dict[str, tuple[float | None, int]] = {}
    line = reader.line_num + 1
    while True:
        start = line
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DatasetError(f"not valid CSV ({exc})", file=name, line=start) from None
        line = reader.line_num + 1
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise DatasetError(f"has {len(cells)} cells, the header has {len(header)}",
                               file=name, line=start)

        def get(c: str) -> str:
            i = pos.get(c)
            return "" if i is None else unescape_cell(cells[i].strip() if c not in
                                                      ("instruction", "explanation") else cells[i])
        column = ""
        try:
            rec: dict[str, Any] = {}
            for column in ("role", "model", "instruction"):
                v = get(column)
                if not v.strip():
                    raise ValueError("is empty")
                rec[column] = v
            column = "cost_usd"
            rec["cost_usd"] = _float(get(column), column, lo=0, required=True)
            column = "duration_s"
            rec["duration_s"] = _float(get(column), column, lo=0, required=True)
            for column in ("step_success", "task_success"):
                rec[column] = _float(get(column), column, lo=0, hi=1)
            column = "propensity"
            rec["propensity"] = _float(get(column), column, lo=0, hi=1)
            column = "ttft_s"
            rec["ttft_s"] = _float(get(column), column, lo=0)
            for column in ("input_tokens", "output_tokens"):
                rec[column] = _int(get(column), column)
            column = "step_index"
            rec["step_index"] = _int(get(column), column) or 0
            column = "latency_label"
            lab = get(column) or "unknown"
            if lab not in LATENCY_LABELS:
                raise ValueError(f"must be one of {', '.join(LATENCY_LABELS)}, got {lab!r}")
            rec["latency_label"] = lab
            column = "tools"
            rec["tools"] = ";".join(sorted({t.strip() for t in get(column).split(";") if t.strip()}))
            column = "explanation"
            expl = get(column)
            if expl:
                try:
                    json.loads(expl)
                except ValueError:
                    raise ValueError("is not valid JSON") from None
            rec["explanation"] = expl or None
            for column in ("query_id", "error", "router"):
                rec[column] = get(column) or (None if column != "router" else "")
            column = "task_key"
            rec["task_key"] = get(column) or f"import-line-{start}"
            prev = task_success.get(rec["task_key"])
            if prev is not None and prev[0] is not None and rec["task_success"] is not None \
                    and prev[0] != rec["task_success"]:
                column = "task_success"
                raise ValueError(f"differs from line {prev[1]} of the same task "
                                 f"({prev[0]:g} vs {rec['task_success']:g})")
            if prev is None or prev[0] is None:
                task_success[rec["task_key"]] = (rec["task_success"], start)
        except ValueError as exc:
            raise DatasetError(f"{column} {exc}", file=name, line=start, column=column) from None
        rec["_line"] = start
        rows.append(rec)
    if not rows:
        raise EmptyDatasetError("the file has a header but no rows", file=name, line=2)
    return rows


def import_csv(source: str | Path | bytes | IO, *, engine: Engine | None = None,
               name: str | None = None, embed: bool = False, embedder: Any = None
               ) -> tuple[int, int]:
    """Validate, then write every row in one transaction; returns (run id, rows imported).

    ``embed`` computes instruction embeddings (so the semantic channel sees the rows); without
    it the rows are found by the role and tool channels only.
    """
    text, display = _text(source)
    display = name or display
    rows = parse_rows(text, display)
    embeddings = None
    if embed:
        if embedder is None:
            from evoroute.retrieval.embedder import get_embedder
            embedder = get_embedder()
        embeddings = embedder.encode([r["instruction"] for r in rows])
    engine = engine or db.get_engine()
    tasks: dict[str, float | None] = {}
    for r in rows:
        if tasks.get(r["task_key"]) is None:
            tasks[r["task_key"]] = r["task_success"]
    now = utcnow()
    with db.session(engine) as s:
        try:
            run = Run(name=f"import: {Path(display).name}", status="finished", backend="import",
                      dataset=Path(display).name, router="import", label="imported",
                      config_json=json.dumps({"source": Path(display).name, "rows": len(rows)}),
                      n_tasks_total=len(tasks), n_steps_done=len(rows),
                      cost_usd=float(sum(r["cost_usd"] for r in rows)),
                      started_at=now, finished_at=now)
            s.add(run)
            s.flush()
            agg: dict[str, list[float]] = {}
            for r in rows:
                a = agg.setdefault(r["task_key"], [0, 0.0, 0.0])
                a[0] += 1
                a[1] += r["cost_usd"]
                a[2] += r["duration_s"]
            s.execute(insert(Task), [
                {"run_id": run.id, "task_key": k, "split": "", "phase": "import",
                 "n_steps": int(agg[k][0]), "success": v, "cost_usd": agg[k][1],
                 "duration_s": agg[k][2], "created_at": now, "finished_at": now}
                for k, v in tasks.items()])
            ids = dict(s.execute(select(Task.task_key, Task.id).where(Task.run_id == run.id)).all())
            # P(τ) of a task is known for all its rows once any row gives it
            s.execute(insert(StepRecord), [
                {"run_id": run.id, "task_id": ids[r["task_key"]], "task_key": r["task_key"],
                 "step_index": r["step_index"], "phase": "import", "role": r["role"],
                 "model": r["model"], "query_id": r["query_id"], "instruction": r["instruction"],
                 "embedding": None if embeddings is None else repo.embedding_to_bytes(embeddings[i]),
                 "tools": r["tools"], "cost_usd": r["cost_usd"], "duration_s": r["duration_s"],
                 "latency_label": r["latency_label"], "ttft_s": r["ttft_s"],
                 "step_success": r["step_success"], "task_success": tasks[r["task_key"]],
                 "input_tokens": r["input_tokens"], "output_tokens": r["output_tokens"],
                 "error": r["error"], "explanation": r["explanation"],
                 "propensity": r["propensity"], "router": r["router"], "created_at": now}
                for i, r in enumerate(rows)])
            s.commit()
        except Exception:
            s.rollback()
            raise
        return int(run.id), len(rows)


__all__ = ["EXPORT_COLUMNS", "REQUIRED_COLUMNS", "escape_cell", "unescape_cell",
           "redact_secrets", "export_csv", "export_csv_bytes", "iter_export_rows",
           "parse_rows", "import_csv"]
