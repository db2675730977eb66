"""Runs page, the launch form (issue 11 items 1, 7, 9): a launch that cannot succeed is refused
before it starts, with the fix offered in the studio; the dataset field follows the backend; the
form folds away after Start so the progress is in view."""

from __future__ import annotations

from evoroute import registry
from evoroute.datasets import routerbench_models
from evoroute.storage import db, repo
from evoroute.studio import launch

from studio_helpers import errors, open_app


def _n_runs(engine) -> int:
    with db.session(engine) as s:
        return len(repo.list_runs(session=s))


def _register_unreplayable(engine, name: str = "gpt-4o-mini") -> None:
    with db.session(engine) as s:
        registry.add_model(session=s, name=name, litellm_id=name, input_price_per_m=0.15,
                           output_price_per_m=0.6)


def test_models_without_outcomes_are_not_preselected_and_a_launch_with_them_is_refused(replay_db):
    _, engine = replay_db
    _register_unreplayable(engine)
    at = open_app("runs")
    assert errors(at) == []
    models = at.multiselect(key="rn_models")
    assert sorted(models.value) == sorted(routerbench_models())     # only what the data has
    assert "gpt-4o-mini" in models.options
    assert any("Not pre-selected: gpt-4o-mini" in c.value for c in at.caption)
    before = _n_runs(engine)
    models.select("gpt-4o-mini")
    at.button(key="rn_submit").click().run()
    errs = errors(at)
    assert len(errs) == 1 and "gpt-4o-mini" in errs[0] and "--models" not in errs[0]
    assert _n_runs(engine) == before                                 # no failed run left
    # the fix, in the studio: disable the models the dataset has no outcomes for
    at.button(key="rn_disable_missing").click().run()
    assert errors(at) == []
    with db.session(engine) as s:
        assert "gpt-4o-mini" not in [m.name for m in repo.list_models(session=s, enabled_only=True)]
    assert not [b for b in at.button if b.key == "rn_disable_missing"]
    assert "gpt-4o-mini" not in at.multiselect(key="rn_models").options


def test_empty_model_choice_means_all_enabled_and_is_refused_too(replay_db):
    _, engine = replay_db
    _register_unreplayable(engine)
    at = open_app("runs")
    at.multiselect(key="rn_models").set_value([])
    at.button(key="rn_submit").click().run()
    assert any("gpt-4o-mini" in e for e in errors(at))
    assert _n_runs(engine) == 4


def test_dataset_field_follows_the_backend_and_can_be_emptied(replay_db):
    _, engine = replay_db
    at = open_app("runs")
    ds = at.selectbox(key="rn_dataset")
    assert ds.value is None and ds.options[0] == "routerbench"      # empty = the default
    at.selectbox(key="rn_backend").set_value("simulated").run()
    ds = at.selectbox(key="rn_dataset")
    assert ds.options == launch.dataset_choices("simulated") == ["default", "agent", "two-models"]
    assert ds.value is None
    assert at.multiselect(key="rn_models").options == ["sim-small", "sim-medium", "sim-large",
                                                       "sim-coder"]
    # a dataset picked for one backend does not follow to another
    at.selectbox(key="rn_backend").set_value("replay").run()
    at.selectbox(key="rn_dataset").set_value("agent_steps").run()
    # no registered model has outcomes in the agent steps: none is pre-selected, and the page
    # names the models the dataset has
    assert at.multiselect(key="rn_models").value == []
    assert any("Not pre-selected: " in c.value and "anthropic/claude-opus-4.6" in c.value
               for c in at.caption)
    at.selectbox(key="rn_backend").set_value("simulated").run()
    assert at.selectbox(key="rn_dataset").value is None
    at.selectbox(key="rn_dataset").set_value("agent").run()
    at.selectbox(key="rn_dataset").set_value(None).run()       # emptied = the default
    assert at.selectbox(key="rn_dataset").value is None
    assert errors(at) == []
    at.selectbox(key="rn_backend").set_value("live").run()
    assert at.selectbox(key="rn_dataset").options == ["default", "tiered"]   # the task sets
    at.selectbox(key="rn_backend").set_value("replay").run()
    assert at.selectbox(key="rn_dataset").options == launch.dataset_choices("replay")


def test_the_form_folds_away_after_start(replay_db):
    _, engine = replay_db
    at = open_app("runs")
    at.expander[0]  # the launch form
    at.session_state["rn_form_open"] = True
    at.run()
    at.selectbox(key="rn_backend").set_value("simulated").run()
    at.number_input(key="rn_n_tasks").set_value(5)
    at.number_input(key="rn_n_train").set_value(5)
    at.number_input(key="rn_cold").set_value(5)
    at.button(key="rn_submit").click().run()
    assert errors(at) == []
    run_id = int(at.query_params["run"])
    assert at.session_state["rn_form_open"] is False
    with db.session(engine) as s:
        run = repo.get_run(run_id, session=s)
    assert run.backend == "simulated" and run.dataset == "default"


def test_a_dataset_its_backend_cannot_read_is_refused_before_the_run(replay_db, tmp_path):
    """A typed name (the field accepts new options) is checked before a run is created."""
    import pytest

    from evoroute.core.errors import ValidationError

    with pytest.raises(ValidationError, match="scenario 'routerbench'") as exc:
        launch.check_launch(launch.build_spec(backend="simulated", dataset="routerbench",
                                              router="evoroute"), [])
    assert exc.value.field == "dataset"
    with pytest.raises(ValidationError, match="no dataset 'nope'"):
        launch.check_launch(launch.build_spec(backend="replay", dataset="nope",
                                              router="evoroute"), routerbench_models())
    for backend in ("replay", "simulated", "live"):      # empty: the backend's default
        launch.check_dataset(backend, None)
        launch.check_dataset(backend, "")
    f = tmp_path / "mine.csv"
    f.write_text("x")
    launch.check_dataset("replay", str(f))                # a file is read by the run


def test_a_replay_file_without_outcomes_for_the_chosen_models_is_refused(replay_db, tmp_path):
    import pytest

    from evoroute.core.errors import ValidationError

    f = tmp_path / "two.csv"
    f.write_text("query_id,query,role,model,score,cost_usd,split\n"
                 "q1,hello,answerer,gpt-4-1106-preview,1,0.01,test\n"
                 "q1,hello,answerer,claude-v2,0,0.02,test\n")
    spec = launch.build_spec(backend="replay", dataset=str(f), router="evoroute")
    launch.check_launch(spec, ["gpt-4-1106-preview", "claude-v2"])
    with pytest.raises(ValidationError, match="claude-v1") as exc:
        launch.check_launch(spec, ["gpt-4-1106-preview", "claude-v1"])
    assert exc.value.field == "models"


def test_simulated_single_model_routers_are_the_scenarios_models(replay_db):
    at = open_app("runs")
    assert "single:gpt-4-1106-preview" in at.selectbox(key="rn_router").options
    at.selectbox(key="rn_backend").set_value("simulated").run()
    singles = [o for o in at.selectbox(key="rn_router").options if o.startswith("single:")]
    assert singles == ["single:sim-small", "single:sim-medium", "single:sim-large",
                       "single:sim-coder"]
    at.session_state["rn_router"] = "single:sim-large"          # picked, then the backend
    at.run()
    assert at.selectbox(key="rn_router").value == "single:sim-large"
    at.selectbox(key="rn_backend").set_value("replay").run()      # not a router of replay
    assert errors(at) == [] and not at.exception
    assert at.selectbox(key="rn_router").value == at.selectbox(key="rn_router").options[0]


def test_a_router_the_backend_cannot_build_is_refused_before_the_run(replay_db):
    """The backend and router are built once in the studio as the worker would build them."""
    import pytest

    from evoroute.core.errors import ValidationError

    _, engine = replay_db
    spec = launch.build_spec(backend="replay", dataset=None, router="single:gpt-4-1106-preview",
                             models=["claude-v2"])
    with db.session(engine) as s, pytest.raises(ValidationError) as exc:
        launch.check_launch(spec, routerbench_models(), session=s)
    assert "gpt-4-1106-preview" in str(exc.value) and exc.value.field
    ok = launch.build_spec(backend="simulated", dataset="two-models", router="evoroute")
    with db.session(engine) as s:
        launch.check_launch(ok, [], session=s)
    assert _n_runs(engine) == 4


def test_every_studio_launch_is_checked_before_a_run_exists(replay_db):
    """The Overview's one-click replay and the Pareto explorer start runs with launch_run too."""
    import pytest

    from evoroute.core.errors import ValidationError

    url, engine = replay_db
    _register_unreplayable(engine)
    with pytest.raises(ValidationError, match="gpt-4o-mini") as exc:
        launch.launch_run(launch.replay_spec(), engine_url=url)
    assert exc.value.field == "models" and "--models" not in str(exc.value)
    assert _n_runs(engine) == 4


def test_the_overview_replay_can_keep_only_the_models_the_data_has(replay_db):
    url, engine = replay_db
    _register_unreplayable(engine)
    with db.session(engine) as s:
        enabled = [m.name for m in repo.list_models(session=s, enabled_only=True)]
    keep = launch.model_choice("replay", None, enabled).default
    assert "gpt-4o-mini" in enabled and sorted(keep) == sorted(routerbench_models())
    spec = launch.replay_spec(models=keep)
    with db.session(engine) as s:
        launch.check_launch(spec, enabled, session=s)          # accepted


def test_a_router_the_data_rules_out_is_refused_before_the_run(replay_db):
    """best-vote needs multiple-choice answers on every role and atropos multi-step tasks: on
    plain RouterBench the form says so (naming the dataset) before a run exists."""
    import pytest

    from evoroute.core.errors import ValidationError

    _, engine = replay_db
    for router, words in (("best-vote", "routerbench"), ("atropos", "more than one step")):
        spec = launch.build_spec(backend="replay", dataset="routerbench", router=router,
                                 models=routerbench_models())
        with db.session(engine) as s, pytest.raises(ValidationError, match=words) as exc:
            launch.check_launch(spec, routerbench_models(), session=s)
        assert exc.value.field == "router" and router in str(exc.value)
    assert _n_runs(engine) == 4


def test_the_data_check_skips_a_backend_without_recorded_outcomes(replay_db):
    """A live backend has no train table (outcome_table is None): the check must not crash the
    form; whatever the run cannot do is said as a ValidationError on a field."""
    import pytest

    from evoroute.core.errors import ValidationError

    _, engine = replay_db
    spec = launch.build_spec(backend="live", dataset=None, router="masrouter",
                             models=["gpt-4-1106-preview"])
    with db.session(engine) as s:
        try:
            launch.check_launch(spec, routerbench_models(), session=s)
        except ValidationError as exc:
            assert exc.field
    with db.session(engine) as s, pytest.raises(ValidationError):
        launch.check_launch(launch.build_spec(backend="replay", dataset="routerbench",
                                              router="best-vote", models=routerbench_models()),
                            routerbench_models(), session=s)


def test_the_studios_live_runs_may_collect_the_train_table_and_no_other_backend_does():
    """A live router that learns from every model's train outcome collects it (shown as the
    run's collecting stage); the flag is the live backend's only."""
    live = launch.build_spec(backend="live", dataset="tiered", router="atropos")
    assert live.backend_params == {"collect": True}
    for backend in ("replay", "simulated"):
        assert launch.build_spec(backend=backend, dataset=None, router="evoroute").backend_params == {}


def test_a_live_launch_with_its_local_servers_down_offers_to_start_them(replay_db, monkeypatch):
    """Issue 11 item 8: a live run whose local servers are not up is refused before it exists,
    in the studio's words (the Models page, no CLI flag), with a button that starts them."""
    import socket

    from evoroute.studio import models as studio_models

    _, engine = replay_db
    with socket.socket() as sock:                  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with db.session(engine) as s:
        registry.add_model(session=s, name="smollm2-135m", litellm_id="openai/smollm2-135m",
                           api_base=f"http://127.0.0.1:{port}/v1", input_price_per_m=0.05,
                           output_price_per_m=0.1, notional=True)
    job = studio_models.ServerJob(action="start", names=("smollm2-135m",))
    started = []

    def start(names, *, engine_url):               # the Models page's start, without llama.cpp
        started.append(list(names))
        job.done, job.result = True, list(names)
        return job

    monkeypatch.setattr(studio_models, "installed_local_models", lambda: ["smollm2-135m"])
    monkeypatch.setattr(studio_models, "start_local_servers", start)
    at = open_app("runs")
    at.selectbox(key="rn_backend").set_value("live").run()
    at.multiselect(key="rn_models").set_value(["smollm2-135m"])
    before = _n_runs(engine)
    at.button(key="rn_submit").click().run()
    errs = errors(at)
    assert len(errs) == 1 and "smollm2-135m: no server answers" in errs[0], errs
    assert "Models page" in errs[0] and "--models" not in errs[0] and "OPENAI_API_KEY" not in errs[0]
    assert _n_runs(engine) == before                                 # no failed run left
    at.button(key="rn_start_local").click().run()
    assert started == [["smollm2-135m"]]
    assert any("local servers up: smollm2-135m" in m.value for m in at.success)
    assert errors(at) == [] and not [b for b in at.button if b.key == "rn_start_local"]
