"""Engine creation. SQLite gets WAL, a busy timeout and foreign keys; any SQLAlchemy URL works."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, create_engine

from evoroute import settings as config
from evoroute.storage import migrations
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
    _upgrade_schema(engine)
    return engine


def _upgrade_schema(engine: Engine, attempts: int = 3) -> list[str]:
    """Create a fresh base or migrate an existing one to the head revision (migrations/).

    On SQLite one process migrates at a time (migrations.upgrade takes the write lock first).
    Another database without that lock can see two processes create the same table at once:
    the slower one fails with "already exists", and trying again finds the base current."""
    for attempt in range(attempts):
        try:
            return migrations.upgrade(engine)
        except DBAPIError as e:
            if "already exists" not in str(e) or attempt == attempts - 1:
                raise
    return []


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
    """The process-wide engine for ``url`` (created once, its schema brought to the head)."""
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
