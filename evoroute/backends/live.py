"""Live backend: real model calls through litellm for the steps of a real agent (spec §4).

Every step is one streamed ``litellm.completion`` call to the model the router chose, at its
registered litellm id and api base: hosted providers take their keys from the environment
(litellm reads ``OPENAI_API_KEY``...), local llama.cpp servers on 127.0.0.1 get a placeholder
key. Measured per call: time to first token (first non-empty content delta), total latency,
input / output tokens (the server's own ``usage`` from ``stream_options.include_usage``;
``litellm.token_counter`` only when a provider sends none), and the cost at the *registered*
prices (passed to ``litellm.cost_per_token`` as ``custom_cost_per_token``, so a registered
override always wins over litellm's cost map; local models cost their notional price, 0 by
default). Latency is labelled *measured*.

Failures are never hidden. A call is retried with bounded exponential backoff (seeded jitter)
on transient errors (timeouts, connection errors, rate limits, 5xx); errors that retrying
cannot fix (bad key, bad request, unknown model) fail at once. A call that still fails is
returned as a :class:`StepOutcome` with ``error`` set (secrets redacted), step success 0.

Fallback: :meth:`LiveBackend.execute_with_fallback` takes the router's decision, tries the
chosen model, and on a failed call tries the next-best candidate *of the same decision*
(ranked by the utilities the router computed, see :func:`ranked_models`), until one succeeds
or the candidates or the budget run out. It returns every attempt as ``(Decision,
StepOutcome)`` so the runner stores each failed attempt in the experience base with its error
and the successful one as the step's result.

Budget: :meth:`LiveBackend.estimate_cost` prices the next step before it runs from its real
prompt (token-counted, with a safety margin) plus ``max_tokens`` of output at the chosen
model's registered prices: an upper bound of what the call can cost, so a run that checks it
stops *before* the step that would exceed its cap.

Multi-step state: a task's steps depend on each other (the solver reads the plan). The
runner executes the steps of a task in order, so the backend keeps a :class:`TaskState` per
task key: step *k*'s prompt is built at call time from what steps < k produced, while the
routing instruction the router sees (``StepSpec.instruction``) is fixed per task and role so
the runner can embed it up front. :meth:`check_task` reads the final answer from that state.
"""

from __future__ import annotations

import ipaddress
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from evoroute import config  # noqa: F401  (offline switches before litellm is imported)
from evoroute.agent import workflow as W
from evoroute.backends.local_models import LOCAL_API_KEY
from evoroute.backends.base import SPLITS, Backend, StepSpec, TaskSpec, split_rng
from evoroute.core.types import Decision, Explanation, ModelInfo, StepContext, StepOutcome
from evoroute.secrets import redact as redact_secrets
from evoroute.errors import BackendError, ValidationError

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_RETRIES = 2
DEFAULT_BACKOFF_S = 0.5
DEFAULT_BACKOFF_MAX_S = 8.0
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
        _LITELLM = litellm
    return _LITELLM


def _non_retryable() -> tuple[type[BaseException], ...]:
    lt = _litellm()
    names = ("AuthenticationError", "PermissionDeniedError", "BadRequestError", "NotFoundError",
             "ContextWindowExceededError", "ContentPolicyViolationError",
             "UnsupportedParamsError", "InvalidRequestError")
    return tuple(getattr(lt, n) for n in names if isinstance(getattr(lt, n, None), type))


def is_loopback(api_base: str | None) -> bool:
    if not api_base:
        return False
    host = urllib.parse.urlparse(api_base).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    tokens_counted: bool = False    # True: the provider sent no usage; litellm counted them
    attempts: int = 1
    error: str | None = None


class _StreamTimeout(Exception):
    """The stream went on past the call's total time budget."""


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
                            ("tool_time_limit_s", tool_time_limit_s, 0.05)):
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < lo:
                raise ValidationError(f"{name} must be a number >= {lo}, got {v!r}", name)
        if not isinstance(max_retries, int) or not 0 <= max_retries <= 10:
            raise ValidationError(f"max_retries must be a whole number in 0..10, got {max_retries!r}",
                                  "max_retries")
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
        msgs = self.messages(step)
        try:
            n_in = _litellm().token_counter(model=model.litellm_id, messages=msgs)
        except Exception:   # noqa: BLE001 - no tokenizer for the id: ~4 characters per token
            n_in = sum(len(m["content"]) for m in msgs) / 4
        n_in = math.ceil(n_in * PROMPT_TOKEN_MARGIN) + PROMPT_TOKEN_SLACK
        return self.cost(model, n_in, self.max_tokens.get(step.role, 128))

    # ------------------------------------------------------------ calling a model
    def _call_once(self, model: ModelInfo, messages: list[dict[str, str]], max_tokens: int
                   ) -> CallResult:
        lt = _litellm()
        kwargs: dict[str, Any] = dict(model=model.litellm_id, messages=messages, stream=True,
                                      stream_options={"include_usage": True},
                                      max_tokens=int(max_tokens), temperature=self.temperature,
                                      timeout=self.timeout_s, drop_params=True)
        if model.api_base:
            kwargs["api_base"] = model.api_base
            if is_loopback(model.api_base):
                # never send a real provider key to a local server; llama.cpp needs none
                kwargs["api_key"] = LOCAL_API_KEY
        t0 = time.perf_counter()
        deadline = t0 + self.timeout_s
        ttft, parts, usage = None, [], None
        stream = lt.completion(**kwargs)
        for chunk in stream:
            now = time.perf_counter()
            if getattr(chunk, "choices", None):
                delta = chunk.choices[0].delta
                piece = getattr(delta, "content", None) or ""
                if piece:
                    if ttft is None:
                        ttft = now - t0
                    parts.append(piece)
            u = getattr(chunk, "usage", None)
            if u is not None and getattr(u, "completion_tokens", None) is not None:
                usage = u
            if now > deadline:
                raise _StreamTimeout(f"the response took longer than {self.timeout_s:g} s")
        total = time.perf_counter() - t0
        text = "".join(parts)
        counted = usage is None or not usage.prompt_tokens
        if is_loopback(model.api_base):
            # llama-cpp-python's server sends no usage in a stream; litellm then fills in its own
            # tokenizer's estimate (measured: 38 "completion tokens" for 32 real ones). The server
            # streams one token per delta, so the delta count is the real output count; the
            # prompt count stays litellm's estimate and the call is marked as counted.
            n_in = int(lt.token_counter(model=model.litellm_id, messages=messages))
            return CallResult(text=text, ttft_s=ttft if ttft is not None else total,
                              latency_s=total, input_tokens=n_in, output_tokens=len(parts),
                              tokens_counted=True)
        if counted:
            n_in = int(lt.token_counter(model=model.litellm_id, messages=messages))
            n_out = int(lt.token_counter(model=model.litellm_id, text=text)) if text else 0
        else:
            n_in, n_out = int(usage.prompt_tokens), int(usage.completion_tokens or 0)
        return CallResult(text=text, ttft_s=ttft if ttft is not None else total, latency_s=total,
                          input_tokens=n_in, output_tokens=n_out, tokens_counted=counted)

    def call(self, model: ModelInfo, messages: list[dict[str, str]], max_tokens: int) -> CallResult:
        """One call with bounded retries and exponential backoff; never raises for a failed
        call (the error comes back, redacted, in :attr:`CallResult.error`)."""
        permanent = _non_retryable()
        t0 = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            try:
                res = self._call_once(model, messages, max_tokens)
                return replace(res, attempts=attempt, elapsed_s=time.perf_counter() - t0)
            except Exception as exc:   # noqa: BLE001 - litellm raises many types; all are recorded
                retry = not isinstance(exc, permanent) and attempt <= self.max_retries
                if not retry:
                    kind = "not retried" if isinstance(exc, permanent) else \
                        f"after {attempt} attempt{'s' if attempt > 1 else ''}"
                    msg = redact(f"{type(exc).__name__}: {exc}")
                    msg = " ".join(msg.split())[:600]
                    return CallResult(error=f"{msg} ({kind})", attempts=attempt,
                                      elapsed_s=time.perf_counter() - t0)
                wait = min(self.backoff_max_s,
                           self.backoff_s * 2 ** (attempt - 1) * (1 + 0.25 * float(self._jitter.random())))
                if wait > 0:
                    self._sleep(wait)

    # ------------------------------------------------------------ the interface
    def execute(self, step: StepContext, model: ModelInfo) -> StepOutcome:
        """Run one agent step on one model: call it (with retries), run the tools it asks for,
        check the step. A call that still fails comes back with ``error`` set."""
        st = self.state(step)
        msgs = W.build_messages(step.role, st)
        res = self.call(model, msgs, self.max_tokens.get(step.role, 128))
        if res.error is not None:
            st.errors[step.role] = res.error
            return StepOutcome(model=model.name, step_success=0.0, cost_usd=0.0,
                               duration_s=res.elapsed_s, latency_label=self.latency_label,
                               error=res.error)
        sigma = W.apply_output(step.role, st, res.text, tool_limits=self.tool_limits)
        st.errors.pop(step.role, None)
        return StepOutcome(model=model.name, step_success=sigma,
                           cost_usd=self.cost(model, res.input_tokens or 0, res.output_tokens or 0),
                           duration_s=res.latency_s, latency_label=self.latency_label,
                           input_tokens=res.input_tokens, output_tokens=res.output_tokens,
                           ttft_s=res.ttft_s, response=res.text[:4000])

    def execute_with_fallback(self, step: StepContext, decision: Decision, *,
                              budget_left: float | None = None) -> list[tuple[Decision, StepOutcome]]:
        """Execute the decision's model; on a failed call, the next-best candidate of the same
        decision, and so on. Returns every attempt in order: failed ones (``error`` set) first,
        the last one being the step's result (itself failed only if every candidate failed or
        the budget left no affordable candidate).

        ``budget_left``: USD the run may still spend; a fallback candidate whose estimated
        cost does not fit is skipped (the first model was already checked by the runner)."""
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
            o = self.execute(step, model)
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
           "registered_cost", "register_local_models", "is_loopback"]
