"""Live backend: real model calls through litellm for the steps of a real agent (spec §4).

Every step is one streamed ``litellm.completion`` call to the model the router chose, at its
registered litellm id and api base: hosted providers take their keys from the environment
(litellm reads ``OPENAI_API_KEY``...), local servers (any loopback spelling, see
:mod:`evoroute.netsafety`) get a placeholder key, never a provider key. Every api base passes
:func:`evoroute.netsafety.validate_api_base`. Measured per call: time to first token (first
non-empty content delta), total latency, input / output tokens (the larger of the server's own
``usage`` from ``stream_options.include_usage`` and the local count, see :func:`billed_tokens`),
and the cost at the *registered*
prices (passed to ``litellm.cost_per_token`` as ``custom_cost_per_token``, so a registered
override always wins over litellm's cost map; local models cost their notional price, 0 by
default). Latency is labelled *measured*.

Failures are never hidden. Every call has ONE retry budget: litellm's and the OpenAI client's
own retries are switched off (``num_retries=0``, ``max_retries=0``; verified by counting the
requests at a fake server), so ``max_retries=2`` means 3 requests in total. Errors are
classified by HTTP status: 408, 409, 425, 429 and every 5xx, timeouts, connection errors and a
200 reply that is not a completion are retried with bounded exponential backoff (seeded
jitter), waiting at least the server's ``Retry-After`` / ``retry-after-ms`` (seconds or an
HTTP date; a wait above ``retry_after_max_s`` is not waited for: the call fails at once so the
fallback can try another model); 400, 401, 403, 404, 422 and every other 4xx fail at once. A
call that still fails is returned as a :class:`StepOutcome` with ``error`` set (secrets
redacted, with the true number of requests sent), step success 0.

A 200 reply is a completion only if its stream carries content: an empty stream, a stream of
chunks without choices, non-JSON data lines, a plain JSON object or an HTML page where a
stream was asked for are errors (retried, then fallback).

Fallback: :meth:`LiveBackend.execute_with_fallback` takes the router's decision, tries the
chosen model, and on a failed call tries the next-best candidate *of the same decision*
(ranked by the utilities the router computed, see :func:`ranked_models`), until one succeeds
or the candidates or the budget run out. It returns every attempt as ``(Decision,
StepOutcome)`` so the runner stores each failed attempt in the experience base with its error
and the successful one as the step's result.

Budget: :meth:`LiveBackend.estimate_cost` prices the next step before it runs from its real
prompt (token-counted, with a safety margin) plus ``max_tokens`` of output at the chosen
model's registered prices: an upper bound of what a compliant provider can charge, so a run that
checks it stops *before* the step that would exceed its cap. A provider that ignores
``max_tokens`` or reports false usage cannot break the cap either: tokens are counted locally
as the stream arrives (the model's tokenizer through litellm, in bounded slices so a 1 MB text
counts in well under a second), the stream is closed once the output passes ``max_tokens``
(+10 % + 16 tokens of tokenizer tolerance) or the running cost passes the budget left, and
every call is billed the larger of the reported and the locally counted usage, input and
output. So a run spends at most its cap plus one streamed chunk (see :meth:`LiveBackend.call`).
A 200 reply that failed is billed what was counted of it; a refused request (4xx/5xx, timeout
before any reply) costs nothing.

Multi-step state: a task's steps depend on each other (the solver reads the plan). The
runner executes the steps of a task in order, so the backend keeps a :class:`TaskState` per
task key: step *k*'s prompt is built at call time from what steps < k produced, while the
routing instruction the router sees (``StepSpec.instruction``) is fixed per task and role so
the runner can embed it up front. :meth:`check_task` reads the final answer from that state.
"""

from __future__ import annotations

import email.utils
import logging
import math
import threading
import time
from datetime import datetime, timezone
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from evoroute import settings as config
from evoroute.agent import workflow as W
from evoroute.backends.local_models import LOCAL_API_KEY
from evoroute.backends.base import SPLITS, Backend, StepSpec, TaskSpec, split_rng
from evoroute.core.types import Decision, Explanation, ModelInfo, StepContext, StepOutcome
from evoroute.errors import BackendError, ValidationError
from evoroute.netsafety import is_loopback, validate_api_base
from evoroute.secrets import redact as redact_secrets

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_RETRIES = 2
DEFAULT_BACKOFF_S = 0.5
DEFAULT_BACKOFF_MAX_S = 8.0
DEFAULT_RETRY_AFTER_MAX_S = 30.0   # a longer Retry-After is not waited for: fail, fall back
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})   # and every 5xx
OUTPUT_TOKEN_TOLERANCE = 1.10      # the local tokenizer may differ from the provider's
OUTPUT_TOKEN_SLACK = 16
COUNT_SLICE_CHARS = 1024           # tokenizers are quadratic in an unbroken run: count in slices
COUNT_MAX_CHARS = 256 * 1024       # beyond this, count evenly spaced slices and scale up
LOCAL_DELTA_TOKENS = 2.0           # see _billed_output
PROMPT_TOKEN_MARGIN = 1.25     # chat templates and tokenizer differences: estimate generously
PROMPT_TOKEN_SLACK = 32
TRANSCRIPTS_KEPT = 200


# ------------------------------------------------------------------------------ secrets
def redact(text: str | None) -> str:
    """Every error message is redacted before it is stored or shown (evoroute.secrets), naming
    the environment variable whose value was removed."""
    return redact_secrets(text, name_env=True)


# ------------------------------------------------------------------------------ litellm
_LITELLM: Any = None


def _litellm() -> Any:
    """litellm, imported on first use (heavy), quiet, with the bundled cost map."""
    global _LITELLM
    if _LITELLM is None:
        config.offline_env()
        import litellm

        litellm.suppress_debug_info = True
        litellm.set_verbose = False
        # litellm logs a traceback for a malformed stream before raising; the error is returned
        # (redacted) in the call's result, so its logger stays quiet
        logging.getLogger("LiteLLM").setLevel(logging.CRITICAL)
        _LITELLM = litellm
    return _LITELLM


def _non_retryable() -> tuple[type[BaseException], ...]:
    """litellm's error types that retrying cannot fix, for errors that carry no status code."""
    lt = _litellm()
    names = ("AuthenticationError", "PermissionDeniedError", "BadRequestError", "NotFoundError",
             "ContextWindowExceededError", "ContentPolicyViolationError",
             "UnsupportedParamsError", "InvalidRequestError", "UnprocessableEntityError")
    return tuple(getattr(lt, n) for n in names if isinstance(getattr(lt, n, None), type))


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an error carries (litellm's ``status_code``, or its response's)."""
    for obj in (exc, getattr(exc, "response", None)):
        code = getattr(obj, "status_code", None)
        if isinstance(code, int) and 100 <= code <= 599:
            return code
    return None


def is_retryable(exc: BaseException) -> bool:
    """Retry 408/409/425/429/5xx, timeouts, connection errors and non-completion 200 replies;
    never any other 4xx (bad request, bad key, forbidden, unknown model, unprocessable).

    An error without a status (a dropped connection, a mock) is retried unless its litellm
    type says the request itself is wrong. litellm reports a timeout as 408 and an error it
    could not map as 500, so both are retried."""
    if isinstance(exc, (_BudgetStop, _NotSent)):
        return False
    if isinstance(exc, (_InvalidReply, _StreamTimeout)):
        return True
    lt = _litellm()
    if isinstance(exc, (lt.Timeout, lt.APIConnectionError)):
        return True
    code = status_of(exc)
    if code is not None:
        return code in RETRYABLE_STATUS or code >= 500
    return not isinstance(exc, _non_retryable())


def retry_after_s(exc: BaseException, now: datetime | None = None) -> float | None:
    """The wait a server asked for in ``retry-after-ms`` or ``Retry-After`` (seconds or an
    HTTP date), or None. Negative or unparseable values count as none."""
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    get = headers.get if hasattr(headers, "get") else (lambda k: None)
    try:
        ms = get("retry-after-ms")
        if ms is not None:
            v = float(ms) / 1000.0
            return v if math.isfinite(v) and v >= 0 else None
    except (TypeError, ValueError):
        pass
    raw = get("retry-after")
    if raw is None:
        return None
    raw = str(raw).strip()
    try:
        v = float(raw)
        return v if math.isfinite(v) and v >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


# ------------------------------------------------------------------------------ token counts
_TOKENIZERS: dict[str, Callable[[str], int]] = {}


def _tokenizer(model_id: str) -> Callable[[str], int]:
    """A fast ``text -> token count`` with the tokenizer litellm picks for the id (its
    ``token_counter`` costs ~2.5 ms a call for some ids, too slow per streamed chunk)."""
    fn = _TOKENIZERS.get(model_id)
    if fn is None:
        lt = _litellm()
        try:
            from litellm.utils import _select_tokenizer   # litellm's own choice per model id
            tok = _select_tokenizer(model=model_id)["tokenizer"]
            if hasattr(tok, "encode_ordinary"):          # tiktoken
                fn = lambda t, _e=tok: len(_e.encode(t, disallowed_special=()))  # noqa: E731
            else:                                          # huggingface tokenizers
                fn = lambda t, _e=tok: len(_e.encode(t).ids)  # noqa: E731
            fn("probe")
        except Exception:   # noqa: BLE001 - any tokenizer trouble: litellm's counter itself
            fn = lambda t, _lt=lt, _m=model_id: int(_lt.token_counter(model=_m, text=t))  # noqa: E731
        _TOKENIZERS[model_id] = fn
    return fn


def _slices(text: str, size: int = COUNT_SLICE_CHARS) -> list[str]:
    """``text`` cut into pieces of at most ``size`` characters, at a space where there is one
    in the second half of a piece (so words stay whole)."""
    out, i, n = [], 0, len(text)
    while i < n:
        j = min(n, i + size)
        if j < n:
            k = text.rfind(" ", i + size // 2, j)
            if k > i:
                j = k
        out.append(text[i:j])
        i = j
    return out


def count_text_tokens(model_id: str, text: str) -> int:
    """Tokens of ``text`` with the model's tokenizer, in bounded time.

    Counted in slices of at most 1024 characters (a BPE tokenizer is quadratic in an unbroken
    run: tiktoken needs 13 s for 100k ``x``, a 1 MB one would hang); the few tokens a cut
    adds make the count a little high, never low. Above 256k characters, 256 evenly spaced
    slices are counted and the count scaled to the whole length (an estimate)."""
    if not text:
        return 0
    count = _tokenizer(model_id)
    if len(text) <= COUNT_MAX_CHARS:
        return sum(count(p) for p in _slices(text))
    n_samples = COUNT_MAX_CHARS // COUNT_SLICE_CHARS
    step = len(text) / n_samples
    sampled = [text[int(i * step):int(i * step) + COUNT_SLICE_CHARS] for i in range(n_samples)]
    got = sum(count(p) for p in sampled)
    return math.ceil(got * len(text) / sum(len(p) for p in sampled))


def count_prompt_tokens(model_id: str, messages: Sequence[dict[str, Any]]) -> int:
    """Prompt tokens of a chat request: its texts plus OpenAI's per-message overhead (3 per
    message and 3 to prime the reply, as litellm's ``token_counter`` counts them)."""
    n = 3
    for m in messages:
        n += 3 + count_text_tokens(model_id, str(m.get("content") or "")) \
            + count_text_tokens(model_id, str(m.get("role") or ""))
        if m.get("name"):
            n += 1 + count_text_tokens(model_id, str(m["name"]))
    return n


class _TokenTally:
    """Running token count of a streamed text: whole slices are counted once; the tail (at
    most ~1024 characters) is counted only when its upper bound (1 token per UTF-8 byte: every
    token of a byte-level BPE covers at least one byte) could pass a limit, so a chunk costs
    little until the stream nears its limit."""

    def __init__(self, model_id: str) -> None:
        self.count = _tokenizer(model_id)
        self.done = 0
        self.tail = ""
        self.tail_bytes = 0

    def add(self, piece: str) -> None:
        self.tail += piece
        self.tail_bytes += len(piece.encode("utf-8", "replace"))
        if len(self.tail) >= COUNT_SLICE_CHARS:
            parts = _slices(self.tail)
            keep = parts.pop()
            self.done += sum(self.count(p) for p in parts)
            self.tail, self.tail_bytes = keep, len(keep.encode("utf-8", "replace"))

    @property
    def upper(self) -> int:
        return self.done + self.tail_bytes

    @property
    def total(self) -> int:
        return self.done + (self.count(self.tail) if self.tail else 0)


def registered_cost(model: ModelInfo, input_tokens: float, output_tokens: float) -> float:
    """USD at the model's registered prices, through litellm's cost function.

    The registered prices go in as ``custom_cost_per_token``, which litellm uses instead of
    its cost map; if litellm cannot price the id at all, the same arithmetic is done here.
    """
    custom = {"input_cost_per_token": model.input_price_per_m / 1e6,
              "output_cost_per_token": model.output_price_per_m / 1e6}
    try:
        p, c = _litellm().cost_per_token(model=model.litellm_id or model.name,
                                         prompt_tokens=int(input_tokens),
                                         completion_tokens=int(output_tokens),
                                         custom_cost_per_token=custom)
        return float(p) + float(c)
    except Exception:   # noqa: BLE001 - an id litellm does not know: the same formula here
        return model.cost(input_tokens, output_tokens)


def billed_tokens(counted_in: int, counted_out: int, reported: tuple[int, int] | None, *,
                  local: bool) -> tuple[int, int, bool]:
    """(input, output, counted) tokens a call is billed: the larger of the provider's reported
    usage and the local count, input and output separately, so a provider that under-reports
    cannot make a call look cheaper than what it streamed. ``counted`` is True when the figure
    is not the provider's own. A local (loopback) server's usage is not used: llama.cpp sends
    none and litellm fills in its own estimate, which is not the server's count."""
    if reported is None or local:
        return int(counted_in), int(counted_out), True
    r_in, r_out = int(reported[0]), int(reported[1])
    n_in, n_out = max(int(counted_in), r_in), max(int(counted_out), r_out)
    return n_in, n_out, (n_in, n_out) != (r_in, r_out)


# ------------------------------------------------------------------------------ one call
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


class _StreamTimeout(Exception):
    """The stream went on past the call's total time budget."""


class _InvalidReply(Exception):
    """A 200 reply that is not a completion (no content: empty stream, no choices, JSON or
    HTML where a stream was asked for)."""


class _BudgetStop(Exception):
    """The running cost of the stream passed the budget left; the stream was closed."""


class _NotSent(Exception):
    """The prompt alone would cost more than the budget left: nothing was sent."""


_OWN_ERRORS = (_StreamTimeout, _InvalidReply, _BudgetStop, _NotSent)


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


def ranked_models(decision: Decision) -> list[str]:
    """The chosen model first, then the other candidates of the same decision, best first.

    Best = highest utility the router computed (Thompson draw or posterior mean); candidates
    the router did not score (unexplored, Pareto-dominated, or a baseline without scores)
    follow by propensity, then estimated performance, then their order in the explanation.
    """
    cands = decision.explanation.candidates
    order = {c.model: i for i, c in enumerate(cands)}

    def key(c: Any) -> tuple:
        u = c.utility if c.utility is not None and math.isfinite(c.utility) else -math.inf
        p = c.p_hat if c.p_hat is not None else -math.inf
        return (-u, -(c.propensity or 0.0), -p, order[c.model])

    rest = [c.model for c in sorted(cands, key=key) if c.model != decision.model]
    return [decision.model] + list(dict.fromkeys(rest))


def fallback_decision(decision: Decision, model: str, failed: Sequence[StepOutcome]) -> Decision:
    """The decision record of a fallback attempt: same explanation numbers, new chosen model,
    the reason says which calls failed. The propensity stays the original decision's: given
    the failures, falling back to the next-ranked model is deterministic."""
    e = decision.explanation
    why = "; ".join(f"{o.model} failed ({(o.error or '')[:120]})" for o in failed)
    expl = Explanation(router=e.router, phase=e.phase, mode=e.mode, chosen=model,
                       reason=f"{e.reason} | fallback to {model}, the next-best candidate of this "
                              f"decision: {why}",
                       weights=e.weights, predicted_tools=list(e.predicted_tools),
                       channels=dict(e.channels), fallback=e.fallback,
                       candidates=list(e.candidates))
    return Decision(model, decision.propensity, expl)


# ------------------------------------------------------------------------------ the backend
class LiveBackend(Backend):
    """Real calls through litellm for the bundled agent (or any task file of the same format)."""

    label = "live"
    latency_label = "measured"

    def __init__(self, dataset: str | None, models: list[ModelInfo] | None, *, seed: int = 0,
                 steps_per_task: int = 1, timeout_s: float = DEFAULT_TIMEOUT_S,
                 max_retries: int = DEFAULT_MAX_RETRIES, backoff_s: float = DEFAULT_BACKOFF_S,
                 backoff_max_s: float = DEFAULT_BACKOFF_MAX_S,
                 retry_after_max_s: float = DEFAULT_RETRY_AFTER_MAX_S,
                 max_tokens: int | dict[str, int] | None = None, temperature: float = 0.0,
                 tool_time_limit_s: float = 2.0, tool_memory_mb: int = 256,
                 check_models: bool = True) -> None:
        if not models:
            raise ValidationError("no candidate models for the live backend: register some "
                                  "(`python -m evoroute local start` then register the local "
                                  "models, or `python -m evoroute models add NAME --litellm-id "
                                  "gpt-4o-mini`) and pass --models", "models")
        super().__init__(models)
        if int(steps_per_task) != 1:
            raise ValidationError("steps_per_task must be 1 for the live backend: each agent task "
                                  f"already has {len(W.ROLES)} steps ({', '.join(W.ROLES)})",
                                  "steps_per_task")
        for name, v, lo in (("timeout_s", timeout_s, 0.01), ("backoff_s", backoff_s, 0.0),
                            ("backoff_max_s", backoff_max_s, 0.0),
                            ("retry_after_max_s", retry_after_max_s, 0.0),
                            ("tool_time_limit_s", tool_time_limit_s, 0.05)):
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < lo:
                raise ValidationError(f"{name} must be a number >= {lo}, got {v!r}", name)
        if not isinstance(max_retries, int) or not 0 <= max_retries <= 10:
            raise ValidationError(f"max_retries must be a whole number in 0..10, got {max_retries!r}",
                                  "max_retries")
        for m in self.models:
            if m.api_base:
                try:
                    validate_api_base(m.api_base)
                except ValidationError as exc:   # a base stored before the check existed
                    raise ValidationError(f"model {m.name}: {exc} (fix it with `python -m "
                                          f"evoroute models update {m.name} --api-base URL`)",
                                          "api_base") from None
        missing = [m.name for m in self.models if not m.litellm_id]
        if missing:
            raise ValidationError(f"model(s) {', '.join(missing)} have no litellm id; live calls "
                                  f"need one (e.g. gpt-4o-mini, or openai/<name> with an api base)",
                                  "models")
        self.seed = int(seed)
        self.dataset = dataset
        self.task_file = W.resolve_task_file(dataset)
        self._all_tasks = W.load_tasks(dataset)
        self._by_id = {t.id: t for t in self._all_tasks}
        self.timeout_s, self.max_retries = float(timeout_s), int(max_retries)
        self.backoff_s, self.backoff_max_s = float(backoff_s), float(backoff_max_s)
        self.retry_after_max_s = float(retry_after_max_s)
        self.max_tokens = dict(W.MAX_TOKENS)
        if isinstance(max_tokens, int):
            self.max_tokens = {r: int(max_tokens) for r in W.ROLES}
        elif isinstance(max_tokens, dict):
            self.max_tokens.update({str(k): int(v) for k, v in max_tokens.items()})
        if any(v < 1 for v in self.max_tokens.values()):
            raise ValidationError("max_tokens must be >= 1", "max_tokens")
        self.temperature = float(temperature)
        self.tool_limits = {"time_limit_s": float(tool_time_limit_s), "memory_mb": int(tool_memory_mb)}
        self._jitter = np.random.default_rng([self.seed, 4099])
        self._sleep: Callable[[float], None] = time.sleep
        self._state: dict[str, W.TaskState] = {}
        self.transcripts: OrderedDict[str, dict[str, Any]] = OrderedDict()
        if check_models:
            self.check_models()

    # ------------------------------------------------------------ set-up checks
    def check_models(self) -> None:
        """Fail early, with what to do, when a candidate cannot be called at all: a hosted
        model whose provider key is not in the environment, or a local server not answering."""
        problems = []
        for m in self.models:
            if is_loopback(m.api_base):
                if not _answers(m.api_base):
                    problems.append(f"{m.name}: no server answers at {m.api_base} (start the local "
                                    f"models with `python -m evoroute local start`)")
            elif not m.api_base:
                try:
                    env = _litellm().validate_environment(model=m.litellm_id)
                except Exception:   # noqa: BLE001 - unknown provider: let the call tell
                    continue
                if env and not env.get("keys_in_environment", True) and env.get("missing_keys"):
                    problems.append(f"{m.name} ({m.litellm_id}): set {', '.join(env['missing_keys'])} "
                                    f"in the environment")
        if problems:
            raise ValidationError("cannot call every candidate model:\n- " + "\n- ".join(problems)
                                  + "\n(choose callable models with --models)", "models")

    # ------------------------------------------------------------ tasks
    def tasks(self, split: str) -> list[TaskSpec]:
        if split not in SPLITS:
            raise ValidationError(f"split must be one of {', '.join(SPLITS)}, got {split!r}", "split")
        pool = [t for t in self._all_tasks if t.split == split]
        order = split_rng(self.seed, split).permutation(len(pool))
        return [self._spec(pool[i]) for i in order]

    def _spec(self, t: W.AgentTask) -> TaskSpec:
        steps = tuple(StepSpec(role=r, instruction=W.routing_instruction(r, t), query_id=f"{t.id}:{r}")
                      for r in W.ROLES)
        return TaskSpec(key=f"{t.split}:{t.id}", split=t.split, steps=steps)

    def _task_of(self, step: StepContext) -> W.AgentTask:
        tid = step.task_key.split(":", 1)[-1]
        try:
            return self._by_id[tid]
        except KeyError:
            raise BackendError(f"the live backend has no task {step.task_key!r}") from None

    def state(self, step: StepContext) -> W.TaskState:
        """The task's state; a task's first step starts a fresh one."""
        st = self._state.get(step.task_key)
        if st is None or (step.step_index == 0 and st.success):
            st = self._state[step.task_key] = W.TaskState(self._task_of(step))
        return st

    def messages(self, step: StepContext) -> list[dict[str, str]]:
        return W.build_messages(step.role, self.state(step))

    # ------------------------------------------------------------ costs
    def cost(self, model: ModelInfo, input_tokens: float, output_tokens: float) -> float:
        return registered_cost(model, input_tokens, output_tokens)

    def estimate_cost(self, step: StepContext, model: ModelInfo) -> float:
        """Upper-bound estimate of the step on ``model`` before calling it: its real prompt,
        token-counted with a margin, plus ``max_tokens`` of output, at registered prices."""
        if model.input_price_per_m == 0 and model.output_price_per_m == 0:
            return 0.0
        n_in = count_prompt_tokens(model.litellm_id, self.messages(step))
        n_in = math.ceil(n_in * PROMPT_TOKEN_MARGIN) + PROMPT_TOKEN_SLACK
        return self.cost(model, n_in, self.max_tokens.get(step.role, 128))

    # ------------------------------------------------------------ calling a model
    def _kwargs(self, model: ModelInfo, messages: list[dict[str, str]], max_tokens: int
                ) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(model=model.litellm_id, messages=messages, stream=True,
                                      stream_options={"include_usage": True},
                                      max_tokens=int(max_tokens), temperature=self.temperature,
                                      timeout=self.timeout_s, drop_params=True,
                                      # one retry budget: EvoRoute's own loop in call();
                                      # litellm's and the OpenAI client's retries are off
                                      num_retries=0, max_retries=0)
        if model.api_base:
            kwargs["api_base"] = model.api_base
            if is_loopback(model.api_base):
                # never send a real provider key to a local server; llama.cpp needs none
                kwargs["api_key"] = LOCAL_API_KEY
        return kwargs

    def output_limit(self, max_tokens: int) -> int:
        """Output tokens after which a stream is closed: ``max_tokens`` plus the tolerance for
        a local tokenizer that differs from the provider's."""
        return math.ceil(int(max_tokens) * OUTPUT_TOKEN_TOLERANCE) + OUTPUT_TOKEN_SLACK

    @staticmethod
    def _chunks(stream: Any, expired: threading.Event) -> Any:
        """The stream's chunks until the watchdog closed it."""
        for chunk in stream:
            if expired.is_set():
                return
            yield chunk

    @staticmethod
    def _billed_output(local: bool, n_deltas: int, counted: int) -> int:
        """Output tokens counted locally. A llama.cpp server streams one token per delta and
        sends no usage; the delta count is then its real count (its tokenizer is not litellm's,
        which counts ~20 % more). A server whose deltas carry more than 2 tokenizer tokens
        each is not streaming one token per delta, and the tokenizer count is used."""
        if local and counted <= LOCAL_DELTA_TOKENS * n_deltas:
            return n_deltas
        return counted

    def _call_once(self, model: ModelInfo, messages: list[dict[str, str]], max_tokens: int,
                   meter: _Meter, cap_usd: float | None = None) -> CallResult:
        lt = _litellm()
        local = is_loopback(model.api_base)
        n_in = count_prompt_tokens(model.litellm_id, messages)
        meter.input_tokens = n_in
        if cap_usd is not None and self.cost(model, n_in, 0) > cap_usd:
            raise _NotSent(f"the prompt alone ({n_in} tokens) would cost "
                           f"${self.cost(model, n_in, 0):.6f}, more than the ${cap_usd:.6f} "
                           f"the budget has left; not sent")
        limit = self.output_limit(max_tokens)
        t0 = time.perf_counter()
        deadline = t0 + self.timeout_s
        ttft, parts, usage = None, [], None
        tally = _TokenTally(model.litellm_id)
        stopped: str | None = None
        stream = lt.completion(**self._kwargs(model, messages, max_tokens))
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
                            n_out = self._billed_output(local, len(parts), tally.upper)
                            if n_out > limit or (cap_usd is not None
                                                 and model.cost(n_in, n_out) > cap_usd):
                                n_out = self._billed_output(local, len(parts), tally.total)
                            meter.output_tokens = n_out
                            meter.cost_usd = model.cost(n_in, n_out)
                            if n_out > limit:
                                stopped = "max_tokens"
                                break
                            if cap_usd is not None and meter.cost_usd > cap_usd:
                                raise _BudgetStop(
                                    f"stream closed at the budget cap: {n_out} output tokens cost "
                                    f"${meter.cost_usd:.6f} of the ${cap_usd:.6f} left")
                    u = getattr(chunk, "usage", None)
                    if u is not None and getattr(u, "completion_tokens", None) is not None:
                        usage = u
                    if now > deadline:
                        raise _StreamTimeout(f"the response took longer than {self.timeout_s:g} s")
            except Exception as exc:
                if expired.is_set() and not isinstance(exc, _OWN_ERRORS):
                    raise _StreamTimeout(f"the response took longer than {self.timeout_s:g} s "
                                         f"(the stream was closed)") from None
                raise
            if expired.is_set() and stopped is None:
                raise _StreamTimeout(f"the response took longer than {self.timeout_s:g} s "
                                     f"(the stream was closed)")
        finally:
            watchdog.cancel()
            _close(stream)
            if parts:     # exact, also when the stream failed half-way (that part is billed)
                meter.output_tokens = self._billed_output(local, len(parts), tally.total)
                meter.cost_usd = model.cost(n_in, meter.output_tokens)
        total = time.perf_counter() - t0
        text = "".join(parts)
        if not text:
            raise _InvalidReply("the server answered 200 but sent no completion "
                                f"({_reply_kind(stream)})")
        reported = (int(usage.prompt_tokens), int(usage.completion_tokens or 0)) \
            if usage is not None and usage.prompt_tokens else None
        n_in, n_out, counted = billed_tokens(
            n_in, self._billed_output(local, len(parts), tally.total), reported, local=local)
        meter.input_tokens, meter.output_tokens = n_in, n_out
        meter.cost_usd = self.cost(model, n_in, n_out)
        return CallResult(text=text, ttft_s=ttft if ttft is not None else total, latency_s=total,
                          input_tokens=n_in, output_tokens=n_out, tokens_counted=counted,
                          cost_usd=meter.cost_usd, stopped=stopped)

    def call(self, model: ModelInfo, messages: list[dict[str, str]], max_tokens: int,
             cap_usd: float | None = None) -> CallResult:
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
                res = self._call_once(model, messages, max_tokens, meter, left)
                return replace(res, attempts=attempt, elapsed_s=time.perf_counter() - t0,
                               cost_usd=spent + res.cost_usd)
            except Exception as exc:   # noqa: BLE001 - litellm raises many types; all are recorded
                spent += meter.cost_usd if meter.replied else 0.0
                retry = is_retryable(exc) and attempt <= self.max_retries
                wait = 0.0
                note = ""
                if retry:
                    wait = min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1)
                               * (1 + 0.25 * float(self._jitter.random())))
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
                    if code is not None and not isinstance(exc, _OWN_ERRORS):
                        kind = f"HTTP {code}; {kind}"
                    msg = redact(f"{type(exc).__name__.lstrip('_')}: {exc}")
                    msg = " ".join(msg.split())[:600]
                    tokens = meter if meter.replied else None
                    return CallResult(error=f"{msg} ({kind}{note})", attempts=attempt,
                                      elapsed_s=time.perf_counter() - t0, cost_usd=spent,
                                      input_tokens=tokens.input_tokens if tokens else None,
                                      output_tokens=tokens.output_tokens if tokens else None,
                                      stopped="budget" if isinstance(exc, (_BudgetStop, _NotSent))
                                      else None)
                if wait > 0:
                    self._sleep(wait)

    # ------------------------------------------------------------ the interface
    def execute(self, step: StepContext, model: ModelInfo, *,
                cap_usd: float | None = None) -> StepOutcome:
        """Run one agent step on one model: call it (with retries), run the tools it asks for,
        check the step. A call that still fails comes back with ``error`` set and the cost of
        what it was billed (0 unless a 200 reply failed or the budget closed the stream).
        ``cap_usd``: what the call may cost at most (see :meth:`call`)."""
        st = self.state(step)
        msgs = W.build_messages(step.role, st)
        res = self.call(model, msgs, self.max_tokens.get(step.role, 128), cap_usd=cap_usd)
        if res.error is not None:
            st.errors[step.role] = res.error
            return StepOutcome(model=model.name, step_success=0.0, cost_usd=res.cost_usd,
                               duration_s=res.elapsed_s, latency_label=self.latency_label,
                               input_tokens=res.input_tokens, output_tokens=res.output_tokens,
                               error=res.error)
        sigma = W.apply_output(step.role, st, res.text, tool_limits=self.tool_limits)
        st.errors.pop(step.role, None)
        return StepOutcome(model=model.name, step_success=sigma, cost_usd=res.cost_usd,
                           duration_s=res.latency_s, latency_label=self.latency_label,
                           input_tokens=res.input_tokens, output_tokens=res.output_tokens,
                           ttft_s=res.ttft_s, response=res.text[:4000],
                           tool_error=W.step_tool_error(st, step.role))

    def execute_with_fallback(self, step: StepContext, decision: Decision, *,
                              budget_left: float | None = None) -> list[tuple[Decision, StepOutcome]]:
        """Execute the decision's model; on a failed call, the next-best candidate of the same
        decision, and so on. Returns every attempt in order: failed ones (``error`` set) first,
        the last one being the step's result (itself failed only if every candidate failed or
        the budget left no affordable candidate).

        ``budget_left``: USD the run may still spend; a fallback candidate whose estimated
        cost does not fit is skipped (the first model was already checked by the runner), and
        every call's stream is closed before its running cost passes what is left."""
        out: list[tuple[Decision, StepOutcome]] = []
        failed: list[StepOutcome] = []
        spent = 0.0
        for i, name in enumerate(ranked_models(decision)):
            if name not in self.by_name:
                continue
            model = self.by_name[name]
            if i > 0 and budget_left is not None and \
                    spent + self.estimate_cost(step, model) > budget_left:
                continue
            d = decision if i == 0 else fallback_decision(decision, name, failed)
            cap = None if budget_left is None else max(budget_left - spent, 0.0)
            o = self.execute(step, model, cap_usd=cap)
            out.append((d, o))
            spent += o.cost_usd
            if o.error is None:
                break
            failed.append(o)
        return out

    def check_task(self, task: TaskSpec, outcomes: list[StepOutcome]) -> float:
        """Task success: the answerer's final answer rounds to the known answer (1) or not (0)."""
        st = self._state.pop(task.key, None)
        if st is None:
            return 0.0
        self.transcripts[task.key] = st.transcript()
        while len(self.transcripts) > TRANSCRIPTS_KEPT:
            self.transcripts.popitem(last=False)
        return float(st.correct)

    def describe(self) -> dict[str, Any]:
        from evoroute.backends.local_models import sha256_file

        n = {s: sum(t.split == s for t in self._all_tasks) for s in SPLITS}
        return {
            "label": self.label, "latency_label": self.latency_label,
            "models": [m.name for m in self.models],
            "model_endpoints": {m.name: {"litellm_id": m.litellm_id, "api_base": m.api_base,
                                         "price_source": m.price_source,
                                         "input_price_per_m": m.input_price_per_m,
                                         "output_price_per_m": m.output_price_per_m}
                                for m in self.models},
            "task_file": str(self.task_file), "task_file_sha256": sha256_file(self.task_file),
            "tasks": n, "roles": list(W.ROLES),
            "agent": "planner -> solver (calculator, sandboxed python) -> verifier -> answerer",
            "task_success": "the final answer rounds to the known answer",
            "max_tokens": dict(self.max_tokens), "temperature": self.temperature,
            "timeout_s": self.timeout_s, "max_retries": self.max_retries,
            "requests_per_call_max": self.max_retries + 1,
            "retry_after_max_s": self.retry_after_max_s,
            "backoff_s": self.backoff_s, "tool_limits": dict(self.tool_limits),
            "keys": "read from the environment by litellm; never stored",
        }


def _answers(api_base: str, timeout: float = 2.0) -> bool:
    """True if an OpenAI-compatible server answers ``GET {api_base}/models``."""
    url = api_base.rstrip("/") + "/models"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except (OSError, ValueError, urllib.error.URLError):
        return False


# ------------------------------------------------------------------------------ local models
def register_local_models(*, session: Any, servers: Sequence[Any] | None = None,
                          input_price_per_m: float = 0.0, output_price_per_m: float = 0.0,
                          enable: bool = True) -> list[Any]:
    """Register (or refresh) the running local llama.cpp servers as candidate models.

    Each becomes a model named like the server (``smollm2-135m``...), litellm id
    ``openai/<name>``, api base ``http://127.0.0.1:<port>/v1``, at a *notional* price (0 by
    default; give prices to study the cost trade-off). A model already registered under that
    name keeps its prices and gets the server's current id and api base (ports can change
    between starts). Returns the registry entries.
    """
    from evoroute import registry
    from evoroute.backends import local_models
    from evoroute.storage import repo

    infos = list(servers) if servers is not None else \
        [s for s in local_models.status() if s.status == "running"]
    if not infos:
        raise BackendError("no local model server is running; start them with "
                           "`python -m evoroute local start`")
    entries = []
    for s in infos:
        if repo.get_model(s.name, session=session) is None:
            e = registry.add_model(session=session, name=s.name, litellm_id=s.model,
                                   input_price_per_m=input_price_per_m,
                                   output_price_per_m=output_price_per_m,
                                   ttft_s=0.3, tokens_per_s=30.0, api_base=s.api_base,
                                   enabled=enable, notional=True,
                                   notes=f"local llama.cpp server ({s.gguf}); notional price")
        else:
            changes: dict[str, Any] = {"litellm_id": s.model, "api_base": s.api_base}
            if enable:
                changes["enabled"] = True
            e = registry.update_model(s.name, session=session, **changes)
        entries.append(e)
    return entries


__all__ = ["LiveBackend", "CallResult", "ranked_models", "fallback_decision", "redact",
           "registered_cost", "register_local_models", "is_loopback", "is_retryable",
           "retry_after_s", "count_text_tokens", "count_prompt_tokens", "billed_tokens"]
