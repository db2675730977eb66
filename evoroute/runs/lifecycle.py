"""The lifecycle of a run: who owns it, its heartbeat, stopping, deleting, its final status and
the stored steps a resumed run replays (SQL in :mod:`evoroute.storage.run_store`).

A run records its owner process (pid, start time, host) and a heartbeat (every commit, and
every :data:`HEARTBEAT_S` from a thread in between). A run whose process is gone reads as
``interrupted`` (``repo.reconcile_runs``, persisted by the first reader). ``resume`` replays
the loop from the seed up to the last stored step without writing, then continues: the result
equals an uninterrupted run.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from evoroute.core.errors import EvoRouteError
from evoroute.core.types import StepOutcome
from evoroute.runs import stages
from evoroute.runs.loop import RecordedStep, ResumeDivergence, StepResult
from evoroute.runs.signals import signals_deferred
from evoroute.storage import db, repo, run_store

HEARTBEAT_S = 2.0             # the heartbeat thread refreshes a run this often between commits


class RunTakenOver(EvoRouteError):
    """The run row is no longer this process's (marked interrupted, resumed elsewhere or
    deleted): the worker stops without writing."""


class StoppedWhilePreparing(EvoRouteError):
    """A stop was asked for during the long preparation stage (a live collection pass): the run
    ends ``stopped`` before its first step (what the stage made so far is kept, e.g. a pass's
    cached task runs)."""


# ---------------------------------------------------------------- ownership and heartbeat
def claim(engine: Engine, run_id: int, resume: bool, claim_from: Sequence[str] | None = None
          ) -> repo.ProcessIdentity:
    """Atomically make this process the run's owner: a pending run (execute) or an
    interrupted / stopped one (resume); anything else raises with what to do."""
    owner = repo.process_identity()
    allowed = tuple(claim_from or (repo.RESUMABLE_STATUSES if resume else ("pending",)))
    try:
        claimed, run = run_store.claim_run(engine, run_id, owner, allowed, resume)
    except OperationalError as exc:
        raise EvoRouteError(write_failure(exc, run_id, 0).replace(
            "interrupted: cannot write", f"cannot start run {run_id}: cannot write", 1)) from None
    if claimed:
        return owner
    if run is None:
        raise EvoRouteError(f"no run with id {run_id}")
    status = run.status
    if status in repo.RESUMABLE_STATUSES and not resume:
        raise EvoRouteError(f"run {run_id} is {status}; resume it with `python -m evoroute runs "
                            f"resume {run_id}`")
    if status in repo.ACTIVE_STATUSES:
        raise EvoRouteError(f"run {run_id} is already {status} (pid {run.pid} on {run.host})")
    what = "resumed (only an interrupted or stopped run can)" if resume else \
        "executed (only a pending run can)"
    raise EvoRouteError(f"run {run_id} is {status}; it cannot be {what}")


class Heartbeat:
    """Refreshes ``Run.heartbeat_at`` every :data:`HEARTBEAT_S` when no commit did (a long
    live call, the preparation of a run). A thread with its own connection; not used on an
    in-memory SQLite base (one shared connection, and no other process can read it)."""

    def __init__(self, engine: Engine, run_id: int, owner: repo.ProcessIdentity) -> None:
        self.engine, self.run_id, self.owner = engine, run_id, owner
        self.last = time.monotonic()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        url = engine.url
        if not (url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")):
            self._thread = threading.Thread(target=self._beat, name=f"heartbeat-run-{run_id}",
                                            daemon=True)
            self._thread.start()

    def touch(self) -> None:
        self.last = time.monotonic()

    def _beat(self) -> None:
        while not self._halt.wait(HEARTBEAT_S):
            if time.monotonic() - self.last < HEARTBEAT_S:
                continue
            try:
                run_store.beat(self.engine, self.run_id, self.owner)
                self.touch()
            except Exception:   # noqa: BLE001 - a missed beat is retried; the run decides its fate
                pass

    def stop(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class StageReporter:
    """``report(stage, progress, detail)``: commits what the run is doing now (``Run.stage``,
    ``stage_progress``, ``stage_detail``), fenced on ownership, so the studio sees it while it
    happens. A new stage, a stage's end (progress 1) and a progress that cannot be measured
    (None) are always written; progress within a stage at most every :data:`STAGE_EVERY_S`
    (an embedding batch of cached texts would otherwise write hundreds of rows a second)."""

    STAGE_EVERY_S = 0.2

    def __init__(self, engine: Engine, run_id: int, owner: repo.ProcessIdentity,
                 heartbeat: Heartbeat | None = None) -> None:
        self.engine, self.run_id, self.owner, self.heartbeat = engine, run_id, owner, heartbeat
        self.stage: str | None = None
        self._last = (None, None, None)
        self._at = 0.0

    def __call__(self, stage: str, progress: float | None = None, detail: str | None = None
                 ) -> None:
        now = time.monotonic()
        if (stage, progress, detail) == self._last:
            return
        if stage == self.stage and progress is not None and progress < 1.0 \
                and now - self._at < self.STAGE_EVERY_S:
            return
        with signals_deferred():
            stop = run_store.set_stage(self.engine, self.run_id, self.owner, stage,
                                       None if progress is None else float(progress), detail)
        if stop is None:
            raise RunTakenOver(f"run {self.run_id} is no longer this worker's (pid "
                               f"{self.owner.pid}); stopping without writing")
        self.stage, self._last, self._at = stage, (stage, progress, detail), now
        if stop and stage == stages.COLLECTING:     # the long one; others end within seconds
            raise StoppedWhilePreparing(f"stopped on request while {stages.title(stage)} "
                                        f"({detail or 'before the first step'})")
        if self.heartbeat is not None:
            self.heartbeat.touch()


# ---------------------------------------------------------------- stop, delete, finish
def stop_run(run_id: int, *, engine: Engine | None = None) -> str:
    """Stop a run. A pending run is stopped at once; a running one is asked to stop and its
    worker stops cleanly after the step in progress (it reads the flag at every commit).
    Returns ``"stopped"`` or ``"stopping"``; a run that is not active raises (with what to do)."""
    with db.session(engine or db.get_engine()) as s:
        run = repo.get_run(run_id, session=s)
        if run is None:
            raise EvoRouteError(f"no run with id {run_id}")
        if run.status == "pending":
            if run_store.stop_pending(s, run_id):
                return "stopped"
            run = repo.get_run(run_id, session=s)
        if run.status == "running":
            repo.request_stop(run_id, session=s)
            return "stopping"
        hint = (f"; resume it with `python -m evoroute runs resume {run_id}` or delete it"
                if run.status in repo.RESUMABLE_STATUSES else "")
        raise EvoRouteError(f"run {run_id} is {run.status}, not running{hint}")


def delete_run(run_id: int, *, engine: Engine | None = None) -> dict[str, int]:
    """Delete a run and everything keyed by its id in one transaction; refuses a run whose
    process is still alive (stop it first)."""
    with db.session(engine or db.get_engine()) as s:
        return repo.delete_run(run_id, session=s)


def finish(engine: Engine, run_id: int, owner: repo.ProcessIdentity, status: str,
           error: str | None) -> None:
    """The run's final status, fenced on ownership; retried twice when the base is locked (a
    run that cannot write must not stay ``running``; if even this fails, readers see its
    process gone once it exits and show it interrupted)."""
    last = dict(stage=stages.FINISHED, stage_progress=1.0, stage_detail=None) \
        if status == "finished" else {}       # otherwise the stage it ended in stays shown
    for attempt in range(3):
        try:
            run_store.finish_run(engine, run_id, owner, status, error, **last)
            return
        except OperationalError as exc:
            if attempt == 2:
                print(f"run {run_id}: could not record its end ({status}: {error}): "
                      f"{str(exc).splitlines()[0]}", file=sys.stderr)


def write_failure(exc: BaseException, run_id: int, n_steps: int) -> str:
    text = str(getattr(exc, "orig", exc) or exc)
    if "locked" in text.lower() or "busy" in text.lower():
        cause = (f"the experience base stayed locked by another writer for more than "
                 f"{db.BUSY_TIMEOUT_MS / 1000:g} s (a long import or another process holding the "
                 f"write lock)")
    else:
        cause = f"the experience base refused the write ({type(exc).__name__}: {text.splitlines()[0]})"
    return (f"interrupted: cannot write to the experience base: {cause}; {n_steps} steps are "
            f"stored — resume with `python -m evoroute runs resume {run_id}`")


def interrupt_reason(signame: str, run_id: int, n_steps: int) -> str:
    how = "Ctrl-C (SIGINT)" if signame == "SIGINT" else signame
    return (f"interrupted by {how} after {n_steps} steps (all stored); resume with "
            f"`python -m evoroute runs resume {run_id}`")


# ---------------------------------------------------------------- resuming
def stored_steps(engine: Engine, run_id: int, n_done: int
                 ) -> tuple[dict[int, RecordedStep], dict[int, tuple[str, float | None]]]:
    """The first ``n_done`` steps of a run as stored, and its tasks (id -> key, success)."""
    rows, tasks = run_store.stored_steps(engine, run_id)
    if rows and all(r["step_no"] is None for r in rows):
        if len(rows) != n_done:
            raise EvoRouteError(f"run {run_id} was written by an older EvoRoute that did not number "
                                f"its steps, with failed attempts among them; it cannot be "
                                f"resumed exactly — delete it and run it again")
        for i, r in enumerate(rows):
            r["step_no"] = i + 1
    out: dict[int, RecordedStep] = {}
    for r in rows:
        no, tid = r.pop("step_no"), r.pop("task_id")
        if no is None or no > n_done:
            continue
        rec = out.get(no)
        if rec is None:
            rec = out[no] = RecordedStep([], tid, tasks.get(tid, ("", None))[1] if tid else None)
        rec.attempts.append(StepOutcome(**r))
    missing = [k for k in range(1, n_done + 1) if k not in out]
    if missing:
        raise EvoRouteError(f"run {run_id} records {n_done} steps but step {missing[0]} is not "
                            f"stored; it cannot be resumed exactly")
    return out, tasks


def drop_open_task(engine: Engine, run_id: int, owner: repo.ProcessIdentity,
                   recorded: dict[int, RecordedStep], tasks: dict[int, tuple[str, float | None]]
                   ) -> int:
    """A live run resumes at a task boundary: the steps of the task that was in progress are
    deleted (its agent transcript — replies and tool results — is not stored, so its next step
    could not be built); returns the number of steps kept. One transaction."""
    open_ids = {tid for tid, (_, succ) in tasks.items() if succ is None}
    first = min((no for no, rec in recorded.items() if rec.task_id in open_ids), default=None)
    if first is None:
        return len(recorded)
    dropped = [recorded.pop(no) for no in sorted(recorded) if no >= first]
    lost_cost = sum(o.cost_usd for rec in dropped for o in rec.attempts)
    if not run_store.drop_tasks(engine, run_id, owner, sorted(open_ids), first - 1, lost_cost):
        raise RunTakenOver(f"run {run_id} is no longer this worker's")
    for tid in open_ids:
        tasks.pop(tid, None)
    return first - 1


def _same_outcome(a: StepOutcome, b: StepOutcome) -> bool:
    def eq(x: float | None, y: float | None) -> bool:
        if x is None or y is None:
            return x is y
        return bool(np.isclose(float(x), float(y), rtol=1e-9, atol=1e-15, equal_nan=True))
    return a.model == b.model and eq(a.step_success, b.step_success) and eq(a.cost_usd, b.cost_usd) \
        and (a.error is None) == (b.error is None)


def check_replayed(run_id: int, r: StepResult, rec: RecordedStep) -> None:
    """A replayed step must give the stored attempts (model, outcome, cost, error or not)."""
    got = [o for _, o in r.failed] + [r.outcome]
    if len(got) != len(rec.attempts) or not all(map(_same_outcome, got, rec.attempts)):
        want = rec.attempts[-1]
        raise ResumeDivergence(
            f"cannot resume run {run_id} exactly: step {r.step_no} is stored as {want.model} "
            f"(outcome {want.step_success}, ${want.cost_usd:.6f}) but replays as "
            f"{r.outcome.model} (outcome {r.outcome.step_success}, ${r.outcome.cost_usd:.6f}); "
            f"the data, the registered models or their prices changed since it started — delete "
            f"it and run it again")
