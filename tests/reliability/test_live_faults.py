"""The live backend against a misbehaving OpenAI-compatible server on 127.0.0.1 (fake_openai.py):
real HTTP through litellm and the OpenAI client, requests counted at the server.

Budget bound asserted here: a call (and a run) spends at most its cap plus one streamed chunk.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest

from evoroute import registry
from evoroute.backends.live import LiveBackend
from evoroute.backends.live.retry import retry_after_s
from evoroute.backends.live.sdk import load_litellm
from evoroute.backends.live.tokens import (
    billed_tokens,
    count_prompt_tokens,
    count_text_tokens,
    output_limit,
    tokenizer,
)
from evoroute.core.errors import ValidationError
from evoroute.core.types import CandidateStat, Decision, Explanation, ModelInfo, StepContext
from evoroute.netsafety import LOCAL_API_KEY, is_loopback, is_loopback_host, validate_api_base
from evoroute.storage import db, repo

from fake_openai import FakeOpenAI, Scenario

FAKE_KEY = "sk-test-" + "Qw9" * 12      # looks like a real provider key; must never reach 127.x
MSGS = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture(scope="module")
def srv():
    with FakeOpenAI() as s:
        # warm litellm up once (its first call loads a lot), outside every timed assertion
        s.add("warm", Scenario("ok"))
        m = model("warm", s)
        backend([m], timeout_s=120).call(m, MSGS, 8)
        yield s


def model(name: str, srv: FakeOpenAI, pin: float = 0.0, pout: float = 0.0,
          host: str = "127.0.0.1") -> ModelInfo:
    return ModelInfo(name, input_price_per_m=pin, output_price_per_m=pout,
                     litellm_id="openai/fake", api_base=srv.api_base(name, host))


def backend(models: list[ModelInfo], **kw: Any) -> LiveBackend:
    kw.setdefault("backoff_s", 0.0)
    kw.setdefault("timeout_s", 60.0)
    return LiveBackend("default", models, check_models=False, **kw)


# ------------------------------------------------------------------------------ one retry budget
def test_the_openai_clients_own_retries_would_triple_each_request(srv):
    """Why the fix is needed: litellm's default leaves the OpenAI client retrying twice."""
    srv.add("raw500", Scenario("status", status=500))
    lt = load_litellm()
    # which class litellm maps a raw 500 to is its business; the count below is the point
    with pytest.raises(Exception):  # noqa: B017
        for _ in lt.completion(model="openai/fake", api_base=srv.api_base("raw500"),
                               api_key=LOCAL_API_KEY, messages=MSGS, stream=True, timeout=10):
            pass
    assert srv.count("raw500") == 3


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_a_failing_call_sends_exactly_the_retry_budget(srv, status):
    name = f"always{status}"
    srv.add(name, Scenario("status", status=status))
    m = model(name, srv)
    r = backend([m], max_retries=2).call(m, MSGS, 16)
    assert srv.count(name) == 3 and r.attempts == 3            # 3 in total, not 9
    assert r.error is not None and f"HTTP {status}; after 3 attempts" in r.error
    assert r.cost_usd == 0.0


def test_500_then_ok_succeeds_on_the_second_request(srv):
    srv.add("flaky", Scenario("status", status=500, fail_times=1, n_tokens=6))
    m = model("flaky", srv)
    r = backend([m], max_retries=2).call(m, MSGS, 16)
    assert r.error is None and r.attempts == 2 and srv.count("flaky") == 2
    assert r.output_tokens == 6


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(srv, status):
    name = f"client{status}"
    srv.add(name, Scenario("status", status=status))
    m = model(name, srv)
    r = backend([m], max_retries=5).call(m, MSGS, 16)
    assert srv.count(name) == 1 and r.attempts == 1
    assert f"HTTP {status}; not retried" in r.error


def test_a_hang_costs_the_retry_budget_times_the_timeout(srv):
    srv.add("hang", Scenario("hang", sleep_s=20))
    m = model("hang", srv)
    t0 = time.perf_counter()
    r = backend([m], timeout_s=0.5, max_retries=2).call(m, MSGS, 16)
    took = time.perf_counter() - t0
    assert srv.count("hang") == 3 and "after 3 attempts" in r.error
    assert r.error.startswith("Timeout:")
    assert 1.4 <= took < 6.0                      # 3 x 0.5 s (9 x 0.5 s before the fix)


def test_a_keepalive_stream_without_content_ends_at_the_timeout(srv):
    """SSE comments and empty deltas never reach the read loop (litellm swallows them) and
    each read returns within the client's per-read timeout: the call once lasted as long as
    the server liked (30 s here, for ever in general). The watchdog closes it at timeout_s."""
    srv.add("keepalive", Scenario("keepalive", chunk_delay_s=0.3, max_stream_s=30.0))
    m = model("keepalive", srv)
    t0 = time.perf_counter()
    r = backend([m], timeout_s=2.0, max_retries=1).call(m, MSGS, 16)
    took = time.perf_counter() - t0
    assert r.error is not None and "took longer than 2 s" in r.error
    assert "after 2 attempts" in r.error
    assert srv.count("keepalive") == 2
    assert took < 15.0, took               # 2 x (2 s + a read gap); was 60 s (2 x 30 s)


def test_the_local_model_benchmark_call_sends_one_request_per_failure(srv):
    import os

    from evoroute.backends.local.measure import measure_call
    from evoroute.backends.local.servers import ServerInfo
    from evoroute.core.errors import BackendError

    srv.add("lm500", Scenario("status", status=500))
    info = ServerInfo(name="lm500", port=srv.port, pid=os.getpid(), gguf="-",
                         status="running", api_base=srv.api_base("lm500"))
    with pytest.raises(BackendError, match="fake 500"):
        measure_call(info, "hi", max_tokens=4, timeout=10)
    assert srv.count("lm500") == 1


# ------------------------------------------------------------------------------ Retry-After
def test_retry_after_seconds_is_waited(srv):
    srv.add("ra1", Scenario("status", status=429, headers={"Retry-After": "1.5"}, fail_times=1))
    m = model("ra1", srv)
    t0 = time.perf_counter()
    r = backend([m], max_retries=2, backoff_s=0.0).call(m, MSGS, 16)
    took = time.perf_counter() - t0
    reqs = srv.of("ra1")
    assert r.error is None and len(reqs) == 2
    assert reqs[1].t - reqs[0].t >= 1.5          # measured at the server
    assert took >= 1.5


def test_retry_after_http_date_is_waited(srv):
    when = datetime.now(timezone.utc) + timedelta(seconds=3)
    srv.add("radate", Scenario("status", status=503, fail_times=1,
                               headers={"Retry-After": format_datetime(when, usegmt=True)}))
    m = model("radate", srv)
    r = backend([m], max_retries=1).call(m, MSGS, 16)
    reqs = srv.of("radate")
    assert r.error is None and len(reqs) == 2
    # an HTTP date has whole seconds: the wait is between 2 and 3 s
    assert reqs[1].t - reqs[0].t >= 1.9


def test_a_retry_after_beyond_the_cap_is_not_waited_for(srv):
    srv.add("ra600", Scenario("status", status=429, headers={"Retry-After": "600"}))
    m = model("ra600", srv)
    t0 = time.perf_counter()
    r = backend([m], max_retries=3, retry_after_max_s=5.0).call(m, MSGS, 16)
    assert time.perf_counter() - t0 < 5.0
    assert srv.count("ra600") == 1
    assert "retry after 600 s, more than the 5 s" in r.error


def test_retry_after_parsing():
    class E(Exception):
        def __init__(self, headers: dict[str, str]) -> None:
            super().__init__("x")
            self.litellm_response_headers = headers

    now = datetime(2026, 12, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert retry_after_s(E({"retry-after": "7"})) == 7.0
    assert retry_after_s(E({"retry-after-ms": "250"})) == 0.25
    assert retry_after_s(E({"retry-after": "Tue, 01 Dec 2026 12:00:42 GMT"}), now) == 42.0
    assert retry_after_s(E({"retry-after": "Tue, 01 Dec 2026 11:00:00 GMT"}), now) == 0.0
    assert retry_after_s(E({"retry-after": "soon"})) is None
    assert retry_after_s(E({"retry-after": "-3"})) is None
    assert retry_after_s(E({"retry-after": "nan"})) is None
    assert retry_after_s(E({})) is None
    assert retry_after_s(Exception("no headers")) is None


# ------------------------------------------------------------------------------ non-completions
@pytest.mark.parametrize("kind", ["not_json", "json_on_stream", "sse_garbage", "empty_stream",
                                  "no_choices"])
def test_a_200_reply_that_is_not_a_completion_is_a_retried_error(srv, kind):
    name = f"bad-{kind}"
    srv.add(name, Scenario(kind))
    m = model(name, srv, pin=1.0, pout=1.0)
    r = backend([m], max_retries=2).call(m, MSGS, 16)
    assert r.error is not None and r.text == ""
    assert srv.count(name) == 3 and "after 3 attempts" in r.error
    # each 200 reply is billed its locally counted prompt (conservative for the budget)
    assert r.cost_usd == pytest.approx(3 * count_prompt_tokens("openai/fake", MSGS) / 1e6)


def _decision(chosen: str, order: list[str]) -> Decision:
    stats = [CandidateStat(n, n=3, p_hat=0.5, unexplored=False, utility=1.0 - 0.1 * i,
                           propensity=1.0 if n == chosen else 0.0) for i, n in enumerate(order)]
    return Decision(chosen, 0.9, Explanation(router="evoroute", phase="optimize", mode="thompson",
                                             chosen=chosen, candidates=stats))


def test_a_garbled_reply_falls_back_to_the_next_model(srv):
    srv.add("garbled", Scenario("json_on_stream"))
    srv.add("good", Scenario("ok", n_tokens=5))
    ms = [model("garbled", srv), model("good", srv)]
    b = backend(ms, max_retries=1)
    t = b.tasks("test")[0]
    ctx = StepContext(task_key=t.key, step_index=0, role=t.steps[0].role,
                      instruction=t.steps[0].instruction)
    attempts = b.execute_with_fallback(ctx, _decision("garbled", ["garbled", "good"]))
    assert [o.model for _, o in attempts] == ["garbled", "good"]
    (_, bad), (d2, ok) = attempts
    assert "InvalidReply" in bad.error and "application/json" in bad.error
    assert ok.error is None and ok.output_tokens == 5 and "fallback to good" in d2.explanation.reason
    assert srv.count("garbled") == 2 and srv.count("good") == 1


# ------------------------------------------------------------------------------ budget
def test_lying_usage_is_billed_what_was_streamed(srv):
    srv.add("liar", Scenario("lying_usage", n_tokens=1500))
    m = model("liar", srv, pin=1.0, pout=10.0)
    r = backend([m]).call(m, MSGS, 5000)
    assert r.error is None and srv.chunks_sent("liar") == 1500
    assert r.output_tokens == 1500                     # the server said 1
    assert r.input_tokens == count_prompt_tokens("openai/fake", MSGS)
    assert r.cost_usd == pytest.approx((r.input_tokens * 1.0 + 1500 * 10.0) / 1e6)


def test_billing_takes_the_larger_of_reported_and_counted_usage():
    # a hosted provider reporting 1 token for what was counted as 1500 is billed 1500
    assert billed_tokens(40, 1500, (1, 1), local=False) == (40, 1500, True)
    # honest usage (the provider's tokenizer counts a bit more) is billed as reported
    assert billed_tokens(40, 100, (44, 103), local=False) == (44, 103, False)
    assert billed_tokens(50, 100, (44, 103), local=False) == (50, 103, True)
    assert billed_tokens(40, 100, None, local=False) == (40, 100, True)
    # a local server's "usage" is litellm's fill-in estimate: the local count is the figure
    assert billed_tokens(40, 32, (40, 38), local=True) == (40, 32, True)


def test_a_server_ignoring_max_tokens_is_cut_off(srv):
    srv.add("endless-cut", Scenario("endless", chunk_delay_s=0.0005))
    m = model("endless-cut", srv, pin=1.0, pout=10.0)
    b = backend([m])
    r = b.call(m, MSGS, 64)
    limit = output_limit(64)
    assert limit == 87
    assert r.error is None and r.stopped == "max_tokens"
    assert r.output_tokens == limit + 1                # one chunk past the limit, then closed
    time.sleep(0.3)
    sent = srv.chunks_sent("endless-cut")
    assert sent < limit + 2000                        # the server saw the close (buffers aside)


def test_the_stream_is_closed_at_the_budget_cap(srv):
    srv.add("endless-cap", Scenario("endless", chunk_delay_s=0.0005))
    price_out = 60.0                                   # $60 per 1M: 1,000 tokens = $0.06
    m = model("endless-cap", srv, pin=1.0, pout=price_out)
    cap = 0.06
    r = backend([m]).call(m, MSGS, 1_000_000, cap_usd=cap)
    one_chunk = price_out / 1e6
    assert r.stopped == "budget" and "budget cap" in r.error and "not retried" in r.error
    assert cap < r.cost_usd <= cap + one_chunk        # spent <= cap + one chunk
    assert srv.count("endless-cap") == 1


def test_a_prompt_dearer_than_the_budget_left_is_not_sent(srv):
    srv.add("dear", Scenario("ok"))
    m = model("dear", srv, pin=1e6, pout=1.0)           # $1 per prompt token
    r = backend([m]).call(m, MSGS, 16, cap_usd=0.5)
    assert srv.count("dear") == 0 and r.cost_usd == 0.0
    assert "not sent" in r.error and r.stopped == "budget"


def _run(engine, srv, models: list[ModelInfo], budget: float) -> Any:
    from evoroute.runs.execute import create_run, execute_run
    from evoroute.runs.spec import RunSpec

    with db.session(engine) as s:
        for m in models:
            registry.add_model(session=s, name=m.name, litellm_id=m.litellm_id,
                               input_price_per_m=m.input_price_per_m,
                               output_price_per_m=m.output_price_per_m, api_base=m.api_base)
    spec = RunSpec(backend="live", router="random", n_tasks=5, budget_usd=budget, seed=0,
                   models=tuple(m.name for m in models),
                   backend_params={"backoff_s": 0.0, "check_models": False,
                                   "max_retries": 1})
    run_id = create_run(spec, engine=engine)
    steps = list(execute_run(run_id, engine=engine))
    with db.session(engine) as s:
        return repo.get_run(run_id, session=s), steps


@pytest.mark.parametrize("kind", ["endless", "lying_usage"])
def test_a_run_against_a_dishonest_server_stays_within_its_cap(srv, engine, kind):
    name = f"run-{kind}"
    srv.add(name, Scenario(kind, n_tokens=3000, chunk_delay_s=0.0002))
    price_out = 200.0
    m = model(name, srv, pin=10.0, pout=price_out)
    budget = 0.20
    run, steps = _run(engine, srv, [m], budget)
    assert run.status == "stopped" and "budget cap" in run.error
    assert run.cost_usd <= budget + price_out / 1e6    # cap + one chunk
    assert run.cost_usd > budget / 2
    assert len(steps) >= 1


# ------------------------------------------------------------------------------ token counting
def test_counting_a_1mb_text_is_bounded():
    text = "x" * 1_000_000                         # tiktoken alone: minutes (quadratic run)
    t0 = time.perf_counter()
    n = count_text_tokens("openai/fake", text)
    took = time.perf_counter() - t0
    assert took < 10.0                              # measured ~0.3 s on a loaded 2-core box
    assert 1_000_000 / 8 <= n <= 1_000_000 / 6      # cl100k: 8 'x' per token, cuts add a few
    words = "lorem ipsum dolor sit amet " * 40_000      # 1.08 MB of ordinary text
    t0 = time.perf_counter()
    n2 = count_prompt_tokens("openai/fake", [{"role": "user", "content": words}])
    assert time.perf_counter() - t0 < 10.0
    exact = tokenizer("openai/fake")(words)
    assert exact <= n2 <= exact * 1.02 + 20           # sampled estimate within 2 %


def test_a_1mb_question_is_called_and_billed(srv):
    srv.add("big", Scenario("ok", n_tokens=4))
    m = model("big", srv, pin=1.0, pout=1.0)
    msgs = [{"role": "user", "content": "y" * 1_000_000}]
    t0 = time.perf_counter()
    r = backend([m]).call(m, msgs, 8)
    assert r.error is None and time.perf_counter() - t0 < 30.0
    assert r.input_tokens >= 1_000_000 / 8


# ------------------------------------------------------------------------------ loopback and keys
# (httpx refuses dotted forms with leading zeros, e.g. 0177.0.0.1, before connecting, and
# whether "localhost." resolves depends on the machine's resolver; both still count as
# loopback in the table below, so they could never carry the real key either)
@pytest.mark.parametrize("host", ["127.0.0.1", "127.1", "127.0.1", "2130706433", "0x7f.1",
                                  "0x7f000001", "localhost", "LocalHost"])
def test_every_loopback_spelling_gets_the_placeholder_key(srv, monkeypatch, host):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    name = "keys"
    srv.add(name, Scenario("ok", n_tokens=3))
    srv.reset()
    m = model(name, srv, host=host)
    assert is_loopback(m.api_base)
    r = backend([m], timeout_s=30).call(m, MSGS, 8)
    assert r.error is None, r.error
    got = [q.authorization for q in srv.of(name)]
    assert got == [f"Bearer {LOCAL_API_KEY}"]
    assert FAKE_KEY not in json.dumps(got)


@pytest.mark.parametrize("host,expected", [
    ("127.0.0.1", True), ("127.1", True), ("127.255.255.254", True), ("127.0.0.1.", True),
    ("2130706433", True), ("0x7f.0.0.1", True), ("0177.1", True), ("017700000001", True),
    ("::1", True), ("[::1]", True), ("0:0:0:0:0:0:0:1", True), ("::ffff:127.0.0.1", True),
    ("localhost", True), ("LOCALHOST", True), ("localhost.", True), ("api.localhost", True),
    ("0.0.0.0", True), ("::", True), ("0", True),
    ("128.0.0.1", False), ("126.255.255.255", False), ("10.0.0.1", False),
    ("192.168.1.1", False), ("8.8.8.8", False), ("api.openai.com", False),
    ("127.0.0.1.nip.io", False), ("localhost.evil.com", False), ("127.0.0.256", False),
    ("1.2.3.4.5", False), ("08.0.0.1", False), ("::2", False), ("", False), (None, False),
    # IDNA full stops and fullwidth forms: httpx connects "127\u30020\u30020\u30021" to 127.0.0.1
    ("127\u30020\u30020\u30021", True), ("127\uff0e0\uff0e0\uff0e1", True),
    ("127\uff610\uff610\uff611", True), ("\uff11\uff12\uff17.0.0.1", True),
    ("\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54", True),
    ("127\u30020\u30020\u30021.nip.io", False),
])
def test_loopback_table(host, expected):
    assert is_loopback_host(host) is expected


@pytest.mark.parametrize("host", ["127\u30020\u30020\u30021", "127\uff0e0\uff0e0\uff0e1",
                                  "127\uff610\uff610\uff611"])
def test_an_idna_spelling_of_127_never_carries_the_real_key(srv, monkeypatch, host):
    """httpx turns these hosts into 127.0.0.1 (they once passed validation, were taken as
    remote and got OPENAI_API_KEY). The backend refuses them; unvalidated, they are loopback."""
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    name = "idna-keys"
    srv.add(name, Scenario("ok", n_tokens=3))
    srv.reset()
    m = model(name, srv, host=host)
    with pytest.raises(ValidationError) as e:
        backend([m])
    assert e.value.field == "api_base" and "must be ASCII" in str(e.value)
    assert is_loopback(m.api_base)
    b = backend([model(name, srv)])                     # the kwargs a call would send to it
    assert b.client.request_kwargs(m, MSGS, 8)["api_key"] == LOCAL_API_KEY
    assert srv.count(name) == 0


def test_loopback_of_urls():
    assert is_loopback("http://127.1:8080/v1") and is_loopback("http://[::1]:8080/v1")
    assert is_loopback("HTTP://LOCALHOST.:1/v1")
    assert not is_loopback("https://api.openai.com/v1") and not is_loopback(None)
    assert not is_loopback("http://[::1")       # unparseable: not loopback, and refused anyway


# ------------------------------------------------------------------------------ api_base
ACCEPTED = ["http://127.0.0.1:8080/v1", "https://api.openai.com/v1", "HTTPS://Example.com",
            "http://[::1]:9000/v1", "https://x.openai.azure.com/openai?api-version=2024-06-01",
            "  http://localhost:1234/v1  "]
REFUSED = [
    ("file:///etc/passwd", "http:// or https://"),
    ("javascript:alert(document.cookie)", "http:// or https://"),
    ("ftp://host/v1", "http:// or https://"),
    ("127.0.0.1:8080/v1", "http:// or https://"),
    ("http://user:pass@host/v1", "credentials"),
    ("http://sk-abcdefghij1234@host/v1", "credentials"),
    ("https://h.example/v1?api_key=sk-abcdefghijk123", "key in its query"),
    ("https://h.example/v1?API_KEY=abc", "key in its query"),
    ("https://h.example/v1?key=abc", "key in its query"),
    ("https://h.example/v1?token=abc", "key in its query"),
    ("https://h.example/v1?access_token=abc", "key in its query"),
    ("https://h.example/v1?x=1&Secret=abc", "key in its query"),
    ("https://h.example/v1?password=abc", "key in its query"),
    ("https://h.example/v1?sig=abc", "key in its query"),
    ("https://h.example/v1?X-Api-Key=abc", "key in its query"),
    ("https://h.example/v1?subscription-key=abc", "key in its query"),
    ("https://h.example/sk-proj-abcdefgh12345678/v1", "shaped like a key"),
    ("https://h.example/v1;api_key=abc123", "key in its path or query"),
    ("https://h.example/v1;%61pi_key=abc123", "key in its path or query"),
    ("https://h.example/v1?a=1;api_key=abc123", "key in its path or query"),
    ("https://h.example/v1?%61pi_key=abc123", "key in its query"),
    ("https://h.example/v1/token=abc123", "key in its path or query"),
    ("http://127\u30020\u30020\u30021:8080/v1", "host must be ASCII"),
    ("http://127\uff0e0\uff0e0\uff0e1:8080/v1", "host must be ASCII"),
    ("http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54:8080/v1", "host must be ASCII"),
    ("https://h.example/v1#frag", "fragment"),
    ("http:///v1", "no host"),
    ("http://h.example:99999/v1", "not a valid URL"),
    ("http://h.example/v 1", "spaces or control"),
    ("http://h.example/v1\n", None),             # stripped: accepted (trailing newline)
    ("http://h.example/\x00v1", "spaces or control"),
    ("", "empty"),
    ("https://h.example/" + "a" * 3000, "longer than 2048"),
]


@pytest.mark.parametrize("url", ACCEPTED)
def test_api_base_accepted(url):
    assert validate_api_base(url) == url.strip()


@pytest.mark.parametrize("url,why", REFUSED)
def test_api_base_refused(url, why):
    if why is None:
        assert validate_api_base(url) == url.strip()
        return
    with pytest.raises(ValidationError) as e:
        validate_api_base(url)
    assert e.value.field == "api_base" and why in str(e.value)
    for secret in ("sk-abcdefghijk123", "sk-proj-abcdefgh12345678", "pass@"):
        assert secret not in str(e.value)


def test_registry_refuses_a_bad_api_base_and_stores_nothing(db_session):
    with pytest.raises(ValidationError) as e:
        registry.add_model(session=db_session, name="m", litellm_id="openai/m",
                           input_price_per_m=1.0, output_price_per_m=1.0,
                           api_base="https://h.example/v1?api_key=sk-abcdefghijk123")
    assert e.value.field == "api_base"
    assert repo.get_model("m", session=db_session) is None
    registry.add_model(session=db_session, name="m", litellm_id="openai/m", input_price_per_m=1.0,
                       output_price_per_m=1.0, api_base="http://127.0.0.1:8080/v1")
    with pytest.raises(ValidationError, match="http:// or https://"):
        registry.update_model("m", session=db_session, api_base="file:///etc/passwd")
    assert repo.get_model("m", session=db_session).api_base == "http://127.0.0.1:8080/v1"


def test_the_live_backend_refuses_a_stored_bad_api_base():
    bad = ModelInfo("old", litellm_id="openai/old", api_base="javascript:alert(1)")
    with pytest.raises(ValidationError) as e:
        backend([bad])
    assert e.value.field == "api_base" and "model old" in str(e.value)
