"""Normal-Inverse-Gamma posterior sampling for Thompson sampling — spec §3 step 6.

For a metric x with n observations, sample mean x̄ and sample variance s²:
    μ = x̄, λ = n, α = n/2, β = (n−1)·max(s², floor)/2
    σ² ~ InvGamma(α, β),  θ ~ N(μ, σ²/λ).
The floor keeps β > 0 when all observations agree (e.g. a model that never failed), so the
posterior still explores; it needs n ≥ 2, which is why models with n < n_min (default 2) are
treated as unexplored instead.
"""

from __future__ import annotations

import numpy as np

# Variance floors per metric. P is in [0, 1]: a floor of 0.01 (sd 0.1) keeps a perfect record
# from looking certain after few observations. Cost and duration floors are relative to the
# mean (sd ≥ 5 % of the mean) plus an absolute epsilon for zero-cost models.
P_VAR_FLOOR = 1e-2
REL_SD_FLOOR = 0.05
ABS_VAR_FLOOR = 1e-18


def variance_floor(mean: np.ndarray, metric: str) -> np.ndarray:
    mean = np.asarray(mean, dtype=float)
    if metric == "p":
        return np.full_like(mean, P_VAR_FLOOR)
    return (REL_SD_FLOOR * np.abs(mean)) ** 2 + ABS_VAR_FLOOR


def nig_params(mean: np.ndarray, var: np.ndarray, n: np.ndarray, floor: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(μ, λ, α, β) of the NIG posterior from sample statistics (arrays over models)."""
    n = np.asarray(n, dtype=float)
    if np.any(n < 2):
        raise ValueError("NIG posterior needs n >= 2 observations per model")
    var = np.maximum(np.asarray(var, dtype=float), floor)
    return np.asarray(mean, dtype=float), n, n / 2.0, (n - 1.0) * var / 2.0


def nig_sample(mean: np.ndarray, var: np.ndarray, n: np.ndarray, floor: np.ndarray,
               rng: np.random.Generator, size: int | None = None) -> np.ndarray:
    """Draw θ per model. ``size=None`` gives shape (m,); ``size=K`` gives (K, m)."""
    mu, lam, alpha, beta = nig_params(mean, var, n, floor)
    shape = mu.shape if size is None else (size, *mu.shape)
    sigma2 = beta / rng.gamma(alpha, 1.0, size=shape)      # InvGamma(α, β) = β / Gamma(α, 1)
    return mu + rng.standard_normal(shape) * np.sqrt(sigma2 / lam)


def nig_sample_effective(mean: np.ndarray, var: np.ndarray, lam: np.ndarray, floor: np.ndarray,
                         rng: np.random.Generator, size: int | None = None) -> np.ndarray:
    """θ per model from a NIG posterior whose pseudo-count λ is an *effective* sample size
    (query-aware estimates: λ = κ + n_eff, not an integer count): μ, λ, α = λ/2,
    β = λ·max(v, floor)/2 with v the pooled (not unbiased) variance, so E[σ²] = λv/(λ−2) → v.
    Small λ means heavy-tailed, wide draws: little local evidence explores more."""
    lam = np.maximum(np.asarray(lam, dtype=float), 1e-6)
    v = np.maximum(np.asarray(var, dtype=float), floor)
    mu = np.asarray(mean, dtype=float)
    alpha, beta = lam / 2.0, lam * v / 2.0
    shape = mu.shape if size is None else (size, *mu.shape)
    sigma2 = beta / rng.gamma(alpha, 1.0, size=shape)
    return mu + rng.standard_normal(shape) * np.sqrt(sigma2 / lam)


def posterior_mean(mean: np.ndarray) -> np.ndarray:
    """E[θ] of the NIG posterior is the sample mean (used in inference and the no-TS ablation)."""
    return np.asarray(mean, dtype=float)
