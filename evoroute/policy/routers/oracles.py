"""The routers that read recorded outcomes a deployed router cannot see, kept out of every
"best non-oracle" ranking: ``oracle`` (the cheapest model with the best recorded score) and
``oracle-cascade`` (Atropos-style escalation whose check, in replay, is the recorded answer)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from evoroute.core.errors import EvoRouteError, UnknownModelError, ValidationError
from evoroute.core.types import Decision, ModelInfo, StepContext, StepOutcome
from evoroute.policy.base import CostKnob
from evoroute.policy.baseline import Baseline
from evoroute.policy.training import cost_quality_ladder

OracleFn = Callable[[StepContext], Mapping[str, Any]]


class OracleRouter(Baseline):
    """The cheapest model with the best recorded score on this step: an upper bound that
    reads every model's outcome, so it exists only where the backend knows them (replay,
    simulated). When no model succeeds it takes the cheapest (as RouterBench's oracle)."""

    name = "oracle"
    needs_oracle = True
    is_oracle = True
    seed_invariant = True
    family = "oracle"
    order = 10

    def __init__(self, models: list[ModelInfo], oracle: OracleFn | None = None) -> None:
        super().__init__(models)
        self._oracle = oracle

    def attach_oracle(self, oracle: OracleFn) -> None:
        self._oracle = oracle

    def decide(self, step: StepContext, rng: np.random.Generator) -> Decision:
        if self._oracle is None:
            raise EvoRouteError("the oracle router needs every model's recorded outcome: use it "
                                "with the replay or simulated backend")
        names = self.candidates(step)
        entries = self._oracle(step)
        known = [n for n in names if n in entries]
        if not known:
            raise EvoRouteError(f"no recorded outcome for step {step.step_index} of task "
                                f"{step.task_key!r}")
        best = max(entries[n].score for n in known)
        pick = min((n for n in known if entries[n].score == best),
                   key=lambda n: (entries[n].cost_usd, n))
        why = (f"oracle (reads every model's recorded outcome): {pick} is the cheapest model "
               f"with the best recorded score {best:g} on this step") if best > 0 else (
               f"oracle: no model succeeds on this step, so the cheapest, {pick}")
        return self._decision(step, pick, why)


class OracleCascadeRouter(Baseline):
    """Atropos-style escalation: the cheapest rung first; when the step fails its check, the
    same step goes to the next stronger model, until one passes or the ladder ends.

    Named ``oracle-cascade`` and listed with the oracles: in replay its check *is* the
    recorded answer. The cascade that escalates on its own predicted confidence only is
    ``cascade`` (:class:`~evoroute.policy.routers.cascade.ConfidenceCascadeRouter`).

    The ladder is the train split's cost/quality frontier: models by mean train cost, keeping
    each that beats every cheaper one kept (or an explicit ``ladder``); ``max_rungs`` caps it
    (the cost knob). The check is the step's success signal as the backend reports it: in
    replay that is the *recorded correctness*, i.e. an oracle-like verifier no deployed system
    has, so replayed cascade numbers are an upper bound. ``verifier_accuracy`` < 1 flips the
    check with that error rate (seeded) to show how a realistic verifier degrades it. Every
    attempted call's cost and the summed latency are charged to the step.
    """

    name = "oracle-cascade"
    needs_training = True
    is_oracle = True
    escalates = True
    cost_knob = CostKnob("max_rungs", (), None, "ladder length", integer=True)
    family = "oracle"
    order = 11

    def __init__(self, models: list[ModelInfo], ladder: Sequence[str] | None = None,
                 max_rungs: int | None = None, verifier_accuracy: float = 1.0) -> None:
        super().__init__(models)
        if ladder is not None:
            for n in ladder:
                if n not in self.by_name:
                    raise UnknownModelError(n, self.model_names)
        if max_rungs is not None and max_rungs < 1:
            raise ValidationError("max_rungs must be >= 1", "max_rungs")
        if not 0.0 <= verifier_accuracy <= 1.0:
            raise ValidationError("verifier_accuracy must be in [0, 1]", "verifier_accuracy")
        self.max_rungs, self.verifier_accuracy = max_rungs, float(verifier_accuracy)
        self.full_ladder: list[str] | None = list(ladder) if ladder is not None else None
        # a noisy verifier draws from the seed: then every seed gives its own run
        self.seed_invariant = self.verifier_accuracy >= 1.0

    def sweep(self, train_table: Any, weights: Sequence[float]) -> tuple[list[float], float | None]:
        """Ladder lengths 1..n (the train frontier's length): one setting per rung."""
        n = len(self.full_ladder) if self.full_ladder is not None else (
            len(cost_quality_ladder(self.model_names, train_table)) if train_table is not None else 0)
        return [float(k) for k in range(1, n + 1)], (float(n) if n else None)

    @property
    def ladder(self) -> list[str]:
        if self.full_ladder is None:
            raise EvoRouteError("the oracle-cascade router must be trained first (its ladder comes from "
                                "the train split) or be given a ladder")
        return self.full_ladder[: self.max_rungs] if self.max_rungs else list(self.full_ladder)

    def fit(self, table: Any) -> None:
        if self.full_ladder is None:
            self.full_ladder = cost_quality_ladder(self.model_names, table)

    def _rung(self, names: Sequence[str], start: int) -> int | None:
        lad = self.ladder
        for i in range(start, len(lad)):
            if lad[i] in names:
                return i
        return None

    def decide(self, step: StepContext, rng: np.random.Generator) -> Decision:
        names = self.candidates(step)
        i = self._rung(names, 0)
        if i is None:
            pick = self._cheapest(names)
            return self._decision(step, pick, f"oracle-cascade: no ladder model can run this step; the "
                                              f"cheapest available {pick}")
        return self._decision(step, self.ladder[i], self._why(i, "cheapest rung first"))

    def _why(self, i: int, what: str) -> str:
        lad = self.ladder
        return (f"oracle-cascade rung {i + 1} of {len(lad)} ({' -> '.join(lad)}): {what}; escalates "
                f"when the step fails its check (in replay: the recorded correctness, an "
                f"oracle-like verifier)")

    def escalate(self, step: StepContext, decision: Decision, outcome: StepOutcome,
                 rng: np.random.Generator) -> Decision | None:
        passed = outcome.error is None and (outcome.step_success or 0.0) >= 0.5
        if self.verifier_accuracy < 1.0 and rng.random() >= self.verifier_accuracy:
            passed = not passed
        if passed:
            return None
        lad = self.ladder
        cur = lad.index(decision.model) if decision.model in lad else len(lad)
        nxt = self._rung(self.candidates(step), cur + 1)
        if nxt is None:
            return None
        return self._decision(step, lad[nxt], self._why(nxt, f"{decision.model} failed the check"))


ROUTERS = {"oracle": OracleRouter, "oracle-cascade": OracleCascadeRouter}
