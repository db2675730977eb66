"""Run metrics and router-comparison metrics (spec §6), as the peers compute them.

Two families:

* **Per-run summaries** (:func:`summarize`, :func:`gap_to_oracle`, :func:`cumulative_regret`,
  :func:`cumulative_cost`): what one run of one router did.
* **Trade-off curves** (:func:`upper_convex_hull`, :func:`aiq`, :func:`aiq_table`,
  :func:`pgr`, :func:`apgr`, :func:`cpt`, :func:`cost_at_quality`): how a router behaves
  when its cost knob is swept, so routers can be compared over the whole cost range and not
  at one arbitrary operating point.

AIQ follows RouterBench (``withmartian/routerbench``, ``evaluation/AIQ.py``); PGR, APGR and
CPT follow RouteLLM (``lm-sys/RouteLLM``, ``routellm/evals/evaluate.py``). Where we depart
from their code the docstring says so and why; ``docs/metrics.md`` has the full write-up.

Everything here is pure: arrays in, numbers out, no I/O. Bad inputs a user can cause (empty
sweeps, negative costs, mismatched lengths, no quality gap) raise
:class:`~evoroute.errors.ValidationError` naming the offending argument.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from evoroute.errors import ValidationError

__all__ = [
    "summarize",
    "upper_convex_hull",
    "aiq",
    "aiq_table",
    "strong_call_share",
    "pgr",
    "apgr",
    "cpt",
    "cost_at_quality",
    "hull_quality_at",
    "gain_over_hull",
    "best_gain_over_hull",
    "cost_share_at_parity",
    "gap_to_oracle",
    "cumulative_regret",
    "cumulative_cost",
]

FloatArray = NDArray[np.float64]


# ---------------------------------------------------------------------------------------
# input checks (one place, so every metric rejects the same things the same way)
# ---------------------------------------------------------------------------------------

def _vector(values: ArrayLike, field: str, *, nonnegative: bool = False,
            allow_empty: bool = False) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{field} must be numbers ({exc})", field=field) from exc
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValidationError(f"{field} must be one-dimensional, got shape {arr.shape}",
                              field=field)
    if arr.size == 0 and not allow_empty:
        raise ValidationError(f"{field} is empty", field=field)
    if not np.all(np.isfinite(arr)):
        raise ValidationError(f"{field} contains NaN or infinite values", field=field)
    if nonnegative and np.any(arr < 0):
        raise ValidationError(f"{field} must be >= 0", field=field)
    return arr


def _scalar(value: float, field: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{field} must be a number ({exc})", field=field) from exc
    if not np.isfinite(out):
        raise ValidationError(f"{field} must be finite", field=field)
    return out


def _points(points: ArrayLike, field: str = "points") -> FloatArray:
    """(n, 2) float array of (total cost, quality); costs >= 0, everything finite."""
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{field} must be (cost, quality) pairs ({exc})",
                              field=field) from exc
    if arr.ndim == 1 and arr.size == 2:
        arr = arr.reshape(1, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValidationError(f"{field} must have shape (n, 2) of (cost, quality), "
                              f"got {arr.shape}", field=field)
    if arr.shape[0] == 0:
        raise ValidationError(f"{field} is empty: a sweep needs at least one point",
                              field=field)
    if not np.all(np.isfinite(arr)):
        raise ValidationError(f"{field} contains NaN or infinite values", field=field)
    if np.any(arr[:, 0] < 0):
        raise ValidationError(f"{field}: costs must be >= 0", field=field)
    return arr


def _same_length(a: FloatArray, b: FloatArray, field_a: str, field_b: str) -> None:
    if a.shape != b.shape:
        raise ValidationError(f"{field_a} and {field_b} differ in length "
                              f"({a.size} vs {b.size})", field=field_b)


def _gap(weak_q: float, strong_q: float) -> tuple[float, float]:
    weak = _scalar(weak_q, "weak_quality")
    strong = _scalar(strong_q, "strong_quality")
    if not strong > weak:
        raise ValidationError(
            f"performance gap recovered needs strong_quality > weak_quality "
            f"(got strong={strong:g}, weak={weak:g}): there is no gap to recover",
            field="strong_quality")
    return weak, strong


# ---------------------------------------------------------------------------------------
# one run
# ---------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------
# cost / quality curves (RouterBench)
# ---------------------------------------------------------------------------------------

def upper_convex_hull(points: ArrayLike) -> FloatArray:
    """Non-decreasing upper convex hull of a router's (total cost, quality) sweep.

    Why a hull: two operating points of a router can be mixed (route a fraction of queries
    with each setting), so every point on the chord between them is achievable; the upper
    hull is therefore the router's real cost/quality frontier (RouterBench §AIQ). Why
    non-decreasing: paying more for less quality is never a choice anyone makes, so the
    frontier stops at its best quality.

    Returns the hull vertices as an (m, 2) array sorted by cost, with strictly increasing
    cost and quality. It starts at the cheapest point (best quality among points at that
    cost) and ends at the *cheapest* point reaching the maximum quality. RouterBench's
    ``get_non_descreasing_convex_hull_of`` also keeps points further right that tie the
    maximum; we drop them because they are dominated and, through the "largest cost" of
    :func:`aiq_table`, would otherwise stretch every router's cost axis.

    Andrew's monotone chain: O(n log n) with a Python loop over the sorted points, the one
    place in this module that is not vectorised, because the hull is a sequential stack
    construction (sweeps have tens to hundreds of points).
    """
    pts = _points(points)
    order = np.lexsort((pts[:, 1], pts[:, 0]))
    pts = pts[order]
    # one point per cost: the best quality at that cost
    costs, first = np.unique(pts[:, 0], return_index=True)
    quality = np.maximum.reduceat(pts[:, 1], first)
    hull: list[int] = []
    for i in range(costs.size):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # drop b if it is on or below the chord a -> i (cross product >= 0)
            cross = ((costs[b] - costs[a]) * (quality[i] - quality[a])
                     - (quality[b] - quality[a]) * (costs[i] - costs[a]))
            if cross >= 0:
                hull.pop()
            else:
                break
        hull.append(i)
    idx = np.asarray(hull)
    hq = quality[idx]
    top = int(np.argmax(hq))  # first (cheapest) vertex reaching the best quality
    idx = idx[: top + 1]
    return np.column_stack((costs[idx], quality[idx]))


def aiq(points: ArrayLike, max_cost: float | None = None) -> float:
    """Average Improvement in Quality of one router's sweep (RouterBench ``calc_AIQ``).

    The hull is extended flat from its last vertex to ``max_cost`` and the trapezoid area
    under it is divided by ``max_cost``. As in RouterBench the area starts at the router's
    own cheapest point, not at 0: budgets below what the router can spend count as quality
    0, which is what penalises a router that cannot be made cheap. The result is the mean
    quality attainable over budgets uniform in [0, max_cost], so it lies in
    [0, max quality] for qualities >= 0.

    ``max_cost`` must be the same for every router compared (use :func:`aiq_table`); ``None``
    uses this router's own hull end. If ``max_cost`` is 0 (every point is free), the value
    is the limit of that average, the best quality at cost 0 (RouterBench divides by zero).
    """
    hull = upper_convex_hull(points)
    end = float(hull[-1, 0])
    if max_cost is None:
        limit = end
    else:
        limit = _scalar(max_cost, "max_cost")
        if limit < end:
            raise ValidationError(
                f"max_cost {limit:g} is below this router's hull end {end:g}; "
                f"use the largest hull cost among the compared routers", field="max_cost")
    if limit == 0.0:
        return float(hull[-1, 1])
    curve = np.vstack((hull, [limit, hull[-1, 1]]))
    return float(np.trapezoid(curve[:, 1], curve[:, 0]) / limit)


def aiq_table(curves: Mapping[str, ArrayLike]) -> dict[str, float]:
    """AIQ of several routers on one common cost axis (RouterBench ``calc_AIQ``).

    The common axis ends at the largest *hull* cost among the routers, exactly as
    RouterBench takes ``max`` over the non-decreasing hulls and not over the raw points:
    a router that spends more for no extra quality does not stretch everyone's axis.
    AIQ values are only comparable inside one table, because that end point depends on
    which routers are compared.
    """
    hulls = {name: upper_convex_hull(_points(pts, field=f"curves[{name!r}]"))
             for name, pts in curves.items()}
    if not hulls:
        return {}
    max_cost = max(float(h[-1, 0]) for h in hulls.values())
    return {name: aiq(h, max_cost) for name, h in hulls.items()}


def cost_at_quality(points: ArrayLike, target_quality: float) -> float | None:
    """Cheapest total cost at which the router's hull reaches ``target_quality``.

    Read off the hull, not the raw points, for the same reason as AIQ: a mix of two
    settings achieves every point between them, so the cheapest way to a target quality is
    linear interpolation between the two hull vertices around it. ``None`` when even the
    best setting stays below the target (no extrapolation). Spec §6 uses it with the best
    single model's quality as the target.
    """
    target = _scalar(target_quality, "target_quality")
    hull = upper_convex_hull(points)
    reached = np.flatnonzero(hull[:, 1] >= target)
    if reached.size == 0:
        return None
    k = int(reached[0])
    if k == 0:
        return float(hull[0, 0])
    (c0, q0), (c1, q1) = hull[k - 1], hull[k]
    return float(c0 + (target - q0) * (c1 - c0) / (q1 - q0))


def hull_quality_at(reference_points: ArrayLike, cost: ArrayLike) -> float | FloatArray:
    """Quality of the reference frontier (e.g. the single models' hull) at a given total cost.

    The frontier is :func:`upper_convex_hull` of ``reference_points``: mixing two single
    models reaches every point of the chord between them. Between vertices it is interpolated
    linearly; past the last vertex it stays flat at the best quality (paying more buys
    nothing); below the cheapest vertex it is that vertex's quality. The last rule is the
    conservative choice for a router cheaper than every single model: it is compared with
    the cheapest single model, which it undercuts, and not with quality 0. A scalar cost in
    gives a float out, an array gives an array.
    """
    hull = upper_convex_hull(reference_points)
    c = np.asarray(cost, dtype=np.float64)
    if not np.all(np.isfinite(c)):
        raise ValidationError("cost contains NaN or infinite values", field="cost")
    if np.any(c < 0):
        raise ValidationError("cost must be >= 0", field="cost")
    out = np.interp(c, hull[:, 0], hull[:, 1])   # np.interp is flat outside the vertices
    return float(out) if out.ndim == 0 else out


def gain_over_hull(reference_points: ArrayLike, cost: float, quality: float) -> float:
    """Quality gain of one operating point over the reference frontier at the same cost:
    ``quality - hull_quality_at(reference_points, cost)``. With the single models as the
    reference, > 0 means the router beats every mix of single models that costs as much."""
    q = _scalar(quality, "quality")
    c = _scalar(cost, "cost")
    return q - float(hull_quality_at(reference_points, c))


def best_gain_over_hull(reference_points: ArrayLike, points: ArrayLike) -> float:
    """The largest :func:`gain_over_hull` over a router's sweep points (its best setting)."""
    pts = _points(points)
    return float(np.max(pts[:, 1] - hull_quality_at(reference_points, pts[:, 0])))


def cost_share_at_parity(points: ArrayLike, best_quality: float, best_cost: float,
                         tolerance: float = 0.005) -> float | None:
    """Cost, as a share of the best single model's, of the cheapest sweep point within
    ``tolerance`` (0.005 = 0.5 points) of that model's quality; ``None`` if none is.

    Read off the measured sweep points, not the hull (unlike :func:`cost_at_quality`): it
    answers "which setting of this router matches the best model, and what does it cost",
    a setting a user can run. ``best_cost`` must be > 0.
    """
    pts = _points(points)
    q = _scalar(best_quality, "best_quality")
    c = _scalar(best_cost, "best_cost")
    tol = _scalar(tolerance, "tolerance")
    if c <= 0:
        raise ValidationError("best_cost must be > 0", field="best_cost")
    if tol < 0:
        raise ValidationError("tolerance must be >= 0", field="tolerance")
    ok = pts[:, 1] >= q - tol - 1e-12
    if not ok.any():
        return None
    return float(pts[ok, 0].min() / c)


# ---------------------------------------------------------------------------------------
# performance gap recovered (RouteLLM)
# ---------------------------------------------------------------------------------------

def strong_call_share(cost: ArrayLike, weak_cost: float, strong_cost: float) -> FloatArray:
    """Cost-normalised "strong-call equivalent" share: ``(cost - weak) / (strong - weak)``.

    RouteLLM's x-axis is the fraction of calls sent to the strong model, which only exists
    for two-model routers. This share is the fraction of the weak-to-strong cost gap a router
    spends, using the total costs of running all tasks on the weak and on the strong model
    alone. For a two-model router with fixed per-call prices it *is* RouteLLM's call share;
    for a multi-model router it counts a mid-priced call as a partial strong call. Not
    clipped: below 0 means cheaper than always-weak, above 1 (e.g. a cascade that pays for
    both calls) means dearer than always-strong.
    """
    c = _vector(cost, "cost", nonnegative=True)
    weak = _scalar(weak_cost, "weak_cost")
    strong = _scalar(strong_cost, "strong_cost")
    if not strong > weak:
        raise ValidationError(f"strong_cost ({strong:g}) must exceed weak_cost ({weak:g})",
                              field="strong_cost")
    return (c - weak) / (strong - weak)


def pgr(quality: ArrayLike, weak_quality: float, strong_quality: float) -> float | FloatArray:
    """Performance gap recovered: 0 at the weak model's quality, 1 at the strong model's.

    ``(quality - weak) / (strong - weak)``; not clipped, so a router that beats the strong
    model shows PGR > 1. A scalar in gives a float out, an array gives an array.
    """
    weak, strong = _gap(weak_quality, strong_quality)
    q = np.asarray(quality, dtype=np.float64)
    if not np.all(np.isfinite(q)):
        raise ValidationError("quality contains NaN or infinite values", field="quality")
    out = (q - weak) / (strong - weak)
    return float(out) if out.ndim == 0 else out


def _pgr_curve(curve_share: ArrayLike, curve_quality: ArrayLike, weak_q: float,
               strong_q: float) -> tuple[FloatArray, FloatArray]:
    """Sweep sorted by share with one PGR value per distinct share.

    Duplicate shares are averaged, as RouteLLM's ``evaluate.py`` does for its random router
    (``groupby("strong_percentage").mean()``); without it the trapezoid and the crossing
    search would depend on the order of tied points.
    """
    share = _vector(curve_share, "curve_share")
    quality = _vector(curve_quality, "curve_quality")
    _same_length(share, quality, "curve_share", "curve_quality")
    gain = np.asarray(pgr(quality, weak_q, strong_q), dtype=np.float64).reshape(-1)
    uniq, inverse, counts = np.unique(share, return_inverse=True, return_counts=True)
    mean_gain = np.bincount(inverse, weights=gain) / counts
    return uniq, mean_gain


def apgr(curve_share: ArrayLike, curve_quality: ArrayLike, weak_q: float,
         strong_q: float) -> float:
    """Average performance gap recovered over a router's sweep (RouteLLM ``apgr_metric``).

    RouteLLM computes ``(AUC - weak_auc) / (strong_auc - weak_auc)`` with trapezoids over
    ``strong_percentage / 100`` of the measured points; algebraically that is the trapezoid
    mean of PGR over the swept share range, which is what we compute. Its sweeps always span
    0%..100% (thresholds at the min and max win rate), so it is the integral of PGR over
    [0, 1]; for a sweep that covers less, it is the average over the covered range, as in
    their code. A single distinct share (degenerate range) gives that point's PGR, the
    limit of the average.
    """
    share, gain = _pgr_curve(curve_share, curve_quality, weak_q, strong_q)
    if share.size == 1:
        return float(gain[0])
    return float(np.trapezoid(gain, share) / (share[-1] - share[0]))


def cpt(curve_share: ArrayLike, curve_quality: ArrayLike, weak_q: float, strong_q: float,
        target: float) -> float | None:
    """Call-performance threshold: smallest share at which the sweep reaches PGR ``target``.

    ``target`` is a fraction (0.5 for CPT(50%), 0.8 for CPT(80%)); the result is a share
    (fraction, 0.5 = 50% strong calls), linearly interpolated between the two measured
    points around the first crossing. RouteLLM's ``pct_call_metric`` calls
    ``np.interp(target_quality, accuracy, strong_percentage)``, which assumes the accuracy
    column increases with the share and clamps to the end points; on such curves our value
    is the same. We walk the curve instead, so a non-monotone sweep gives its first
    crossing, and return ``None`` when the target is never reached instead of clamping to
    the last share. If the cheapest point already reaches the target, its share is returned.
    """
    goal = _scalar(target, "target")
    share, gain = _pgr_curve(curve_share, curve_quality, weak_q, strong_q)
    reached = np.flatnonzero(gain >= goal)
    if reached.size == 0:
        return None
    k = int(reached[0])
    if k == 0:
        return float(share[0])
    s0, g0, s1, g1 = share[k - 1], gain[k - 1], share[k], gain[k]
    return float(s0 + (goal - g0) * (s1 - s0) / (g1 - g0))
