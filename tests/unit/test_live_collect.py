"""The live collection pass (every model on every train task) without any network: litellm's
own ``completion`` with ``mock_response`` per model (the harness of test_live_backend)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_live_backend import FAKE_KEY, ScriptedLLM, _register, backend, hosted, litellm, oracle

from evoroute.backends.live import collect
from evoroute.core.errors import EvoRouteError, ValidationError
from evoroute.storage import db, repo


@pytest.fixture
def script(monkeypatch):
    """A scripted litellm.completion: ``script({"openai/a": [...], ...})`` (test_live_backend)."""
    real = litellm.completion

    def install(s: dict) -> ScriptedLLM:
        fake = ScriptedLLM(real, s)
        monkeypatch.setattr(litellm, "completion", fake)
        return fake
    return install


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOROUTE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def wrong_answer(role: str, kw: dict) -> str:
    """A model that plans, computes nothing right and answers 0."""
    return {"planner": "1. add", "solver": "CALC: 0", "verifier": "VERDICT: CORRECT",
            "answerer": "ANSWER: -1"}[role]


def test_every_model_runs_every_train_task_and_the_table_holds_what_was_measured(script, home):
    ms = [hosted("a", 1.0, 2.0), hosted("b", 0.5, 1.0)]
    b = backend(ms)
    llm = script({"openai/a": [oracle(b)], "openai/b": [wrong_answer]})
    assert b.outcome_table("train") is None                  # nothing collected yet
    tab = collect.collect(b, "train")
    n_tasks = len(b.tasks("train"))
    assert llm.n_calls("openai/a") == llm.n_calls("openai/b") == 4 * n_tasks
    assert tab.models == ["a", "b"] and len(tab) == 4 * n_tasks
    assert tab.task_keys[:4] == [b.tasks("train")[0].key] * 4   # the backend's task order
    # the task's own success (the final answer), beside the step scores
    assert np.all(tab.task_success()[:, 0] == 1.0) and np.all(tab.task_success()[:, 1] == 0.0)
    assert np.all(tab.scores[:, 0] == 1.0)
    assert np.all(tab.costs > 0) and np.all(tab.latencies > 0)
    # costs follow the prices registered now, from the stored token counts
    b.models[0] = hosted("a", 2.0, 4.0)
    again = collect.cached(b, "train")
    assert np.allclose(again.costs[:, 0], 2 * tab.costs[:, 0])
    assert b.outcome_table("train") is not None
    # the cache: no call the second time; other agent settings, another table
    calls = len(llm.calls)
    collect.collect(b, "train")
    assert len(llm.calls) == calls
    assert collect.cached(backend(ms, few_shot=1), "train") is None
    doc = json.loads(collect.table_path(b, "train").read_text())
    assert set(doc["key"]["models"]) == {"a", "b"} and "api_base" not in json.dumps(doc["key"])


def test_a_pass_that_stops_part_way_resumes_where_it_stopped(script):
    ms = [hosted("a"), hosted("b")]
    b = backend(ms)
    n = len(b.tasks("train"))
    state = {"left": 4 * 5}          # model a answers five tasks, then the process dies

    def dies(role: str, kw: dict) -> str:
        state["left"] -= 1
        if state["left"] < 0:
            raise KeyboardInterrupt
        return oracle(b)(role, kw)

    script({"openai/a": [dies], "openai/b": [oracle(b)]})
    with pytest.raises(KeyboardInterrupt):
        collect.collect(b, "train")
    assert collect.cached(b, "train") is None                 # unfinished: not a table
    llm = script({"openai/a": [oracle(b)], "openai/b": [oracle(b)]})
    seen = []
    tab = collect.collect(b, "train", progress=lambda d, t, _: seen.append((d, t)))
    assert llm.n_calls("openai/a") == 4 * (n - 5) and llm.n_calls("openai/b") == 4 * n
    assert seen[0] == (5, 2 * n) and seen[-1] == (2 * n, 2 * n)
    assert np.all(tab.task_success() == 1.0)


def test_a_failed_call_is_an_unknown_step_not_a_wrong_one_and_is_tried_again(script):
    b = backend([hosted("a"), hosted("b")], max_retries=0)

    def solver_down(role: str, kw: dict) -> str:
        if role == "solver":
            raise Exception("server down")
        return oracle(b)(role, kw)

    script({"openai/a": [solver_down], "openai/b": [oracle(b)]})
    tab = collect.collect(b, "train")
    solver = np.asarray(tab.roles) == "solver"
    assert np.all(np.isnan(tab.scores[solver, 0])) and np.all(tab.scores[solver, 1] == 1.0)
    # the task's success on a is unknown, not 0; on b it is the task's own
    assert np.all(np.isnan(tab.task_success()[:, 0])) and np.all(tab.task_success()[:, 1] == 1.0)
    doc = json.loads(collect.table_path(b, "train").read_text())
    rec = next(iter(doc["tasks"].values()))["a"]
    assert "server down" in rec["steps"][1]["error"] and rec["steps"][1]["response"] is None
    assert collect.cached(b, "train") is not None        # a finished pass, gaps included
    # the next pass runs again exactly the task runs that had a failed call
    llm = script({"openai/a": [oracle(b)], "openai/b": [oracle(b)]})
    tab = collect.collect(b, "train")
    assert llm.n_calls("openai/a") == 4 * len(b.tasks("train")) and llm.n_calls("openai/b") == 0
    assert np.all(tab.task_success() == 1.0)


def test_the_task_success_is_the_final_answer_not_every_step(script):
    """A plan without a number of the problem scores 0, the task is still solved: the table's
    task success is the task's own, which the min over steps would lose."""
    b = backend([hosted("a"), hosted("b")])

    def vague_plan(role: str, kw: dict) -> str:
        return "Think it through." if role == "planner" else oracle(b)(role, kw)

    script({"openai/a": [vague_plan], "openai/b": [wrong_answer]})
    tab = collect.collect(b, "train")
    planner = np.asarray(tab.roles) == "planner"
    assert np.all(tab.scores[planner, 0] == 0.0)
    assert np.all(tab.task_success()[:, 0] == 1.0) and np.all(tab.task_success()[:, 1] == 0.0)
    step_min = type(tab)(**{**tab.__dict__, "task_scores": None}).task_success()
    assert np.all(step_min[:, 0] == 0.0)


def test_a_table_is_reused_only_by_the_same_agent_settings(script, tmp_path, monkeypatch):
    ms = [hosted("a"), hosted("b")]
    b = backend(ms)
    script({"openai/a": [oracle(b)], "openai/b": [oracle(b)]})
    collect.collect(b, "train")
    assert collect.cached(backend(ms), "train") is not None
    assert collect.cached(backend(ms, seed=7), "train") is not None     # the seed orders only
    for other in (backend(ms, max_tokens=32), backend(ms, temperature=0.5),
                  backend(ms, grammar=False), backend(ms, few_shot=1),
                  backend([hosted("a"), hosted("c")])):
        assert collect.cached(other, "train") is None
    # every run records which agent code ran (its configuration names it), the same digest
    assert b.describe()["agent_code"] == collect.agent_code_digest()
    monkeypatch.setattr(collect, "agent_code_digest", lambda: "another version")
    assert collect.cached(backend(ms), "train") is None
    assert backend(ms).describe()["agent_code"] == "another version"


def test_replies_are_stored_redacted(script, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    b = backend([hosted("a"), hosted("b")])

    def leaky(role: str, kw: dict) -> str:
        return f"{oracle(b)(role, kw)} {FAKE_KEY}" if role == "planner" else oracle(b)(role, kw)

    script({"openai/a": [leaky], "openai/b": [oracle(b)]})
    collect.collect(b, "train")
    text = collect.table_path(b, "train").read_text()
    assert FAKE_KEY not in text and "OPENAI_API_KEY" in text


def test_a_pass_over_the_runs_budget_is_refused_before_any_call(script):
    b = backend([hosted("a", 400.0, 400.0), hosted("b", 500.0, 500.0)])
    llm = script({"openai/a": [oracle(b)], "openai/b": [oracle(b)]})
    need = collect.estimate_cost(b, "train")
    assert need > 0
    with pytest.raises(ValidationError, match="budget"):
        collect.collect(b, "train", budget_usd=need / 2)
    assert llm.calls == [] and not collect.table_path(b, "train").exists()
    collect.collect(b, "train", budget_usd=need)
    spent = collect.cached(b, "train").costs
    assert 0 < float(np.nansum(spent)) <= need           # the bound held


def _spec(router: str = "atropos", **params):
    from evoroute.runs.spec import RunSpec

    return RunSpec(backend="live", router=router, n_tasks=2, seed=0,
                   backend_params={"backoff_s": 0.0, "check_models": False, **params})


def _run(engine, router: str = "atropos", hook=None, **params):
    from evoroute.runs.execute import create_run, execute_run

    run_id = create_run(_spec(router, **params), engine=engine)
    if hook is not None:
        hook(run_id)
    steps = list(execute_run(run_id, engine=engine))
    with db.session(engine) as s:
        run = repo.get_run(run_id, session=s)
    return steps, run


def test_a_router_that_learns_from_the_train_table_runs_live_once_it_is_collected(script, engine):
    ms = [hosted("a", 1.0, 2.0), hosted("b", 5.0, 10.0)]
    _register(engine, ms)
    b = backend(ms)
    script({"openai/a": [wrong_answer], "openai/b": [oracle(b)]})
    with pytest.raises(EvoRouteError, match="collect=true"):
        _run(engine)                 # without a table the run says how to get one
    steps, run = _run(engine, collect=True)
    assert run.status == "finished" and len(steps) == 2 * 4
    cfg = json.loads(run.config_json)["resolved"]["backend"]
    assert cfg["collect"] is True
    # the collected table taught atropos that only b solves these tasks
    assert {st["model"] for st in steps} == {"b"}


def test_masrouter_runs_live_as_role_allocation_on_the_collected_table(script, engine):
    """The live agent's steps are free form, so no vote is defined: masrouter keeps the
    single-model modes and allocates a model per (role, query) from the collected table; the
    studio's launch check accepts it."""
    from evoroute.studio import launch

    ms = [hosted("a", 1.0, 2.0), hosted("b", 5.0, 10.0)]
    _register(engine, ms)
    b = backend(ms)
    llm = script({"openai/a": [wrong_answer], "openai/b": [oracle(b)]})
    with db.session(engine) as s:
        launch.check_launch(_spec("masrouter", collect=True), ["a", "b"], session=s)
    assert llm.calls == []
    steps, run = _run(engine, router="masrouter", collect=True)
    assert run.status == "finished" and len(steps) == 2 * 4
    n_train = len(b.tasks("train"))
    # the pass (every model on every train task), then the test steps, all routed to b
    assert llm.n_calls("openai/a") == 4 * n_train and llm.n_calls("openai/b") == 4 * n_train + 8
    for st in steps:
        e = json.loads(st["explanation_json"]) if "explanation_json" in st else st["explanation"]
        assert st["model"] == "b" and e["mode"] == "collaboration: single"
        assert "only single-model modes are defined" in e["reason"]


def test_a_stop_asked_for_while_collecting_ends_the_run_and_keeps_the_pass(script, engine):
    from evoroute.runs import lifecycle

    ms = [hosted("a"), hosted("b")]
    _register(engine, ms)
    b = backend(ms)
    box = {"calls": 0}

    def stops_after_a_few(role: str, kw: dict) -> str:
        box["calls"] += 1
        if box["calls"] == 8:                 # two task runs in: the user presses stop
            lifecycle.stop_run(box["run"], engine=engine)
        return oracle(b)(role, kw)

    script({"openai/a": [stops_after_a_few], "openai/b": [oracle(b)]})
    steps, run = _run(engine, hook=lambda i: box.update(run=i), collect=True)
    assert run.status == "stopped" and steps == []
    assert "while every model on every train task" in run.error
    doc = json.loads(collect.table_path(b, "train").read_text())
    assert 2 <= sum(len(v) for v in doc["tasks"].values()) < 2 * len(b.tasks("train"))


@pytest.mark.parametrize("breakage", ["not json", "[]", "steps", "value"])
def test_a_corrupt_or_hand_edited_cache_is_not_read_as_outcomes(script, breakage):
    b = backend([hosted("a"), hosted("b")])
    script({"openai/a": [oracle(b)], "openai/b": [oracle(b)]})
    collect.collect(b, "train")
    path = collect.table_path(b, "train")
    doc = json.loads(path.read_text())
    rec = next(iter(doc["tasks"].values()))["a"]
    if breakage == "steps":
        rec["steps"] = rec["steps"][:2]
    elif breakage == "value":
        rec["steps"][0]["duration_s"] = "=cmd|' /C calc'!A0"
    text = {"not json": "{", "[]": "[]"}.get(breakage, json.dumps(doc))
    path.write_text(text)
    assert collect.cached(b, "train") is None          # nothing half-read
    llm = script({"openai/a": [oracle(b)], "openai/b": [oracle(b)]})
    tab = collect.collect(b, "train")                   # collected again, overwritten
    assert llm.n_calls("openai/a") == 4 * len(b.tasks("train"))
    assert np.all(tab.task_success() == 1.0)
