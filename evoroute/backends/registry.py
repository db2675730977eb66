"""Backends by name: the one place that maps a run's ``backend`` to its class and builds it.

The registry imports the backend modules (lazily: the live backend pulls in the agent and its
HTTP client, which a replay or the CLI's ``--help`` does not need); no backend imports the
registry, so the import graph has no cycle. Adding a backend: its module, its entry in
:mod:`evoroute.backends.names`, one branch in :func:`backend_class` and, if it is built differently
from ``Backend(dataset, models, seed=, steps_per_task=, **params)``, in :func:`make_backend`.
"""

from __future__ import annotations

import inspect
from typing import Any

from evoroute.backends.base import Backend
from evoroute.backends.names import BACKEND_NAMES, DEFAULT_DATASET, OWN_MODELS
from evoroute.core.errors import ValidationError
from evoroute.core.types import ModelInfo

#: constructor arguments set by the run itself, never by ``--backend-param``
_RUN_ARGUMENTS = {"self", "dataset", "scenario", "models", "model_names", "seed", "steps_per_task"}


def backend_class(name: str) -> type[Backend]:
    """The class of a backend name (ValidationError naming the known ones otherwise)."""
    if name == "replay":
        from evoroute.backends.replay import ReplayBackend
        return ReplayBackend
    if name == "simulated":
        from evoroute.backends.simulated import SimulatedBackend
        return SimulatedBackend
    if name == "live":
        from evoroute.backends.live import LiveBackend
        return LiveBackend
    raise ValidationError(f"unknown backend {name!r}; known: {', '.join(BACKEND_NAMES)}", "backend")


def check_backend_params(cls: type, params: dict[str, Any]) -> None:
    """Backend settings (``--backend-param k=v``) must be keyword options of the backend, and a
    numeric option takes a number: an unknown key was a TypeError traceback."""
    options = {n: p for n, p in inspect.signature(cls.__init__).parameters.items()
               if n not in _RUN_ARGUMENTS and p.kind is p.KEYWORD_ONLY}
    for key, value in params.items():
        if key not in options:
            raise ValidationError(f"unknown backend setting {key!r} for {cls.__name__}; known: "
                                  f"{', '.join(sorted(options)) or '(none)'}", key)
        default = options[key].default
        if isinstance(default, (int, float)) and not isinstance(default, bool) and (
                isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValidationError(f"backend setting {key} must be a number, got {value!r}", key)


def check_params(name: str, params: dict[str, Any]) -> None:
    """:func:`check_backend_params` by backend name (the CLI checks before it stores a run; an
    unknown name is left to the run spec's own check)."""
    if name in BACKEND_NAMES:
        check_backend_params(backend_class(name), params)


def make_backend(name: str, dataset: Any, *, models: list[ModelInfo] | None = None,
                 model_names: list[str] | None = None, seed: int = 0, steps_per_task: int = 1,
                 **params: Any) -> Backend:
    """Build a backend by name.

    ``models`` are the registered candidates (replay, live). The simulated backend brings its
    own models; ``model_names`` then selects among them (None = all of the scenario's).
    """
    cls = backend_class(name)
    if name == "replay" and not models:
        raise ValidationError("no candidate models: register and enable at least one model "
                              "(`python -m evoroute demo --no-run` registers the RouterBench "
                              "models)", "models")
    check_backend_params(cls, params)
    if name in OWN_MODELS:
        return cls(dataset or DEFAULT_DATASET[name], seed=seed, steps_per_task=steps_per_task,
                   model_names=model_names, **params)
    return cls(dataset, models, seed=seed, steps_per_task=steps_per_task, **params)


__all__ = ["BACKEND_NAMES", "backend_class", "check_backend_params", "check_params",
           "make_backend"]
