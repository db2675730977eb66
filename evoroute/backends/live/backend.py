"""The live backend: real model calls through litellm for the steps of a real agent (spec §4).

Every step is one call of the streaming client (:mod:`evoroute.backends.live.client`: retries,
measurement, budget cap) to the model the router chose, at its registered litellm id and api
base; every api base passes :func:`evoroute.netsafety.validate_api_base`. Latency is labelled
*measured*. A call that still fails is returned as a :class:`StepOutcome` with ``error`` set
(secrets redacted, with the true number of requests sent), step success 0.

Fallback: :meth:`LiveBackend.execute_with_fallback` takes the router's decision, tries the
chosen model, and on a failed call tries the next-best candidate *of the same decision*
(:mod:`evoroute.backends.live.fallback`), until one succeeds or the candidates or the budget
run out. It returns every attempt as ``(Decision, StepOutcome)`` so the runner stores each
failed attempt in the experience base with its error and the successful one as the step's
result.

Budget: :meth:`LiveBackend.estimate_cost` prices the next step before it runs from its real
prompt (token-counted, with a safety margin) plus ``max_tokens`` of output at the chosen
model's registered prices: an upper bound of what a compliant provider can charge, so a run that
checks it stops *before* the step that would exceed its cap. A provider that ignores
``max_tokens`` or reports false usage cannot break the cap either: the client counts tokens as
the stream arrives and closes it at the budget left, so a run spends at most its cap plus one
streamed chunk.

Multi-step state: a task's steps depend on each other (the solver reads the plan). The
runner executes the steps of a task in order, so the backend keeps a :class:`TaskState` per
task key: step *k*'s prompt is built at call time from what steps < k produced, while the
routing instruction the router sees (``StepSpec.instruction``) is fixed per task and role so
the runner can embed it up front. :meth:`check_task` reads the final answer from that state.
"""

from __future__ import annotations

import hashlib
import math
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from evoroute import settings as config
from evoroute.agent import workflow as W
from evoroute.backends.base import Backend, OutcomeTable, StepSpec, TaskSpec, split_rng
from evoroute.backends.live.client import (
    DEFAULT_BACKOFF_MAX_S,
    DEFAULT_BACKOFF_S,
    DEFAULT_MAX_RETRIES,
    DEFAULT_RETRY_AFTER_MAX_S,
    DEFAULT_TIMEOUT_S,
    CallResult,
    StreamingClient,
)
from evoroute.backends.live.fallback import fallback_decision, ranked_models
from evoroute.backends.live.sdk import load_litellm
from evoroute.backends.live.tokens import (
    PROMPT_TOKEN_MARGIN,
    PROMPT_TOKEN_SLACK,
    count_prompt_tokens,
    registered_cost,
)
from evoroute.core import labels
from evoroute.core.errors import BackendError, ValidationError
from evoroute.core.types import Decision, ModelInfo, StepContext, StepOutcome
from evoroute.netsafety import is_loopback, validate_api_base

TRANSCRIPTS_KEPT = 200


class LiveBackend(Backend):
    """Real calls through litellm for the bundled agent (or any task file of the same format)."""

    label = labels.kind_of("live")
    latency_label = labels.DEFAULT_LATENCY["live"]

    def __init__(self, dataset: str | None, models: list[ModelInfo] | None, *, seed: int = 0,
                 steps_per_task: int = 1, timeout_s: float = DEFAULT_TIMEOUT_S,
                 max_retries: int = DEFAULT_MAX_RETRIES, backoff_s: float = DEFAULT_BACKOFF_S,
                 backoff_max_s: float = DEFAULT_BACKOFF_MAX_S,
                 retry_after_max_s: float = DEFAULT_RETRY_AFTER_MAX_S,
                 max_tokens: int | dict[str, int] | None = None, temperature: float = 0.0,
                 tool_time_limit_s: float = 2.0, tool_memory_mb: int = 256,
                 check_models: bool = True, few_shot: int = 2, grammar: bool = True,
                 collect: bool = False) -> None:
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
        if isinstance(few_shot, bool) or not isinstance(few_shot, int) or not 0 <= few_shot <= 8:
            raise ValidationError(f"few_shot must be a whole number in 0..8, got {few_shot!r}",
                                  "few_shot")
        if not isinstance(grammar, bool):
            raise ValidationError(f"grammar must be true or false, got {grammar!r}", "grammar")
        #: solved train examples in each solver prompt (W.select_demos)
        self.few_shot = few_shot
        #: hold local llama.cpp models to their role's line with a GBNF grammar (W.GRAMMARS)
        self.grammar = grammar
        if not isinstance(collect, bool):
            raise ValidationError(f"collect must be true or false, got {collect!r}", "collect")
        #: a run whose router needs every model's train outcome may collect it (live.collect)
        self.collect = collect
        self.seed = int(seed)
        self.dataset = dataset
        self.task_file = W.resolve_task_file(dataset)
        self._all_tasks = W.load_tasks(dataset)
        self._by_id = {t.id: t for t in self._all_tasks}
        self.client = StreamingClient(timeout_s=float(timeout_s), max_retries=int(max_retries),
                                      backoff_s=float(backoff_s),
                                      backoff_max_s=float(backoff_max_s),
                                      retry_after_max_s=float(retry_after_max_s),
                                      temperature=float(temperature), seed=self.seed)
        self.max_tokens = dict(W.MAX_TOKENS)
        if isinstance(max_tokens, int):
            self.max_tokens = {r: int(max_tokens) for r in W.ROLES}
        elif isinstance(max_tokens, dict):
            self.max_tokens.update({str(k): int(v) for k, v in max_tokens.items()})
        if any(v < 1 for v in self.max_tokens.values()):
            raise ValidationError("max_tokens must be >= 1", "max_tokens")
        self.tool_limits = {"time_limit_s": float(tool_time_limit_s), "memory_mb": int(tool_memory_mb)}
        self._state: dict[str, W.TaskState] = {}
        self.transcripts: OrderedDict[str, dict[str, Any]] = OrderedDict()
        if check_models:
            self.check_models()

    # ------------------------------------------------------------ set-up checks
    def check_models(self) -> None:
        """Fail early, with what to do, when a candidate cannot be called at all: a hosted
        model whose provider key is not in the environment, or a local server not answering
        (:class:`LocalServersDown` then names those models, so the studio can offer to start
        their servers)."""
        problems, down = [], []
        for m in self.models:
            if is_loopback(m.api_base):
                if not _answers(m.api_base):
                    down.append(m.name)
                    problems.append(f"{m.name}: no server answers at {m.api_base} (start the local "
                                    f"servers on the studio's Models page, or with `python -m "
                                    f"evoroute local start`)")
            elif not m.api_base:
                try:
                    env = load_litellm().validate_environment(model=m.litellm_id)
                except Exception:   # noqa: BLE001 - unknown provider: let the call tell
                    continue
                if env and not env.get("keys_in_environment", True) and env.get("missing_keys"):
                    problems.append(f"{m.name} ({m.litellm_id}): set {', '.join(env['missing_keys'])} "
                                    f"in the environment")
        if problems:
            message = "cannot call every candidate model:\n- " + "\n- ".join(problems) + CLI_MODELS_HINT
            if down:
                raise LocalServersDown(message, down)
            raise ValidationError(message, "models")

    # ------------------------------------------------------------ tasks
    def tasks(self, split: str) -> list[TaskSpec]:
        splits = config.DEFAULTS.splits
        if split not in splits:
            raise ValidationError(f"split must be one of {', '.join(splits)}, got {split!r}", "split")
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
            task = self._task_of(step)
            st = self._state[step.task_key] = W.TaskState(
                task, demos=W.select_demos(task, self._all_tasks, self.few_shot))
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

    # ------------------------------------------------------------ the interface
    def call(self, model: ModelInfo, messages: list[dict[str, str]], max_tokens: int,
             cap_usd: float | None = None, role: str | None = None,
             task: W.AgentTask | None = None) -> CallResult:
        """One model call with this backend's retry budget and cap (:meth:`StreamingClient.call`);
        a local llama.cpp server also gets the role's output grammar (``grammar``)."""
        return self.client.call(model, messages, max_tokens, cap_usd=cap_usd,
                                grammar=self.grammar_for(model, role, task))

    def grammar_for(self, model: ModelInfo, role: str | None,
                    task: W.AgentTask | None = None) -> str | None:
        """The GBNF grammar a call to ``model`` for ``role`` (on ``task``: its numbers only, see
        :func:`W.grammar`) is held to: only for this project's llama.cpp servers (see
        :func:`served_by_llama_cpp`), never for a hosted provider or another local proxy."""
        if not self.grammar or role is None or not served_by_llama_cpp(model):
            return None
        return W.GRAMMARS.get(role) if task is None else W.grammar(role, task)

    def execute(self, step: StepContext, model: ModelInfo, *,
                cap_usd: float | None = None) -> StepOutcome:
        """Run one agent step on one model: call it (with retries), run the tools it asks for,
        check the step. A call that still fails comes back with ``error`` set and the cost of
        what it was billed (0 unless a 200 reply failed or the budget closed the stream).
        ``cap_usd``: what the call may cost at most (see :meth:`call`)."""
        st = self.state(step)
        msgs = W.build_messages(step.role, st)
        res = self.call(model, msgs, self.max_tokens.get(step.role, 128), cap_usd=cap_usd,
                        role=step.role, task=st.task)
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

    # ------------------------------------------------------------ the train table
    def outcome_table(self, split: str) -> OutcomeTable | None:
        """Every model's outcome on every step of ``split`` from a finished live collection
        pass with these settings (:mod:`evoroute.backends.live.collect`), else None."""
        from evoroute.backends.live import collect

        return collect.cached(self, split)

    def collect_table(self, split: str, progress: Callable[[int, int, str], None] | None = None,
                      budget_usd: float | None = None) -> OutcomeTable | None:
        """Run every model on every task of ``split`` (resuming a cached pass), when this
        backend was built with ``collect=True``; else None."""
        if not self.collect:
            return None
        from evoroute.backends.live import collect

        return collect.collect(self, split, progress=progress, budget_usd=budget_usd)

    def table_shape(self, split: str) -> OutcomeTable | None:
        from evoroute.backends.live import collect

        return collect.skeleton(self, split)

    def missing_table_hint(self) -> str:
        n = len(self.tasks("train"))
        return (f"; a live collection pass makes it: pass --backend-param collect=true and "
                f"every model runs every train task first ({n} tasks x {len(self.models)} "
                f"models x {len(W.ROLES)} calls, cached for later runs with the same settings; "
                f"the studio's live runs collect when they need it)")

    def describe(self) -> dict[str, Any]:
        from evoroute.backends.live.collect import agent_code_digest
        c = self.client
        n = {s: sum(t.split == s for t in self._all_tasks) for s in config.DEFAULTS.splits}
        return {
            "label": self.label, "latency_label": self.latency_label,
            "models": [m.name for m in self.models],
            "model_endpoints": {m.name: {"litellm_id": m.litellm_id, "api_base": m.api_base,
                                         "price_source": m.price_source,
                                         "input_price_per_m": m.input_price_per_m,
                                         "output_price_per_m": m.output_price_per_m}
                                for m in self.models},
            "task_file": str(self.task_file),
            "task_file_sha256": hashlib.sha256(self.task_file.read_bytes()).hexdigest(),
            "tasks": n, "roles": list(W.ROLES),
            "agent": "planner -> solver (calculator, sandboxed python) -> verifier -> answerer",
            # the prompts, grammars, tools and answer reading are code: which version ran
            "agent_code": agent_code_digest(),
            "task_success": "the final answer rounds to the known answer",
            "max_tokens": dict(self.max_tokens), "temperature": c.temperature,
            "few_shot": self.few_shot,
            "grammar": ("GBNF per role for local llama.cpp servers" if self.grammar else "off"),
            "timeout_s": c.timeout_s, "max_retries": c.max_retries,
            "requests_per_call_max": c.max_retries + 1,
            "retry_after_max_s": c.retry_after_max_s,
            "backoff_s": c.backoff_s, "tool_limits": dict(self.tool_limits),
            "keys": "read from the environment by litellm; never stored",
            "collect": self.collect,
        }


def served_by_llama_cpp(model: ModelInfo) -> bool:
    """True for a packaged local model on a loopback api base (``local start`` registers them
    as ``openai/<name>``): a llama.cpp server, which reads ``grammar`` from the body. Any other
    endpoint, a local proxy to a provider included, never gets one."""
    from evoroute.backends.local.catalogue import LOCAL_MODELS

    return is_loopback(model.api_base) and any(
        model.litellm_id == m.litellm_id for m in LOCAL_MODELS.values())


#: the last line of a failed model check: the command line's way to pick other models
CLI_MODELS_HINT = "\n(choose callable models with --models)"


class LocalServersDown(ValidationError):
    """Some candidates are local models whose servers do not answer (``names``)."""

    def __init__(self, message: str, names: list[str]) -> None:
        super().__init__(message, "models")
        self.names = tuple(names)


def _answers(api_base: str, timeout: float = 2.0) -> bool:
    """True if an OpenAI-compatible server answers ``GET {api_base}/models``."""
    url = api_base.rstrip("/") + "/models"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except (OSError, ValueError, urllib.error.URLError):
        return False
