"""The router interface every policy implements, and the registry of routers by name.

A router is small (RouteLLM's habit): ``decide`` picks a model for one step, ``observe`` learns
from the step's outcome, ``finish_task`` learns the task's success. Randomness only comes from
the ``numpy.random.Generator`` passed to ``decide``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from evoroute.core.types import Decision, Explanation, ModelInfo, StepContext, StepOutcome
from evoroute.errors import EvoRouteError, ValidationError


class Router:
    """Base class: a named policy over a fixed list of candidate models."""

    name: str = "router"
    needs_embedding: bool = False      # the runner embeds instructions only if a router needs it
    needs_training: bool = False       # trained on full train-split outcomes before the run

    def __init__(self, models: list[ModelInfo]) -> None:
        if not models:
            raise EvoRouteError("no candidate models: register and enable at least one model")
        self.models = list(models)
        self.by_name = {m.name: m for m in models}

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    def candidates(self, step: StepContext) -> list[str]:
        names = list(step.candidates) if step.candidates else self.model_names
        unknown = [n for n in names if n not in self.by_name]
        if unknown:
            from evoroute.errors import UnknownModelError
            raise UnknownModelError(unknown[0], self.model_names)
        return names

    def decide(self, step: StepContext, rng: np.random.Generator) -> Decision:
        raise NotImplementedError

    def observe(self, step: StepContext, decision: Decision, outcome: StepOutcome) -> None:
        """Learn from one executed step (default: nothing)."""

    def finish_task(self, task_key: str, success: float) -> None:
        """Learn the success of a finished task (default: nothing)."""

    def simple_decision(self, step: StepContext, model: str, propensity: float, reason: str,
                        mode: str = "baseline") -> Decision:
        return Decision(model, propensity, Explanation(router=self.name, phase=step.phase,
                                                       mode=mode, chosen=model, reason=reason))


RouterFactory = Callable[..., Router]
ROUTERS: dict[str, RouterFactory] = {}


def register(name: str) -> Callable[[RouterFactory], RouterFactory]:
    def deco(factory: RouterFactory) -> RouterFactory:
        ROUTERS[name] = factory
        return factory
    return deco


def make_router(name: str, models: list[ModelInfo], **params: Any) -> Router:
    """Build a router by registry name; ``single:<model>`` routes everything to one model."""
    from evoroute import policy  # noqa: F401  (imports the modules that register routers)

    if name.startswith("single:"):
        factory, params = ROUTERS["single"], {**params, "model": name.split(":", 1)[1]}
    elif name in ROUTERS:
        factory = ROUTERS[name]
    else:
        raise ValidationError(f"unknown router {name!r}; known: {', '.join(router_names())}", "router")
    return factory(models, **params)


def router_names() -> list[str]:
    from evoroute import policy  # noqa: F401

    return sorted(n for n in ROUTERS if n != "single") + ["single:<model>"]
