"""One recorded decision, explained: per-model n, P̂, Ĉ, D̂, Pareto set, θ and utility."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlmodel import Session

from evoroute.core.errors import EvoRouteError
from evoroute.core.types import Explanation
from evoroute.storage import views

#: The step fields the explanation shows beside the decision.
RECORD_FIELDS = ("id", "run_id", "task_key", "step_index", "phase", "role", "model",
                 "instruction", "tools", "cost_usd", "duration_s", "latency_label",
                 "step_success", "task_success", "input_tokens", "output_tokens", "error",
                 "tool_error", "propensity", "router")

CANDIDATE_COLUMNS = ["model", "n", "P̂", "Ĉ (USD)", "D̂ (s)", "unexplored", "Pareto", "θ_P",
                     "θ_C", "θ_D", "utility", "propensity", "chosen"]


@dataclass(frozen=True)
class StepExplanation:
    record: dict[str, Any]
    explanation: Explanation | None
    candidates: pd.DataFrame


def explain_step(step_id: int, *, session: Session) -> StepExplanation:
    """The full explanation of one recorded decision (per-model n, P̂, Ĉ, D̂, Pareto, θ, U)."""
    rec = views.get_step(step_id, session=session)
    if rec is None:
        raise EvoRouteError(f"no step with id {step_id}")
    record = {k: getattr(rec, k) for k in RECORD_FIELDS}
    expl = None
    if rec.explanation:
        try:
            expl = Explanation.from_json(rec.explanation)
        except Exception as exc:  # noqa: BLE001 - a stored explanation from an old or foreign base
            record["explanation_error"] = f"the stored explanation cannot be read ({type(exc).__name__})"
    return StepExplanation(record, expl, candidates_frame(expl))


def candidates_frame(expl: Explanation | None) -> pd.DataFrame:
    if expl is None:
        return pd.DataFrame(columns=CANDIDATE_COLUMNS)
    rows = [{"model": c.model, "n": c.n, "P̂": c.p_hat, "Ĉ (USD)": c.c_hat, "D̂ (s)": c.d_hat,
             "unexplored": c.unexplored, "Pareto": c.pareto, "θ_P": c.theta_p, "θ_C": c.theta_c,
             "θ_D": c.theta_d, "utility": c.utility, "propensity": c.propensity,
             "chosen": c.model == expl.chosen} for c in expl.candidates]
    return pd.DataFrame(rows, columns=CANDIDATE_COLUMNS)


def rescue_summary(rescue: dict[str, Any] | None) -> str | None:
    """The mid-run rescue behind a decision (``atropos``): the predicted failure probability
    after the step, the threshold, and whether and when the task swapped to the strong model."""
    if not rescue:
        return None
    p, th, at = rescue.get("p_fail"), rescue.get("threshold"), rescue.get("swapped_at_step")
    strong = rescue.get("strong")
    parts = [f"mid-run rescue ({rescue.get('predictor')} failure predictor)"]
    if p is not None:
        parts.append(f"predicted P(task fails | its steps so far) = {p:.3f}, threshold {th:g}")
    if rescue.get("swap"):
        parts.append(f"swapped here: {strong} answers this step again and every later step")
    elif at is not None:
        q = rescue.get("p_fail_at_swap")
        parts.append(f"the task swapped to {strong} at step {at}"
                     + (f" (P(fail) {q:.3f} > threshold {th:g})" if q is not None else ""))
    else:
        parts.append(f"no swap: the task stays on the base policy ({rescue.get('base')})")
    feats = rescue.get("features") or {}
    if feats:
        parts.append("features: " + ", ".join(
            f"{k} {v.get('value', 0.0):g}"
            + (f" ({v['log_odds']:+.2f} log-odds)" if "log_odds" in v else "")
            for k, v in feats.items()))
    return " · ".join(parts)
