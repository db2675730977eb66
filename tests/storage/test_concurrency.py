"""Real OS processes appending to one SQLite file at the same time lose nothing.

Each writer is a separate ``python`` process (subprocess, not threads) that opens its own
engine, waits for a shared start signal, then appends its records in small transactions
(create task + steps + finish_task per transaction) as fast as it can.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter

import pytest
from sqlmodel import select

from evoroute.settings import PROJECT_ROOT
from evoroute.storage import repo
from evoroute.storage.db import make_engine
from evoroute.storage.db import session as open_session
from evoroute.storage.tables import StepRecord, Task

WRITER = r"""
import sys, time
from pathlib import Path
db, wid, n, batch, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
from evoroute.storage import repo
from evoroute.storage.db import make_engine, session
from evoroute.storage.tables import StepRecord, Task
Path(go + f".ready{wid}").touch()
while not Path(go).exists():
    time.sleep(0.002)
eng = make_engine(f"sqlite:///{db}")      # after the start signal: on a fresh file all race here
with session(eng) as s:
    run = repo.create_run(session=s, config={"writer": wid}, name=f"writer-{wid}")
    for start in range(0, n, batch):
        task = Task(run_id=run.id, task_key=f"w{wid}-t{start}")
        s.add(task)
        s.flush()
        recs = [StepRecord(run_id=run.id, task_id=task.id, task_key=task.task_key,
                           step_index=i - start, role="worker", model=f"m{wid}",
                           instruction=f"w{wid}-{i}", cost_usd=0.001, duration_s=0.1,
                           step_success=1.0)
                for i in range(start, min(start + batch, n))]
        s.add_all(recs)
        s.flush()
        repo.finish_task(task.id, 0.5, session=s, commit=False)
        s.commit()
print("done", wid, n)
"""


def run_writers(db_path, tmp_path, n_writers: int, n: int, batch: int):
    go = str(tmp_path / "go")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, db_path, str(w), str(n), str(batch), go],
                              cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in range(n_writers)]
    deadline = time.time() + 120
    while not all((tmp_path / f"go.ready{w}").exists() for w in range(n_writers)):
        if time.time() > deadline:
            for p in procs:
                p.kill()
            pytest.fail("writers did not start within 120 s")
        if any(p.poll() is not None for p in procs):       # one died before the start
            for p in procs:
                if p.poll() is None:
                    p.kill()
            pytest.fail("a writer failed to start: " + " | ".join(p.communicate()[1] for p in procs))
        time.sleep(0.01)
    (tmp_path / "go").touch()                # all writers start appending together
    try:
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:                      # never leave a writer behind
            if p.poll() is None:
                p.kill()
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outs)]


@pytest.mark.parametrize("n_writers", [3])
def test_concurrent_writers_lose_nothing(db_path, tmp_path, n_writers):
    make_engine(f"sqlite:///{db_path}").dispose()        # tables exist before the writers start
    n, batch = 500, 5
    results = run_writers(db_path, tmp_path, n_writers, n, batch)
    for code, out, err in results:
        assert code == 0, err
        assert "locked" not in err.lower()
        assert out.startswith("done")

    eng = make_engine(f"sqlite:///{db_path}")
    with open_session(eng) as s:
        texts = list(s.exec(select(StepRecord.instruction)))
        counts = Counter(texts)
        expected = {f"w{w}-{i}" for w in range(n_writers) for i in range(n)}
        assert set(counts) == expected                        # none lost, none foreign
        assert max(counts.values()) == 1                      # none duplicated
        assert len(texts) == n_writers * n
        # every task was finished in the same transaction as its steps
        assert repo.count_steps(repo.StepFilter(success="success"), session=s) == n_writers * n
        assert all(x.task_success == 0.5 for x in s.exec(select(StepRecord)))
        tasks = list(s.exec(select(Task)))
        assert len(tasks) == n_writers * n // batch
        assert all(t.n_steps == batch and t.success == 0.5 for t in tasks)
        assert len(repo.list_runs(session=s)) == n_writers
    eng.dispose()


def test_writers_on_a_fresh_file_create_tables_safely(db_path, tmp_path):
    """Two processes that both find no tables must not fail creating them."""
    results = run_writers(db_path, tmp_path, 2, 50, 10)
    for code, _out, err in results:
        assert code == 0, err
    eng = make_engine(f"sqlite:///{db_path}")
    with open_session(eng) as s:
        assert repo.count_steps(session=s) == 100
    eng.dispose()
