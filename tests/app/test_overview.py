"""Overview: counts from the base, latest runs with their labels, and the first-visit replay."""

from __future__ import annotations

import json

from sqlmodel import func, select

from evoroute.storage import db, repo, views
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
    assert not any("press **Run a replay**" in i.value for i in at.info)   # it is disabled


def _register_mini(engine) -> None:
    from evoroute import registry
    with db.session(engine) as s:      # the first thing a new user does: a model of their own
        registry.add_model(session=s, name="gpt-4o-mini", input_price_per_m=0.15,
                           output_price_per_m=0.6)


def test_replay_routes_only_to_models_with_recorded_outcomes(replay_db):
    """Issue 11 item 1: a registered model the bundled data has no outcomes for made the
    one-click replay fail 3 s later; it is left out, and the page says so."""
    _, engine = replay_db
    _register_mini(engine)
    at = open_app()
    assert not at.button(key="ov_replay").disabled
    assert any("gpt-4o-mini" in c.value and "no recorded outcomes" in c.value for c in at.caption)
    at.number_input(key="ov_replay_tasks").set_value(10)
    at.button(key="ov_replay").click().run()
    assert errors(at) == []
    assert at.query_params["run"] == "5"
    assert wait_until(lambda: _status(engine, 5) in TERMINAL_STATUSES, timeout=120)
    with db.session(engine) as s:
        run = s.get(Run, 5)
    assert run.status == "finished", run.error
    models = json.loads(run.config_json)["models"]
    assert "gpt-4o-mini" not in models and len(models) == 11


def test_replay_without_a_dataset_model_says_why_and_offers_the_fix(empty_db):
    _, engine = empty_db
    _register_mini(engine)
    at = open_app()
    assert at.button(key="ov_replay").disabled
    text = " ".join(w.value for w in at.warning)
    assert "gpt-4o-mini" in text and "no recorded outcomes" in text and "--models" not in text
    assert not any("press **Run a replay**" in i.value for i in at.info)   # it is disabled
    at.button(key="ov_register").click().run()
    assert errors(at) == []
    with db.session(engine) as s:
        assert views.count_models(session=s) == 12
    assert not at.button(key="ov_replay").disabled
    assert any("press **Run a replay**" in i.value for i in at.info)


def test_no_none_text_in_tables(replay_db):
    """A missing value (a run with no finished task yet) shows a dash, not the word None."""
    _, engine = replay_db
    with db.session(engine) as s:
        repo.create_run(session=s, config={"backend": "replay"}, status="pending",
                        backend="replay", dataset="routerbench", router="evoroute",
                        label="replayed · latency modelled")
    at = open_app()
    runs = next(d for d in at.dataframe if "run" in d.value.columns)
    assert runs.value.set_index("run").loc[5, "quality"] is None or \
        runs.value.set_index("run")["quality"].isna().loc[5]
    for d in at.dataframe:
        assert d.proto.placeholder == "–"


def test_run_totals_say_their_scope(replay_db):
    """Issue 11 item 11: the Overview's quality and cost per run are over all steps, and say so."""
    from evoroute.core.labels import ALL_STEPS

    at = open_app()
    assert errors(at) == []
    assert any(ALL_STEPS in c.value for c in at.caption)
