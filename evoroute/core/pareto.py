"""Pareto filter on (max P, min C, min D) — spec §3 step 5."""

from __future__ import annotations

import numpy as np


def pareto_mask(p: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """True for every point no other point dominates.

    j dominates i when P_j ≥ P_i, C_j ≤ C_i, D_j ≤ D_i with at least one strict. Exact
    duplicates do not dominate each other, so ties all survive. O(n²) over the handful of
    candidate models, vectorised.
    """
    p, c, d = (np.asarray(a, dtype=float) for a in (p, c, d))
    ge = (p[None, :] >= p[:, None]) & (c[None, :] <= c[:, None]) & (d[None, :] <= d[:, None])
    gt = (p[None, :] > p[:, None]) | (c[None, :] < c[:, None]) | (d[None, :] < d[:, None])
    dominated = (ge & gt).any(axis=1)   # row i: is there a j dominating i
    return ~dominated
