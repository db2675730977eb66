"""Normal-Inverse-Gamma posterior: parameters by hand, sampling moments by Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest

from evoroute.core.posterior import (
    ABS_VAR_FLOOR,
    P_VAR_FLOOR,
    REL_SD_FLOOR,
    nig_params,
    nig_sample,
    posterior_mean,
    variance_floor,
)


def test_params_by_hand():
    # x = [0, 1, 1, 1]: mean 0.75, sample variance s² = (0.5625 + 3·0.0625)/3 = 0.25
    mu, lam, alpha, beta = nig_params(np.array([0.75]), np.array([0.25]), np.array([4]),
                                      np.array([0.01]))
    assert mu.tolist() == [0.75]
    assert lam.tolist() == [4.0]             # λ = n
    assert alpha.tolist() == [2.0]           # α = n / 2
    assert beta.tolist() == [pytest.approx(0.375)]   # β = (n − 1)·s² / 2 = 3·0.25/2


def test_floor_replaces_small_variance():
    # all observations equal: s² = 0 -> floor 0.01; β = (10 − 1)·0.01/2 = 0.045
    _, _, alpha, beta = nig_params(np.array([1.0]), np.array([0.0]), np.array([10]),
                                   np.array([0.01]))
    assert alpha.tolist() == [5.0]
    assert beta.tolist() == [pytest.approx(0.045)]


def test_params_need_two_observations():
    with pytest.raises(ValueError):
        nig_params(np.array([0.5, 0.5]), np.array([0.1, 0.1]), np.array([3, 1]), np.array([0.01, 0.01]))


def test_variance_floor_by_metric():
    assert variance_floor(np.array([0.3, 0.9]), "p").tolist() == [P_VAR_FLOOR, P_VAR_FLOOR]
    # cost mean 0.002 USD: (0.05·0.002)² + 1e-18 = 1e-8 + 1e-18
    got = variance_floor(np.array([0.002, 0.0]), "c")
    assert got[0] == pytest.approx((REL_SD_FLOOR * 0.002) ** 2 + ABS_VAR_FLOOR, rel=1e-12)
    assert got[1] == ABS_VAR_FLOOR          # a free model still has β > 0


def test_sample_shapes():
    rng = np.random.default_rng(0)
    args = (np.array([0.5, 0.2, 0.9]), np.array([0.1, 0.1, 0.1]), np.array([5, 6, 7]),
            np.full(3, 1e-3))
    assert nig_sample(*args, rng).shape == (3,)
    assert nig_sample(*args, rng, size=11).shape == (11, 3)


def test_sample_moments_match_nig():
    """E[θ] = μ; Var[θ] = E[σ²]/λ = β/(α−1)/λ for α > 1 (θ is Student-t with 2α dof)."""
    rng = np.random.default_rng(42)
    mean = np.array([0.75, 3.0e-3, 12.0])
    var = np.array([0.25, 1.0e-6, 4.0])
    n = np.array([4, 10, 30])
    floor = np.array([1e-2, 1e-12, 1e-6])
    draws = nig_sample(mean, var, n, floor, rng, size=400_000)
    # hand values: α = n/2 = (2, 5, 15); β = (n−1)s²/2 = (0.375, 4.5e-6, 58)
    #              Var = β/(α−1)/n = (0.375/1/4, 4.5e-6/4/10, 58/14/30)
    expected_var = np.array([0.09375, 1.125e-7, 58 / 14 / 30])
    # within 5 standard errors of the mean
    assert np.all(np.abs(draws.mean(axis=0) - mean) <= 5 * np.sqrt(expected_var / 4e5))
    # α = 2 has infinite fourth moment, so its sample variance converges slowly: looser check
    np.testing.assert_allclose(draws.var(axis=0)[1:], expected_var[1:], rtol=0.03)
    assert draws.var(axis=0)[0] == pytest.approx(expected_var[0], rel=0.15)


def test_sampling_is_seeded():
    args = (np.array([0.5]), np.array([0.1]), np.array([5]), np.array([1e-3]))
    a = nig_sample(*args, np.random.default_rng(3), size=5)
    b = nig_sample(*args, np.random.default_rng(3), size=5)
    c = nig_sample(*args, np.random.default_rng(4), size=5)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_draws_concentrate_as_n_grows():
    rng = np.random.default_rng(1)
    spreads = []
    for n in (4, 40, 400, 4000):
        d = nig_sample(np.array([0.6]), np.array([0.24]), np.array([n]), np.array([1e-2]), rng, size=20_000)
        spreads.append(float(d.std()))
    # sd ≈ sqrt(β/(α−1)/n) ≈ sqrt(0.24/n) for large n: 0.49/sqrt(n)
    assert spreads == sorted(spreads, reverse=True)
    assert spreads[-1] == pytest.approx(np.sqrt(0.24 * 3999 / 2 / (2000 - 1) / 4000), rel=0.05)


def test_posterior_mean_is_sample_mean():
    assert posterior_mean([0.1, 0.7]).tolist() == [0.1, 0.7]
