"""``atropos`` / ``atropos-graph``: Atropos-style mid-run rescue as a router (docs/rescue.md).

Per task the run starts on the rescue's **base policy** (:func:`evoroute.rescue.plan.fit_plan`,
fitted on the train split: per role the cheapest model other than the strong one within 0.15 of
the role's best train score). After each step the router adds what a real system sees of it to
the task's partial trajectory (role, model, position, the call's cost and, on a multiple-choice
step, whether the base answer parsed and agrees with a cheap second opinion's, both parsed from
the calls' responses; on the live agent's verifier step, the verdict its reply gives), and the
failure predictor trained on the train split
(:mod:`evoroute.rescue.predictors`: logistic regression for ``atropos``, the small graph network
for ``atropos-graph``) gives P(the task fails | its steps so far). At the first step where it
exceeds ``threshold`` (the cost knob) the strong model answers that step again (the hot swap)
and every later step of the task.

The calls of one step, through the runner's escalation: on a multiple-choice step with a second
opinion, the second opinion is called first, then the base model (the step's answer is the last
call's, so the order keeps the base answer as the step's); when P(fail) > threshold, the strong
model last. Cost is the sum of the calls made, as the rescue replay counts it.

What it never reads: ``StepOutcome.step_success`` or any recorded correctness of a step of the
task it routes (``tests/unit/test_atropos_router.py`` corrupts them and checks the decisions).
Its train labels (did the run fail under the base policy) come from the train split only.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from evoroute.core.errors import DatasetError, EvoRouteError, ValidationError
from evoroute.core.types import CandidateStat, Decision, Explanation, ModelInfo, StepContext, StepOutcome
from evoroute.policy.base import CostKnob
from evoroute.policy.baseline import Baseline
from evoroute.policy.training import cached_fit

#: the swap thresholds on the predicted failure probability swept by the benchmark (21 settings:
#: 1 never swaps, i.e. the base policy with its second opinions; 0 swaps after the first step)
THRESHOLD_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(21))
DEFAULT_THRESHOLD = 0.5
#: features shown per decision (the largest contributions first)
SHOWN_FEATURES = 6


@dataclass
class _Run:
    """One task's partial trajectory as the router has seen it."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    swapped_at: int | None = None
    swap_p: float | None = None
    stage: str = ""                 # the call in progress: opinion | base | strong
    opinion: tuple[str, str, float] | None = None     # (model, parsed answer, cost)
    base_decision: Decision | None = None


class AtroposRouter(Baseline):
    """Start every task on the base policy; swap the rest of it to the strong model when the
    predicted failure probability after a step exceeds ``threshold``."""

    name = "atropos"
    needs_training = True
    seed_invariant = True           # fitted on train with a fixed seed; reads no rng
    escalates = True
    cost_knob = CostKnob("threshold", THRESHOLD_GRID, DEFAULT_THRESHOLD,
                         "swap threshold on P(fail)")
    family = "learned"
    order = 36
    kind = "logistic"

    def __init__(self, models: list[ModelInfo], threshold: float = DEFAULT_THRESHOLD,
                 seed: int = 0, within: float | None = None,
                 opinion_cost_ratio: float | None = None) -> None:
        from evoroute.rescue.plan import OPINION_COST_RATIO, WITHIN

        super().__init__(models)
        t = float(threshold)
        if not 0.0 <= t <= 1.0:
            raise ValidationError("threshold must be in [0, 1]", "threshold")
        self.threshold, self.seed = t, int(seed)
        self.within = WITHIN if within is None else float(within)
        self.opinion_cost_ratio = (OPINION_COST_RATIO if opinion_cost_ratio is None
                                   else float(opinion_cost_ratio))
        self.plan: Any = None
        self.predictor: Any = None
        self._runs: dict[str, _Run] = {}

    # ------------------------------------------------------------------ training
    def unsupported_data(self, table: Any) -> str | None:
        keys = np.asarray(table.task_keys, dtype=object)
        if len(keys) and np.unique(keys).size < len(keys):
            return None
        return (f"{self.name} rescues multi-step runs (it swaps the rest of a task after a "
                "step), and no train task of this dataset has more than one step; compose "
                "tasks of several queries (steps per task > 1, e.g. `steps_per_task=3` on "
                "routerbench) or use a dataset with multi-step tasks (agent_steps)")

    def fit(self, table: Any) -> None:
        from evoroute.rescue.plan import fit_plan
        from evoroute.rescue.replay import fit_rescue
        from evoroute.rescue.steps import from_outcome_table

        why = self.unsupported_data(table)
        if why:
            raise DatasetError(why)
        steps = from_outcome_table(table)
        answers = zlib.crc32("\x1f".join(steps.answer.ravel().tolist()).encode())
        params = (self.kind, self.seed, self.within, self.opinion_cost_ratio, answers)

        def build() -> tuple[Any, Any]:
            plan = fit_plan(steps, self.within, self.opinion_cost_ratio)
            return plan, fit_rescue(steps, plan, self.kind, self.seed).predictor

        # keyed without the embeddings this router does not read: the bench's prefit (whose
        # table carries them for other routers) is then reused by its forked workers
        self.plan, self.predictor = cached_fit("atropos", params, replace(table, embeddings=None),
                                               build)
        self.strong = self.plan.strong

    # ------------------------------------------------------------------ routing
    def _run(self, step: StepContext) -> _Run:
        run = self._runs.get(step.task_key)
        if run is None or step.step_index == 0:
            run = self._runs[step.task_key] = _Run()
        return run

    def _pick(self, want: str, names: list[str]) -> tuple[str, str]:
        if want in names:
            return want, ""
        pick = self._cheapest(names)
        return pick, f"; {want} has no outcome for this step, so the cheapest available {pick}"

    def _explain(self, step: StepContext, model: str, mode: str, reason: str,
                 rescue: dict[str, Any]) -> Decision:
        names = self.candidates(step)
        expl = Explanation(router=self.name, phase=step.phase, mode=mode, chosen=model,
                           reason=reason, rescue=rescue,
                           candidates=[CandidateStat(m, unexplored=False,
                                                     propensity=1.0 if m == model else 0.0)
                                       for m in names])
        return Decision(model, 1.0, expl)

    def _rescue(self, run: _Run, **extra: Any) -> dict[str, Any]:
        """The explanation's ``rescue`` entry: ``p_fail`` after this step (None where no
        prediction is made: before the base answered, after the swap), ``swap`` (this step
        swaps), ``swapped`` (this step runs on the strong model) and ``swapped_at_step``."""
        return {"predictor": self.kind, "threshold": self.threshold, "base": None,
                "strong": self.plan.strong, "second_opinion": None, "p_fail": None,
                "swap": False, "swapped": False, "swapped_at_step": run.swapped_at, **extra}

    def decide(self, step: StepContext, rng: np.random.Generator) -> Decision:
        if self.plan is None:
            raise EvoRouteError(f"the {self.name} router must be trained first (fit on the "
                                "train split); the runner does this for replay and simulated runs")
        names = self.candidates(step)
        run = self._run(step)
        strong = self.plan.strong
        if run.swapped_at is not None:
            run.stage = "strong"
            model, note = self._pick(strong, names)
            return self._explain(step, model, "rescue_strong", (
                f"{self.name}: the task swapped to the strong model {strong} at step "
                f"{run.swapped_at} (P(fail) {run.swap_p:.3f} > threshold {self.threshold:g}), so "
                f"every later step goes to it{note}"),
                self._rescue(run, swapped=True, p_fail_at_swap=run.swap_p))
        base, note = self._pick(self.plan.base_model(step.role), names)
        run.base_decision = self._explain(step, base, "rescue_base", (
            f"{self.name}: base policy {base} for role {step.role}{note}"),
            self._rescue(run, base=base))
        opinion = self.plan.opinion_model(step.role)
        if opinion is not None and opinion in names and opinion != base:
            from evoroute.collab.answers import CHOICE_TASKS
            if step.role in CHOICE_TASKS:
                run.stage = "opinion"
                return self._explain(step, opinion, "rescue_opinion", (
                    f"{self.name}: second opinion {opinion} on this multiple-choice step first "
                    f"(its answer is compared with the base model {base}'s; the step's answer "
                    f"is the base model's, called next)"), self._rescue(run, base=base,
                                                                        second_opinion=opinion))
        run.stage = "base"
        return run.base_decision

    def escalate(self, step: StepContext, decision: Decision, outcome: StepOutcome,
                 rng: np.random.Generator) -> Decision | None:
        """The next call of this step: the base model after the second opinion; the strong
        model (redoing the step) after the base when P(fail) > threshold; else none.
        ``outcome.step_success`` is never read."""
        from evoroute.rescue.steps import step_answer, step_verdict

        run = self._runs.get(step.task_key)
        if run is None or run.stage in ("", "strong"):
            return None
        answer = "" if outcome.error else step_answer(step.role, step.instruction, outcome.response)
        if run.stage == "opinion":
            run.opinion = (outcome.model, answer, float(outcome.cost_usd))
            run.stage = "base"
            return run.base_decision
        run.stage = "strong"
        judged = 0.0 if outcome.error else step_verdict(step.role, outcome.response)
        said = {1.0: "CORRECT", -1.0: "WRONG"}.get(judged)
        p, row = self._observe(step, outcome.model, answer, float(outcome.cost_usd), run, judged)
        swap = p > self.threshold
        info = {"p_fail": p, "swap": bool(swap), "second_opinion": row["opinion_model"],
                "agrees": row["agree"] if row["has_opinion"] else None,
                "unparsed": row["unparsed"], "features": self._features(run),
                "verifier_verdict": said}
        base = decision
        verdict = (f"P(fail | steps 0..{step.step_index}) = {p:.3f} "
                   f"{'>' if swap else '<='} threshold {self.threshold:g}")
        signal = ("" if not row["has_opinion"] else
                  f"; second opinion {row['opinion_model']} "
                  f"{'agrees' if row['agree'] else 'disagrees'}"
                  + (" (the base answer did not parse)" if row["unparsed"] else ""))
        if said:
            signal += f"; its verdict: {said}"
        if not swap:
            base.explanation.reason += f"{signal}; {verdict}: no swap, the task stays on the base policy"
            base.explanation.rescue = {**(base.explanation.rescue or {}), **info}
            return None
        run.swapped_at, run.swap_p = int(step.step_index), p
        model, note = self._pick(self.plan.strong, self.candidates(step))
        return self._explain(step, model, "rescue_swap", (
            f"{self.name}: base policy {outcome.model} answered this step{signal}; {verdict}: "
            f"swap, the strong model {self.plan.strong} answers this step again and every later "
            f"step of the task{note}"),
            self._rescue(run, base=outcome.model, **{**info, "swapped_at_step": run.swapped_at,
                                                     "swapped": True}))

    def _observe(self, step: StepContext, model: str, answer: str, cost: float,
                 run: _Run, verdict: float = 0.0) -> tuple[float, dict[str, Any]]:
        """Add the step to the task's trajectory; P(fail | the steps so far)."""
        from evoroute.collab.answers import CHOICE_TASKS

        choice = step.role in CHOICE_TASKS
        op = run.opinion if choice else None
        run.opinion = None
        row = {"position": int(step.step_index), "role": str(step.role), "model": model,
               "cost": cost, "opinion_cost": op[2] if op else 0.0, "has_opinion": op is not None,
               "opinion_model": op[0] if op else None,
               "agree": bool(op is not None and answer != "" and answer == op[1]),
               "unparsed": bool(choice and answer == ""),
               "ref_cost": float(self.plan.ref_cost.get(step.role, 1.0)), "verdict": verdict}
        run.rows.append(row)
        p = float(self.predictor.predict(self._observed(run))[-1])
        return p, row

    def _observed(self, run: _Run) -> Any:
        from evoroute.rescue.observe import Observed

        rows = run.rows
        col = lambda k, t=float: np.array([r[k] for r in rows], dtype=t)  # noqa: E731
        return Observed(task=np.zeros(len(rows), dtype=np.int64), position=col("position", np.int64),
                        roles=np.array([r["role"] for r in rows], dtype=object).astype(str),
                        model=np.array([r["model"] for r in rows], dtype=object),
                        cost=col("cost"), opinion_cost=col("opinion_cost"),
                        has_opinion=col("has_opinion", bool), agree=col("agree", bool),
                        unparsed=col("unparsed", bool), ref_cost=col("ref_cost"),
                        verdict=col("verdict"))

    def _features(self, run: _Run) -> dict[str, dict[str, float]]:
        feats = self.predictor.features(self._observed(run), len(run.rows) - 1)
        return dict(list(feats.items())[:SHOWN_FEATURES])

    def finish_task(self, task_key: str, success: float) -> None:
        self._runs.pop(task_key, None)     # the task's success is not read: nothing to learn

    DESCRIBED = (*Baseline.DESCRIBED, "seed", "within", "opinion_cost_ratio")

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["predictor"] = self.kind
        if self.plan is not None:
            out["plan"] = self.plan.describe()
        return out


class AtroposGraphRouter(AtroposRouter):
    """``atropos`` with the small graph network over the partial step graph as predictor."""

    name = "atropos-graph"
    kind = "graph"
    order = 37


ROUTERS = {"atropos": AtroposRouter, "atropos-graph": AtroposGraphRouter}
