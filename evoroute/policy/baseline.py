"""The base class of the baseline routers: a decision with its explanation, and the price
ranking the cheapest-model fallbacks use (by registered price, or by mean recorded train cost
when every registered price is 0)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from evoroute.core.types import CandidateStat, Decision, Explanation, ModelInfo, StepContext
from evoroute.policy.base import Router

# Prices are compared on one typical call so input- and output-heavy price lists rank fairly.
TYPICAL_CALL_TOKENS = (1000, 200)


def typical_cost(m: ModelInfo) -> float:
    return m.cost(*TYPICAL_CALL_TOKENS)


class Baseline(Router):
    learns_online = False
    #: mean recorded cost per call on the train split; set by :meth:`fit_costs` only when every
    #: registered price is zero (a replay file without token counts: prices cannot be fitted)
    recorded_cost: dict[str, float] | None = None

    def prices_unknown(self) -> bool:
        return (self.ranks_by_price and len(self.models) > 1
                and all(typical_cost(m) == 0 for m in self.models))

    def fit_costs(self, table: Any) -> None:
        """Rank by mean recorded cost when the registered prices cannot tell models apart.

        Left unset when the recorded costs cannot tell them apart either (e.g. override or
        notional prices of 0, which replay recomputes as 0). Costs are averaged over the train
        queries every model has an outcome on, so all models are compared on the same queries.
        """
        if not self.prices_unknown():
            return
        costs = np.asarray(table.costs, dtype=float)
        both = np.isfinite(costs).all(axis=1)
        if not both.any():
            return
        means = costs[both].mean(axis=0)
        out = {name: float(means[j]) for j, name in enumerate(table.models)}
        self.recorded_cost = out if len(set(out.values())) > 1 else None

    def _decision(self, step: StepContext, model: str, reason: str,
                  props: Mapping[str, float] | None = None) -> Decision:
        names = self.candidates(step)
        props = props if props is not None else {model: 1.0}
        expl = Explanation(router=self.name, phase=step.phase, mode="baseline", chosen=model,
                           reason=reason,
                           candidates=[CandidateStat(m, propensity=float(props.get(m, 0.0)))
                                       for m in names])
        return Decision(model, float(props.get(model, 0.0)), expl)

    def _cheapest(self, names: Sequence[str]) -> str:
        rec = self.recorded_cost or {}
        return min(names, key=lambda n: (typical_cost(self.by_name[n]), rec.get(n, math.inf), n))
