"""``cascade``: a confidence cascade that climbs the train split's cost/quality ladder until
the router's *own* predicted probability of success reaches a threshold (it never reads the
recorded answer; the cascade that does is ``oracle-cascade``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from evoroute.core.errors import EvoRouteError, ValidationError
from evoroute.core.types import CandidateStat, Decision, Explanation, ModelInfo, StepContext
from evoroute.policy.base import CostKnob
from evoroute.policy.baseline import Baseline
from evoroute.policy.routers.learned import LogisticRouter
from evoroute.policy.training import cost_quality_ladder

#: the confidence cascade's thresholds on the predicted success probability (14 settings)
CONFIDENCE_GRID: tuple[float, ...] = (0.0, 0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9,
                                      0.95, 0.98, 1.0)
DEFAULT_CONFIDENCE = 0.8


class ConfidenceCascadeRouter(Baseline):
    """Climb the train split's cost/quality ladder (cheapest first) while the router's own
    predicted probability of success on this query (per-model logistic regression) is below
    ``confidence``; the top rung takes what no cheaper rung is confident of.

    It decides before any call, on its prediction only: the recorded answer is never read (a
    cascade that called the cheap model first and then escalated on the same query-only
    prediction would pay for an answer it ignores). The knob is ``confidence``: 0 = always the
    cheapest rung, 1 = always the top rung.
    """

    name = "cascade"
    needs_training = True
    needs_embedding = True
    seed_invariant = True
    cost_knob = CostKnob("confidence", CONFIDENCE_GRID, DEFAULT_CONFIDENCE,
                         "confidence threshold")
    family = "learned"
    order = 34

    def __init__(self, models: list[ModelInfo], confidence: float = DEFAULT_CONFIDENCE,
                 ladder: Sequence[str] | None = None) -> None:
        super().__init__(models)
        tau = float(confidence)
        if not 0.0 <= tau <= 1.0:
            raise ValidationError("confidence must be in [0, 1]", "confidence")
        self.confidence = tau
        self.full_ladder = list(ladder) if ladder is not None else None
        self.predictor = LogisticRouter(models)

    def fit(self, table: Any) -> None:
        self.predictor.fit(table)
        if self.full_ladder is None:
            self.full_ladder = cost_quality_ladder(self.model_names, table)

    def decide(self, step: StepContext, rng: np.random.Generator) -> Decision:
        if self.full_ladder is None or self.predictor.stats is None:
            raise EvoRouteError("the cascade router must be trained first (fit on the train split)")
        names = self.candidates(step)
        p, _ = self.predictor.success_probability(step)
        col = {n: j for j, n in enumerate(self.predictor.stats.models)}
        rungs = [n for n in self.full_ladder if n in names and n in col]
        if not rungs:
            pick = self._cheapest(names)
            return self._decision(step, pick, f"cascade: no ladder model can run this step; the "
                                              f"cheapest available {pick}")
        seen = []
        pick = rungs[-1]
        for n in rungs:
            seen.append(f"{n} {p[col[n]]:.2f}")
            if p[col[n]] >= self.confidence:
                pick = n
                break
        how = ("the first rung predicted to succeed with probability >= "
               f"{self.confidence:g}" if pick != rungs[-1] or p[col[pick]] >= self.confidence
               else f"no rung reaches {self.confidence:g}, so the top rung")
        reason = (f"cascade (own predicted confidence, never the recorded answer): rungs "
                  f"{' -> '.join(rungs)}; predicted success {', '.join(seen)}: {how}, {pick}")
        cands = [CandidateStat(n, p_hat=float(p[col[n]]) if n in col else None, unexplored=False,
                               propensity=1.0 if n == pick else 0.0) for n in names]
        return Decision(pick, 1.0, Explanation(router=self.name, phase=step.phase, mode="baseline",
                                               chosen=pick, reason=reason, candidates=cands))


ROUTERS = {"cascade": ConfidenceCascadeRouter}
