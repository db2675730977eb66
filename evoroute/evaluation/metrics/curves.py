"""Cost / quality curves (RouterBench): the upper convex hull of a router's cost-knob sweep,
AIQ over it, the cost at a target quality and the gain over the single models' hull."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike

from evoroute.core.errors import ValidationError
from evoroute.evaluation.metrics._checks import FloatArray, _points, _scalar


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
