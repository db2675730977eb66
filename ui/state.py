"""Process-wide resources of the studio (engine, experience index, embedder) and the session.

``st.cache_resource`` keeps one of each per database URL, so every page and every browser
tab shares them; the experience index is synced incrementally (new record ids only) on use.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st
from sqlalchemy.engine import Engine
from sqlmodel import Session

from evoroute import settings
from evoroute.core.errors import EvoRouteError
from evoroute.experience import SyncedIndex
from evoroute.storage import db, views
from evoroute.storage.indexes import ensure_indexes


def leave_legacy_pages_mode() -> None:
    """Run every page through app.py's st.navigation, even on a fresh server's first request.

    Streamlit treats a ``pages/`` folder beside the entry script as a legacy (v1) multipage
    app until ``st.navigation`` has run once in the process; a first request that deep-links
    to a page (``/runs?run=5`` after a restart) would then skip app.py. Switching the flag
    and rerunning sends that request through the navigation like any other.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        # AppTest (whose runtime is a mock) re-detects the folder before every run and drives
        # pages through that legacy path itself; a rerun there would only swallow the widget
        # event under test
        if not _under_apptest():
            st.rerun()


def _under_apptest() -> bool:
    from unittest.mock import Mock

    from streamlit.runtime import Runtime

    return isinstance(getattr(Runtime, "_instance", None), Mock)


def db_url() -> str:
    return settings.db_url()


@st.cache_resource(show_spinner=False)
def _engine(url: str) -> Engine:
    eng = db.get_engine(url)
    ensure_indexes(eng)
    return eng


def engine() -> Engine:
    leave_legacy_pages_mode()
    return _engine(db_url())


@contextmanager
def session() -> Iterator[Session]:
    with db.session(engine()) as s:
        yield s


#: Seconds a SyncedIndex takes per record to build, at least (100,000 records: 1.8 s on the
#: benchmark machine, unloaded): what a page may expect before waiting for it.
INDEX_BUILD_S_PER_RECORD = 10e-6


class _Foreground:
    """Page runs in progress (``app.py`` runs every page inside :meth:`running`).

    The background load of the experience index reads the base in batches and, between two,
    waits while a page runs (up to ``PAUSE_S`` a batch), so a page opened while it loads does
    not share the interpreter with it: both are Python code under one GIL, and the page's
    server time doubled (Compare after Pareto: 0.4 s of render took 1.45 s of CPU). A page run
    that is itself waiting for the index does not count, or the two would wait for each other.
    """

    PAUSE_S = 3.0

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._running = 0
        self._waiting = 0

    @contextmanager
    def running(self) -> Iterator[None]:
        with self._cv:
            self._running += 1
        try:
            yield
        finally:
            with self._cv:
                self._running -= 1
                self._cv.notify_all()

    @contextmanager
    def waiting_for_index(self) -> Iterator[None]:
        with self._cv:
            self._waiting += 1
            self._cv.notify_all()
        try:
            yield
        finally:
            with self._cv:
                self._waiting -= 1

    def busy(self) -> bool:
        with self._cv:
            return self._running > self._waiting

    def yield_to_pages(self) -> None:
        """Wait until no page is running (or all running ones wait for the index), at most
        ``PAUSE_S``."""
        with self._cv:
            self._cv.wait_for(lambda: self._running <= self._waiting, timeout=self.PAUSE_S)


FOREGROUND = _Foreground()
#: records the background index load reads between two checks for a running page (~60 ms)
INDEX_LOAD_BATCH = 5_000


def page_run():
    """Context of one page run (``app.py``): background loads pause while it lasts."""
    return FOREGROUND.running()


class _SharedIndex:
    """The whole base as one SyncedIndex shared by all sessions.

    Built in a background thread as soon as the studio opens (100,000 records take seconds
    to load), then used under a lock so a sync never runs while another session reads it.
    """

    def __init__(self, eng: Engine) -> None:
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.synced: SyncedIndex | None = None
        self.error: str | None = None
        with db.session(eng) as s:
            n = views.count_records(session=s)
        self.done_by = time.monotonic() + n * INDEX_BUILD_S_PER_RECORD   # not before this
        threading.Thread(target=self._build, args=(eng,), name="experience-index",
                         daemon=True).start()

    def wait(self, wait_s: float) -> bool:
        """Whether the index is ready, waiting up to ``wait_s`` only if it can be by then (a
        wait that cannot end with the index ready would only delay the page)."""
        if self.ready.is_set() or time.monotonic() + wait_s < self.done_by:
            return self.ready.is_set()
        with FOREGROUND.waiting_for_index():
            return self.ready.wait(wait_s)

    def _build(self, eng: Engine) -> None:
        try:
            synced = SyncedIndex(eng, batch=INDEX_LOAD_BATCH,
                                 between_batches=FOREGROUND.yield_to_pages)
            # later syncs run inside a page (experience_index()): a page must not wait for
            # itself, so only this background build yields
            synced.between_batches = None
            synced.batch = 50_000
            self.synced = synced
        except Exception as exc:  # shown by the pages that need the index
            self.error = f"the experience index could not be loaded ({type(exc).__name__}: {exc})"
        finally:
            self.ready.set()


@st.cache_resource(show_spinner=False)
def _shared_index(url: str) -> _SharedIndex:
    return _SharedIndex(_engine(url))


def experience_index_ready(wait_s: float = 0.0) -> bool:
    """Whether the shared index has finished loading (waiting up to ``wait_s`` when it can
    finish by then: a small base, or a load nearly done); the first call starts loading it in
    the background (pages that need it call this on arrival, so the other pages never share the
    CPU with the load)."""
    return _shared_index(db_url()).wait(wait_s)


@contextmanager
def experience_index() -> Iterator:
    """The whole base as an ExperienceIndex, synced with the database (new ids only) and
    held for the duration of the ``with`` block."""
    shared = _shared_index(db_url())
    if not shared.ready.is_set():
        with FOREGROUND.waiting_for_index():
            shared.ready.wait()
    if shared.error:
        raise EvoRouteError(shared.error)
    with shared.lock:
        shared.synced.sync()
        yield shared.synced.index


@st.cache_resource(show_spinner=False)
def _embedder():
    try:
        from evoroute.retrieval.embedder import get_embedder
    except ImportError:
        return None
    return get_embedder()


def embedder():
    """The sentence embedder, or None if this installation has none (semantic channel off)."""
    return _embedder()


class _Catalogue:
    """litellm's bundled model catalogue, loaded in a background thread.

    The map is read from litellm's bundled file (``registry._cost_map``, ~10 ms; it was an
    ``import litellm`` of seconds); it still loads off the script thread, started when the
    Models page is first opened, so a first visit never waits for it.
    ``ids`` is None until it is ready.
    """

    def __init__(self) -> None:
        self.ids: list[str] | None = None
        self.error: str | None = None
        self.thread = threading.Thread(target=self._load, name="litellm-catalogue", daemon=True)
        self.thread.start()

    def _load(self) -> None:
        from evoroute import registry

        try:
            self.ids = registry.litellm_catalogue()
        except Exception as exc:  # litellm missing or broken: the page falls back to free text
            self.error = f"litellm's catalogue could not be loaded ({type(exc).__name__}: {exc})"
            self.ids = []


@st.cache_resource(show_spinner=False)
def _catalogue() -> _Catalogue:
    return _Catalogue()


def litellm_catalogue() -> tuple[list[str] | None, str | None]:
    """(ids or None while loading, error message or None)."""
    c = _catalogue()
    return c.ids, c.error
