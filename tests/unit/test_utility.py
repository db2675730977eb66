"""Utility U = w_p·P̃ − w_c·C̃ − w_d·D̃: normalised and raw modes, clipping, reference scales."""

from __future__ import annotations

import numpy as np
import pytest

from evoroute.core.errors import ValidationError
from evoroute.core.types import Weights
from evoroute.core.utility import reference_scale, utility


def test_normalised_by_hand():
    # P = 0.8, C = 0.002 with C_ref = 0.004 -> 0.5, D = 3 with D_ref = 6 -> 0.5
    # U = 1·0.8 − 0.1·0.5 − 0.05·0.5 = 0.8 − 0.05 − 0.025 = 0.725
    u = utility(np.array([0.8]), np.array([0.002]), np.array([3.0]), Weights(), c_ref=0.004, d_ref=6.0)
    assert u.tolist() == [pytest.approx(0.725)]


def test_raw_units_by_hand():
    # paper-literal: U = 1·0.8 − 0.1·0.002 − 0.05·3 = 0.8 − 0.0002 − 0.15 = 0.6498 (refs ignored)
    u = utility(np.array([0.8]), np.array([0.002]), np.array([3.0]), Weights(), c_ref=0.004,
                d_ref=6.0, raw_units=True)
    assert u.tolist() == [pytest.approx(0.6498)]


def test_performance_is_clipped_to_unit_interval():
    # θ_P = 1.3 -> 1; θ_P = −0.2 -> 0. With C = D = 0 the utility is w_p·P̃.
    u = utility(np.array([1.3, -0.2, 0.4]), np.zeros(3), np.zeros(3), Weights(2.0, 0.1, 0.05))
    assert u.tolist() == [pytest.approx(2.0), pytest.approx(0.0), pytest.approx(0.8)]


def test_cost_and_duration_are_not_clipped():
    # A sampled negative cost is kept (it is only the draw); U = 0.5 + 0.1·0.5 + 0.05·1 = 0.6
    u = utility(np.array([0.5]), np.array([-1.0]), np.array([-2.0]), Weights(), c_ref=2.0, d_ref=2.0)
    assert u.tolist() == [pytest.approx(0.6)]


def test_vectorised_over_draws_by_models():
    rng = np.random.default_rng(0)
    p, c, d = rng.random((3, 5, 4))
    w = Weights(1.0, 0.3, 0.2)
    u = utility(p, c, d, w, c_ref=2.0, d_ref=4.0)
    assert u.shape == (5, 4)
    np.testing.assert_allclose(u, p - 0.3 * c / 2.0 - 0.2 * d / 4.0)


def test_weights_order_preference():
    # cheap: P 0.70, C 1; strong: P 0.80, C 10 (C_ref = 10). D equal.
    p, c, d = np.array([0.70, 0.80]), np.array([1.0, 10.0]), np.array([1.0, 1.0])
    # w_c = 0.1: U = (0.70 − 0.01, 0.80 − 0.1) = (0.69, 0.70) -> strong
    assert int(np.argmax(utility(p, c, d, Weights(1, 0.1, 0), 10.0, 1.0))) == 1
    # w_c = 0.2: U = (0.70 − 0.02, 0.80 − 0.2) = (0.68, 0.60) -> cheap
    assert int(np.argmax(utility(p, c, d, Weights(1, 0.2, 0), 10.0, 1.0))) == 0


def test_reference_scale():
    assert reference_scale(np.array([0.5, 2.0, 1.0])) == 2.0
    assert reference_scale(np.array([0.0, 0.0])) == 1.0         # all free: no division by 0
    assert reference_scale(np.array([np.nan, 3.0])) == 3.0      # unknown means are ignored
    assert reference_scale(np.array([])) == 1.0


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_weights_validation(bad):
    with pytest.raises(ValidationError) as e:
        Weights(1.0, bad, 0.05)
    assert e.value.field == "w_c"


def test_weights_parse():
    assert Weights.parse("1, 0.2,0.3").as_tuple() == (1.0, 0.2, 0.3)
    for text in ("1,2", "a,b,c"):
        with pytest.raises(ValidationError):
            Weights.parse(text)
