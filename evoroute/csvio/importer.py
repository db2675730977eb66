"""CSV import of step records: validated first, then written in chunks, all or nothing.

Import protocol (so another writer waits at most one chunk, and a bad file lands nothing):

1. The whole file is read (as a stream) and validated first (:mod:`evoroute.csvio.rows`); the
   first bad row raises :class:`~evoroute.core.errors.DatasetError` naming its line and column, and
   nothing is written. The validated rows are kept in memory for the write (~1 KB per row).
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

import io
import json
import os
import socket
from pathlib import Path
from typing import IO, Any

from sqlalchemy.engine import Engine

from evoroute import secrets
from evoroute.core.errors import DatasetError, EvoRouteError
from evoroute.core.types import MAX_ID_CHARS
from evoroute.csvio.rows import iter_sourced_rows
from evoroute.storage import db, repo, steps_io
from evoroute.storage.steps_io import IMPORTING
from evoroute.storage.tables import step_row, utcnow

CHUNK = 5000       # rows per import transaction (measured: ~0.1 s of write lock each)
_ACTIVE_IMPORTS: set[int] = set()   # import runs this process is writing right now


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


def _stored_keys(sourced: list[tuple[str, Any]]) -> list[str]:
    """Each row's task key in the import run: its own, unless rows of another source run hold the
    same key (an export of several runs of one dataset), then ``<key>@run<source>`` (cut to the
    key length limit, and numbered further while it would meet a key already in the file) so
    the tasks stay apart."""
    runs: dict[str, set[str]] = {}
    for source, r in sourced:
        runs.setdefault(r.task_key, set()).add(source)
    taken = set(runs)                  # every key the file holds as it is
    renamed: dict[tuple[str, str], str] = {}
    out = []
    for source, r in sourced:
        key = r.task_key
        if len(runs[key]) > 1:
            if (source, key) not in renamed:
                renamed[(source, key)] = _free_key(key, f"@run{source or 0}", taken)
            key = renamed[(source, key)]
        out.append(key)
    return out


def _free_key(key: str, suffix: str, taken: set[str]) -> str:
    """``key + suffix`` within the key length limit, not in ``taken`` (then added to it)."""
    n = 1
    while True:
        tail = suffix if n == 1 else f"{suffix}.{n}"
        new = key[:MAX_ID_CHARS - len(tail)] + tail
        if new not in taken:
            taken.add(new)
            return new
        n += 1


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
    tasks: dict[str, dict[str, Any]] = {}    # stored task key -> its task row
    total_cost = 0.0
    with opener() as fh:
        sourced = list(iter_sourced_rows(fh, display, env))
    row_keys = _stored_keys(sourced)
    rows = [r for _, r in sourced]
    for (_, r), key in zip(sourced, row_keys):
        t = tasks.setdefault(key, {"task_key": key, "split": "", "phase": "import",
                                   "n_steps": 0, "success": None, "cost_usd": 0.0,
                                   "duration_s": 0.0})
        t["n_steps"] += 1
        t["cost_usd"] += r.cost_usd
        t["duration_s"] += r.duration_s
        if t["success"] is None:
            t["success"] = r.task_success
        total_cost += r.cost_usd
    if embed and embedder is None:
        from evoroute.retrieval.embedder import get_embedder
        embedder = get_embedder()
    engine = engine or db.get_engine()
    remove_stale_imports(engine=engine)
    now = utcnow()
    source_name = Path(display).name
    try:
        run_id = steps_io.create_import_run(
            engine, source_name=source_name, n_tasks=len(tasks), started_at=now,
            config={"source": source_name, "rows": len(rows), "pid": os.getpid(),
                    "host": socket.gethostname()})
    except Exception as exc:
        _raise_if_locked(exc, engine, source_name, None)
        raise
    _ACTIVE_IMPORTS.add(run_id)
    try:
        ids: dict[str, int] = {}
        keys = list(tasks)
        for i in range(0, len(keys), chunk):
            ids.update(steps_io.insert_tasks(engine, run_id, [
                {**tasks[k], "created_at": now, "finished_at": now} for k in keys[i:i + chunk]]))
        for i in range(0, len(rows), chunk):
            part, part_keys = rows[i:i + chunk], row_keys[i:i + chunk]
            vecs = None if embedder is None else embedder.encode([r.instruction for r in part])
            # P(τ) of a task is known for all its rows once any row gives it
            steps_io.insert_steps(engine, run_id, [step_row(**{
                **r.model_dump(), "task_key": k, "run_id": run_id, "task_id": ids[k],
                "phase": "import", "task_success": tasks[k]["success"],
                "created_at": now,
                "embedding": None if vecs is None else repo.embedding_to_bytes(vecs[j])})
                for j, (r, k) in enumerate(zip(part, part_keys))])
        steps_io.finish_import(engine, run_id, n_steps=len(rows), cost_usd=total_cost,
                               finished_at=utcnow())
    except BaseException as exc:
        try:
            remove_import(run_id, engine=engine)
        except Exception:   # pragma: no cover - the stale-import sweep removes it later
            pass
        _raise_if_locked(exc, engine, source_name, run_id)
        raise
    finally:
        _ACTIVE_IMPORTS.discard(run_id)
    return run_id, len(rows)


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


def remove_import(run_id: int, *, engine: Engine | None = None, chunk: int = CHUNK) -> None:
    """Delete an (unfinished) import run and its rows, one chunk per transaction."""
    steps_io.delete_run_in_chunks(engine or db.get_engine(), run_id, chunk=chunk)


def remove_stale_imports(*, engine: Engine | None = None) -> list[int]:
    """Delete imports left ``importing`` by a process that is gone (killed mid-import) or by
    this process outside an import (a failed clean-up); returns their run ids."""
    import psutil

    engine = engine or db.get_engine()
    host = socket.gethostname()
    stale = []
    for run in steps_io.runs_with_status([IMPORTING], engine=engine):
        try:
            c = json.loads(run.config_json or "{}")
            pid, h = int(c.get("pid")), c.get("host")
        except (TypeError, ValueError):
            continue
        if h != host:
            continue
        if not psutil.pid_exists(pid) or (pid == os.getpid() and run.id not in _ACTIVE_IMPORTS):
            remove_import(int(run.id), engine=engine)
            stale.append(int(run.id))
    return stale


def active_writers(*, engine: Engine | None = None) -> list[str]:
    """What is writing to the base, as the run table says: imports in progress and runs that
    are pending or running (named in a lock-timeout message)."""
    out = []
    for run in steps_io.runs_with_status((IMPORTING, "running", "pending"), engine=engine):
        if run.status != IMPORTING and repo.orphan_reason(run) is not None:
            continue                   # its process is gone: it holds no lock
        if run.status == IMPORTING:
            try:
                c = json.loads(run.config_json or "{}")
            except ValueError:
                c = {}
            out.append(f"import of {c.get('source', run.dataset)} (run {run.id}, pid "
                       f"{c.get('pid')})")
        else:
            out.append(f"run {run.id} ({run.backend} on {run.dataset}, {run.status})")
    return out
