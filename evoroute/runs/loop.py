"""The run loop: decide -> (budget check) -> execute (-> escalate) -> learn, step by step.

A pure in-memory generator of :class:`StepResult`: the database writer
(:mod:`evoroute.runs.execute`) and the benchmark both consume it. Decisions draw from one
``numpy.random.Generator`` seeded from the run's seed, so the same spec gives the same
decisions; a resumed run replays it from the seed (stored outcomes in place of calls where the
backend cannot recompute them).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from evoroute.core.errors import EvoRouteError
from evoroute.core.types import Decision, StepContext, StepOutcome
from evoroute.retrieval.index import one_blas_thread
from evoroute.retrieval.tools import ToolPredictor
from evoroute.runs.prepare import RunPlan


class ResumeDivergence(EvoRouteError):
    """Replaying a run's stored steps did not give the stored decisions and outcomes."""


@dataclass
class RecordedStep:
    """A stored step of a run being resumed: every attempt's outcome in order (failed calls a
    fallback replaced first) and its task's success when the task finished."""

    attempts: list[StepOutcome]
    task_id: int | None
    task_success: float | None


@dataclass
class StepResult:
    step_no: int
    task_key: str
    split: str
    phase: str
    step_index: int
    ctx: StepContext
    decision: Decision
    outcome: StepOutcome
    propensity: float
    attempts: list[str]
    failed: list[tuple[Decision, StepOutcome]]
    tools: frozenset[str]
    oracle_score: float | None
    task_success: float | None = None    # set on a task's last step


class RunLoop:
    """Decide -> (budget check) -> execute (-> escalate) -> learn, step by step.

    Pure in-memory: the database writer and the benchmark both consume :meth:`steps`.
    ``stop_reason`` is set when the budget cap stops the run.
    """

    def __init__(self, plan: RunPlan, budget_usd: float | None = None,
                 recorded: Mapping[int, RecordedStep] | None = None) -> None:
        self.plan = plan
        # step number -> its stored outcomes: those steps are not executed again (resuming a
        # live run: no model is called twice), their stored outcomes are fed to the router
        self.recorded = dict(recorded or {})
        self.rng = np.random.default_rng(plan.details["routing_seed"])
        self.budget = budget_usd
        self.stop_reason: str | None = None
        self.cum_cost = 0.0
        self.n_done = 0
        self._model_cost: dict[str, list[float]] = {}
        # the router's own predictor when it has one (custom keywords), else the default
        self._tool_predictor = plan.router.tool_predictor or ToolPredictor()
        self._tool_cache: dict[str, frozenset[str]] = {}
        self._escalate = plan.router.escalate if plan.router.capabilities().escalates else None

    def _expected_cost(self, ctx: StepContext, decision: Decision) -> float:
        """What the next step should cost: the backend's own estimate when it has one (the
        live backend prices the real prompt), else the router's cost estimate for the model,
        else the model's mean cost so far in this run, else the run's mean step cost."""
        backend = self.plan.backend
        estimate = backend.estimate_cost(ctx, backend.model(decision.model))
        if estimate is not None:
            return float(estimate)
        for c in decision.explanation.candidates:
            if c.model == decision.model and c.c_hat is not None and np.isfinite(c.c_hat):
                return float(c.c_hat)
        seen = self._model_cost.get(decision.model)
        if seen:
            return seen[0] / seen[1]
        return self.cum_cost / self.n_done if self.n_done else 0.0

    def steps(self) -> Iterator[StepResult]:
        with one_blas_thread():
            yield from self._steps()

    def _tools(self, s: Any) -> frozenset[str]:
        """The step's tools, or the router's keyword prediction (once per distinct text)."""
        if s.tools:
            return s.tools
        hit = self._tool_cache.get(s.instruction)
        if hit is None:
            hit = self._tool_cache[s.instruction] = self._tool_predictor.predict(s.instruction)
        return hit

    def _steps(self) -> Iterator[StepResult]:
        plan, router, backend = self.plan, self.plan.router, self.plan.backend
        emb = plan.embeddings or {}
        step_no = 0
        for phase, tasks in plan.phases:
            for task in tasks:
                outcomes: list[StepOutcome] = []
                for i, s in enumerate(task.steps):
                    tools = self._tools(s)
                    ctx = StepContext(task_key=task.key, step_index=i, role=s.role,
                                      instruction=s.instruction, phase=phase, tools=tools,
                                      embedding=emb.get(s.instruction), query_id=s.query_id)
                    cands = backend.candidates(ctx)
                    if cands is not None:
                        ctx = replace(ctx, candidates=cands)
                    decision = router.decide(ctx, self.rng)
                    if self.budget is not None:
                        expected = self._expected_cost(ctx, decision)
                        if self.cum_cost + expected > self.budget:
                            self.stop_reason = (
                                f"budget cap: spent ${self.cum_cost:.6f} of ${self.budget:.6f}; the "
                                f"next step ({decision.model}) was expected to cost "
                                f"${expected:.6f}")
                            return
                    rec = self.recorded.get(step_no + 1)
                    if rec is None:
                        outcome, final, attempts, failed = self._execute(ctx, decision)
                    else:
                        outcome, final, attempts, failed = self._recorded_call(decision, rec)
                    router.observe(ctx, final, outcome)
                    outcomes.append(outcome)
                    step_no += 1
                    self.n_done += 1
                    self.cum_cost += outcome.cost_usd + sum(o.cost_usd for _, o in failed)
                    mc = self._model_cost.setdefault(final.model, [0.0, 0])
                    mc[0] += outcome.cost_usd
                    mc[1] += 1
                    res = StepResult(step_no=step_no, task_key=task.key, split=task.split,
                                     phase=phase, step_index=i, ctx=ctx, decision=final,
                                     outcome=outcome, propensity=decision.propensity,
                                     attempts=attempts, failed=failed, tools=tools,
                                     oracle_score=backend.best_score(ctx))
                    if i == task.n_steps - 1:
                        res.task_success = (rec.task_success if rec is not None
                                            and rec.task_success is not None
                                            else backend.check_task(task, outcomes))
                        router.finish_task(task.key, res.task_success)
                    yield res
                    if self.budget is not None and self.cum_cost > self.budget:
                        self.stop_reason = (f"budget cap: spent ${self.cum_cost:.6f}, over the "
                                            f"${self.budget:.6f} cap")
                        return

    def _recorded_call(self, decision: Decision, rec: RecordedStep
                       ) -> tuple[StepOutcome, Decision, list[str], list[tuple[Decision, StepOutcome]]]:
        """A stored step's attempts in place of calling the backend: the same decisions (the
        first attempt must be the model the router just chose) and the same outcomes."""
        first = rec.attempts[0]
        if first.model != decision.model:
            raise ResumeDivergence(f"cannot resume exactly: a stored step called {first.model} "
                                   f"first but the replayed decision is {decision.model}")
        pairs = [(decision, first)]
        if len(rec.attempts) > 1:
            from evoroute.backends.live.fallback import fallback_decision
            failed_outs = [first]
            for o in rec.attempts[1:]:
                pairs.append((fallback_decision(decision, o.model, list(failed_outs)), o))
                failed_outs.append(o)
        final, out = pairs[-1]
        return out, final, [out.model], pairs[:-1]

    def _call(self, ctx: StepContext, decision: Decision, spent: float = 0.0
              ) -> list[tuple[Decision, StepOutcome]]:
        """One routed call; a backend with ``execute_with_fallback`` (live) retries failed
        calls on the decision's next-best candidates and returns every attempt. ``spent``: what
        this step's earlier calls (escalations) cost, not yet in ``cum_cost``."""
        backend = self.plan.backend
        left = None if self.budget is None else max(self.budget - self.cum_cost - spent, 0.0)
        attempts = backend.execute_with_fallback(ctx, decision, budget_left=left)
        if attempts:
            return list(attempts)
        return [(decision, backend.execute(ctx, backend.model(decision.model)))]

    def _execute(self, ctx: StepContext, decision: Decision
                 ) -> tuple[StepOutcome, Decision, list[str], list[tuple[Decision, StepOutcome]]]:
        """Execute a decision, then any escalations the router asks for (cascade).

        Returns the step's outcome (cost and latency summed over escalated calls), the final
        decision, the models called in order, and the failed calls a fallback replaced (they
        are stored as their own records, with their error)."""
        calls = self._call(ctx, decision)
        failed = calls[:-1]
        final, out = calls[-1]
        chain = [out]
        if self._escalate is not None:
            while True:
                nxt = self._escalate(ctx, final, out, self.rng)
                if nxt is None:
                    break
                spent = sum(o.cost_usd for o in chain) + sum(o.cost_usd for _, o in failed)
                more = self._call(ctx, nxt, spent)
                failed.extend(more[:-1])
                final, out = more[-1]
                chain.append(out)
        names = [o.model for o in chain]
        if len(chain) == 1:
            return out, final, names, failed
        final.explanation.reason += (f" | attempts: {' -> '.join(names)}; cost and latency are "
                                     f"the sums over all {len(names)} calls")
        combined = replace(out, cost_usd=float(sum(o.cost_usd for o in chain)),
                           duration_s=float(sum(o.duration_s for o in chain)),
                           input_tokens=sum(o.input_tokens or 0 for o in chain),
                           output_tokens=sum(o.output_tokens or 0 for o in chain))
        return combined, final, names, failed
