"""Export step records to CSV and import them back: validated, redacted, round-trip safe.

Export is safe to open in a spreadsheet (OWASP's CSV-injection guidance): a text cell that a
spreadsheet could run as a formula is prefixed with a single quote. That is a cell whose first
character is a tab, carriage return or newline, or whose first non-whitespace character is one
of ``= + - @`` or anything that NFKC-normalises to one (fullwidth ``＝ ＋ － ＠``, small and
super/subscript forms, the minus sign ``−``). A cell that already starts with a quote followed
by such text gets one more quote, so import removes exactly the quote export added: every text
round-trips. Anything that looks like a credential is redacted (:mod:`evoroute.secrets`) on
export *and* on import. Cells of any size up to :data:`~evoroute.core.types.MAX_TEXT_CHARS`
round-trip (the csv module's 128 KiB field limit is raised).

Import protocol (so another writer waits at most one chunk, and a bad file lands nothing):

1. The whole file is read (as a stream) and validated first; the first bad row raises
   :class:`~evoroute.errors.DatasetError` naming its line and column, and nothing is written.
   The validated rows are kept in memory for the write (as before: ~1 KB per row).
2. A run with status ``importing`` is created (its config names the file and the process),
   then tasks and step records are written in transactions of :data:`CHUNK` rows each, so the
   write lock is held for one chunk at a time (~0.1 s), not for the whole file.
3. The last transaction marks the run ``finished``. If writing fails (lock timeout, disk full,
   Ctrl-C), every row of the run is deleted again, in chunks, and the error is raised. A process
   killed mid-import leaves a run ``importing`` whose process is gone; the next import (or
   :func:`remove_stale_imports`) deletes it.

While an import is being written its rows are visible as run N with status ``importing``;
readers that must not see partial imports filter on the run status.
Imported rows get phase ``import`` in a new run with backend ``import``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import socket
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlmodel import col

from evoroute import secrets
from evoroute.core.types import (MAX_DURATION_S, MAX_ID_CHARS, MAX_NAME_CHARS, MAX_STEP_COST_USD,
                                 MAX_TEXT_CHARS, MAX_TOKEN_COUNT, validate_explanation,
                                 validate_name)
from evoroute.errors import DatasetError, EmptyDatasetError, EvoRouteError
from evoroute.storage import db, repo
from evoroute.storage.tables import Run, StepRecord, Task, utcnow

EXPORT_COLUMNS = ("id", "run_id", "task_key", "step_index", "phase", "role", "model", "query_id",
                  "instruction", "tools", "cost_usd", "duration_s", "latency_label", "ttft_s",
                  "step_success", "task_success", "input_tokens", "output_tokens", "error",
                  "propensity", "router", "created_at", "explanation")
REQUIRED_COLUMNS = ("role", "model", "instruction", "cost_usd", "duration_s")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")
_FORMULA_START = frozenset("=+-@\u2212")     # U+2212 MINUS SIGN: some spreadsheets take it as -
LATENCY_LABELS = ("modelled", "measured", "simulated", "unknown")
_TEXT_COLUMNS = ("task_key", "phase", "role", "model", "query_id", "instruction", "tools",
                 "latency_label", "error", "router", "explanation")
_VERBATIM = ("instruction", "error", "explanation")   # free text: not stripped on import
BATCH = 5000       # rows per export page
CHUNK = 5000       # rows per import transaction (measured: ~0.1 s of write lock each)
IMPORTING = "importing"
_ACTIVE_IMPORTS: set[int] = set()   # import runs this process is writing right now


# ----------------------------------------------------------------------------- cells
def _formula_like(value: str) -> bool:
    """Would a spreadsheet run this as a formula (OWASP + leading space + NFKC forms)?"""
    if not value:
        return False
    if value[0] in "\t\r\n":
        return True
    stripped = value.lstrip()
    if not stripped:
        return False
    first = stripped[0]
    return first in _FORMULA_START or unicodedata.normalize("NFKC", first)[:1] in _FORMULA_START


def _needs_escape(value: str) -> bool:
    # quotes followed by formula-like text get one more quote, so unescape is exact
    return _formula_like(value.lstrip("'"))


def escape_cell(value: str) -> str:
    """Prefix a quote to text a spreadsheet could run as a formula (CSV injection)."""
    return "'" + value if _needs_escape(value) else value


def unescape_cell(value: str) -> str:
    """Undo :func:`escape_cell` exactly: ``unescape_cell(escape_cell(v)) == v`` for every v."""
    if value.startswith("'") and _needs_escape(value[1:]):
        return value[1:]
    return value


def redact_secrets(text: str, env: list[tuple[str, str]] | None = None) -> str:
    """Credentials out of a cell (evoroute.secrets); empty cells stay empty."""
    return secrets.redact(text, env=env) if text else text


_JSON_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_JSON_UNESCAPE = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _redact_explanation(text: str, env: list[tuple[str, str]] | None) -> str:
    """Redact inside the JSON (its strings), so the cell stays valid JSON.

    Walking the ~260 strings of an explanation (its neighbours' texts) one by one made export
    slow, so the whole document is checked first: with its escapes decoded (none of them
    \\uXXXX, which could spell anything) every string it holds is a substring of it, and when
    neither that text nor the raw one can hold a secret the cell is returned as it is."""
    env_now = env if env is not None else secrets.env_secrets()
    if "\\u" not in text:
        plain = _JSON_ESCAPE.sub(lambda m: _JSON_UNESCAPE.get(m.group(1), m.group(1)), text)
        if not any(v in plain or v in text for _, v in env_now) \
                and not secrets.may_hold_secret(text) and not secrets.may_hold_secret(plain):
            return text
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return redact_secrets(text, env)
    return json.dumps(secrets.redact_json(obj, env=env), allow_nan=False)


def _raise_csv_limit() -> None:
    """The csv module refuses fields over 128 KiB by default; allow MAX_TEXT_CHARS (+ quotes)
    so our own check names the column instead."""
    want = MAX_TEXT_CHARS * 4 + 16
    if csv.field_size_limit() < want:
        csv.field_size_limit(min(want, sys.maxsize))


# ----------------------------------------------------------------------------- export
def iter_export_rows(flt: repo.StepFilter | None = None, *, engine: Engine | None = None
                     ) -> Iterator[list[Any]]:
    """Export rows (header first), oldest first, read in keyset-paged batches."""
    flt = flt or repo.StepFilter()
    env = secrets.env_secrets()
    cols = [getattr(StepRecord, c) for c in EXPORT_COLUMNS]
    expl = EXPORT_COLUMNS.index("explanation")
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
                out = [_export_value(v, env) for v in r]
                if r[expl]:
                    out[expl] = escape_cell(_redact_explanation(r[expl], env))
                yield out
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


def export_csv_bytes(flt: repo.StepFilter | None = None, *, engine: Engine | None = None
                     ) -> tuple[bytes, int]:
    buf = io.StringIO()
    n = export_csv(buf, flt, engine=engine)
    return buf.getvalue().encode("utf-8"), n


# ----------------------------------------------------------------------------- import: reading
def _opener(source: str | Path | bytes | IO) -> tuple[Any, str]:
    """(a function opening the CSV text, display name); a path is read as a stream."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            raise DatasetError("is a directory, not a CSV file", file=str(path))
        if not path.is_file():
            raise DatasetError("no such file", file=str(path))

        def open_path() -> IO[str]:
            try:
                return open(path, encoding="utf-8-sig", newline="")
            except OSError as exc:
                raise DatasetError(f"cannot read the file ({exc.strerror or exc})",
                                   file=str(path)) from None
        return open_path, str(path)
    if isinstance(source, bytes):
        data, name = source, "upload"
    else:
        data = source.read()
        name = getattr(source, "name", "upload")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise DatasetError("the file is not UTF-8 text", file=name, line=line) from None
    else:
        text = str(data)
    return (lambda: io.StringIO(text, newline="")), name


def _float(raw: str, column: str, *, lo: float | None = None, hi: float | None = None,
           required: bool = False) -> float | None:
    if raw == "":
        if required:
            raise ValueError("is empty")
        return None
    try:
        v = float(raw)
    except ValueError:
        raise ValueError(f"must be a number, got {_short(raw)}") from None
    if not math.isfinite(v):
        raise ValueError(f"must be a finite number, got {_short(raw)}")
    if lo is not None and v < lo:
        raise ValueError(f"must be >= {lo:g}, got {raw}")
    if hi is not None and v > hi:
        raise ValueError(f"must be <= {hi:g}, got {_short(raw)}")
    return v


def _int(raw: str, column: str, hi: float = MAX_TOKEN_COUNT) -> int | None:
    if raw == "":
        return None
    v = _float(raw, column, lo=0, hi=hi)
    if v is None or v != int(v):
        raise ValueError(f"must be a whole number >= 0, got {_short(raw)}")
    return int(v)


def _short(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _header(reader: Any, name: str) -> tuple[dict[str, int], int]:
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
    return {h: i for i, h in enumerate(header)}, len(header)


def iter_rows(stream: IO[str], name: str = "upload",
              env: list[tuple[str, str]] | None = None) -> Iterator[dict[str, Any]]:
    """Validated, redacted rows of a CSV stream; the first problem raises DatasetError with its
    line and column. Task success must agree between the rows of one task."""
    _raise_csv_limit()
    env = secrets.env_secrets() if env is None else env
    reader = csv.reader(stream)
    try:
        pos, width = _header(reader, name)
    except UnicodeDecodeError:
        raise DatasetError("the file is not UTF-8 text", file=name, line=1) from None
    task_success: dict[str, tuple[float | None, int]] = {}
    line = reader.line_num + 1
    n = 0
    while True:
        start = line
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DatasetError(f"not valid CSV ({exc})", file=name, line=start) from None
        except UnicodeDecodeError:
            raise DatasetError("the file is not UTF-8 text", file=name, line=start) from None
        line = reader.line_num + 1
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != width:
            raise DatasetError(f"has {len(cells)} cells, the header has {width}",
                               file=name, line=start)
        rec = _row(cells, pos, start, name, env, task_success)
        n += 1
        yield rec
    if not n:
        raise EmptyDatasetError("the file has a header but no rows", file=name, line=2)


def _row(cells: list[str], pos: dict[str, int], start: int, name: str,
         env: list[tuple[str, str]], task_success: dict[str, tuple[float | None, int]]
         ) -> dict[str, Any]:
    def get(c: str) -> str:
        i = pos.get(c)
        if i is None:
            return ""
        raw = cells[i]
        if "\x00" in raw:
            raise ValueError("contains a NUL character (binary data?)")
        if len(raw) > MAX_TEXT_CHARS:
            raise ValueError(f"is {len(raw):,} characters long; at most {MAX_TEXT_CHARS:,} are "
                             "allowed")
        return unescape_cell(raw if c in _VERBATIM else raw.strip())

    column = ""
    try:
        rec: dict[str, Any] = {}
        for column in ("role", "model"):
            rec[column] = validate_name(redact_secrets(get(column), env), column,
                                        max_chars=MAX_NAME_CHARS)
        column = "instruction"
        v = get(column)
        if not v.strip():
            raise ValueError("is empty")
        rec[column] = redact_secrets(v, env)
        column = "cost_usd"
        rec["cost_usd"] = _float(get(column), column, lo=0, hi=MAX_STEP_COST_USD, required=True)
        column = "duration_s"
        rec["duration_s"] = _float(get(column), column, lo=0, hi=MAX_DURATION_S, required=True)
        for column in ("step_success", "task_success"):
            rec[column] = _float(get(column), column, lo=0, hi=1)
        column = "propensity"
        rec["propensity"] = _float(get(column), column, lo=0, hi=1)
        column = "ttft_s"
        rec["ttft_s"] = _float(get(column), column, lo=0, hi=MAX_DURATION_S)
        for column in ("input_tokens", "output_tokens"):
            rec[column] = _int(get(column), column)
        column = "step_index"
        rec["step_index"] = _int(get(column), column, hi=1_000_000) or 0
        column = "latency_label"
        lab = get(column) or "unknown"
        if lab not in LATENCY_LABELS:
            raise ValueError(f"must be one of {', '.join(LATENCY_LABELS)}, got {_short(lab)}")
        rec["latency_label"] = lab
        column = "tools"
        tools = sorted({t.strip() for t in get(column).split(";") if t.strip()})
        for t in tools:
            validate_name(t, "tools", label="a tool name")
        rec["tools"] = ";".join(tools)
        column = "explanation"
        expl = get(column)
        rec["explanation"] = (_redact_explanation(validate_explanation(expl), env)
                              if expl.strip() else None)
        column = "error"
        rec["error"] = redact_secrets(get(column), env) or None
        column = "router"
        router = get(column)
        rec["router"] = validate_name(router, column) if router else ""
        column = "query_id"
        qid = get(column)
        rec["query_id"] = (validate_name(redact_secrets(qid, env), column, max_chars=MAX_ID_CHARS,
                                         commas=True) if qid else None)
        column = "task_key"
        key = get(column)
        rec["task_key"] = (validate_name(redact_secrets(key, env), column, max_chars=MAX_ID_CHARS,
                                         commas=True) if key else f"import-line-{start}")
        prev = task_success.get(rec["task_key"])
        if prev is not None and prev[0] is not None and rec["task_success"] is not None \
                and prev[0] != rec["task_success"]:
            column = "task_success"
            raise ValueError(f"differs from line {prev[1]} of the same task "
                             f"({prev[0]:g} vs {rec['task_success']:g})")
        if prev is None or prev[0] is None:
            task_success[rec["task_key"]] = (rec["task_success"], start)
    except EvoRouteError as exc:     # ValidationError: its message names the field already
        raise DatasetError(str(exc), file=name, line=start, column=column) from None
    except ValueError as exc:
        raise DatasetError(f"{column} {exc}", file=name, line=start, column=column) from None
    rec["_line"] = start
    return rec


def parse_rows(text: str, name: str = "upload") -> list[dict[str, Any]]:
    """Validate every row of a CSV text; the first problem raises DatasetError with its line
    and column (small files; :func:`import_csv` streams)."""
    return list(iter_rows(io.StringIO(text, newline=""), name))


# ----------------------------------------------------------------------------- import: writing
def import_csv(source: str | Path | bytes | IO, *, engine: Engine | None = None,
               name: str | None = None, embed: bool = False, embedder: Any = None,
               chunk: int = CHUNK) -> tuple[int, int]:
    """Validate the whole file, then write it in chunks (module docstring); returns
    (run id, rows imported).

    ``embed`` computes instruction embeddings (so the semantic channel sees the rows); without
    it the rows are found by the role and tool channels only.
    """
    opener, display = _opener(source)
    display = name or display
    env = secrets.env_secrets()
    # validate everything first (streaming); nothing is written before the last row passed
    tasks: dict[str, list] = {}          # task_key -> [n, cost, duration, success]
    n_rows, total_cost = 0, 0.0
    rows: list[dict[str, Any]] = []
    with opener() as fh:
        for r in iter_rows(fh, display, env):
            rows.append(r)
            a = tasks.setdefault(r["task_key"], [0, 0.0, 0.0, None])
            a[0] += 1
            a[1] += r["cost_usd"]
            a[2] += r["duration_s"]
            if a[3] is None:
                a[3] = r["task_success"]
            n_rows += 1
            total_cost += r["cost_usd"]
    if embed and embedder is None:
        from evoroute.retrieval.embedder import get_embedder
        embedder = get_embedder()
    engine = engine or db.get_engine()
    remove_stale_imports(engine=engine)
    now = utcnow()
    source_name = Path(display).name
    try:
        with db.session(engine) as s:
            run = Run(name=f"import: {source_name}", status=IMPORTING, backend="import",
                      dataset=source_name, router="import", label="imported",
                      config_json=json.dumps({"source": source_name, "rows": n_rows,
                                              "pid": os.getpid(), "host": socket.gethostname()}),
                      n_tasks_total=len(tasks), n_steps_done=0, cost_usd=0.0, started_at=now)
            s.add(run)
            s.commit()
            run_id = int(run.id)
    except Exception as exc:
        _raise_if_locked(exc, engine, source_name, None)
        raise
    _ACTIVE_IMPORTS.add(run_id)
    try:
        ids = _write_tasks(engine, run_id, tasks, now, chunk)
        for i in range(0, n_rows, chunk):
            _write_steps(engine, run_id, rows[i:i + chunk], ids, tasks, now, embedder)
        with engine.begin() as conn:
            conn.execute(update(Run).where(col(Run.id) == run_id).values(
                status="finished", n_steps_done=n_rows, cost_usd=float(total_cost),
                finished_at=utcnow()))
    except BaseException as exc:
        try:
            remove_import(run_id, engine=engine)
        except Exception:   # pragma: no cover - the stale-import sweep removes it later
            pass
        _raise_if_locked(exc, engine, source_name, run_id)
        raise
    finally:
        _ACTIVE_IMPORTS.discard(run_id)
    return run_id, n_rows


def _raise_if_locked(exc: BaseException, engine: Engine, source_name: str,
                     run_id: int | None) -> None:
    """A lock timeout while importing becomes one message naming who writes (never the URL)."""
    from sqlalchemy.exc import OperationalError

    if not (isinstance(exc, OperationalError) and "locked" in str(exc).lower()):
        return
    try:
        who = "; ".join(w for w in active_writers(engine=engine)
                        if run_id is None or f"(run {run_id}," not in w)
    except Exception:
        who = ""
    raise EvoRouteError(
        f"import of {source_name} stopped: the database is locked by another writer "
        f"({who or 'another process'}) for longer than the busy timeout; nothing was imported, "
        "try again when it has finished") from None


def _write_tasks(engine: Engine, run_id: int, tasks: dict[str, list], now: Any,
                 chunk: int) -> dict[str, int]:
    ids: dict[str, int] = {}
    keys = list(tasks)
    last = 0
    for i in range(0, len(keys), chunk):
        with engine.begin() as conn:
            conn.execute(insert(Task), [
                {"run_id": run_id, "task_key": k, "split": "", "phase": "import",
                 "n_steps": int(tasks[k][0]), "success": tasks[k][3], "cost_usd": tasks[k][1],
                 "duration_s": tasks[k][2], "created_at": now, "finished_at": now}
                for k in keys[i:i + chunk]])
            for key, tid in conn.execute(select(Task.task_key, Task.id).where(
                    Task.run_id == run_id).where(col(Task.id) > last).order_by(Task.id)):
                ids[key] = int(tid)
                last = int(tid)
    return ids


def _write_steps(engine: Engine, run_id: int, rows: list[dict[str, Any]], ids: dict[str, int],
                 tasks: dict[str, list], now: Any, embedder: Any) -> int:
    embeddings = None if embedder is None else embedder.encode([r["instruction"] for r in rows])
    with engine.begin() as conn:
        # P(τ) of a task is known for all its rows once any row gives it
        conn.execute(insert(StepRecord), [
            {"run_id": run_id, "task_id": ids[r["task_key"]], "task_key": r["task_key"],
             "step_index": r["step_index"], "phase": "import", "role": r["role"],
             "model": r["model"], "query_id": r["query_id"], "instruction": r["instruction"],
             "embedding": None if embeddings is None else repo.embedding_to_bytes(embeddings[i]),
             "tools": r["tools"], "cost_usd": r["cost_usd"], "duration_s": r["duration_s"],
             "latency_label": r["latency_label"], "ttft_s": r["ttft_s"],
             "step_success": r["step_success"], "task_success": tasks[r["task_key"]][3],
             "input_tokens": r["input_tokens"], "output_tokens": r["output_tokens"],
             "error": r["error"], "explanation": r["explanation"],
             "propensity": r["propensity"], "router": r["router"], "created_at": now}
            for i, r in enumerate(rows)])
        conn.execute(update(Run).where(col(Run.id) == run_id).values(
            n_steps_done=Run.n_steps_done + len(rows)))
    return len(rows)


def remove_import(run_id: int, *, engine: Engine | None = None, chunk: int = CHUNK) -> None:
    """Delete an (unfinished) import run and its rows, one chunk per transaction."""
    engine = engine or db.get_engine()
    for table in (StepRecord, Task):
        while True:
            with engine.begin() as conn:
                sub = select(table.id).where(table.run_id == run_id).limit(chunk)
                if conn.execute(delete(table).where(col(table.id).in_(sub))).rowcount == 0:
                    break
    with engine.begin() as conn:
        conn.execute(delete(Run).where(col(Run.id) == run_id))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_imports(*, engine: Engine | None = None) -> list[int]:
    """Delete imports left ``importing`` by a process that is gone (killed mid-import) or by
    this process outside an import (a failed clean-up); returns their run ids."""
    engine = engine or db.get_engine()
    host = socket.gethostname()
    stale = []
    with engine.connect() as conn:
        runs = conn.execute(select(Run.id, Run.config_json).where(Run.status == IMPORTING)).all()
    for rid, cfg in runs:
        try:
            c = json.loads(cfg or "{}")
            pid, h = int(c.get("pid")), c.get("host")
        except (TypeError, ValueError):
            continue
        if h != host:
            continue
        if not _pid_alive(pid) or (pid == os.getpid() and rid not in _ACTIVE_IMPORTS):
            remove_import(int(rid), engine=engine)
            stale.append(int(rid))
    return stale


def active_writers(*, engine: Engine | None = None) -> list[str]:
    """What is writing to the base, as the run table says: imports in progress and runs that
    are pending or running (named in a lock-timeout message)."""
    engine = engine or db.get_engine()
    with db.session(engine) as s:      # plain reads: they work while another process writes
        runs = list(s.exec(select(Run).where(col(Run.status).in_((IMPORTING, "running", "pending")))
                           .order_by(Run.id)).scalars())
    out = []
    for run in runs:
        rid, status, backend, dataset, cfg = (run.id, run.status, run.backend, run.dataset,
                                              run.config_json)
        orphan = getattr(repo, "orphan_reason", None)
        if status != IMPORTING and orphan is not None and orphan(run) is not None:
            continue                   # its process is gone: it holds no lock
        if status == IMPORTING:
            try:
                c = json.loads(cfg or "{}")
            except ValueError:
                c = {}
            out.append(f"import of {c.get('source', dataset)} (run {rid}, pid {c.get('pid')})")
        else:
            out.append(f"run {rid} ({backend} on {dataset}, {status})")
    return out


__all__ = ["EXPORT_COLUMNS", "REQUIRED_COLUMNS", "CHUNK", "escape_cell", "unescape_cell",
           "redact_secrets", "export_csv", "export_csv_bytes", "iter_export_rows", "iter_rows",
           "parse_rows", "import_csv", "remove_import", "remove_stale_imports", "active_writers"]
