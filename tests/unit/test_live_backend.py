"""The live backend without any network: litellm's own ``completion`` runs with
``mock_response`` (a text, an Exception or a ``litellm.Timeout``), chosen per model and role,
so streaming, usage, retries, fallbacks, timeouts, costs and the budget stop are exercised
through the real litellm code path."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from evoroute import registry
from evoroute.agent import workflow as W
from evoroute.backends.live import LiveBackend
from evoroute.backends.live.client import redact
from evoroute.backends.live.fallback import ranked_models
from evoroute.backends.live.sdk import load_litellm
from evoroute.backends.local.register import register_local_models
from evoroute.backends.registry import make_backend
from evoroute.core.errors import BackendError, ValidationError
from evoroute.core.types import CandidateStat, Decision, Explanation, ModelInfo, StepContext
from evoroute.netsafety import LOCAL_API_KEY
from evoroute.storage import db, repo
from evoroute.storage.tables import StepRecord

FAKE_KEY = "sk-test-" + "Zq7" * 12          # what a real OpenAI key looks like; never stored

litellm = load_litellm()


def role_of(messages: list[dict]) -> str:
    text = messages[0]["content"]
    for r in W.ROLES:
        if text.startswith(f"You are the {r}"):
            return r
    raise AssertionError(text[:80])


def good_reply(task: W.AgentTask, role: str) -> str:
    """What a capable model writes for each role of ``task`` (the tools still compute)."""
    tag = "PYTHON" if task.tool == "python" else "CALC"
    return {"planner": f"1. Use the numbers of the problem.\n2. {task.reference}",
            "solver": f"{tag}: {task.reference}",
            "verifier": "VERDICT: CORRECT",
            "answerer": f"ANSWER: {task.answer}"}[role]


class ScriptedLLM:
    """Wraps the real ``litellm.completion``, adding ``mock_response`` per model id: a list of
    replies consumed one per call (the last one repeats), each a text, an Exception, or a
    callable(role, call_kwargs) -> text. Records every call's keyword arguments."""

    def __init__(self, real: Callable[..., Any], script: dict[str, list[Any]]) -> None:
        self.real, self.script, self.calls = real, {k: list(v) for k, v in script.items()}, []

    def __call__(self, **kw: Any) -> Any:
        role = role_of(kw["messages"])
        self.calls.append({**{k: v for k, v in kw.items() if k != "messages"}, "role": role})
        seq = self.script[kw["model"]]
        reply = seq.pop(0) if len(seq) > 1 else seq[0]
        if callable(reply) and not isinstance(reply, BaseException):
            reply = reply(role, kw)
        return self.real(mock_response=reply, **kw)

    def n_calls(self, model: str) -> int:
        return sum(c["model"] == model for c in self.calls)


@pytest.fixture
def script(monkeypatch):
    """Install a scripted litellm.completion: ``script({"openai/a": [...], ...})``."""
    real = litellm.completion

    def install(s: dict[str, list[Any]]) -> ScriptedLLM:
        fake = ScriptedLLM(real, s)
        monkeypatch.setattr(litellm, "completion", fake)
        return fake
    return install


def hosted(name: str, pin: float = 1.0, pout: float = 2.0, litellm_id: str | None = None) -> ModelInfo:
    """A hosted-style candidate; api base on a reserved .invalid domain (never resolved here)."""
    return ModelInfo(name, input_price_per_m=pin, output_price_per_m=pout,
                     litellm_id=litellm_id or f"openai/{name}",
                     api_base=f"https://{name}.invalid/v1")


def backend(models: list[ModelInfo], **kw: Any) -> LiveBackend:
    kw.setdefault("backoff_s", 0.0)
    b = LiveBackend("default", models, check_models=False, **kw)
    return b


def first_task(b: LiveBackend, split: str = "test"):
    t = b.tasks(split)[0]
    return t, b._by_id[t.key.split(":", 1)[1]]


def ctx(t, i: int) -> StepContext:
    s = t.steps[i]
    return StepContext(task_key=t.key, step_index=i, role=s.role, instruction=s.instruction)


def oracle(b: LiveBackend) -> Callable[[str, list], str]:
    """Replies a capable model would give for whichever task the prompt is about."""
    def reply(role: str, kw: dict) -> str:
        text = kw["messages"][0]["content"]
        # the problem is the last question in the prompt (solved train examples come first)
        task = max((t for t in b._all_tasks if t.question in text),
                   key=lambda t: text.rfind("Problem: " + t.question))
        return good_reply(task, role)
    return reply


# ------------------------------------------------------------------------------ one step
def test_streamed_call_measures_latency_tokens_and_registered_cost(script):
    m = hosted("a", pin=3.0, pout=7.0)
    b = backend([m])
    t, task = first_task(b)
    fake = script({"openai/a": [oracle(b)]})
    outs = [b.execute(ctx(t, i), m) for i in range(4)]
    for o in outs:
        assert o.error is None and o.latency_label == "measured"
        assert 0 < o.ttft_s <= o.duration_s
        assert o.input_tokens > 20 and o.output_tokens > 0
        assert o.cost_usd == pytest.approx((o.input_tokens * 3.0 + o.output_tokens * 7.0) / 1e6)
    assert [o.step_success for o in outs] == [1.0, 1.0, 1.0, 1.0]
    assert b.check_task(t, outs) == 1.0
    tr = b.transcripts[t.key]
    assert tr["correct"] and tr["tool_calls"][0]["ok"]
    assert T_approx(tr["tool_calls"][0]["value"], task.answer, task.decimals)
    # every call streamed, with usage requested, a timeout and max_tokens per role
    for c in fake.calls:
        assert c["stream"] is True and c["stream_options"] == {"include_usage": True}
        assert c["timeout"] == b.client.timeout_s and c["max_tokens"] == W.MAX_TOKENS[c["role"]]
        assert c["api_base"] == "https://a.invalid/v1" and "api_key" not in c
        # one retry budget: litellm's and the OpenAI client's own retries are off
        assert c["num_retries"] == 0 and c["max_retries"] == 0


def T_approx(v: float, answer: float, decimals: int) -> bool:
    from evoroute.agent.tools import answer_matches
    return answer_matches(v, answer, decimals)


def test_registered_prices_win_over_litellm_cost_map(script):
    listed = registry.litellm_prices("gpt-4o-mini")
    assert listed is not None and listed != (10.0, 40.0)
    m = ModelInfo("mini", input_price_per_m=10.0, output_price_per_m=40.0, litellm_id="gpt-4o-mini")
    b = backend([m])
    t, _ = first_task(b)
    script({"gpt-4o-mini": ["1. Multiply.\n2. Add."]})
    o = b.execute(ctx(t, 0), m)
    assert o.cost_usd == pytest.approx((o.input_tokens * 10.0 + o.output_tokens * 40.0) / 1e6)
    at_map = (o.input_tokens * listed[0] + o.output_tokens * listed[1]) / 1e6
    assert o.cost_usd > 10 * at_map


def test_local_models_get_the_placeholder_key_never_the_environment_key(script, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    m = ModelInfo("smol", litellm_id="openai/smol", api_base="http://127.0.0.1:18999/v1")
    b = backend([m])
    t, _ = first_task(b)
    fake = script({"openai/smol": ["1. go"]})
    o = b.execute(ctx(t, 0), m)
    assert o.error is None and o.cost_usd == 0.0
    assert fake.calls[0]["api_key"] == LOCAL_API_KEY


# ------------------------------------------------------------------------------ retries, timeouts
def test_transient_errors_are_retried_with_exponential_backoff(script):
    m = hosted("a")
    b = backend([m], max_retries=3, backoff_s=0.5, backoff_max_s=8.0)
    waits: list[float] = []
    b.client.sleep = waits.append
    t, _ = first_task(b)
    timeout = litellm.Timeout(message="read timed out", model="a", llm_provider="openai")
    fake = script({"openai/a": [Exception("upstream 503"), timeout,
                                Exception("Exception: mock_streaming_error"), "1. plan"]})
    o = b.execute(ctx(t, 0), m)
    assert o.error is None and o.step_success is not None
    assert fake.n_calls("openai/a") == 4
    assert len(waits) == 3
    for k, w in enumerate(waits):            # 0.5 * 2^k, plus up to 25 % seeded jitter
        assert 0.5 * 2 ** k <= w <= 0.5 * 2 ** k * 1.25


def test_retries_are_bounded_and_the_failure_is_returned_not_raised(script):
    m = hosted("a")
    b = backend([m], max_retries=2)
    t, _ = first_task(b)
    fake = script({"openai/a": [litellm.Timeout(message="read timed out", model="a",
                                                llm_provider="openai")]})
    o = b.execute(ctx(t, 0), m)
    assert fake.n_calls("openai/a") == 3
    assert o.error.startswith("Timeout:") and "after 3 attempts" in o.error
    assert o.step_success == 0.0 and o.cost_usd == 0.0 and o.ttft_s is None
    assert o.latency_label == "measured" and o.duration_s > 0


def test_permanent_errors_are_not_retried(script):
    m = hosted("a")
    b = backend([m], max_retries=5)
    t, _ = first_task(b)
    bad_key = litellm.AuthenticationError(message="invalid api key", llm_provider="openai", model="a")
    fake = script({"openai/a": [bad_key]})
    o = b.execute(ctx(t, 0), m)
    assert fake.n_calls("openai/a") == 1
    assert "AuthenticationError" in o.error and "not retried" in o.error


def test_a_stream_slower_than_the_timeout_is_cut_and_retried(script, monkeypatch):
    m = hosted("a")
    b = backend([m], timeout_s=0.05, max_retries=1)
    t, _ = first_task(b)
    real = litellm.completion
    fake = script({"openai/a": ["1. a slow plan"]})
    delays: list[float] = []

    def slow(**kw):              # litellm's mock_delay: the answer arrives after 0.2 s
        delays.append(0.2)
        return fake(mock_delay=0.2, **kw)
    monkeypatch.setattr(litellm, "completion", slow)
    o = b.execute(ctx(t, 0), m)
    assert len(delays) == 2
    assert "longer than 0.05 s" in o.error and "after 2 attempts" in o.error
    assert o.duration_s >= 0.4
    monkeypatch.setattr(litellm, "completion", real)


# ------------------------------------------------------------------------------ fallback
def decision(chosen: str, cands: list[tuple[str, float | None]]) -> Decision:
    stats = [CandidateStat(name, n=5, p_hat=0.5, unexplored=u is None, utility=u,
                           propensity=1.0 if name == chosen else 0.0) for name, u in cands]
    e = Explanation(router="evoroute", phase="optimize", mode="thompson", chosen=chosen,
                    reason="highest sampled utility", candidates=stats)
    return Decision(chosen, 0.8, e)


def test_ranked_models_follow_the_decisions_utilities():
    d = decision("b", [("a", 0.1), ("b", 0.9), ("c", 0.5), ("d", None)])
    assert ranked_models(d) == ["b", "c", "a", "d"]
    cold = Decision("y", 1 / 3, Explanation(router="evoroute", phase="cold_start", mode="cold_start",
                                            chosen="y", candidates=[CandidateStat(n) for n in "xyz"]))
    assert ranked_models(cold) == ["y", "x", "z"]


def test_failed_call_falls_back_to_the_next_best_candidate(script):
    ms = [hosted("a"), hosted("b"), hosted("c")]
    b = backend(ms, max_retries=1)
    t, _ = first_task(b)
    fake = script({"openai/a": [Exception("a is down")], "openai/c": [Exception("c is down")],
                   "openai/b": [oracle(b)]})
    d = decision("a", [("a", 0.9), ("b", 0.2), ("c", 0.5)])
    attempts = b.execute_with_fallback(ctx(t, 0), d)
    assert [o.model for _, o in attempts] == ["a", "c", "b"]       # c ranks above b
    (d1, o1), (d2, o2), (d3, o3) = attempts
    assert d1 is d and "a is down" in o1.error and "after 2 attempts" in o1.error
    assert "c is down" in o2.error
    assert o3.error is None and o3.step_success == 1.0 and o3.ttft_s > 0
    assert d2.model == "c" and d3.model == "b" and d3.explanation.chosen == "b"
    assert "fallback to b" in d3.explanation.reason
    assert "a failed" in d3.explanation.reason and "c failed" in d3.explanation.reason
    assert d3.propensity == d.propensity
    assert fake.n_calls("openai/a") == 2 and fake.n_calls("openai/c") == 2
    assert fake.n_calls("openai/b") == 1


def test_fallback_stops_when_every_candidate_fails(script):
    ms = [hosted("a"), hosted("b")]
    b = backend(ms, max_retries=0)
    t, _ = first_task(b)
    script({"openai/a": [Exception("down")], "openai/b": [Exception("down too")]})
    attempts = b.execute_with_fallback(ctx(t, 0), decision("a", [("a", 0.9), ("b", 0.2)]))
    assert [o.model for _, o in attempts] == ["a", "b"]
    assert all(o.error for _, o in attempts)


def test_fallback_skips_candidates_the_budget_cannot_pay(script):
    ms = [hosted("a", 1.0, 1.0), hosted("pricey", 5000.0, 5000.0), hosted("cheap", 1.0, 1.0)]
    b = backend(ms, max_retries=0)
    t, _ = first_task(b)
    script({"openai/a": [Exception("down")], "openai/pricey": ["x"], "openai/cheap": ["1. ok"]})
    d = decision("a", [("a", 0.9), ("pricey", 0.8), ("cheap", 0.1)])
    left = 0.01
    assert b.estimate_cost(ctx(t, 0), ms[1]) > left > b.estimate_cost(ctx(t, 0), ms[2])
    attempts = b.execute_with_fallback(ctx(t, 0), d, budget_left=left)
    assert [o.model for _, o in attempts] == ["a", "cheap"]


# ------------------------------------------------------------------------------ budget
def test_cost_estimate_bounds_the_real_cost_of_every_step(script):
    m = hosted("a", 2.0, 8.0)
    b = backend([m])
    # a model that writes right up to its max_tokens (litellm's mock does not truncate)
    script({"openai/a": [lambda role, kw: " word" * kw["max_tokens"]]})
    for t in b.tasks("test")[:3]:
        for i in range(4):
            c = ctx(t, i)
            est = b.estimate_cost(c, m)
            o = b.execute(c, m)
            assert o.error is None
            assert o.output_tokens <= W.MAX_TOKENS[c.role]
            assert 0 < o.cost_usd <= est
    free = ModelInfo("free", litellm_id="openai/free", api_base="http://127.0.0.1:1/v1")
    assert b.estimate_cost(ctx(b.tasks("test")[0], 0), free) == 0.0


def _register(engine, models: list[ModelInfo]) -> None:
    with db.session(engine) as s:
        for m in models:
            registry.add_model(session=s, name=m.name, litellm_id=m.litellm_id,
                               input_price_per_m=m.input_price_per_m,
                               output_price_per_m=m.output_price_per_m, api_base=m.api_base)


def _run(engine, **spec_kw: Any) -> tuple[list[dict], Any, list[StepRecord]]:
    from evoroute.runs.execute import create_run, execute_run
    from evoroute.runs.spec import RunSpec

    spec = RunSpec(backend="live", backend_params={"backoff_s": 0.0, "check_models": False},
                   **spec_kw)
    run_id = create_run(spec, engine=engine)
    steps = list(execute_run(run_id, engine=engine))
    with db.session(engine) as s:
        run = repo.get_run(run_id, session=s)
        recs = repo.query_steps(repo.StepFilter(run_ids=[run_id]), session=s, limit=10_000,
                                newest_first=False)
    return steps, run, recs


def test_budget_cap_stops_the_run_cleanly_before_it_is_exceeded(script, engine):
    ms = [hosted("a", 400.0, 400.0), hosted("b", 500.0, 500.0)]
    _register(engine, ms)
    b = backend(ms)
    script({"openai/a": [oracle(b)], "openai/b": [oracle(b)]})
    budget = 0.5
    steps, run, _ = _run(engine, router="random", n_tasks=5, budget_usd=budget, seed=3)
    assert run.status == "stopped"
    assert "budget cap" in run.error
    assert 0 < len(steps) < 5 * 4
    costs = [st["cost_usd"] for st in steps]
    assert all(c > 0 for c in costs)
    # the runner priced the next step with the backend's upper-bound estimate and stopped
    # before it: the cap was never exceeded
    assert "was expected to cost" in run.error
    assert run.cost_usd == pytest.approx(sum(costs)) and run.cost_usd <= budget
    spent_before_stop = float(np.sum(costs))
    assert spent_before_stop > budget / 2       # it did not stop needlessly early either


# ------------------------------------------------------------------------------ runner, storage, keys
def test_runner_stores_failed_calls_and_the_fallback_result(script, engine):
    ms = [hosted("a"), hosted("b")]
    _register(engine, ms)
    b = backend(ms)
    script({"openai/a": [Exception("a is down")], "openai/b": [oracle(b)]})
    # EvoRoute without the semantic channel: no embedding model needed in a unit test
    steps, run, recs = _run(engine, router="evoroute", router_params={"channels": ["role", "tool"]},
                            cold_start_tasks=2, n_train=0, n_tasks=1, seed=0)
    assert run.status == "finished" and len(steps) == 12
    assert all(st["model"] == "b" and st["error"] is None for st in steps)
    failed = [f for st in steps for f in st["failed_calls"]]
    assert failed and all(f["model"] == "a" and "a is down" in f["error"] for f in failed)
    bad = [r for r in recs if r.error]
    assert len(bad) == len(failed) and len(recs) == 12 + len(failed)
    assert all(r.model == "a" and "a is down" in r.error and r.latency_label == "measured"
               for r in bad)
    rescued = [r for r in recs if r.model == "b" and "fallback to b" in (r.explanation or "")]
    assert len(rescued) == len(failed)
    assert [st["task_success"] for st in steps if st["task_success"] is not None] == [1.0] * 3



def test_live_run_through_the_runner_stores_measured_steps(script, engine):
    ms = [hosted("a", 1.0, 2.0), hosted("b", 0.5, 1.0)]
    _register(engine, ms)
    b = backend(ms)
    script({"openai/a": [oracle(b)], "openai/b": [oracle(b)]})
    steps, run, recs = _run(engine, router="random", n_tasks=3, seed=1)
    assert run.status == "finished" and run.label.startswith("live")
    assert len(steps) == 12
    assert [st["role"] for st in steps[:4]] == list(W.ROLES)
    for st in steps:
        for k in ("model", "latency_s", "ttft_s", "input_tokens", "output_tokens", "cost_usd",
                  "score", "error"):
            assert k in st
        assert st["latency_label"] == "measured" and st["error"] is None
        assert 0 < st["ttft_s"] <= st["latency_s"]
    assert [st["task_success"] for st in steps if st["task_success"] is not None] == [1.0, 1.0, 1.0]
    assert len(recs) == 12
    assert all(r.latency_label == "measured" and r.task_success == 1.0 and r.ttft_s > 0 for r in recs)
    cfg = json.loads(run.config_json)["resolved"]["backend"]
    assert cfg["label"] == "live" and cfg["tasks"] == {"train": 40, "test": 20}


def test_api_key_never_reaches_records_errors_exports_or_config(script, engine, monkeypatch, tmp_path):
    from evoroute.csvio.export import export_csv

    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    ms = [hosted("a"), hosted("b")]
    _register(engine, ms)
    leak = Exception(f"Incorrect API key provided: {FAKE_KEY}. Authorization: Bearer {FAKE_KEY}")
    script({"openai/a": [leak], "openai/b": [leak]})
    steps, run, _ = _run(engine, router="random", n_tasks=2, seed=0)
    errors = [st["error"] for st in steps]
    assert errors and all(errors)
    assert all(FAKE_KEY not in e and "[redacted" in e for e in errors)
    out = tmp_path / "export.csv"
    n = export_csv(str(out), repo.StepFilter(run_ids=[run.id]), engine=engine)
    # every step tried a, then fell back to b: both failed calls are stored with their error
    assert n == 2 * len(steps) == sum(1 + len(st["failed_calls"]) for st in steps)
    text = out.read_text()
    assert "Incorrect API key provided" in text and FAKE_KEY not in text
    with db.session(engine) as s:
        run2 = repo.get_run(run.id, session=s)
    assert FAKE_KEY not in (run2.config_json or "") and FAKE_KEY not in (run2.error or "")
    assert FAKE_KEY not in json.dumps(steps, default=str)
    rows = list(csv.DictReader(out.open()))
    assert all(r["error"] for r in rows)


def test_redact_removes_environment_secrets_and_key_shapes(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "ant-secret-value-123456")
    text = redact("key ant-secret-value-123456 and sk-proj-abcdefgh12345 api_key=hunter2hunter2")
    assert "ant-secret-value-123456" not in text and "[redacted $ANTHROPIC_API_KEY]" in text
    assert "sk-proj-abcdefgh12345" not in text and "hunter2hunter2" not in text


# ------------------------------------------------------------------------------ set-up
def test_tasks_are_the_bundled_agent_tasks_in_a_seeded_order():
    b = backend([hosted("a")], seed=4)
    tr, te = b.tasks("train"), b.tasks("test")
    assert len(tr) == 40 and len(te) == 20
    assert all([s.role for s in t.steps] == list(W.ROLES) for t in tr + te)
    assert [t.key for t in te] == [t.key for t in backend([hosted("a")], seed=4).tasks("test")]
    assert [t.key for t in te] != [t.key for t in backend([hosted("a")], seed=5).tasks("test")]
    assert te[0].steps[1].instruction.startswith("Compute the answer with the calculator or python tool")


def test_make_backend_builds_the_live_backend_and_checks_candidates(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValidationError, match="OPENAI_API_KEY"):
        make_backend("live", "default", models=[ModelInfo("mini", litellm_id="gpt-4o-mini")])
    with pytest.raises(ValidationError, match="no server answers at http://127.0.0.1:9/v1"):
        make_backend("live", "default", models=[ModelInfo("s", litellm_id="openai/s",
                                                          api_base="http://127.0.0.1:9/v1")])
    with pytest.raises(ValidationError, match="no litellm id"):
        make_backend("live", "default", models=[ModelInfo("x")])
    with pytest.raises(ValidationError, match="steps_per_task must be 1"):
        make_backend("live", "default", models=[hosted("a")], steps_per_task=2)
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    b = make_backend("live", "default", models=[ModelInfo("mini", litellm_id="gpt-4o-mini")])
    assert b.label == "live" and b.latency_label == "measured"
    assert FAKE_KEY not in json.dumps(b.describe())


def test_register_local_models_adds_then_refreshes(db_session):
    from evoroute.backends.local.servers import ServerInfo

    s1 = ServerInfo(name="smollm2-135m", port=18431, pid=1, gguf="/x.gguf", status="running")
    e, = register_local_models(session=db_session, servers=[s1])
    assert (e.litellm_id, e.api_base) == ("openai/smollm2-135m", "http://127.0.0.1:18431/v1")
    assert e.price_source == "notional" and e.input_price_per_m == 0.0
    registry.update_model("smollm2-135m", session=db_session, input_price_per_m=0.2,
                          output_price_per_m=0.4)
    s2 = ServerInfo(name="smollm2-135m", port=18440, pid=2, gguf="/x.gguf", status="running")
    e2, = register_local_models(session=db_session, servers=[s2])
    assert e2.api_base == "http://127.0.0.1:18440/v1"
    assert (e2.input_price_per_m, e2.output_price_per_m) == (0.2, 0.4)   # notional prices kept
    assert e2.price_source == "notional"
    with pytest.raises(BackendError, match="no local model server is running"):
        register_local_models(session=db_session, servers=[])


def test_register_local_models_without_servers_gives_the_start_address(db_session, tmp_path,
                                                                         monkeypatch):
    """No server running (an empty state file): every catalogue model is registered at the
    address `local start` serves it on, never without an api base (a call would then go to
    the hosted provider with its key); registering again changes nothing."""
    from evoroute.backends.local.catalogue import LOCAL_MODELS

    monkeypatch.setenv("EVOROUTE_HOME", str(tmp_path))
    entries = register_local_models(session=db_session, installed_only=False)
    assert [e.name for e in entries] == list(LOCAL_MODELS)
    for i, e in enumerate(entries):
        assert e.litellm_id == f"openai/{e.name}" and e.price_source == "notional"
        assert e.api_base == f"http://127.0.0.1:{18431 + i}/v1"
    assert register_local_models(session=db_session, installed_only=False) == []
