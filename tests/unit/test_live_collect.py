"""The live collection pass (every model on every train task) without any network: litellm's
own ``completion`` with ``mock_response`` per model (the harness of test_live_backend)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_live_backend import ScriptedLLM, _register, backend, hosted, litellm, oracle

from evoroute.backends.live import collect
from evoroute.core.errors import EvoRouteError
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


def test_a_failed_call_is_an_unknown_step_not_a_wrong_one(script):
    b = backend([hosted("a"), hosted("b")], max_retries=0)

    def solver_down(role: str, kw: dict) -> str:
        if role == "solver":
            raise Exception("server down")
        return oracle(b)(role, kw)

    script({"openai/a": [solver_down], "openai/b": [oracle(b)]})
    tab = collect.collect(b, "train")
    solver = np.asarray(tab.roles) == "solver"
    assert np.all(np.isnan(tab.scores[solver, 0])) and np.all(tab.scores[solver, 1] == 1.0)
    doc = json.loads(collect.table_path(b, "train").read_text())
    rec = next(iter(doc["tasks"].values()))["a"]
    assert "server down" in rec["steps"][1]["error"] and rec["steps"][1]["response"] is None


def _run(engine, **params):
    from evoroute.runs.execute import create_run, execute_run
    from evoroute.runs.spec import RunSpec

    spec = RunSpec(backend="live", router="atropos", n_tasks=2, seed=0,
                   backend_params={"backoff_s": 0.0, "check_models": False, **params})
    run_id = create_run(spec, engine=engine)
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
