"""Performance gap recovered (RouteLLM): strong-call share, PGR, APGR and CPT."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from evoroute.core.errors import ValidationError
from evoroute.evaluation.metrics._checks import FloatArray, _gap, _same_length, _scalar, _vector


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
