"""The router interface every policy implements, and the capabilities it declares.

A router is small (RouteLLM's habit): ``decide`` picks a model for one step, ``observe`` learns
from the step's outcome, ``finish_task`` learns the task's success. Randomness only comes from
the ``numpy.random.Generator`` passed to ``decide``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from evoroute.core.errors import EvoRouteError, UnknownModelError
from evoroute.core.types import Decision, ModelInfo, StepContext, StepOutcome

#: EvoRoute's cost weight w_c and the cost weight λ of the learned baselines, swept by the
#: benchmark to trace each router's cost/quality curve (16 settings, denser where the curves
#: bend). 10 and 100 reach the cheapest operating points: AIQ integrates from cost 0, and a sweep
#: that stops at w_c = 3 (cheapest point ≈ $0.25 on RouterBench) scores every smaller budget 0.
COST_WEIGHT_GRID: tuple[float, ...] = (0.0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
                                       0.5, 1.0, 2.0, 3.0, 10.0, 100.0)


@dataclass(frozen=True)
class CostKnob:
    """The setting a router trades cost for quality with, as the benchmark sweeps it.

    ``param`` is the router parameter it sets; ``"w_c"`` means the run's cost weight (the
    middle of ``RunSpec.weights``). ``default`` None: the run's w_c (for ``"w_c"``) or a value
    the router can only know after training (see :meth:`Router.sweep`).
    """

    param: str
    values: tuple[float, ...]
    default: float | None = None
    label: str = ""
    integer: bool = False


#: the run's cost weight w_c (EvoRoute and every router that reads the run's weights)
W_C_KNOB = CostKnob("w_c", COST_WEIGHT_GRID, None, "cost weight w_c")


@dataclass(frozen=True)
class Capabilities:
    """What the runner and the benchmark need to know about a router, read from the router
    itself (no name lists): see the class attributes of :class:`Router`."""

    learns_online: bool
    needs_training: bool
    needs_embedding: bool
    is_oracle: bool
    seed_invariant: bool
    cost_knob: CostKnob | None
    needs_oracle: bool = False
    cold_start: bool = False
    run_params: tuple[str, ...] = ()
    experience_preload: str | None = None
    escalates: bool = False
    ranks_by_price: bool = False
    family: str = "baseline"
    ablation_of: str | None = None
    order: int = 100


#: the families a router declares (``Router.family``), in the order the bench lists them
ROUTER_FAMILIES: tuple[str, ...] = ("evoroute", "evoroute-paper", "oracle", "baseline", "learned", "single")


class Router:
    """Base class: a named policy over a fixed list of candidate models.

    Capabilities (class attributes; an instance may override them, e.g. after its config):

    - ``learns_online``: learns from the outcomes it observes (the runner runs the train
      phases of the bandit protocol for it); False: it routes the test split only;
    - ``needs_training``: ``fit(table)`` on every model's outcome on the full train split
      before the run (both protocols);
    - ``needs_embedding``: the runner embeds the instructions for it;
    - ``is_oracle``: reads recorded outcomes a deployed router cannot see (kept out of every
      "best non-oracle" ranking);
    - ``seed_invariant``: deterministic and does not learn, so on a test set shared by every
      seed one run counts for all seeds;
    - ``cost_knob``: the setting the benchmark sweeps (None: one point);
    - ``needs_oracle``: ``attach_oracle(fn)`` before the run, ``fn(step)`` giving every model's
      recorded outcome on the step (replay / simulated backends only);
    - ``cold_start``: routes uniformly at random on the run's first ``cold_start_tasks`` train
      tasks (bandit protocol);
    - ``run_params``: run-level settings it takes as parameters (``"weights"``,
      ``"cold_start_tasks"``), set by the runner from the run's spec;
    - ``experience_preload``: how the full protocol starts it from every model's train
      outcome: ``"index"`` (bulk-loaded into ``self.index``), ``"table"`` (``preload(table)``)
      or None (it cannot run the full protocol);
    - ``escalates``: ``escalate(step, decision, outcome, rng)`` may ask for another call;
    - ``ranks_by_price``: ranks by registered price, and falls back to recorded costs
      (``prices_unknown()``, ``fit_costs(table)``) when every price is 0;
    - ``family``: one of :data:`ROUTER_FAMILIES` (``"evoroute"``: EvoRoute and its query-aware
      variants, ``"evoroute-paper"``: the paper's literal union, ``"oracle"``, ``"baseline"``,
      ``"learned"``, ``"single"``), how the bench and the results group routers;
    - ``ablation_of``: for an ablation (``evoroute-no-ts``, ...), the router it ablates (swept
      only on request); None otherwise;
    - ``order``: position in the bench's listing and the results' tables (lower first).
    """

    name: str = "router"
    learns_online: bool = True
    needs_embedding: bool = False      # the runner embeds instructions only if a router needs it
    needs_training: bool = False       # trained on full train-split outcomes before the run
    is_oracle: bool = False
    seed_invariant: bool = False
    cost_knob: CostKnob | None = None
    needs_oracle: bool = False
    cold_start: bool = False
    run_params: tuple[str, ...] = ()
    experience_preload: str | None = None
    escalates: bool = False
    ranks_by_price: bool = False
    family: str = "baseline"
    ablation_of: str | None = None
    order: int = 100
    tool_predictor: Any = None         # a ToolPredictor of its own (custom keywords), or None

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
            raise UnknownModelError(unknown[0], self.model_names)
        return names

    def decide(self, step: StepContext, rng: np.random.Generator) -> Decision:
        raise NotImplementedError

    def observe(self, step: StepContext, decision: Decision, outcome: StepOutcome) -> None:
        """Learn from one executed step (default: nothing)."""

    def finish_task(self, task_key: str, success: float) -> None:
        """Learn the success of a finished task (default: nothing)."""

    def unsupported_data(self, table: Any) -> str | None:
        """Why the router cannot run on data whose train split is ``table`` (every model's
        outcome, an :class:`~evoroute.backends.base.OutcomeTable`), or None when it can. The
        benchmark leaves such a router out of its default list and says why; ``fit`` raises it."""
        return None

    def capabilities(self) -> Capabilities:
        """The class (or instance) attributes named like :class:`Capabilities`' fields, so a new
        capability is one field there and one default here."""
        values = {f.name: getattr(self, f.name) for f in fields(Capabilities)}
        for name, v in values.items():
            if isinstance(getattr(Router, name), bool):
                values[name] = bool(v)
        values["run_params"] = tuple(values["run_params"])
        values["order"] = int(values["order"])
        return Capabilities(**values)

    #: the settings :meth:`describe` records in a run's configuration, when the router has them
    DESCRIBED: tuple[str, ...] = ("model", "strong", "weak", "threshold", "strong_share", "k",
                                  "prior", "weak_cost_ratio", "max_rungs", "verifier_accuracy",
                                  "cost_weight", "confidence")

    def describe(self) -> dict[str, Any]:
        """The router's own settings, as a run records them (name, class, config, knobs)."""
        out: dict[str, Any] = {"name": self.name, "class": type(self).__name__}
        cfg = getattr(self, "config", None)
        if cfg is not None and hasattr(cfg, "to_dict"):
            out["config"] = cfg.to_dict()
        for attr in self.DESCRIBED:
            if hasattr(self, attr):
                v = getattr(self, attr)
                out[attr] = v if (v is None or isinstance(v, (str, int))) else float(v)
        if hasattr(self, "full_ladder"):
            out["ladder"] = self.full_ladder
        return out

    def sweep(self, train_table: Any, weights: Sequence[float]) -> tuple[list[float], float | None]:
        """The cost-knob settings to sweep and the setting of a default run (None: no knob).

        ``train_table`` (every model's train outcome, or None) is for routers whose settings
        depend on the data (the oracle cascade's ladder length); ``weights`` gives the run's
        w_c for the ``"w_c"`` knob."""
        knob = self.capabilities().cost_knob
        if knob is None:
            return [], None
        default = float(weights[1]) if knob.param == "w_c" and knob.default is None else knob.default
        return [float(v) for v in knob.values], default
