"""A run in the background: a detached ``python -m evoroute worker <run_id>`` process (its own
session, so it outlives the caller), its log under ``logs/`` beside the base.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import Engine, make_url

from evoroute.core.errors import EvoRouteError, ValidationError
from evoroute.runs.execute import create_run, execute_run
from evoroute.runs.signals import Interrupted, handle_signals
from evoroute.runs.spec import RunSpec
from evoroute.settings import PROJECT_ROOT, settings
from evoroute.storage import db, repo, run_store


def worker_command(run_id: int, resume: bool = False) -> list[str]:
    return [sys.executable, "-m", "evoroute", "worker", str(int(run_id)),
            *(["--resume"] if resume else [])]


def _log_path(url: str, run_id: int) -> Path:
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:"):
        base = Path(u.database).resolve().parent
    else:
        base = settings().cache_dir.parent
    return base / "logs" / f"run-{run_id}.log"


def _file_url(url: str | None) -> str:
    url = url or settings().db_url
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database in (None, "", ":memory:"):
        raise ValidationError("a background run needs a database file or server, not an "
                              "in-memory SQLite base", "engine_url")
    return url


def _spawn_worker(url: str, run_id: int, resume: bool) -> subprocess.Popen:
    """The worker runs the installed package (``pip install -e .``) from the project root."""
    log = _log_path(url, run_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        return subprocess.Popen(worker_command(run_id, resume), cwd=PROJECT_ROOT,
                                env={**os.environ, "EVOROUTE_DB_URL": url},
                                stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)


def _hand_over(engine: Engine, run_id: int, proc: subprocess.Popen) -> None:
    """Record the spawned worker as the pending run's owner (while it is still pending and
    ours), so a worker that dies before it claims the run shows the run interrupted."""
    try:
        child = repo.process_identity(proc.pid)
    except Exception:   # noqa: BLE001 - it already exited: the spawner stays the owner
        return
    run_store.hand_over(engine, run_id, repo.process_identity(), child)


def start_background(spec: RunSpec, *, engine_url: str | None = None) -> int:
    """Create the run and execute it in a detached ``python -m evoroute worker <run_id>``
    process (its own session, so it outlives the caller); returns the run id at once."""
    url = _file_url(engine_url)
    engine = db.get_engine(url)
    run_id = create_run(spec, engine=engine)
    _hand_over(engine, run_id, _spawn_worker(url, run_id, resume=False))
    return run_id


def resume_background(run_id: int, *, engine_url: str | None = None) -> int:
    """Resume an interrupted or stopped run in a detached worker; returns its id at once.

    The run goes back to ``pending`` (owned by the new worker) at once, so the studio follows
    it; the worker claims it from there and continues from its last stored step."""
    url = _file_url(engine_url)
    engine = db.get_engine(url)
    with db.session(engine) as s:
        run = repo.get_run(run_id, session=s)
        if run is None:
            raise EvoRouteError(f"no run with id {run_id}")
        if not run_store.reopen_for_resume(s, run_id, repo.process_identity()):
            raise EvoRouteError(f"run {run_id} is {run.status}; only an interrupted or stopped "
                                f"run can be resumed")
    _hand_over(engine, run_id, _spawn_worker(url, run_id, resume=True))
    return run_id


def worker_main(run_id: int, engine_url: str | None = None, resume: bool = False) -> int:
    """Body of ``python -m evoroute worker <run_id> [--resume]``: run it to the end. A pending
    run is executed, an interrupted one resumed (``resume``: one handed over by
    :func:`resume_background`). Exit
    status 0 when it finished or stopped cleanly, 1 when it failed or could not run (the
    reason is in ``Run.error``), 128 + the signal on SIGINT / SIGTERM."""
    engine = db.get_engine(engine_url)
    n = 0
    with handle_signals():
        with db.session(engine) as s:
            run = repo.get_run(run_id, session=s)
        if run is None:
            print(f"run {run_id}: no such run", file=sys.stderr)
            return 1
        # --resume: a run resume_background handed over (pending again); without it, a
        # pending run is executed and an interrupted one resumed (a stopped one is left stopped)
        gen = execute_run(run_id, engine=engine, resume=resume or run.status == "interrupted",
                          claim_from=("pending",) if resume else None)
        try:
            for _ in gen:
                n += 1
        except EvoRouteError as exc:
            print(f"run {run_id} failed: {exc}", file=sys.stderr)
            return 1
        except Interrupted as exc:
            print(f"run {run_id}: interrupted by {exc.signame} after {n} new steps",
                  file=sys.stderr)
            return 128 + exc.signum
        finally:
            gen.close()
    with db.session(engine) as s:
        run = repo.get_run(run_id, session=s)
    print(f"run {run_id}: {run.status if run else '?'} after {n} steps"
          + (f" — {run.error}" if run and run.error else ""), file=sys.stderr)
    return 0 if run is not None and run.status in ("finished", "stopped") else 1
