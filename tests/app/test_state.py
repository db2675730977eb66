"""ui.state: the shared experience index is only waited for when it can be ready by then."""

from __future__ import annotations

import threading
import time

from ui import state


def _index(done_in_s: float, ready: bool = False) -> state._SharedIndex:
    idx = state._SharedIndex.__new__(state._SharedIndex)     # no build thread: the timing only
    idx.ready = threading.Event()
    if ready:
        idx.ready.set()
    idx.done_by = time.monotonic() + done_in_s
    return idx


def test_a_load_that_cannot_finish_within_the_wait_is_not_waited_for():
    """100,000 records take seconds: the Pareto page's first visit no longer waits 0.3 s for
    an index that cannot be ready by then (it shows "loading" and polls)."""
    idx = _index(done_in_s=2.0)
    t = time.perf_counter()
    assert idx.wait(0.3) is False
    assert time.perf_counter() - t < 0.05


def test_a_load_that_can_finish_is_waited_for_and_a_ready_one_answers_at_once():
    idx = _index(done_in_s=0.0)
    threading.Timer(0.1, idx.ready.set).start()
    t = time.perf_counter()
    assert idx.wait(0.3) is True                       # a small base: ready within the wait
    assert 0.05 < time.perf_counter() - t < 0.3
    assert _index(done_in_s=5.0, ready=True).wait(0.3) is True
