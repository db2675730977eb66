"""Fallback within one decision: when the chosen model's call fails, the next-best candidate
the router scored for the same decision, with a decision record that says why."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from evoroute.core.types import Decision, Explanation, StepOutcome


def ranked_models(decision: Decision) -> list[str]:
    """The chosen model first, then the other candidates of the same decision, best first.

    Best = highest utility the router computed (Thompson draw or posterior mean); candidates
    the router did not score (unexplored, Pareto-dominated, or a baseline without scores)
    follow by propensity, then estimated performance, then their order in the explanation.
    """
    cands = decision.explanation.candidates
    order = {c.model: i for i, c in enumerate(cands)}

    def key(c: Any) -> tuple:
        u = c.utility if c.utility is not None and math.isfinite(c.utility) else -math.inf
        p = c.p_hat if c.p_hat is not None else -math.inf
        return (-u, -(c.propensity or 0.0), -p, order[c.model])

    rest = [c.model for c in sorted(cands, key=key) if c.model != decision.model]
    return [decision.model] + list(dict.fromkeys(rest))


def fallback_decision(decision: Decision, model: str, failed: Sequence[StepOutcome]) -> Decision:
    """The decision record of a fallback attempt: same explanation numbers, new chosen model,
    the reason says which calls failed. The propensity stays the original decision's: given
    the failures, falling back to the next-ranked model is deterministic."""
    e = decision.explanation
    why = "; ".join(f"{o.model} failed ({(o.error or '')[:120]})" for o in failed)
    expl = Explanation(router=e.router, phase=e.phase, mode=e.mode, chosen=model,
                       reason=f"{e.reason} | fallback to {model}, the next-best candidate of this "
                              f"decision: {why}",
                       weights=e.weights, predicted_tools=list(e.predicted_tools),
                       channels=dict(e.channels), fallback=e.fallback,
                       candidates=list(e.candidates))
    return Decision(model, decision.propensity, expl)
