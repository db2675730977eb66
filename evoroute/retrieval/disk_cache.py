"""The embedding disk cache: (model, sha256(text)) -> float32 vector in one SQLite file."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from evoroute.storage.sqlite_wal import enable_wal

log = logging.getLogger(__name__)


_CACHES: "weakref.WeakSet[DiskCache]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for cache in list(_CACHES):
        cache._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class DiskCache:
    """Persistent (model, sha256(text)) -> float32 vector store in one SQLite file.

    SQLite's own locking makes it safe for several processes (the CLI, the studio, a
    benchmark) at once; ``INSERT OR IGNORE`` makes concurrent writes of the same text
    harmless. It is an optimisation: if the file cannot be used, caching is switched off
    with a warning instead of failing the run.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self.enabled = True
        _CACHES.add(self)

    def _forget_after_fork(self) -> None:
        # a forked child must not use the parent's connection (SQLite forbids it); it reopens
        self._lock = threading.Lock()
        self._conn = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            try:
                enable_wal(conn, 30.0)
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("CREATE TABLE IF NOT EXISTS vectors (model TEXT NOT NULL, "
                             "key TEXT NOT NULL, vec BLOB NOT NULL, PRIMARY KEY (model, key)) "
                             "WITHOUT ROWID")
                conn.commit()
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _disable(self, exc: Exception) -> None:
        log.warning("embedding disk cache %s disabled: %s", self.path, exc)
        self.enabled = False

    def get_many(self, model: str, keys: Sequence[str], dim: int) -> dict[str, np.ndarray]:
        if not self.enabled or not keys:
            return {}
        found: dict[str, np.ndarray] = {}
        try:
            with self._lock:
                conn = self._connect()
                for start in range(0, len(keys), 500):
                    chunk = list(keys[start:start + 500])
                    marks = ",".join("?" * len(chunk))
                    rows = conn.execute(
                        f"SELECT key, vec FROM vectors WHERE model = ? AND key IN ({marks})",
                        [model, *chunk]).fetchall()
                    for key, blob in rows:
                        vec = np.frombuffer(blob, dtype=np.float32)
                        if vec.shape == (dim,):
                            found[key] = vec
        except (sqlite3.Error, OSError) as exc:
            self._disable(exc)
        return found

    def put_many(self, model: str, items: Iterable[tuple[str, np.ndarray]]) -> None:
        if not self.enabled:
            return
        rows = [(model, key, np.asarray(vec, dtype=np.float32).tobytes()) for key, vec in items]
        if not rows:
            return
        try:
            with self._lock:
                conn = self._connect()
                with conn:  # one transaction
                    conn.executemany("INSERT OR IGNORE INTO vectors (model, key, vec) "
                                     "VALUES (?, ?, ?)", rows)
        except (sqlite3.Error, OSError) as exc:
            self._disable(exc)

    def count(self, model: str) -> int:
        if not self.enabled:
            return 0
        with self._lock:
            return self._connect().execute(
                "SELECT COUNT(*) FROM vectors WHERE model = ?", [model]).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
