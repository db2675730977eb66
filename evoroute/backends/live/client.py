"""The one streaming client: a chat completion through litellm, streamed and measured, with
one retry budget.

Every call is one streamed ``litellm.completion`` to the model's registered litellm id and api
base. A local server (any loopback spelling, see :mod:`evoroute.netsafety`) gets a placeholder
key, never a provider key. Measured: time to first token (first non-empty content delta), total
latency, input / output tokens (the larger of the server's own ``usage`` and the local count,
see :func:`~evoroute.backends.live.tokens.billed_tokens`), and the cost at the registered prices.

One retry budget: litellm's and the OpenAI client's own retries are off (``num_retries=0``,
``max_retries=0``), so ``max_retries=2`` means 3 requests in total, with bounded exponential
backoff (seeded jitter), waiting at least the server's ``Retry-After`` / ``retry-after-ms``
(a wait above ``retry_after_max_s`` is not waited for: the call fails at once so a fallback can
try another model); see :mod:`evoroute.backends.live.retry` for what is retried. A call that
still fails comes back with its error (secrets redacted) and the true number of requests sent.

A 200 reply is a completion only if its stream carries content. The stream is closed once the
output passes ``max_tokens`` (+10 % + 16 tokens of tokenizer tolerance), once the running cost
passes the budget left, or at the call's total time budget (a watchdog also closes a stream
that sends nothing the read loop sees). A 200 reply that failed is billed what was counted of
it; a refused request costs nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from evoroute.backends.live.retry import (
    OWN_ERRORS,
    BudgetStop,
    InvalidReply,
    NotSent,
    StreamTimeout,
    is_retryable,
    retry_after_s,
    status_of,
)
from evoroute.backends.live.sdk import load_litellm
from evoroute.backends.live.tokens import (
    TokenTally,
    billed_tokens,
    count_prompt_tokens,
    local_output_tokens,
    output_limit,
    registered_cost,
)
from evoroute.core.types import ModelInfo
from evoroute.netsafety import LOCAL_API_KEY, is_loopback
from evoroute.secrets import redact as redact_secrets

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_RETRIES = 2
DEFAULT_BACKOFF_S = 0.5
DEFAULT_BACKOFF_MAX_S = 8.0
DEFAULT_RETRY_AFTER_MAX_S = 30.0   # a longer Retry-After is not waited for: fail, fall back


def redact(text: str | None) -> str:
    """Every error message is redacted before it is stored or shown (evoroute.secrets), naming
    the environment variable whose value was removed."""
    return redact_secrets(text, name_env=True)


@dataclass(frozen=True)
class CallResult:
    """One model call after retries: text and measurements, or the error that ended it."""

    text: str = ""
    ttft_s: float | None = None
    latency_s: float = 0.0          # the successful attempt, first byte sent -> last chunk
    elapsed_s: float = 0.0          # all attempts and backoff waits
    input_tokens: int | None = None
    output_tokens: int | None = None
    tokens_counted: bool = False    # True: the provider sent no usage; counted locally
    attempts: int = 1               # requests sent (the retry budget spent)
    error: str | None = None
    cost_usd: float = 0.0           # billed over every attempt (a failed 200 reply counts too)
    stopped: str | None = None      # "max_tokens" / "budget": the stream was closed early
    deltas: int = 0                 # non-empty content deltas streamed by the successful attempt


def _close(stream: Any) -> None:
    """Close a stream's connection (the server sees the client go away and stops)."""
    for obj in (getattr(stream, "completion_stream", None), stream):
        close = getattr(obj, "close", None)
        if callable(close):
            try:
                close()
            except Exception:   # noqa: BLE001 - closing a broken stream may fail; nothing to keep
                pass
            return


def _reply_kind(stream: Any) -> str:
    """What the 200 reply was, for the error message: its content type when known."""
    resp = getattr(getattr(stream, "completion_stream", None), "response", None)
    ctype = getattr(resp, "headers", {}).get("content-type") if resp is not None else None
    if ctype and "event-stream" not in ctype:
        return f"content type {ctype.split(';')[0][:60]!r} where an event stream was asked for"
    return "an event stream without any content"


@dataclass
class _Meter:
    """What one attempt received, kept when it raises (a failed 200 reply is billed)."""

    replied: bool = False           # the server answered 2xx and a stream was opened
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


@dataclass
class StreamingClient:
    """Streamed chat completions with one retry budget (see the module docstring).

    ``seed`` seeds the backoff jitter; ``sleep`` waits between attempts (tests replace it)."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    max_retries: int = DEFAULT_MAX_RETRIES
    backoff_s: float = DEFAULT_BACKOFF_S
    backoff_max_s: float = DEFAULT_BACKOFF_MAX_S
    retry_after_max_s: float = DEFAULT_RETRY_AFTER_MAX_S
    temperature: float = 0.0
    seed: int = 0
    sleep: Callable[[float], None] = time.sleep
    jitter: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.jitter = np.random.default_rng([int(self.seed), 4099])

    def request_kwargs(self, model: ModelInfo, messages: list[dict[str, str]], max_tokens: int,
                       *, stream: bool = True, grammar: str | None = None) -> dict[str, Any]:
        """The keyword arguments of ``litellm.completion`` for one request (``stream=False``:
        the same request, answered whole). ``grammar``: a GBNF grammar for a local llama.cpp
        server (sent in the body as ``grammar``; refused for any other api base)."""
        kwargs: dict[str, Any] = dict(model=model.litellm_id, messages=messages,
                                      max_tokens=int(max_tokens), temperature=self.temperature,
                                      timeout=self.timeout_s, drop_params=True,
                                      # one retry budget: EvoRoute's own loop in call();
                                      # litellm's and the OpenAI client's retries are off
                                      num_retries=0, max_retries=0)
        if stream:
            kwargs.update(stream=True, stream_options={"include_usage": True})
        if model.api_base:
            kwargs["api_base"] = model.api_base
            if is_loopback(model.api_base):
                # never send a real provider key to a local server; llama.cpp needs none
                kwargs["api_key"] = LOCAL_API_KEY
        if grammar is not None:
            if not is_loopback(model.api_base):
                raise ValueError("a grammar is sent to local llama.cpp servers only")
            kwargs["extra_body"] = {"grammar": grammar}
        return kwargs

    @staticmethod
    def _chunks(stream: Any, expired: threading.Event) -> Any:
        """The stream's chunks until the watchdog closed it."""
        for chunk in stream:
            if expired.is_set():
                return
            yield chunk

    def _call_once(self, model: ModelInfo, messages: list[dict[str, str]], max_tokens: int,
                    meter: _Meter, cap_usd: float | None = None,
                    grammar: str | None = None) -> CallResult:
        lt = load_litellm()
        local = is_loopback(model.api_base)
        n_in = count_prompt_tokens(model.litellm_id, messages)
        meter.input_tokens = n_in
        if cap_usd is not None and registered_cost(model, n_in, 0) > cap_usd:
            raise NotSent(f"the prompt alone ({n_in} tokens) would cost "
                          f"${registered_cost(model, n_in, 0):.6f}, more than the ${cap_usd:.6f} "
                          f"the budget has left; not sent")
        limit = output_limit(max_tokens)
        t0 = time.perf_counter()
        deadline = t0 + self.timeout_s
        ttft, parts, usage = None, [], None
        tally = TokenTally(model.litellm_id)
        stopped: str | None = None
        stream = lt.completion(**self.request_kwargs(model, messages, max_tokens, grammar=grammar))
        meter.replied = True
        meter.cost_usd = model.cost(n_in, 0)
        # the deadline also holds while nothing reaches the loop: litellm swallows SSE comments
        # and empty deltas, so a server sending ": ping" every second kept a call open for as
        # long as it liked (the client's timeout is per read); a timer closes the stream
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            _close(stream)

        watchdog = threading.Timer(max(0.0, deadline - time.perf_counter()), expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            try:
                for chunk in self._chunks(stream, expired):
                    now = time.perf_counter()
                    if getattr(chunk, "choices", None):
                        delta = chunk.choices[0].delta
                        piece = getattr(delta, "content", None) or ""
                        if piece:
                            if ttft is None:
                                ttft = now - t0
                            parts.append(piece)
                            tally.add(piece)
                            # an upper bound first (cheap); the exact count only when the bound
                            # could pass a limit. Cost: the registered prices' plain arithmetic
                            # (litellm's cost function takes milliseconds, too slow per chunk)
                            n_out = local_output_tokens(local, len(parts), tally.upper)
                            if n_out > limit or (cap_usd is not None
                                                 and model.cost(n_in, n_out) > cap_usd):
                                n_out = local_output_tokens(local, len(parts), tally.total)
                            meter.output_tokens = n_out
                            meter.cost_usd = model.cost(n_in, n_out)
                            if n_out > limit:
                                stopped = "max_tokens"
                                break
                            if cap_usd is not None and meter.cost_usd > cap_usd:
                                raise BudgetStop(
                                    f"stream closed at the budget cap: {n_out} output tokens cost "
                                    f"${meter.cost_usd:.6f} of the ${cap_usd:.6f} left")
                    u = getattr(chunk, "usage", None)
                    if u is not None and getattr(u, "completion_tokens", None) is not None:
                        usage = u
                    if now > deadline:
                        raise StreamTimeout(f"the response took longer than {self.timeout_s:g} s")
            except Exception as exc:
                if expired.is_set() and not isinstance(exc, OWN_ERRORS):
                    raise StreamTimeout(f"the response took longer than {self.timeout_s:g} s "
                                        f"(the stream was closed)") from None
                raise
            if expired.is_set() and stopped is None:
                raise StreamTimeout(f"the response took longer than {self.timeout_s:g} s "
                                    f"(the stream was closed)")
        finally:
            watchdog.cancel()
            _close(stream)
            if parts:     # exact, also when the stream failed half-way (that part is billed)
                meter.output_tokens = local_output_tokens(local, len(parts), tally.total)
                meter.cost_usd = model.cost(n_in, meter.output_tokens)
        total = time.perf_counter() - t0
        text = "".join(parts)
        if not text:
            raise InvalidReply("the server answered 200 but sent no completion "
                               f"({_reply_kind(stream)})")
        reported = (int(usage.prompt_tokens), int(usage.completion_tokens or 0)) \
            if usage is not None and usage.prompt_tokens else None
        n_in, n_out, counted = billed_tokens(
            n_in, local_output_tokens(local, len(parts), tally.total), reported, local=local)
        meter.input_tokens, meter.output_tokens = n_in, n_out
        meter.cost_usd = registered_cost(model, n_in, n_out)
        return CallResult(text=text, ttft_s=ttft if ttft is not None else total, latency_s=total,
                          input_tokens=n_in, output_tokens=n_out, tokens_counted=counted,
                          cost_usd=meter.cost_usd, stopped=stopped, deltas=len(parts))

    def call(self, model: ModelInfo, messages: list[dict[str, str]], max_tokens: int,
             cap_usd: float | None = None, grammar: str | None = None) -> CallResult:
        """One call with one retry budget (``max_retries`` + 1 requests in total, litellm's and
        the OpenAI client's own retries off), exponential backoff with seeded jitter, at least
        the server's ``Retry-After``; never raises for a failed call (the error comes back,
        redacted, in :attr:`CallResult.error`, saying how many requests were sent).

        ``cap_usd``: what the call may cost at most (the run's budget left). Every attempt's
        stream is closed once its running cost passes what is left of it, so the call costs at
        most ``cap_usd`` plus one streamed chunk."""
        t0 = time.perf_counter()
        spent = 0.0
        attempt = 0
        while True:
            attempt += 1
            meter = _Meter()
            left = None if cap_usd is None else cap_usd - spent
            try:
                res = self._call_once(model, messages, max_tokens, meter, left, grammar)
                return replace(res, attempts=attempt, elapsed_s=time.perf_counter() - t0,
                               cost_usd=spent + res.cost_usd)
            except Exception as exc:   # noqa: BLE001 - litellm raises many types; all are recorded
                spent += meter.cost_usd if meter.replied else 0.0
                retry = is_retryable(exc) and attempt <= self.max_retries
                wait = 0.0
                note = ""
                if retry:
                    wait = min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1)
                               * (1 + 0.25 * float(self.jitter.random())))
                    asked = retry_after_s(exc)
                    if asked is not None and asked > self.retry_after_max_s:
                        retry = False
                        note = (f"; the server asked to retry after {asked:g} s, more than "
                                f"the {self.retry_after_max_s:g} s this backend waits")
                    elif asked is not None:
                        wait = max(wait, asked)
                    if cap_usd is not None and spent >= cap_usd:
                        retry = False
                        note = "; the budget left is spent"
                if not retry:
                    kind = "not retried" if not is_retryable(exc) else \
                        f"after {attempt} attempt{'s' if attempt > 1 else ''}"
                    code = status_of(exc)
                    if code is not None and not isinstance(exc, OWN_ERRORS):
                        kind = f"HTTP {code}; {kind}"
                    msg = redact(f"{type(exc).__name__.lstrip('_')}: {exc}")
                    msg = " ".join(msg.split())[:600]
                    tokens = meter if meter.replied else None
                    return CallResult(error=f"{msg} ({kind}{note})", attempts=attempt,
                                      elapsed_s=time.perf_counter() - t0, cost_usd=spent,
                                      input_tokens=tokens.input_tokens if tokens else None,
                                      output_tokens=tokens.output_tokens if tokens else None,
                                      stopped="budget" if isinstance(exc, (BudgetStop, NotSent))
                                      else None)
                if wait > 0:
                    self.sleep(wait)
