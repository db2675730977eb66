"""Metrics (spec §6): hand-computed values for every function plus hypothesis properties.

Every expected number below is worked out in the comment next to it, so a failing test
says which arithmetic disagrees.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from evoroute.core.errors import EvoRouteError, ValidationError
from evoroute.evaluation.metrics import (
    aiq,
    aiq_table,
    apgr,
    best_gain_over_hull,
    cost_at_quality,
    cost_share_at_parity,
    cpt,
    cumulative_cost,
    cumulative_regret,
    gain_over_hull,
    gap_to_oracle,
    hull_quality_at,
    pgr,
    strong_call_share,
    summarize,
    upper_convex_hull,
)

# --------------------------------------------------------------------------- summarize


def test_summarize_hand_computed():
    out = summarize([1, 0, 1, 0.5], [0.1, 0.2, 0.3, 0.4], [1, 2, 3, 4])
    assert out["n"] == 4
    assert out["quality"] == pytest.approx(0.625)          # 2.5 / 4
    assert out["cost_usd"] == pytest.approx(1.0)            # 0.1+0.2+0.3+0.4
    assert out["cost_per_query"] == pytest.approx(0.25)     # 1.0 / 4
    assert out["latency_mean"] == pytest.approx(2.5)
    assert out["latency_p50"] == pytest.approx(2.5)         # between 2 and 3
    assert out["latency_p95"] == pytest.approx(3.85)        # rank 0.95*3 = 2.85 -> 3 + 0.85
    assert out["cost_per_success"] == pytest.approx(0.4)    # 1.0 / 2.5 successes


def test_summarize_no_success_is_infinite_cost_per_success():
    out = summarize([0, 0], [0.1, 0.3], [1.0, 1.0])
    assert out["quality"] == 0.0
    assert out["cost_per_success"] == math.inf
    assert out["cost_usd"] == pytest.approx(0.4)


def test_summarize_single_task():
    out = summarize([1.0], [0.5], [2.0])
    assert out["n"] == 1
    assert out["latency_p50"] == out["latency_p95"] == 2.0
    assert out["cost_per_success"] == pytest.approx(0.5)


@pytest.mark.parametrize("scores, costs, lats, field", [
    ([1, 0], [0.1], [1, 1], "costs"),                 # lengths differ
    ([1, 0], [0.1, 0.1], [1], "latencies"),
    ([1.5], [0.1], [1], "scores"),                    # score out of [0, 1]
    ([1], [-0.1], [1], "costs"),                      # negative cost
    ([1], [0.1], [-1], "latencies"),
    ([], [], [], "scores"),                           # nothing to summarise
    ([float("nan")], [0.1], [1], "scores"),
    ([[1, 0]], [[0.1, 0.1]], [[1, 1]], "scores"),     # not 1-D
])
def test_summarize_rejects_bad_input(scores, costs, lats, field):
    with pytest.raises(ValidationError) as err:
        summarize(scores, costs, lats)
    assert err.value.field == field
    assert isinstance(err.value, EvoRouteError)


# --------------------------------------------------------------------------- hull


def test_hull_keeps_concave_increasing_points():
    # (2, .7) is above the chord (1,.5)-(3,.8), which is at .65 there
    pts = [(1, 0.5), (2, 0.7), (3, 0.8)]
    np.testing.assert_allclose(upper_convex_hull(pts), pts)


def test_hull_drops_dominated_and_below_chord_points():
    # (2, .4) shares cost 2 with (2, .7) -> best quality at that cost kept
    # (2.5, .6) is below the chord (2,.7)-(3,.8), which is at .75 there
    pts = [(3, 0.8), (2, 0.4), (1, 0.5), (2.5, 0.6), (2, 0.7)]
    np.testing.assert_allclose(upper_convex_hull(pts), [(1, 0.5), (2, 0.7), (3, 0.8)])


def test_hull_drops_non_concave_point():
    # (1, .2) is below the chord (0,0)-(2,1), at .5: the mix of the two ends beats it
    np.testing.assert_allclose(upper_convex_hull([(0, 0), (1, 0.2), (2, 1)]),
                               [(0, 0), (2, 1)])


def test_hull_drops_collinear_middle_point():
    np.testing.assert_allclose(upper_convex_hull([(0, 0), (1, 0.5), (2, 1)]),
                               [(0, 0), (2, 1)])


def test_hull_stops_at_best_quality():
    # decreasing tail removed (non-decreasing hull)
    np.testing.assert_allclose(upper_convex_hull([(1, 0.5), (2, 0.9), (3, 0.7)]),
                               [(1, 0.5), (2, 0.9)])
    # a costlier point that only ties the best quality is dominated too
    np.testing.assert_allclose(upper_convex_hull([(1, 0.5), (2, 0.9), (3, 0.9)]),
                               [(1, 0.5), (2, 0.9)])


def test_hull_single_point_and_duplicate_costs():
    np.testing.assert_allclose(upper_convex_hull([(2.0, 0.6)]), [(2.0, 0.6)])
    np.testing.assert_allclose(upper_convex_hull([2.0, 0.6]), [(2.0, 0.6)])
    np.testing.assert_allclose(upper_convex_hull([(1, 0.3), (1, 0.6), (1, 0.1)]), [(1, 0.6)])


def test_hull_cheapest_point_is_best_gives_one_vertex():
    # the cheapest setting is also the best: everything else is dominated
    np.testing.assert_allclose(upper_convex_hull([(0.5, 0.9), (1, 0.8), (2, 0.85)]),
                               [(0.5, 0.9)])


@pytest.mark.parametrize("bad", [[], [(1, 2, 3)], [(-1, 0.5)], [(1, float("inf"))],
                                 [("a", "b")]])
def test_hull_rejects_bad_points(bad):
    with pytest.raises(ValidationError):
        upper_convex_hull(bad)


# --------------------------------------------------------------------------- AIQ


def test_aiq_hand_computed():
    pts = [(1, 0.5), (2, 0.7), (3, 0.8)]
    # area: 1..2 -> .6, 2..3 -> .75, flat 3..4 -> .8; total 2.15 / 4
    assert aiq(pts, 4.0) == pytest.approx(0.5375)
    # own hull end as the axis: 1.35 / 3
    assert aiq(pts) == pytest.approx(0.45)


def test_aiq_dominated_point_does_not_count():
    pts = [(1, 0.5), (2, 0.7), (3, 0.8)]
    assert aiq(pts + [(2.5, 0.6), (3.5, 0.8), (4, 0.1)], 4.0) == pytest.approx(0.5375)


def test_aiq_single_point():
    # quality 0 for budgets below 2, then .6 flat to 4: (4 - 2) * .6 / 4
    assert aiq([(2, 0.6)], 4.0) == pytest.approx(0.3)
    # on its own axis [0, 2] the single point covers no width: RouterBench gives 0 too,
    # which is why AIQ is only meaningful against other routers on a shared axis
    assert aiq([(2, 0.6)]) == 0.0


def test_aiq_free_router_is_its_quality():
    assert aiq([(0, 0.4), (0, 0.2)]) == pytest.approx(0.4)
    assert aiq([(0, 0.4)], 0.0) == pytest.approx(0.4)
    # free router on a wider axis: .4 over the whole [0, 2]
    assert aiq([(0, 0.4)], 2.0) == pytest.approx(0.4)


def test_aiq_rejects_axis_shorter_than_hull():
    with pytest.raises(ValidationError) as err:
        aiq([(1, 0.5), (3, 0.8)], 2.0)
    assert err.value.field == "max_cost"


def test_aiq_table_uses_largest_hull_cost():
    a = [(1, 0.5), (2, 0.7), (3, 0.8)]
    # b's point at cost 5 is below its best quality, so its hull ends at 4, not 5
    b = [(0.5, 0.6), (4, 0.65), (5, 0.6)]
    table = aiq_table({"a": a, "b": b})
    assert table["a"] == pytest.approx(2.15 / 4)                  # 0.5375
    assert table["b"] == pytest.approx(3.5 * 0.625 / 4)           # 0.546875
    assert aiq_table({}) == {}


def test_aiq_table_names_bad_router():
    with pytest.raises(ValidationError) as err:
        aiq_table({"good": [(1, 0.5)], "bad": [(-1, 0.5)]})
    assert "bad" in err.value.field


# --------------------------------------------------------------------------- cost at quality


def test_cost_at_quality_interpolates_on_hull():
    pts = [(1, 0.5), (2, 0.7), (3, 0.8)]
    assert cost_at_quality(pts, 0.75) == pytest.approx(2.5)  # halfway (2,.7)-(3,.8)
    assert cost_at_quality(pts, 0.5) == pytest.approx(1.0)
    assert cost_at_quality(pts, 0.4) == pytest.approx(1.0)   # cheapest point already there
    assert cost_at_quality(pts, 0.8) == pytest.approx(3.0)


def test_cost_at_quality_unreachable_is_none():
    assert cost_at_quality([(1, 0.5), (2, 0.7)], 0.71) is None
    assert cost_at_quality([(1, 0.5)], 0.6) is None


def test_cost_at_quality_uses_mix_not_raw_point():
    # raw (2.5, .6) does not reach .7; the hull (1,.5)-(3,.9) reaches it at 1 + .2/.4*2 = 2
    assert cost_at_quality([(1, 0.5), (3, 0.9), (2.5, 0.6)], 0.7) == pytest.approx(2.0)


# --------------------------------------------------------------------------- PGR family


def test_pgr_scalar_and_array():
    assert pgr(0.7, 0.5, 0.9) == pytest.approx(0.5)
    assert isinstance(pgr(0.7, 0.5, 0.9), float)
    np.testing.assert_allclose(pgr([0.5, 0.9, 1.0], 0.5, 0.9), [0.0, 1.0, 1.25])


@pytest.mark.parametrize("weak, strong", [(0.5, 0.5), (0.9, 0.5), (float("nan"), 0.9)])
def test_pgr_needs_a_gap(weak, strong):
    with pytest.raises(ValidationError):
        pgr(0.7, weak, strong)


def test_apgr_hand_computed():
    # PGR = [0, .75, 1]; trapezoids .5*(0+.75)/2 + .5*(.75+1)/2 = .1875 + .4375
    assert apgr([0, 0.5, 1], [0.5, 0.8, 0.9], 0.5, 0.9) == pytest.approx(0.625)


def test_apgr_random_router_is_one_half():
    share = np.linspace(0, 1, 11)
    quality = 0.5 + 0.4 * share  # random routing interpolates linearly
    assert apgr(share, quality, 0.5, 0.9) == pytest.approx(0.5)


def test_apgr_partial_range_averages_over_covered_range():
    # PGR = share on [.2, .6]: area .4 * .4 = .16 over width .4
    assert apgr([0.2, 0.6], [0.58, 0.74], 0.5, 0.9) == pytest.approx(0.4)


def test_apgr_duplicate_shares_are_averaged_and_order_free():
    # the two points at .5 average to .8, which is the hand-computed curve above
    assert apgr([0, 0.5, 0.5, 1], [0.5, 0.7, 0.9, 0.9], 0.5, 0.9) == pytest.approx(0.625)
    assert apgr([1, 0.5, 0, 0.5], [0.9, 0.9, 0.5, 0.7], 0.5, 0.9) == pytest.approx(0.625)


def test_apgr_single_point_is_its_pgr():
    assert apgr([0.3], [0.7], 0.5, 0.9) == pytest.approx(0.5)


def test_apgr_rejects_mismatched_curve():
    with pytest.raises(ValidationError):
        apgr([0, 1], [0.5], 0.5, 0.9)


def test_cpt_hand_computed_matches_routellm_interp():
    share, quality = [0, 0.5, 1], [0.5, 0.8, 0.9]  # PGR [0, .75, 1]
    # 50%: between (0, 0) and (.5, .75): .5 * .5 / .75
    assert cpt(share, quality, 0.5, 0.9, 0.5) == pytest.approx(1 / 3)
    # 80%: between (.5, .75) and (1, 1): .5 + .05 / .25 * .5
    assert cpt(share, quality, 0.5, 0.9, 0.8) == pytest.approx(0.6)
    for target in (0.2, 0.5, 0.8):  # RouteLLM's np.interp on the quality axis
        ref = np.interp(0.5 + target * 0.4, quality, share)
        assert cpt(share, quality, 0.5, 0.9, target) == pytest.approx(ref)


def test_cpt_unreachable_is_none():
    # best PGR on the curve is .75
    assert cpt([0, 0.5], [0.5, 0.8], 0.5, 0.9, 0.8) is None


def test_cpt_first_point_already_there():
    assert cpt([0.1, 0.5], [0.8, 0.9], 0.5, 0.9, 0.5) == pytest.approx(0.1)


def test_cpt_non_monotone_takes_first_crossing():
    # PGR [0, .6, .4, 1]: first crossing of .5 is on the first segment at .3 * .5 / .6
    quality = 0.5 + 0.4 * np.array([0, 0.6, 0.4, 1.0])
    assert cpt([0, 0.3, 0.6, 1], quality, 0.5, 0.9, 0.5) == pytest.approx(0.25)


def test_strong_call_share_reduces_to_call_fraction_for_two_models():
    # 10 tasks, weak costs .1, strong 1.0, 3 strong calls: 7*.1 + 3*1 = 3.7
    share = strong_call_share([3.7], weak_cost=1.0, strong_cost=10.0)
    np.testing.assert_allclose(share, [0.3])
    np.testing.assert_allclose(strong_call_share([10, 15, 20, 25], 10, 20), [0, 0.5, 1, 1.5])
    with pytest.raises(ValidationError):
        strong_call_share([1.0], 2.0, 2.0)


# --------------------------------------------------------------------------- per-step


def test_gap_to_oracle():
    assert gap_to_oracle(0.6, 0.9) == pytest.approx(0.3)
    assert gap_to_oracle(0.9, 0.9) == 0.0
    with pytest.raises(ValidationError):
        gap_to_oracle(float("nan"), 0.9)


def test_cumulative_regret_and_cost():
    np.testing.assert_allclose(cumulative_regret([1, 0, 1, 0], [1, 1, 1, 1]), [0, 1, 1, 2])
    np.testing.assert_allclose(cumulative_regret([0.5, 1], [1, 1]), [0.5, 0.5])
    assert cumulative_regret([], []).shape == (0,)
    np.testing.assert_allclose(cumulative_cost([0.1, 0.2, 0.3]), [0.1, 0.3, 0.6])
    with pytest.raises(ValidationError):
        cumulative_regret([1, 0], [1])
    with pytest.raises(ValidationError):
        cumulative_cost([0.1, -0.2])


# --------------------------------------------------------------------------- single-model hull
SINGLES = [(1.0, 0.6), (2.0, 0.8), (4.0, 0.9), (3.0, 0.7), (5.0, 0.85)]   # (3, .7), (5, .85) dominated


def test_hull_quality_at_interpolates_and_is_flat_outside():
    # hull vertices (1, .6), (2, .8), (4, .9)
    assert hull_quality_at(SINGLES, 1.5) == pytest.approx(0.7)
    assert hull_quality_at(SINGLES, 3.0) == pytest.approx(0.85)        # .8 + 1 * (.1 / 2)
    assert hull_quality_at(SINGLES, 10.0) == pytest.approx(0.9)        # flat past the best
    assert hull_quality_at(SINGLES, 0.2) == pytest.approx(0.6)         # the cheapest model's
    np.testing.assert_allclose(hull_quality_at(SINGLES, [1, 2, 4]), [0.6, 0.8, 0.9])
    assert hull_quality_at([(2.0, 0.5)], 7.0) == 0.5                     # one model
    with pytest.raises(ValidationError) as e:
        hull_quality_at(SINGLES, -1.0)
    assert e.value.field == "cost"


def test_gain_over_hull_hand_computed():
    assert gain_over_hull(SINGLES, 3.0, 0.88) == pytest.approx(0.03)   # .88 - .85
    assert gain_over_hull(SINGLES, 1.5, 0.65) == pytest.approx(-0.05)  # below the mix .7
    assert gain_over_hull(SINGLES, 0.5, 0.62) == pytest.approx(0.02)   # cheaper than all: vs .6
    # every single model's own point: 0 on the hull, < 0 when dominated
    assert gain_over_hull(SINGLES, 2.0, 0.8) == pytest.approx(0.0)
    assert gain_over_hull(SINGLES, 3.0, 0.7) == pytest.approx(-0.15)
    # best over a sweep: the point furthest above the hull
    sweep = [(1.0, 0.55), (1.5, 0.78), (3.0, 0.88), (6.0, 0.92)]       # gains -.05, .08, .03, .02
    assert best_gain_over_hull(SINGLES, sweep) == pytest.approx(0.08)
    with pytest.raises(ValidationError) as e:
        gain_over_hull(SINGLES, 1.0, float("nan"))
    assert e.value.field == "quality"


def test_cost_share_at_parity_takes_the_cheapest_point_within_tolerance():
    sweep = [(1.0, 0.80), (2.0, 0.8955), (3.0, 0.91), (2.5, 0.89)]
    # best single 0.9 for 4.0: within 0.5 pt means >= .895: (2, .8955) and (3, .91) -> 2 / 4
    assert cost_share_at_parity(sweep, 0.9, 4.0) == pytest.approx(0.5)
    assert cost_share_at_parity(sweep, 0.9, 4.0, tolerance=0.0) == pytest.approx(0.75)
    assert cost_share_at_parity(sweep, 0.9, 4.0, tolerance=0.1) == pytest.approx(0.25)
    assert cost_share_at_parity(sweep, 0.95, 4.0) is None                  # not reached
    # exactly at the tolerance counts (0.895 = 0.9 - 0.005)
    assert cost_share_at_parity([(1.0, 0.895)], 0.9, 2.0) == pytest.approx(0.5)
    # a router dearer than the model at parity: share > 1 is reported as such
    assert cost_share_at_parity([(6.0, 0.9)], 0.9, 4.0) == pytest.approx(1.5)
    for kw, field in (({"best_cost": 0.0}, "best_cost"), ({"tolerance": -0.1}, "tolerance")):
        args = {"points": sweep, "best_quality": 0.9, "best_cost": 4.0, **kw}
        with pytest.raises(ValidationError) as e:
            cost_share_at_parity(**args)
        assert e.value.field == field


# --------------------------------------------------------------------------- properties

# costs on a 0.1 grid and qualities on a 0.01 grid keep slopes well conditioned
point = st.tuples(st.integers(0, 1000).map(lambda c: c / 10),
                  st.integers(0, 100).map(lambda q: q / 100))
sweep = st.lists(point, min_size=1, max_size=30)


def _reference_aiq(pts: list[tuple[float, float]], max_cost: float) -> float:
    """Brute force, independent of the implementation: upper envelope at every data cost as
    the best chord over all pairs spanning it, made non-decreasing by a running max, then
    extended flat to max_cost."""
    arr = np.asarray(pts, dtype=float)
    xs = np.unique(arr[:, 0])
    env = np.empty(xs.size)
    for k, x in enumerate(xs):
        best = -np.inf
        for (x1, y1) in arr:
            for (x2, y2) in arr:
                if x1 <= x <= x2:
                    y = y1 if x2 == x1 else y1 + (y2 - y1) * (x - x1) / (x2 - x1)
                    best = max(best, y)
        env[k] = best
    env = np.maximum.accumulate(env)
    area = np.trapezoid(env, xs) + (max_cost - xs[-1]) * env[-1]
    return area / max_cost


@settings(max_examples=200, deadline=None)
@given(sweep)
def test_hull_is_increasing_concave_and_covers_points(pts):
    hull = upper_convex_hull(pts)
    assert np.all(np.diff(hull[:, 0]) > 0)
    assert np.all(np.diff(hull[:, 1]) > 0)
    slopes = np.diff(hull[:, 1]) / np.diff(hull[:, 0])
    assert np.all(np.diff(slopes) <= 1e-9)
    # every vertex is an input point
    arr = np.asarray(pts)
    for c, q in hull:
        assert np.any((arr[:, 0] == c) & (arr[:, 1] == q))
    # every input point is on or under the hull (flat after its end)
    at = np.interp(arr[:, 0], hull[:, 0], hull[:, 1])
    assert np.all(arr[:, 1] <= at + 1e-9)
    assert hull[-1, 1] == arr[:, 1].max()
    assert hull[0, 0] == arr[:, 0].min()


@settings(max_examples=100, deadline=None)
@given(sweep, st.integers(0, 500).map(lambda e: e / 10))
def test_aiq_matches_brute_force_envelope(pts, extra):
    max_cost = max(c for c, _ in pts) + extra
    assume(max_cost > 0)
    assert aiq(pts, max_cost) == pytest.approx(_reference_aiq(pts, max_cost), abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(sweep, st.integers(0, 500).map(lambda e: e / 10))
def test_aiq_between_zero_and_best_quality(pts, extra):
    max_cost = max(c for c, _ in pts) + extra
    value = aiq(pts, max_cost)
    assert 0.0 <= value <= max(q for _, q in pts) + 1e-12


@settings(max_examples=200, deadline=None)
@given(sweep, st.data(), st.integers(0, 200).map(lambda d: d / 10),
       st.integers(0, 100).map(lambda d: d / 100), sweep)
def test_adding_dominated_point_never_changes_aiq(pts, data, dc, dq, other):
    c, q = data.draw(st.sampled_from(pts))
    dominated = (c + dc, max(q - dq, 0.0))  # no cheaper, no better than an existing point
    max_cost = max(max(x for x, _ in pts) + dc, 1.0)
    assert aiq(pts + [dominated], max_cost) == pytest.approx(aiq(pts, max_cost), abs=1e-12)
    before = aiq_table({"r": pts, "other": other})
    after = aiq_table({"r": pts + [dominated], "other": other})
    assert after == pytest.approx(before, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 100)), min_size=2,
                max_size=20, unique_by=lambda p: p[0]))
def test_apgr_equals_routellm_auc_formula(raw):
    raw = sorted(raw)
    share = np.array([s for s, _ in raw]) / 100
    quality = np.array([q for _, q in raw]) / 100
    assume(share[-1] > share[0])
    weak, strong = 0.3, 0.8
    # routellm/evals/evaluate.py: (AUC - weak_auc) / (strong_auc - weak_auc)
    auc = np.trapezoid(quality, share)
    weak_auc = np.trapezoid(np.full(share.size, weak), share)
    strong_auc = np.trapezoid(np.full(share.size, strong), share)
    expected = (auc - weak_auc) / (strong_auc - weak_auc)
    assert apgr(share, quality, weak, strong) == pytest.approx(expected, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 100), min_size=2, max_size=20, unique=True),
       st.lists(st.integers(0, 100), min_size=2, max_size=20, unique=True),
       st.integers(1, 99).map(lambda t: t / 100))
def test_cpt_equals_np_interp_on_increasing_curves(shares, quals, target):
    n = min(len(shares), len(quals))
    share = np.sort(np.array(shares[:n])) / 100
    quality = np.sort(np.array(quals[:n])) / 100
    weak, strong = quality[0], quality[-1]
    assume(strong > weak)
    ref = np.interp(weak + target * (strong - weak), quality, share)
    assert cpt(share, quality, weak, strong, target) == pytest.approx(ref, abs=1e-9)


@settings(max_examples=150, deadline=None)
@given(sweep, sweep)
def test_no_single_model_or_mix_beats_its_own_hull(singles, other):
    """A reference point, or any mix of two, never has a positive gain over the reference hull;
    a router's best gain is at least its gain at any one of its points."""
    pts = np.asarray(singles, dtype=float)
    for c, q in pts:
        assert gain_over_hull(pts, c, q) <= 1e-9
    a, b = pts[0], pts[-1]
    mid = 0.5 * (a + b)
    assert gain_over_hull(pts, mid[0], mid[1]) <= 1e-9
    best = best_gain_over_hull(pts, other)
    assert all(best >= gain_over_hull(pts, c, q) - 1e-12 for c, q in other)
    # the hull is non-decreasing in cost
    cs = np.linspace(0, 110, 50)
    assert np.all(np.diff(hull_quality_at(pts, cs)) >= -1e-12)
