"""Engine creation. SQLite gets WAL, a busy timeout and foreign keys; any SQLAlchemy URL works."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel, create_engine

from evoroute import settings as config
from evoroute.storage import tables  # noqa: F401  (registers the tables on the metadata)
from evoroute.storage.sqlite_wal import enable_wal

_ENGINES: dict[str, Engine] = {}
_LOCK = threading.Lock()
BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - exercised via engine use
    enable_wal(dbapi_conn, BUSY_TIMEOUT_MS / 1000)   # sets the busy timeout first
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str | None = None) -> Engine:
    """A new engine for ``url`` (default: ``EVOROUTE_DB_URL`` or the SQLite file under var/)."""
    url = url or config.db_url()
    if url.startswith("sqlite"):
        memory = _is_memory_url(url)
        if not memory:
            Path(url.split("///", 1)[-1]).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False,
                                                  "timeout": BUSY_TIMEOUT_MS / 1000},
                               **({"poolclass": StaticPool} if memory else {}))
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    _create_tables(engine)
    add_missing_columns(engine)
    return engine


def add_missing_columns(engine: Engine) -> list[str]:
    """The minimal upgrade path of a base created by older code: ``create_all`` never alters a
    table, so every column the tables declare but the database lacks is added with
    ``ALTER TABLE ... ADD COLUMN`` (nullable columns only: older rows get NULL). Returns the
    ``table.column`` names added. Safe when two processes upgrade the same file at once (the
    loser's "duplicate column" is ignored). A real migration tool replaces this later.
    """
    from sqlalchemy import inspect, text
    from sqlalchemy.exc import DBAPIError

    insp = inspect(engine)
    added: list[str] = []
    for table in SQLModel.metadata.sorted_tables:
        if not insp.has_table(table.name):
            continue
        have = {c["name"] for c in insp.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            if not column.nullable:
                from evoroute.errors import EvoRouteError
                raise EvoRouteError(f"the experience base lacks column {table.name}."
                                    f"{column.name}, which cannot be added as NULL: it needs a "
                                    f"migration")
            ddl = (f"ALTER TABLE {engine.dialect.identifier_preparer.quote(table.name)} ADD "
                   f"COLUMN {engine.dialect.identifier_preparer.quote(column.name)} "
                   f"{column.type.compile(dialect=engine.dialect)}")
            try:
                with engine.begin() as conn:
                    conn.execute(text(ddl))
                added.append(f"{table.name}.{column.name}")
            except DBAPIError as exc:
                if "duplicate column" not in str(exc).lower():
                    raise
    return added


def _create_tables(engine: Engine, attempts: int | None = None) -> None:
    """create_all, tolerant of another process creating the same tables at the same moment.

    create_all checks for each table and then creates it; two processes opening a fresh file
    together can both pass the check, and the slower one fails with "already exists". Running
    create_all again sees the table and goes on.
    """
    # each lost race costs one table, so one attempt per table and one more always suffice
    # (5 today, as before; this keeps it right when a table is added)
    attempts = attempts or len(SQLModel.metadata.tables) + 1
    for attempt in range(attempts):
        try:
            SQLModel.metadata.create_all(engine)
            return
        except OperationalError as e:
            if "already exists" not in str(e) or attempt == attempts - 1:
                raise


def _after_fork_in_child() -> None:
    """A forked child (the bench's worker pool) must not reuse the parent's pooled connections
    to a database file (SQLite forbids carrying one across fork); it opens its own. In-memory
    SQLite engines stay: the child's copy of that memory *is* its database."""
    global _LOCK
    _LOCK = threading.Lock()
    for url in list(_ENGINES):
        if _is_memory_url(url):
            continue
        _ENGINES.pop(url).dispose(close=False)


def _is_memory_url(url: str) -> bool:
    return url.startswith("sqlite") and url.split("///", 1)[-1] in ("", ":memory:", "sqlite://")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (created once, tables created if missing)."""
    url = url or config.db_url()
    with _LOCK:
        if url not in _ENGINES:
            _ENGINES[url] = make_engine(url)
        return _ENGINES[url]


def session(engine: Engine | None = None) -> Session:
    """A session whose objects stay readable after commit.

    pysqlite opens a write transaction only at the first INSERT/UPDATE/DELETE, so a writer
    waits on the busy timeout instead of failing on a read-to-write lock upgrade.
    """
    return Session(engine or get_engine(), expire_on_commit=False)
