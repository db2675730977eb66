"""The studio's background index load yields to page runs (ui/state._Foreground) and reads the
base in batches with a hook between them (SyncedIndex.between_batches)."""

from __future__ import annotations

import threading
import time

from evoroute.experience import SyncedIndex
from evoroute.storage import repo
from evoroute.storage.tables import StepRecord
from ui.state import _Foreground

import db_helpers


def _add_steps(db_session, n: int, prefix: str) -> None:
    run = repo.create_run(session=db_session, config={})
    task = db_helpers.create_task(session=db_session, run_id=run.id, task_key="t")
    db_helpers.add_steps([StepRecord(run_id=run.id, task_id=task.id, task_key="t", step_index=i,
                                     phase="optimize", role="r", model="m",
                                     instruction=f"{prefix}{i}", cost_usd=0.001, duration_s=1.0,
                                     step_success=1.0)
                          for i in range(n)], session=db_session)


def _timed_yield(fg: _Foreground) -> float:
    t = time.monotonic()
    fg.yield_to_pages()
    return time.monotonic() - t


def test_the_load_waits_while_a_page_runs_and_not_longer():
    fg = _Foreground()
    fg.PAUSE_S = 5.0
    assert _timed_yield(fg) < 0.05 and not fg.busy()          # no page: no pause
    done = threading.Event()

    def page(seconds: float) -> None:
        with fg.running():
            time.sleep(seconds)
        done.set()

    threading.Thread(target=page, args=(0.4,)).start()
    time.sleep(0.05)
    assert fg.busy()
    waited = _timed_yield(fg)
    assert done.is_set() and 0.3 < waited < 2.0               # until the page run ended


def test_a_page_waiting_for_the_index_does_not_hold_the_load():
    fg = _Foreground()
    fg.PAUSE_S = 5.0
    with fg.running():
        assert fg.busy()
        with fg.waiting_for_index():                          # e.g. Pareto's counterfactual
            assert not fg.busy() and _timed_yield(fg) < 0.05
        assert fg.busy()


def test_a_page_that_never_ends_delays_each_batch_by_the_cap_only():
    fg = _Foreground()
    fg.PAUSE_S = 0.2
    with fg.running():
        assert 0.15 < _timed_yield(fg) < 1.5


def test_synced_index_calls_the_hook_between_batches(engine, db_session):
    _add_steps(db_session, 7, "x")
    calls: list[int] = []
    synced = SyncedIndex(engine, batch=3, between_batches=lambda: calls.append(1))
    assert len(synced.index) == 7 and len(calls) == 3         # batches of 3, 3 and 1


def test_a_sync_inside_a_page_run_does_not_wait_for_that_page(engine, db_session, monkeypatch):
    """Only the background build yields: a page's own sync (experience_index()) must not wait
    for the page it runs in."""
    from ui import state

    fg = _Foreground()
    fg.PAUSE_S = 5.0
    monkeypatch.setattr(state, "FOREGROUND", fg)
    shared = state._SharedIndex(engine)
    assert shared.ready.wait(30) and shared.error is None
    _add_steps(db_session, 3, "y")
    with fg.running():
        t = time.monotonic()
        assert shared.synced.sync() == 3
        assert time.monotonic() - t < 1.0
