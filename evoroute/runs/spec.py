"""The spec of a run: everything that defines it, validated, stored as JSON with the run so it
can be repeated.

Protocols (``DEFAULTS.protocols``):

- ``bandit`` (default, the paper's): cold start on ``cold_start_tasks`` train tasks with a
  uniformly random model per step (phase ``cold_start``; only routers whose capabilities
  declare a cold start), then the rest of the train split online (phase ``optimize``: only
  the chosen model's outcome is observed), then the test split (phase ``inference``; the
  router keeps learning from what it observes).
- ``full``: the router's experience starts with every model's recorded outcome on the train
  split (preloaded, not written as step records), then the test split.

Routers that do not learn online run the test split only, in both protocols. Routers that
need training are fitted on every model's outcome on the full train split, in both protocols.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from evoroute.backends.names import BACKEND_NAMES, DEFAULT_DATASET
from evoroute.core.errors import ValidationError
from evoroute.core.types import Weights
from evoroute.settings import DEFAULTS


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a run; stored as JSON with the run, so it can be repeated."""

    backend: str = "replay"
    dataset: str | None = None           # bundled name or path (replay) / scenario (simulated)
    router: str = "evoroute"
    weights: tuple[float, float, float] = DEFAULTS.weights
    router_params: dict = field(default_factory=dict)
    seed: int = DEFAULTS.seed
    protocol: str = DEFAULTS.protocols[0]
    n_tasks: int | None = None           # cap on test tasks (None = all)
    n_train: int | None = None           # cap on train tasks used for optimisation
    cold_start_tasks: int = DEFAULTS.cold_start_tasks
    steps_per_task: int = 1              # > 1 composes multi-step tasks from real queries
    budget_usd: float | None = None
    models: tuple[str, ...] | None = None
    name: str = ""
    backend_params: dict = field(default_factory=dict)   # e.g. replay incomplete="restrict"

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_NAMES:
            raise ValidationError(f"backend must be one of {', '.join(BACKEND_NAMES)}, got "
                                  f"{self.backend!r}", "backend")
        if self.dataset in (None, ""):
            object.__setattr__(self, "dataset", DEFAULT_DATASET[self.backend])
        if self.protocol not in DEFAULTS.protocols:
            raise ValidationError(f"protocol must be one of {', '.join(DEFAULTS.protocols)}, got "
                                  f"{self.protocol!r}", "protocol")
        object.__setattr__(self, "weights", Weights(*self.weights).as_tuple())
        object.__setattr__(self, "seed", _int(self.seed, "seed", 0))
        for name, lo in (("n_tasks", 1), ("n_train", 0)):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, _int(v, name, lo))
        object.__setattr__(self, "cold_start_tasks", _int(self.cold_start_tasks, "cold_start_tasks", 0))
        object.__setattr__(self, "steps_per_task", _int(self.steps_per_task, "steps_per_task", 1))
        if self.budget_usd is not None:
            b = float(self.budget_usd)
            if not np.isfinite(b) or b <= 0:
                raise ValidationError("budget must be a positive number of USD", "budget_usd")
            object.__setattr__(self, "budget_usd", b)
        if self.models is not None:
            object.__setattr__(self, "models", tuple(str(m) for m in self.models))
        if not str(self.router):
            raise ValidationError("router is empty", "router")
        for name in ("router_params", "backend_params"):
            v = getattr(self, name)
            if not isinstance(v, Mapping):
                raise ValidationError(f"{name} must be a mapping", name)
            try:
                json.dumps(v)
            except TypeError as exc:
                raise ValidationError(f"{name} must be JSON-able ({exc})", name) from None
            object.__setattr__(self, name, dict(v))

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["weights"] = list(self.weights)
        d["models"] = None if self.models is None else list(self.models)
        d["router_params"], d["backend_params"] = dict(self.router_params), dict(self.backend_params)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunSpec":
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if kw.get("weights") is not None:
            kw["weights"] = tuple(kw["weights"])
        if kw.get("models") is not None:
            kw["models"] = tuple(kw["models"])
        return cls(**kw)


def _int(v: Any, name: str, lo: int) -> int:
    ok = isinstance(v, (int, np.integer)) and not isinstance(v, bool)
    if not ok and isinstance(v, float) and v.is_integer():
        ok = True
    if not ok:
        raise ValidationError(f"{name} must be a whole number, got {v!r}", name)
    if int(v) < lo:
        raise ValidationError(f"{name} must be >= {lo}, got {int(v)}", name)
    return int(v)
