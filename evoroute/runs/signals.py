"""Signals: SIGTERM behaves like Ctrl-C, and neither interrupts a commit.

Inside :func:`signals_deferred` (the writer's commits) a signal waits until the transaction
has ended, so a run stopped by a signal keeps every committed step and writes its status.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM received while :func:`handle_signals` is active."""

    def __init__(self, signame: str) -> None:
        super().__init__(signame)
        self.signame = signame
        self.signum = int(getattr(signal, signame, signal.SIGINT))


class _SignalState:
    depth = 0                      # > 0 inside a commit: the signal waits until it ends
    pending: str | None = None
    received: str | None = None    # the last signal seen (for a run closed by its consumer)


SIG = _SignalState()


def _on_signal(signum: int, _frame: Any) -> None:
    name = signal.Signals(signum).name
    SIG.received = name
    if SIG.depth:
        SIG.pending = name
        return
    raise Interrupted(name)


@contextmanager
def handle_signals() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C: both raise :class:`Interrupted` (a KeyboardInterrupt), but
    never inside a commit — there it is deferred until the transaction has ended, so a run
    stopped by a signal keeps every committed step and writes its status and reason. Only in
    the main thread (elsewhere Python cannot install handlers); a no-op there."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in old:
        signal.signal(sig, _on_signal)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        SIG.pending = SIG.received = None


@contextmanager
def signals_deferred() -> Iterator[None]:
    SIG.depth += 1
    try:
        yield
    finally:
        SIG.depth -= 1
    if not SIG.depth and SIG.pending:
        name, SIG.pending = SIG.pending, None
        raise Interrupted(name)
