"""What both query-aware designs share: the estimates they return, the empirical-Bayes role
prior (the role estimate shrunk toward the global one) and the pooling of a prior with local
evidence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evoroute.policy.estimators.neighbours import finite_or_zero
from evoroute.retrieval.index import Estimates, ExperienceIndex, Retrieval


@dataclass
class QueryEstimates(Estimates):
    """Estimates for one step: posterior means and data variances per model and metric, the
    NIG pseudo-counts λ behind each, and what evidence produced them."""

    lam_p: np.ndarray = field(default_factory=lambda: np.empty(0))
    lam_c: np.ndarray = field(default_factory=lambda: np.empty(0))
    evidence: list[dict[str, Any]] = field(default_factory=list)
    fallback: str | None = None          # "global" when the step's role has no record
    neighbours: int = 0                  # records of the candidates among the k neighbours
    # per model, the step-independent mean cost / duration the utility may scale by
    # (``cost_ref``): "role" = the role prior, "global" = the whole base
    scales: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


@dataclass
class Prior:
    """Per model: prior means / variances of P, C, D and the counts that decide "explored"."""

    n: np.ndarray            # records with known P (role, or global when the role has none)
    n_records: np.ndarray
    p: np.ndarray
    p_var: np.ndarray
    c: np.ndarray
    c_var: np.ndarray
    d: np.ndarray
    d_var: np.ndarray
    fallback: str | None
    c_global: np.ndarray | None = None      # global mean cost / duration per model (C_ref scale)
    d_global: np.ndarray | None = None


def _shrink(m_r, n_r, m_g, kappa):
    """Role mean shrunk toward the global mean with κ pseudo-observations (NaN where no data)."""
    with np.errstate(invalid="ignore"):
        out = np.where(n_r > 0, (n_r * finite_or_zero(m_r) + kappa * m_g) / (n_r + kappa), m_g)
    return out


def role_prior(index: ExperienceIndex, names: Sequence[str], role: str | None,
               kappa: float) -> Prior:
    """Empirical-Bayes prior of every candidate for this step: the role estimate shrunk toward
    the global one. ``role=None`` (the semantic-only ablation) uses the global estimate.
    Computed once per revision of the base (every decision between two writes shares it)."""
    return index.cached(("role_prior", role, tuple(names), float(kappa)),
                        lambda: _role_prior(index, names, role, kappa))


def _role_prior(index: ExperienceIndex, names: Sequence[str], role: str | None,
                kappa: float) -> Prior:
    glob = _stats_for(index, index.group_stats(None), names)
    if role is not None and role in index.role_ids:
        r = _stats_for(index, index.group_stats(role), names)
    else:
        r = None
    if r is None or r.n_records.sum() == 0:
        return Prior(glob.n, glob.n_records, glob.p_mean, glob.p_var, glob.c_mean, glob.c_var,
                     glob.d_mean, glob.d_var, None if role is None or glob.n_records.sum() == 0
                     else "global", glob.c_mean, glob.d_mean)
    p = _shrink(r.p_mean, r.n, glob.p_mean, kappa)
    c = _shrink(r.c_mean, r.n_records, glob.c_mean, kappa)
    d = _shrink(r.d_mean, r.n_records, glob.d_mean, kappa)
    pv = np.where(r.n > 1, r.p_var, glob.p_var)
    cv = np.where(r.n_records > 1, r.c_var, glob.c_var)
    dv = np.where(r.n_records > 1, r.d_var, glob.d_var)
    return Prior(r.n, r.n_records, p, pv, c, cv, d, dv, None, glob.c_mean, glob.d_mean)


def _stats_for(index: ExperienceIndex, stats: np.ndarray, names: Sequence[str]) -> Estimates:
    return Retrieval(index.models, stats, {}).for_models(names)


def combine(prior_mean: np.ndarray, prior_var: np.ndarray, kappa: float | np.ndarray,
            n_eff: np.ndarray,
            local_mean: np.ndarray, local_var: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normal-Inverse-Gamma-style pooling of a prior worth κ observations with local evidence
    worth n_eff: (posterior mean, pooled variance, λ = κ + n_eff). Where the prior is unknown
    (NaN) the local evidence alone is used; where both are unknown the result is NaN."""
    n_eff = np.asarray(n_eff, float)
    has_prior = np.isfinite(prior_mean)
    k = np.where(has_prior, np.asarray(kappa, float), 0.0)
    lam = k + n_eff
    m0 = np.where(has_prior, prior_mean, 0.0)
    v0 = np.where(np.isfinite(prior_var), prior_var, 0.0)
    xl = np.where(n_eff > 0, finite_or_zero(local_mean), 0.0)
    vl = np.where(n_eff > 0, finite_or_zero(local_var), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(lam > 0, (k * m0 + n_eff * xl) / lam, np.nan)
        var = np.where(lam > 0, (k * v0 + n_eff * vl + k * n_eff / np.maximum(lam, 1e-12)
                                 * (xl - m0) ** 2) / lam, 0.0)
    return mean, np.maximum(var, 0.0), lam


def text_vectors(index: ExperienceIndex, text_ids: np.ndarray) -> np.ndarray:
    """Stored embeddings of unique texts by text id (positions in the index's VectorIndex:
    the exact float32 store while small, the HNSW graph's vectors after)."""
    vi = index._emb
    pos = np.asarray(text_ids, np.int64)
    if vi.exact:
        return vi._vec[pos]
    return vi._graph.get(pos.astype(np.uint64), dtype=np.float32)


def scales(prior: Prior) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {"role": (prior.c, prior.d), "global": (prior.c_global, prior.d_global)}
