"""Utility U = w_p·P̃ − w_c·C̃ − w_d·D̃ on normalised metrics — spec §3 step 7."""

from __future__ import annotations

import numpy as np

from evoroute.core.types import Weights


def reference_scale(values: np.ndarray) -> float:
    """C_ref / D_ref: the largest estimated mean among the step's candidates (1 if all zero, or
    so close to zero that dividing by it overflows: a subnormal float).

    The router passes every explored candidate, Pareto-dominated ones included, so the scale
    stays put when the filter prunes the most expensive model (docs/decisions.md).
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    top = float(v.max()) if v.size else 0.0
    return top if top >= np.finfo(float).tiny else 1.0


def utility(theta_p: np.ndarray, theta_c: np.ndarray, theta_d: np.ndarray, weights: Weights,
            c_ref: float = 1.0, d_ref: float = 1.0, raw_units: bool = False) -> np.ndarray:
    """Vectorised over any shape (models, or draws × models).

    Normalised mode (default): P̃ = clip(θ_P, 0, 1), C̃ = θ_C / C_ref, D̃ = θ_D / D_ref, so the
    paper's default weights (1, 0.1, 0.05) trade comparable quantities. Raw mode uses USD and
    seconds as the paper literally writes the formula.
    """
    p = np.clip(theta_p, 0.0, 1.0)
    if raw_units:
        c, d = np.asarray(theta_c, float), np.asarray(theta_d, float)
    else:
        c, d = np.asarray(theta_c, float) / c_ref, np.asarray(theta_d, float) / d_ref
    # a zero weight drops its term (0 · inf would be nan for an unbounded normalised value)
    return (weights.w_p * p - (weights.w_c * c if weights.w_c else 0.0)
            - (weights.w_d * d if weights.w_d else 0.0))
