"""Run lifecycle under real failures (issue 10, item 2): real worker processes on a real SQLite
file killed with SIGKILL at several points, SIGTERM / SIGINT, `runs stop`, a lock timeout; the
run must read ``interrupted`` within seconds, lose at most one step per kill, leave no
half-written rows, resume to exactly the records of an uninterrupted run, delete completely.

"Records lost per kill" is measured, not assumed: the worker runs through the real CLI
(`python -m evoroute worker N`) with one addition, a counter that appends a byte to a file each
time the replay backend executes a step (an O_APPEND write, which a SIGKILL cannot undo). A
resumed worker re-executes the stored steps while replaying them, so after a kill
``lost = executions - steps stored``. Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event, text
from sqlmodel import func, select

from evoroute import demo
from evoroute.core.errors import EvoRouteError
from evoroute.runs import execute, lifecycle
from evoroute.runs.spec import RunSpec
from evoroute.storage import db, migrations, repo
from evoroute.storage.tables import Run, StepRecord, Task

ROOT = Path(__file__).resolve().parents[2]
# 20 cold-start + 150 online train + 80 test one-step tasks of RouterBench, replayed
SPEC = dict(backend="replay", dataset="routerbench", router="evoroute", seed=7,
            cold_start_tasks=20, n_train=150, n_tasks=80)
N_STEPS = 250
DETECT_S = 5.0          # "within seconds"

COUNTING_WORKER = """
import os, sys, time
from evoroute.backends import base
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
_execute = base.TableBackend.execute
delay = float(os.environ.get("TEST_STEP_DELAY_S", "0"))
def counted(self, step, model):
    out = _execute(self, step, model)
    os.write(fd, b"x")
    time.sleep(delay)
    return out
base.TableBackend.execute = counted
from evoroute.cli.main import main
raise SystemExit(main(sys.argv[2:]))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def cli(url: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evoroute", "--db", url, *args], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=timeout)


def counting_worker(url: str, run_id: int, counter: Path, *extra: str,
                    step_delay_s: float = 0.0) -> subprocess.Popen:
    """The real worker, counting executed steps; ``step_delay_s`` slows each step so a test's
    next action surely lands while the run is still going."""
    env = {**_env(), "TEST_STEP_DELAY_S": str(step_delay_s)}
    return subprocess.Popen([sys.executable, "-c", COUNTING_WORKER, str(counter), "--db", url,
                             "worker", str(run_id), *extra], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def executions(counter: Path) -> int:
    return counter.stat().st_size if counter.exists() else 0


def row(engine, run_id: int) -> Run | None:
    with db.session(engine) as s:
        return repo.get_run(run_id, session=s)


def wait_for(cond, timeout: float = 120.0, every: float = 0.01):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(every)
    return cond()


def records(engine, run_id: int) -> list[tuple]:
    """What a step decided and observed: the records compared between runs."""
    with db.session(engine) as s:
        rows = s.exec(select(StepRecord.step_no, StepRecord.task_key, StepRecord.phase,
                             StepRecord.model, StepRecord.step_success, StepRecord.cost_usd,
                             StepRecord.task_success, StepRecord.propensity)
                      .where(StepRecord.run_id == run_id).order_by(StepRecord.id)).all()
    return [tuple(r) for r in rows]


def assert_whole(engine, run_id: int) -> int:
    """No half-written rows: steps numbered 1..n once each, n = the run's count, every step in
    a task of the run, finished tasks consistent with their steps, costs adding up."""
    with db.session(engine) as s:
        run = repo.get_run(run_id, session=s, reconcile=False)
        steps = s.exec(select(StepRecord.step_no, StepRecord.task_id, StepRecord.cost_usd,
                              StepRecord.task_success).where(StepRecord.run_id == run_id)
                       .order_by(StepRecord.id)).all()
        tasks = {t.id: t for t in s.exec(select(Task).where(Task.run_id == run_id))}
    assert [n for n, *_ in steps] == list(range(1, run.n_steps_done + 1))
    assert {tid for _, tid, _, _ in steps} == set(tasks)          # no orphan step, no empty task
    for tid, t in tasks.items():
        mine = [st for st in steps if st[1] == tid]
        if t.success is not None:
            assert t.n_steps == len(mine) and all(st[3] == t.success for st in mine)
    assert run.cost_usd == pytest.approx(sum(c for _, _, c, _ in steps), abs=1e-9)
    return run.n_steps_done


def new_base(tmp_path: Path, name: str = "base.db") -> tuple[str, object]:
    url = f"sqlite:///{tmp_path / name}"
    engine = db.make_engine(url)
    demo.register_routerbench_models(engine)
    return url, engine


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[tuple]:
    """The uninterrupted run of SPEC, in this process."""
    _, engine = new_base(tmp_path_factory.mktemp("reference"))
    out = list(execute.run_spec(RunSpec(**SPEC), engine=engine))
    assert len(out) == N_STEPS
    recs = records(engine, out[-1]["run_id"])
    engine.dispose()
    return recs


# ----------------------------------------------------------------------------- kill -9
def test_sigkill_at_many_points_loses_at_most_one_step_and_resume_equals_uninterrupted(
        tmp_path, reference):
    url, engine = new_base(tmp_path)
    run_id = execute.create_run(RunSpec(**SPEC), engine=engine)
    rnd = random.Random(10)
    lost, latency, points = [], [], []
    for k in range(8):
        counter = tmp_path / f"exec-{k}"
        before = row(engine, run_id).n_steps_done
        proc = counting_worker(url, run_id, counter)
        if k == 0:   # while it prepares: claimed, nothing written yet
            wait_for(lambda pid=proc.pid: (r := row(engine, run_id)).status == "running"
                     and r.pid == pid)
        else:        # mid-way, a little after some step was committed
            target = before + rnd.randint(5, 25)
            assert wait_for(lambda n=target: row(engine, run_id).n_steps_done >= n), proc.stderr.read()
            time.sleep(rnd.random() * 0.02)
        os.kill(proc.pid, signal.SIGKILL)
        t_kill = time.monotonic()
        # not reaped yet: the dead worker is a zombie, which must read as gone too
        assert wait_for(lambda: row(engine, run_id).status == "interrupted", timeout=DETECT_S)
        latency.append(time.monotonic() - t_kill)
        proc.wait()
        run = row(engine, run_id)
        assert "is gone" in run.error and f"pid {proc.pid}" in run.error
        done = assert_whole(engine, run_id)
        lost.append(max(0, executions(counter) - done))
        points.append(done)
    # the last worker resumes to the end
    proc = counting_worker(url, run_id, tmp_path / "exec-final")
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    run = row(engine, run_id)
    assert run.status == "finished" and run.error is None
    assert assert_whole(engine, run_id) == N_STEPS
    assert records(engine, run_id) == reference
    cfg = json.loads(run.config_json)
    assert cfg["resolved"]["resumed_at_steps"] == points
    print(f"\nSIGKILL x{len(lost)} at steps {points}: records lost per kill {lost} "
          f"(max {max(lost)}, mean {np.mean(lost):.2f}); interrupted read after "
          f"{', '.join(f'{x * 1000:.0f}' for x in latency)} ms (max {max(latency) * 1000:.0f} ms)")
    assert max(lost) <= 1
    assert max(latency) < DETECT_S


def test_a_batch_of_50_would_lose_many_steps_per_kill(tmp_path, monkeypatch):
    """The measure above can fail: with the old commit batch a kill loses tens of steps."""
    url, engine = new_base(tmp_path)
    run_id = execute.create_run(RunSpec(**SPEC), engine=engine)
    counter = tmp_path / "exec"
    code = COUNTING_WORKER.replace("from evoroute.cli.main import main",
                                   "from evoroute.runs import writer\n"
                                   "writer.COMMIT_EVERY_STEPS, writer.COMMIT_EVERY_S = 50, 1e9\n"
                                   "from evoroute.cli.main import main")
    proc = subprocess.Popen([sys.executable, "-c", code, str(counter), "--db", url, "worker",
                             str(run_id)], cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    assert wait_for(lambda: executions(counter) >= 80)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = assert_whole(engine, run_id)
    assert done % 50 == 0 and executions(counter) - done >= 10


# ----------------------------------------------------------------------------- signals, stop
@pytest.mark.parametrize("sig, how", [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "Ctrl-C (SIGINT)")])
def test_sigterm_and_sigint_stop_cleanly_and_resume(tmp_path, reference, sig, how):
    url, engine = new_base(tmp_path)
    run_id = execute.create_run(RunSpec(**SPEC), engine=engine)
    counter = tmp_path / "exec"
    proc = counting_worker(url, run_id, counter)
    assert wait_for(lambda: row(engine, run_id).n_steps_done >= 40)
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 128 + sig
    run = row(engine, run_id)
    assert run.status == "interrupted"
    assert run.error.startswith(f"interrupted by {how} after {run.n_steps_done} steps")
    assert f"runs resume {run_id}" in run.error
    done = assert_whole(engine, run_id)
    assert 0 <= executions(counter) - done <= 1
    res = cli(url, "runs", "resume", str(run_id))
    assert res.returncode == 0, res.stderr
    assert f"run {run_id}: finished" in res.stdout
    assert records(engine, run_id) == reference


def test_runs_stop_stops_a_background_worker_and_resume_continues(tmp_path, reference):
    url, engine = new_base(tmp_path)
    args = ["--backend", "replay", "--data", "routerbench", "--seed", "7", "--cold-start", "20",
            "--train", "150", "--tasks", "80"]
    res = cli(url, "run", "--background", *args)
    assert res.returncode == 0, res.stderr
    run_id = int(res.stdout.split()[2])
    # pause the worker as soon as it has claimed the run, while the CLI starts, so a fast
    # machine cannot finish the 250 steps before `runs stop` arrives (it did: a commit per step
    # is ~2.5 ms); the flag is read at the worker's next commit
    import threading

    assert wait_for(lambda: row(engine, run_id).status == "running")
    pid = row(engine, run_id).pid
    out: dict = {}
    os.kill(pid, signal.SIGSTOP)
    try:
        t = threading.Thread(target=lambda: out.update(res=cli(url, "runs", "stop", str(run_id))))
        t.start()
        assert wait_for(lambda: row(engine, run_id).stop_requested, timeout=60)
    finally:
        os.kill(pid, signal.SIGCONT)
    t.join(120)
    res = out["res"]
    assert res.returncode == 0, res.stderr
    assert f"run {run_id}: stopped — stopped on request after" in res.stdout
    assert wait_for(lambda: repo.process_alive(pid, None, row(engine, run_id).host) is False,
                    timeout=10)
    run = row(engine, run_id)
    assert run.status == "stopped" and run.n_steps_done < N_STEPS
    assert assert_whole(engine, run_id) == run.n_steps_done
    assert "stopped" in cli(url, "runs", "stop", str(run_id)).stderr       # nothing to stop now
    res = cli(url, "runs", "resume", str(run_id), "--background")
    assert res.returncode == 0, res.stderr
    assert wait_for(lambda: row(engine, run_id).status == "finished", timeout=300)
    assert records(engine, run_id) == reference
    listing = cli(url, "runs", "list").stdout
    assert f"{run_id:5d} finished" in listing


def test_a_pending_run_whose_creator_died_reads_interrupted_and_resumes(tmp_path):
    url, engine = new_base(tmp_path)
    code = ("from evoroute.runs.execute import create_run\nfrom evoroute.runs.spec import RunSpec\n"
            "from evoroute.storage import db\n"
            f"print(create_run(RunSpec(**{SPEC!r}), engine=db.get_engine({url!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True,
                         text=True, check=True)
    run_id = int(out.stdout.strip())
    run = row(engine, run_id)
    assert run.status == "interrupted" and "the process that created it" in run.error
    res = cli(url, "worker", str(run_id))               # `worker N` resumes it (from step 0)
    assert res.returncode == 0, res.stderr
    assert row(engine, run_id).status == "finished" and assert_whole(engine, run_id) == N_STEPS


# ----------------------------------------------------------------------------- lock timeout
def test_a_run_that_cannot_write_ends_interrupted_with_the_reason(tmp_path, monkeypatch, reference):
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 400)
    url, engine = new_base(tmp_path)
    run_id = execute.create_run(RunSpec(**SPEC), engine=engine)
    import sqlite3
    import threading

    holder = sqlite3.connect(str(tmp_path / "base.db"), isolation_level=None, timeout=10,
                             check_same_thread=False)
    gen = execute.execute_run(run_id, engine=engine)
    for _ in range(30):
        next(gen)
    holder.execute("BEGIN IMMEDIATE")                     # another writer holds the lock ...
    threading.Timer(1.0, lambda: holder.execute("COMMIT")).start()   # ... for 1 s
    with pytest.raises(EvoRouteError) as exc:
        next(gen)
    msg = str(exc.value)
    assert "locked by another writer" in msg and "EVOROUTE_DB_URL" not in msg and "--db" not in msg
    time.sleep(1.2)
    holder.close()
    run = row(engine, run_id)
    assert run.status == "interrupted" and run.error == msg
    assert assert_whole(engine, run_id) == 30             # the step that could not be written
    assert list(execute.execute_run(run_id, engine=engine, resume=True))[-1]["step_no"] == N_STEPS
    assert records(engine, run_id) == reference


# ----------------------------------------------------------------------------- delete
def test_delete_is_one_transaction_complete_and_refused_while_running(tmp_path):
    url, engine = new_base(tmp_path)
    keep = execute.create_run(RunSpec(**{**SPEC, "n_tasks": 10, "n_train": 10}), engine=engine)
    list(execute.execute_run(keep, engine=engine))
    run_id = execute.create_run(RunSpec(**SPEC), engine=engine)
    # 250 steps at ≥ 0.1 s each: the run is surely still going when the CLI (seconds to start
    # on a busy machine) asks to delete it
    proc = counting_worker(url, run_id, tmp_path / "exec", step_delay_s=0.1)
    assert wait_for(lambda: row(engine, run_id).n_steps_done >= 10)
    res = cli(url, "runs", "delete", str(run_id))
    assert res.returncode == 2 and "stop it first" in res.stderr
    assert row(engine, run_id) is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n = row(engine, run_id).n_steps_done
    with db.session(engine) as s:
        n_tasks = s.exec(select(func.count()).select_from(Task).where(Task.run_id == run_id)).one()
    statements, commits = [], []
    event.listen(engine, "before_cursor_execute",
                 lambda *a: statements.append(a[2].split()[0].upper()))
    event.listen(engine, "commit", lambda conn: commits.append(len(statements)))
    counts = lifecycle.delete_run(run_id, engine=engine)
    assert counts == {"step": n, "task": n_tasks, "run": 1}
    deletes = [i for i, st in enumerate(statements) if st == "DELETE"]
    assert len(deletes) == 3 and len(commits) == 1 and commits[0] > deletes[-1]   # one transaction
    with db.session(engine) as s:
        assert repo.get_run(run_id, session=s) is None
        for table in (StepRecord, Task):
            assert s.exec(select(func.count()).select_from(table)
                          .where(table.run_id == run_id)).one() == 0
        assert repo.count_steps(repo.StepFilter(run_ids=[keep]), session=s) == 20 + 10 + 10
    res = cli(url, "runs", "delete", str(run_id))
    assert res.returncode == 2 and f"no run with id {run_id}" in res.stderr


# ----------------------------------------------------------------------------- ownership
def test_a_worker_whose_run_was_taken_over_stops_without_writing(tmp_path):
    _, engine = new_base(tmp_path)
    run_id = execute.create_run(RunSpec(**SPEC), engine=engine)
    gen = execute.execute_run(run_id, engine=engine)
    for _ in range(5):
        next(gen)
    with db.session(engine) as s:                          # e.g. marked interrupted elsewhere
        repo.update_run(run_id, session=s, status="interrupted", error="taken over")
    with pytest.raises(lifecycle.RunTakenOver):
        next(gen)
    run = row(engine, run_id)
    assert (run.status, run.error, run.n_steps_done) == ("interrupted", "taken over", 5)
    assert assert_whole(engine, run_id) == 5


def test_heartbeat_decides_for_a_process_on_another_host(tmp_path):
    _, engine = new_base(tmp_path)
    now = repo.now()
    with db.session(engine) as s:
        fresh = repo.create_run(session=s, config={}, status="running", pid=1, proc_started=1.0,
                                host="another-host", heartbeat_at=now - timedelta(seconds=5))
        stale = repo.create_run(session=s, config={}, status="running", pid=1, proc_started=1.0,
                                host="another-host",
                                heartbeat_at=now - timedelta(seconds=repo.HEARTBEAT_STALE_S + 5))
        by_id = {r.id: r for r in repo.list_runs(session=s)}
    assert by_id[fresh.id].status == "running"
    assert by_id[stale.id].status == "interrupted" and "no heartbeat for" in by_id[stale.id].error
    # and a live worker keeps its heartbeat fresh even between commits (every HEARTBEAT_S)
    assert lifecycle.HEARTBEAT_S <= 5 < repo.HEARTBEAT_STALE_S


# ----------------------------------------------------------------------------- schema upgrade
def test_a_base_created_before_the_new_columns_is_upgraded(tmp_path):
    path = tmp_path / "old.db"
    eng = db.make_engine(f"sqlite:///{path}")
    eng.dispose()
    import sqlite3

    con = sqlite3.connect(path)                            # the schema of the earlier code
    for table, column in (("run", "pid"), ("run", "proc_started"), ("run", "host"),
                          ("run", "heartbeat_at"), ("step", "step_no")):
        con.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    con.execute("DROP TABLE alembic_version")             # older code stamped no revision
    con.execute("INSERT INTO run (name, status, backend, dataset, router, protocol, seed, w_p, "
                "w_c, w_d, config_json, label, n_tasks_total, n_steps_done, cost_usd, "
                "stop_requested, created_at) VALUES ('old', 'running', 'replay', 'routerbench', "
                "'evoroute', 'bandit', 0, 1, 0.1, 0.05, '{}', 'replayed', 0, 0, 0, 0, "
                "'2026-11-30 10:00:00')")
    con.commit()
    con.close()
    eng = db.make_engine(f"sqlite:///{path}")               # adds the missing columns
    with eng.connect() as c:
        assert {"pid", "proc_started", "host", "heartbeat_at"} <= \
            {r[1] for r in c.execute(text("PRAGMA table_info(run)"))}
        assert "step_no" in {r[1] for r in c.execute(text("PRAGMA table_info(step)"))}
    assert migrations.upgrade(eng) == []                    # idempotent
    with db.session(eng) as s:
        old = repo.list_runs(session=s)[0]
        assert old.status == "interrupted" and "older EvoRoute" in old.error   # was stuck running
    lifecycle.delete_run(old.id, engine=eng)
    eng.dispose()


# ----------------------------------------------------------------------------- demo
def test_a_killed_demo_is_resumed_by_the_next_demo(tmp_path):
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    proc = subprocess.Popen([sys.executable, "-m", "evoroute", "--db", url, "demo"], cwd=ROOT,
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    engine = db.make_engine(url)

    def demo_run():
        with db.session(engine) as s:
            runs = [r for r in repo.list_runs(session=s) if r.name == demo.DEMO_RUN_NAME]
        return runs[0] if runs else None
    assert wait_for(lambda: (r := demo_run()) is not None and r.n_steps_done >= 100, timeout=300)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = demo_run()
    assert killed.status == "interrupted"
    res = cli(url, "demo", timeout=600)
    assert res.returncode == 0, res.stderr
    assert f"resumed the unfinished demo run {killed.id} from step {killed.n_steps_done:,}" in res.stdout
    run = demo_run()
    assert run.id == killed.id and run.status == "finished" and assert_whole(engine, run.id) == 3150
    res = cli(url, "demo")
    assert "is complete" in res.stdout
    with db.session(engine) as s:
        assert repo.count_steps(session=s) == 3150


# ----------------------------------------------------------------------------- live resume
def test_resuming_a_live_run_calls_no_model_again_for_its_stored_tasks(tmp_path, monkeypatch):
    """litellm's real ``completion`` with ``mock_response`` (no network): replies depend only on
    the prompt, so a re-called step would give the same reply — the call count tells."""
    from evoroute import registry
    from evoroute.agent import workflow as W
    from evoroute.backends.live import backend as L

    litellm = L.load_litellm()
    real, calls = litellm.completion, []
    tasks = L.LiveBackend("default", [L.ModelInfo("x", litellm_id="openai/x")],
                          check_models=False)._all_tasks

    def completion(**kw):
        text = kw["messages"][0]["content"]
        role = next(r for r in W.ROLES if text.startswith(f"You are the {r}"))
        calls.append((kw["model"], role))
        if kw["model"] == "openai/b" and role == "verifier":
            reply = Exception("b cannot verify")             # a failed call, then a fallback
        else:
            # the problem is the prompt's last question (solved train examples come first)
            task = max((t for t in tasks if t.question in text),
                       key=lambda t: text.rfind("Problem: " + t.question))
            tag = "PYTHON" if task.tool == "python" else "CALC"
            reply = {"planner": f"1. Use the numbers.\n2. {task.reference}",
                     "solver": f"{tag}: {task.reference}", "verifier": "VERDICT: CORRECT",
                     "answerer": f"ANSWER: {task.answer}"}[role]
        return real(mock_response=reply, **kw)
    monkeypatch.setattr(litellm, "completion", completion)
    _, engine = new_base(tmp_path)
    with db.session(engine) as s:
        for name, p in (("a", 3.0), ("b", 0.5)):
            registry.add_model(session=s, name=name, litellm_id=f"openai/{name}",
                               input_price_per_m=p, output_price_per_m=2 * p,
                               api_base=f"https://{name}.invalid/v1")
    spec = RunSpec(backend="live", router="evoroute", seed=5, models=("a", "b"),
                          router_params={"channels": ["role", "tool"]}, cold_start_tasks=2,
                          n_train=2, n_tasks=2,
                          backend_params={"backoff_s": 0.0, "check_models": False, "max_retries": 0})
    ref = list(execute.run_spec(spec, engine=engine))
    ref_calls, n = list(calls), len(ref)
    assert n == 24 and any(st["failed_calls"] for st in ref)
    calls.clear()
    run_id = execute.create_run(spec, engine=engine)
    gen = execute.execute_run(run_id, engine=engine)
    for _ in range(10):                      # 2 tasks of 4 steps done, the third half-way
        next(gen)
    gen.close()
    assert row(engine, run_id).status == "stopped" and assert_whole(engine, run_id) == 10
    first_calls = len(calls)
    calls.clear()
    resumed = list(execute.execute_run(run_id, engine=engine, resume=True))
    # the finished tasks' 8 steps are not called again; the half-done task restarts at step 9
    # (its agent transcript is not stored), so the resume makes exactly the calls of steps 9..24
    calls_of_step = [st["step_no"] for st in ref for _ in range(len(st["failed_calls"]) + 1)]
    assert calls == [c for c, no in zip(ref_calls, calls_of_step) if no > 8]
    assert first_calls == sum(no <= 10 for no in calls_of_step)
    assert [st["step_no"] for st in resumed] == list(range(9, 25))
    assert records(engine, run_id) == records(engine, ref[-1]["run_id"])
    assert json.loads(row(engine, run_id).config_json)["resolved"]["resumed_at_steps"] == [8]
