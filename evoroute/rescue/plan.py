"""Who runs a step before and after a swap, fitted on the train split only.

- **base policy** (routes every step cheaply, never to the strong model): per role, the cheapest
  model other than the strong one (mean recorded train cost on the role) whose mean train score
  on the role is within ``within`` of the role's best model (the strong one included); when no
  such model exists, the most accurate model other than the strong one. A role never seen in
  train goes to the strong model.
- **strong model**: the best mean train score over every train step (ties: the cheaper).
- **second opinion** (multiple-choice roles only): the most accurate train model on the role
  other than the base, among those whose mean train cost on the role is at most
  ``opinion_cost_ratio`` times the base's; its call is paid and counted on every step the base
  runs. None when no model qualifies (the step then has no agreement signal).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evoroute.rescue.steps import StepTable

WITHIN = 0.15
OPINION_COST_RATIO = 2.0


@dataclass(frozen=True)
class Plan:
    base: dict[str, str]                 # role -> model
    strong: str
    second: dict[str, str | None]        # role -> model (multiple-choice roles)
    ref_cost: dict[str, float]           # role -> the strong model's mean train cost
    within: float = WITHIN
    opinion_cost_ratio: float = OPINION_COST_RATIO

    def base_model(self, role: str) -> str:
        return self.base.get(role, self.strong)

    def opinion_model(self, role: str) -> str | None:
        return self.second.get(role)

    def describe(self) -> dict[str, object]:
        return {"base": dict(self.base), "strong": self.strong, "second_opinion": dict(self.second),
                "within": self.within, "opinion_cost_ratio": self.opinion_cost_ratio}


def fit_plan(train: StepTable, within: float = WITHIN,
             opinion_cost_ratio: float = OPINION_COST_RATIO) -> Plan:
    """The base policy, strong model and second opinions of :mod:`this module <.plan>`."""
    mean_q = np.nanmean(train.score, axis=0)
    mean_c = np.nanmean(train.cost, axis=0)
    strong_j = min(range(len(train.models)), key=lambda j: (-mean_q[j], mean_c[j], j))
    strong = train.models[strong_j]
    base, second, ref = {}, {}, {}
    for role in dict.fromkeys(train.roles):
        rows = train.roles == role
        q = np.nanmean(train.score[rows], axis=0)
        c = np.nanmean(train.cost[rows], axis=0)
        cheap = [j for j in range(len(train.models)) if j != strong_j] or [strong_j]
        ok = [j for j in cheap if q[j] >= q.max() - within - 1e-12]
        b = (min(ok, key=lambda j: (c[j], -q[j], j)) if ok
             else max(cheap, key=lambda j: (q[j], -c[j], -j)))
        base[str(role)] = train.models[b]
        ref[str(role)] = float(c[strong_j]) or 1.0
        if train.choice[rows].any():
            cheap = [j for j in range(len(train.models))
                     if j != b and c[j] <= opinion_cost_ratio * c[b] + 1e-15]
            second[str(role)] = (train.models[max(cheap, key=lambda j: (q[j], -c[j], -j))]
                                 if cheap else None)
    return Plan(base=base, strong=strong, second=second, ref_cost=ref, within=within,
                opinion_cost_ratio=opinion_cost_ratio)
