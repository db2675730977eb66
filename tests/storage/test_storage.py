"""The experience base on a real SQLite file: set-up pragmas, round trips, filters, atomicity."""

from __future__ import annotations

import sqlite3
import time

import numpy as np
import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from evoroute.core.errors import EvoRouteError
from evoroute.core.types import Explanation
from evoroute.storage import repo
from evoroute.storage.db import BUSY_TIMEOUT_MS, make_engine
from evoroute.storage.db import session as open_session
from evoroute.storage.tables import StepRecord, Task

import db_helpers


def test_tables_created(engine):
    assert {"model", "run", "task", "step"} <= set(inspect(engine).get_table_names())
    cols = {c["name"] for c in inspect(engine).get_columns("step")}
    # every field of the experience record (spec §2) plus our bookkeeping
    assert {"role", "model", "instruction", "embedding", "tools", "cost_usd", "duration_s",
            "step_success", "task_success", "run_id", "task_id", "step_index", "phase",
            "input_tokens", "output_tokens", "error", "explanation", "propensity"} <= cols


def test_wal_busy_timeout_and_foreign_keys(engine, db_path):
    with engine.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert c.execute(text("PRAGMA busy_timeout")).scalar() == BUSY_TIMEOUT_MS
        assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1
    # WAL is a property of the file: a plain sqlite3 connection sees it too
    con = sqlite3.connect(db_path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_reopening_an_existing_file_keeps_data(db_path):
    e1 = make_engine(f"sqlite:///{db_path}")
    with open_session(e1) as s:
        repo.create_run(session=s, config={"a": 1}, name="kept")
    e1.dispose()
    e2 = make_engine(f"sqlite:///{db_path}")
    with open_session(e2) as s:
        assert [r.name for r in repo.list_runs(session=s)] == ["kept"]
    e2.dispose()


def _step(run_id, task_id, i, **kw) -> StepRecord:
    fields = dict(run_id=run_id, task_id=task_id, task_key=f"task{task_id}", step_index=i,
                  phase="optimize", role="planner", model="m1", instruction=f"step {i}",
                  tools="python;search", cost_usd=0.001 * (i + 1), duration_s=1.5 + i,
                  step_success=1.0, input_tokens=100, output_tokens=50, propensity=0.25)
    fields.update(kw)
    return StepRecord(**fields)


def test_run_task_step_round_trip(engine, db_session):
    run = repo.create_run(session=db_session, config={"router": "evoroute", "weights": [1, 0.1, 0.05]},
                          name="r1", seed=7)
    task = db_helpers.create_task(session=db_session, run_id=run.id, task_key="q1", split="test")
    vec = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    expl = Explanation(router="evoroute", phase="optimize", mode="thompson", chosen="m1",
                       channels={"role": 3, "semantic": 1, "tool": 0, "union": 4})
    db_helpers.add_steps([_step(run.id, task.id, 0, embedding=repo.embedding_to_bytes(vec),
                          explanation=expl.to_json())], session=db_session)
    with open_session(engine) as s:          # a fresh session reads what is on disk
        r = repo.get_run(run.id, session=s)
        assert (r.name, r.seed, r.status) == ("r1", 7, "pending")
        assert '"weights": [1, 0.1, 0.05]' in r.config_json
        (st,) = repo.query_steps(session=s)
        assert (st.role, st.model, st.tools, st.input_tokens, st.propensity) == \
            ("planner", "m1", "python;search", 100, 0.25)
        assert np.array_equal(repo.embedding_from_bytes(st.embedding), vec)
        assert Explanation.from_json(st.explanation) == expl
        assert st.task_success is None


def test_finish_task_fills_task_success_into_all_steps(engine, db_session):
    run = repo.create_run(session=db_session, config={})
    t1 = db_helpers.create_task(session=db_session, run_id=run.id, task_key="a")
    t2 = db_helpers.create_task(session=db_session, run_id=run.id, task_key="b")
    db_helpers.add_steps([_step(run.id, t1.id, i) for i in range(3)] + [_step(run.id, t2.id, 0)],
                   session=db_session)
    repo.finish_task(t1.id, 0.75, session=db_session)
    with open_session(engine) as s:
        steps = repo.query_steps(session=s, newest_first=False)
        assert [x.task_success for x in steps] == [0.75, 0.75, 0.75, None]
        task = s.get(Task, t1.id)
        # aggregates: 3 steps, cost 0.001 + 0.002 + 0.003, duration 1.5 + 2.5 + 3.5
        assert (task.success, task.n_steps) == (0.75, 3)
        assert task.cost_usd == pytest.approx(0.006) and task.duration_s == pytest.approx(7.5)
        assert task.finished_at is not None
        assert repo.finished_task_successes([t1.id, t2.id], session=s) == [(t1.id, 0.75)]


def test_finish_task_is_one_transaction(engine, db_session):
    """commit=False leaves both the task and its steps unchanged until the caller commits."""
    run = repo.create_run(session=db_session, config={})
    t = db_helpers.create_task(session=db_session, run_id=run.id, task_key="a")
    db_helpers.add_steps([_step(run.id, t.id, i) for i in range(2)], session=db_session)
    repo.finish_task(t.id, 1.0, session=db_session, commit=False)
    db_session.rollback()
    with open_session(engine) as s:
        assert s.get(Task, t.id).success is None
        assert [x.task_success for x in repo.query_steps(session=s)] == [None, None]


@pytest.fixture
def filled(engine, db_session):
    r1 = repo.create_run(session=db_session, config={}).id
    r2 = repo.create_run(session=db_session, config={}).id
    t1 = db_helpers.create_task(session=db_session, run_id=r1, task_key="a").id
    t2 = db_helpers.create_task(session=db_session, run_id=r2, task_key="b").id
    db_helpers.add_steps([
        _step(r1, t1, 0, role="planner", model="gpt", instruction="plan the trip", step_success=1.0),
        _step(r1, t1, 1, role="coder", model="llama", instruction="write python code", step_success=0.0),
        _step(r1, t1, 2, role="coder", model="gpt", instruction="fix the bug", step_success=None),
        _step(r2, t2, 0, role="verifier", model="llama", instruction="check the answer", step_success=None,
              error="rate limited"),
    ], session=db_session)
    repo.finish_task(t2, 0.0, session=db_session)     # task success wins over step success
    return r1, r2


@pytest.mark.parametrize("flt, expected", [
    (repo.StepFilter(), ["plan the trip", "write python code", "fix the bug", "check the answer"]),
    (repo.StepFilter(roles=["coder"]), ["write python code", "fix the bug"]),
    (repo.StepFilter(roles=["coder", "verifier"]), ["write python code", "fix the bug", "check the answer"]),
    (repo.StepFilter(models=["llama"]), ["write python code", "check the answer"]),
    (repo.StepFilter(success="success"), ["plan the trip"]),
    (repo.StepFilter(success="failure"), ["write python code", "check the answer"]),
    (repo.StepFilter(success="unknown"), ["fix the bug"]),
    (repo.StepFilter(text="python"), ["write python code"]),
    (repo.StepFilter(text="RATE"), ["check the answer"]),          # matches the error, any case
    (repo.StepFilter(text="gpt"), ["plan the trip", "fix the bug"]),  # matches the model name
    (repo.StepFilter(roles=["coder"], models=["gpt"]), ["fix the bug"]),
])
def test_step_filters(filled, db_session, flt, expected):
    got = [s.instruction for s in repo.query_steps(flt, session=db_session, newest_first=False)]
    assert got == expected
    assert repo.count_steps(flt, session=db_session) == len(expected)


def test_step_filter_by_run_and_since(filled, db_session):
    r1, r2 = filled
    assert repo.count_steps(repo.StepFilter(run_ids=[r2]), session=db_session) == 1
    assert repo.count_steps(repo.StepFilter(run_ids=[r1, r2]), session=db_session) == 4
    first_two = repo.query_steps(session=db_session, newest_first=False, limit=2)
    assert repo.count_steps(repo.StepFilter(since_id=first_two[-1].id), session=db_session) == 2
    page = repo.query_steps(session=db_session, newest_first=True, limit=2, offset=1)
    assert [s.instruction for s in page] == ["fix the bug", "write python code"]


def test_load_experience_streams_without_errored_steps(filled, db_session):
    batches = list(repo.load_experience(session=db_session, batch=2))
    assert [len(b) for b in batches] == [2, 1]         # the errored step is left out
    rows = [r for b in batches for r in b]
    assert [r.instruction for r in rows] == \
        ["plan the trip", "write python code", "fix the bug"]


def test_failed_batch_leaves_nothing_half_written(engine, db_session):
    run = repo.create_run(session=db_session, config={})
    task = db_helpers.create_task(session=db_session, run_id=run.id, task_key="a")
    good = [_step(run.id, task.id, i) for i in range(5)]
    bad = _step(run.id, 999_999, 5)             # foreign key to a task that does not exist
    with pytest.raises(IntegrityError):
        db_helpers.add_steps(good + [bad] + [_step(run.id, task.id, 6)], session=db_session)
    db_session.rollback()
    with open_session(engine) as s:
        assert repo.count_steps(session=s) == 0
    # the same session works again afterwards
    db_helpers.add_steps([_step(run.id, task.id, 0)], session=db_session)
    assert repo.count_steps(session=db_session) == 1


def test_failed_batch_after_session_close_is_rolled_back(engine):
    """A session closed after an error (the `with` block) never commits the partial batch."""
    with open_session(engine) as s:
        run_id = repo.create_run(session=s, config={}).id
    with pytest.raises(IntegrityError):
        with open_session(engine) as s:
            db_helpers.add_steps([_step(run_id, None, 0), _step(12345, None, 1)], session=s)
    with open_session(engine) as s:
        assert repo.count_steps(session=s) == 0


def test_delete_run_removes_tasks_and_steps(filled, engine, db_session):
    r1, r2 = filled
    repo.delete_run(r1, session=db_session)
    with open_session(engine) as s:
        assert [r.id for r in repo.list_runs(session=s)] == [r2]
        assert repo.count_steps(session=s) == 1
        assert repo.count_steps(repo.StepFilter(run_ids=[r1]), session=s) == 0
    with pytest.raises(EvoRouteError):
        repo.delete_run(r1, session=db_session)


def test_stop_flag_round_trip(engine, db_session):
    run = repo.create_run(session=db_session, config={})
    assert db_helpers.stop_requested(run.id, session=db_session) is False
    with open_session(engine) as other:      # e.g. the studio, in another session
        repo.request_stop(run.id, session=other)
    assert db_helpers.stop_requested(run.id, session=db_session) is True
    repo.update_run(run.id, session=db_session, status="stopped", n_steps_done=3)
    with open_session(engine) as s:
        r = repo.get_run(run.id, session=s)
        assert (r.status, r.n_steps_done) == ("stopped", 3)


def test_studio_index_is_created_once_and_safely(engine):
    """CREATE INDEX IF NOT EXISTS, and nothing attached to the table metadata (a later
    create_all on a new file would otherwise try to create the index twice)."""
    from evoroute.storage.indexes import STUDIO_INDEX, ensure_indexes

    ensure_indexes(engine)
    ensure_indexes(engine)                       # a second studio process on the same base
    names = [i["name"] for i in inspect(engine).get_indexes("step")]
    assert names.count(STUDIO_INDEX[0]) == 1
    assert STUDIO_INDEX[0] not in {i.name for i in StepRecord.__table__.indexes}


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_opens_its_own_connections(db_path):
    """The bench forks workers: they must not reuse the parent's pooled SQLite connection."""
    import os
    import signal

    from evoroute.storage import db as dbm

    url = f"sqlite:///{db_path}"
    parent = dbm.get_engine(url)
    with dbm.session(parent) as s:
        repo.create_run(session=s, config={}, name="parent")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                 # the child: report, then leave at once
        signal.alarm(60)                         # never hang the suite
        try:
            child = dbm.get_engine(url)
            with dbm.session(child) as s:
                repo.create_run(session=s, config={}, name="child")
            os.write(w, b"new" if child is not parent else b"same")
        except BaseException as exc:             # pragma: no cover - reported to the parent
            os.write(w, repr(exc).encode()[:200])
        finally:
            os._exit(0)
    os.close(w)
    deadline = time.monotonic() + 90
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the forked child did not finish")
        time.sleep(0.01)
    assert os.read(r, 300) == b"new"
    with dbm.session(parent) as s:               # the parent's engine still works
        assert sorted(x.name for x in repo.list_runs(session=s)) == ["child", "parent"]


def test_studio_index_race_lost_to_another_process_is_fine(engine, monkeypatch):
    """Another process created the index between our check and our CREATE."""
    from evoroute.storage.indexes import STUDIO_INDEX, ensure_indexes

    ensure_indexes(engine)                                       # "the other process"
    monkeypatch.setattr(type(engine.dialect), "has_index", lambda *a, **k: False)
    ensure_indexes(engine)                                       # CREATE fails "already exists"
    assert [i["name"] for i in inspect(engine).get_indexes("step")].count(STUDIO_INDEX[0]) == 1
