"""Per-run summaries: what one run of one router did (quality, cost, latency, regret)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from evoroute.core.errors import ValidationError
from evoroute.evaluation.metrics._checks import FloatArray, _same_length, _scalar, _vector


def summarize(scores: ArrayLike, costs: ArrayLike, latencies: ArrayLike) -> dict[str, float]:
    """Headline numbers of one run: one entry per task (or per step) in each array.

    ``cost_per_success`` divides total spend by the *sum* of scores, so partial credit counts
    as a fraction of a success; it is ``inf`` when nothing succeeded because money was spent
    for no result, which must not look cheap (0) or be silently dropped (NaN).
    Percentiles use numpy's default linear interpolation (Hyndman & Fan type 7), the
    convention of pandas / spreadsheets, so numbers match what a user recomputes.
    """
    s = _vector(scores, "scores")
    c = _vector(costs, "costs", nonnegative=True)
    lat = _vector(latencies, "latencies", nonnegative=True)
    _same_length(s, c, "scores", "costs")
    _same_length(s, lat, "scores", "latencies")
    if np.any((s < 0) | (s > 1)):
        raise ValidationError("scores must lie in [0, 1] (spec §5)", field="scores")
    n = s.size
    total = float(c.sum())
    successes = float(s.sum())
    p50, p95 = np.percentile(lat, [50.0, 95.0])
    return {
        "n": n,
        "quality": float(s.mean()),
        "cost_usd": total,
        "cost_per_query": total / n,
        "latency_mean": float(lat.mean()),
        "latency_p50": float(p50),
        "latency_p95": float(p95),
        "cost_per_success": total / successes if successes > 0 else float("inf"),
    }


def gap_to_oracle(quality: float, oracle_quality: float) -> float:
    """Quality points the router leaves on the table: ``oracle_quality - quality``.

    Absolute (not relative) so it reads in the same unit as task success and stays defined
    when the oracle itself scores 0. Not clipped: a negative value means the "oracle" was
    not an upper bound on this data, which a caller should see rather than have hidden.
    """
    return _scalar(oracle_quality, "oracle_quality") - _scalar(quality, "quality")


def cumulative_regret(chosen_scores: ArrayLike, oracle_scores: ArrayLike) -> FloatArray:
    """Running sum of per-step regret ``oracle - chosen`` over the order steps were routed.

    Its slope shows whether a learning router stops paying for exploration: a flattening
    curve means it converged, a straight line means it keeps losing the same amount per step.
    Per-step values are not clipped at 0 for the same reason as :func:`gap_to_oracle`.
    """
    chosen = _vector(chosen_scores, "chosen_scores", allow_empty=True)
    oracle = _vector(oracle_scores, "oracle_scores", allow_empty=True)
    _same_length(chosen, oracle, "chosen_scores", "oracle_scores")
    return np.cumsum(oracle - chosen)


def cumulative_cost(costs: ArrayLike) -> FloatArray:
    """Running spend in USD, step by step: what a budget cap is checked against."""
    return np.cumsum(_vector(costs, "costs", nonnegative=True, allow_empty=True))
