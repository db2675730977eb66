"""Overview: counts from the base, latest runs with their labels, and the first-visit replay."""

from __future__ import annotations

from sqlmodel import func, select

from evoroute.storage import db, repo
from evoroute.storage.tables import Run, StepRecord, Task
from evoroute.studio.feed import TERMINAL_STATUSES

from studio_helpers import errors, metric, open_app, wait_until


def test_counts_and_latest_runs(replay_db):
    _, engine = replay_db
    at = open_app()
    assert errors(at) == []
    with db.session(engine) as s:
        n = repo.count_steps(session=s)
        pairs = s.exec(select(StepRecord.role, StepRecord.run_id, StepRecord.task_key)).all()
    roles: dict[str, set] = {}
    for role, run, task in pairs:                # a task is (run, task key)
        roles.setdefault(role, set()).add((run, task))
    roles = {r: len(t) for r, t in roles.items()}
    with db.session(engine) as s:
        q1 = s.exec(select(func.avg(Task.success)).where(Task.run_id == 1)).one()
    assert metric(at, "Experience records") == f"{n:,}"
    assert metric(at, "Models (enabled)") == "11 (11)"
    assert metric(at, "Runs (active)") == "4 (0)"
    by_role = next(d.value for d in at.dataframe if "role" in d.value.columns)
    assert dict(zip(by_role["role"], by_role["tasks"])) == roles
    runs = next(d.value for d in at.dataframe if "run" in d.value.columns).set_index("run")
    assert runs.index.tolist() == [4, 3, 2, 1]
    assert set(runs["label"]) == {"replayed · latency modelled"}
    assert runs.loc[1, "quality"] == q1
    assert runs.loc[3, "router"] == "single:gpt-4-1106-preview"


def test_run_a_replay_starts_a_background_run_and_opens_it(replay_db):
    _, engine = replay_db
    at = open_app()
    at.number_input(key="ov_replay_tasks").set_value(10)
    at.button(key="ov_replay").click().run()
    assert errors(at) == []
    assert at.query_params["run"] == "5"
    assert at.title[0].value == "Runs"                         # jumped to the Runs page
    assert at.selectbox(key="rn_run").value == 5
    assert wait_until(lambda: _status(engine, 5) in TERMINAL_STATUSES, timeout=120)
    with db.session(engine) as s:
        run = s.get(Run, 5)
    assert (run.status, run.backend, run.dataset, run.router) == ("finished", "replay",
                                                                  "routerbench", "evoroute")
    assert run.n_steps_done == 50 + 300 + 10


def _status(engine, run_id: int) -> str:
    with db.session(engine) as s:
        return s.get(Run, run_id).status


def test_empty_base_explains_what_to_do(empty_db):
    at = open_app()
    assert metric(at, "Experience records") == "0"
    assert at.button(key="ov_replay").disabled
    assert any("Register models first" in w.value for w in at.warning)
    assert any("No runs yet" in i.value for i in at.info)
