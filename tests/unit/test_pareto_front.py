"""pareto_mask on (max P, min C, min D): hand-worked fronts."""

from __future__ import annotations

import numpy as np

from evoroute.core.pareto import pareto_mask


def test_single_point_survives():
    assert pareto_mask([0.3], [1.0], [2.0]).tolist() == [True]


def test_strict_domination_on_every_metric():
    # B = (0.9, 1, 1) beats A = (0.5, 2, 3) on P, C and D.
    assert pareto_mask([0.5, 0.9], [2.0, 1.0], [3.0, 1.0]).tolist() == [False, True]


def test_weak_domination_one_strict_metric_is_enough():
    # Equal P and D, B cheaper: B dominates A.
    assert pareto_mask([0.7, 0.7], [2.0, 1.0], [1.0, 1.0]).tolist() == [False, True]
    # Equal C and D, B better: B dominates A.
    assert pareto_mask([0.6, 0.7], [1.0, 1.0], [1.0, 1.0]).tolist() == [False, True]
    # Equal P and C, B faster: B dominates A.
    assert pareto_mask([0.7, 0.7], [1.0, 1.0], [2.0, 1.5]).tolist() == [False, True]


def test_exact_ties_all_survive():
    assert pareto_mask([0.5] * 3, [1.0] * 3, [2.0] * 3).tolist() == [True, True, True]


def test_trade_offs_survive():
    # strong: best P, worst C; cheap: worst P, best C; fast: middle P, best D.
    p = [0.9, 0.5, 0.7]
    c = [10.0, 1.0, 5.0]
    d = [5.0, 4.0, 1.0]
    assert pareto_mask(p, c, d).tolist() == [True, True, True]


def test_mixed_front_hand_computed():
    # 0: (0.9, 10, 5)  front (best P)
    # 1: (0.8, 12, 6)  dominated by 0 (worse on all three)
    # 2: (0.5,  1, 4)  front (cheapest)
    # 3: (0.5,  1, 4)  exact tie with 2: both survive
    # 4: (0.4,  1, 4)  dominated by 2 (equal C, D; lower P)
    # 5: (0.6,  3, 1)  front (fastest)
    # 6: (0.6,  3, 1.5) dominated by 5
    p = np.array([0.9, 0.8, 0.5, 0.5, 0.4, 0.6, 0.6])
    c = np.array([10, 12, 1, 1, 1, 3, 3], float)
    d = np.array([5, 6, 4, 4, 4, 1, 1.5])
    assert pareto_mask(p, c, d).tolist() == [True, False, True, True, False, True, False]


def test_empty_input_gives_empty_mask():
    assert pareto_mask([], [], []).shape == (0,)


def test_result_matches_brute_force_loop():
    rng = np.random.default_rng(7)
    for _ in range(50):
        n = int(rng.integers(1, 9))
        # coarse grid so ties and weak domination happen often
        p, c, d = (rng.integers(0, 4, n).astype(float) for _ in range(3))
        expected = []
        for i in range(n):
            dom = any(p[j] >= p[i] and c[j] <= c[i] and d[j] <= d[i]
                      and (p[j] > p[i] or c[j] < c[i] or d[j] < d[i]) for j in range(n))
            expected.append(not dom)
        assert pareto_mask(p, c, d).tolist() == expected
