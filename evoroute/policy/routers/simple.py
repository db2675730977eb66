"""The simple baselines: ``single`` (one model for everything, the reference points of every
comparison), ``cheapest`` (the cost floor), ``random`` and ``round_robin`` (routing without
information). Each decision's explanation says why the model was chosen."""

from __future__ import annotations

import numpy as np

from evoroute.core.errors import EvoRouteError, UnknownModelError
from evoroute.core.types import Decision, ModelInfo, StepContext
from evoroute.policy.baseline import TYPICAL_CALL_TOKENS, Baseline, typical_cost


class SingleModelRouter(Baseline):
    """Every step to one model: the reference points of every comparison."""

    seed_invariant = True
    ranks_by_price = True              # for the stand-in when its model cannot run a step
    family = "single"

    def __init__(self, models: list[ModelInfo], model: str) -> None:
        super().__init__(models)
        if model not in self.by_name:
            raise UnknownModelError(model, self.model_names)
        self.model = model
        self.name = f"single:{model}"

    def decide(self, step: StepContext, rng: np.random.Generator) -> Decision:
        names = self.candidates(step)
        if self.model in names:
            return self._decision(step, self.model, f"baseline: every step goes to {self.model}")
        pick = self._cheapest(names)
        how = ("by mean recorded cost, every registered price being 0"
               if self.recorded_cost and pick in self.recorded_cost else "by registered price")
        return self._decision(step, pick, f"{self.model} has no outcome for this step; the "
                                          f"cheapest available model {pick} ({how}) stands in")


class CheapestRouter(Baseline):
    """Always the lowest registered price (the lowest mean recorded train cost when every
    registered price is 0): the cost floor of every comparison."""

    name = "cheapest"
    ranks_by_price = True
    seed_invariant = True
    order = 42

    def decide(self, step: StepContext, rng: np.random.Generator) -> Decision:
        pick = self._cheapest(self.candidates(step))
        if self.recorded_cost and pick in self.recorded_cost:
            return self._decision(step, pick, f"baseline: every registered price is 0, so models are "
                                              f"ranked by mean recorded cost on the train split; "
                                              f"{pick}'s is the lowest "
                                              f"(${self.recorded_cost[pick]:.6f} per call)")
        return self._decision(step, pick, f"baseline: {pick} has the lowest registered price "
                                          f"(${typical_cost(self.by_name[pick]):.6f} for a typical "
                                          f"{TYPICAL_CALL_TOKENS[0]}-in / {TYPICAL_CALL_TOKENS[1]}-"
                                          f"out call)")


class RandomRouter(Baseline):
    """Uniformly random model per step: what routing without information achieves."""

    name = "random"
    order = 40

    def decide(self, step: StepContext, rng: np.random.Generator) -> Decision:
        names = self.candidates(step)
        pick = names[int(rng.integers(len(names)))]
        p = 1.0 / len(names)
        return self._decision(step, pick, f"baseline: uniformly random among {len(names)} models",
                              {n: p for n in names})


class RoundRobinRouter(Baseline):
    """Models in a fixed cycle: load spreading with no regard for the step."""

    name = "round_robin"
    order = 41

    def __init__(self, models: list[ModelInfo]) -> None:
        super().__init__(models)
        self._next = 0

    def decide(self, step: StepContext, rng: np.random.Generator) -> Decision:
        names = set(self.candidates(step))
        n = len(self.models)
        for k in range(n):
            pos = (self._next + k) % n
            if self.models[pos].name in names:
                self._next = pos + 1
                pick = self.models[pos].name
                return self._decision(step, pick, f"baseline: next model in the fixed cycle "
                                                  f"(position {pos + 1} of {n})")
        raise EvoRouteError("no candidate model for this step")


ROUTERS = {"single": SingleModelRouter, "cheapest": CheapestRouter, "random": RandomRouter,
           "round_robin": RoundRobinRouter}
