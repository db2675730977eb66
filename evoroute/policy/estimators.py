"""Query-aware estimates of P, C, D per model for the step being routed (spec §3, "Query-aware
estimates"). Two designs, both feeding the same Pareto filter, NIG Thompson sampling and utility:

- :func:`knn_estimates` (``estimator="knn"``): similarity-weighted evidence of the k past steps
  most similar to this one, shrunk toward the model's role estimate (itself shrunk toward the
  model's global estimate) by an empirical-Bayes prior worth ``prior_strength`` observations.
  Weights: w_i = exp((s_i − s_max) / τ) · (1 if same role else ``cross_role``), with
  τ = ``kernel_tau`` · (s_max − s_min) over the k neighbours — a temperature relative to the
  neighbours' own similarity spread, so no raw cosine scale is baked in. Each weight is in
  (0, 1], the nearest neighbour of the step's role has weight 1; the weights are not
  normalised, their sum Σw is the local evidence's mass. The evidence enters the posterior
  with Kish's effective sample size n_eff = (Σw)² / Σw², so k far, equally weighted records
  count as k, one dominant record as 1; the prior's weight is κ_m = min(κ, n_m) with n_m the
  model's records of the role (a prior is never worth more than the observations behind it):

      μ = (κ·μ₀ + n_eff·x̄_w) / (κ + n_eff),  λ = κ + n_eff,
      v = (κ·v₀ + n_eff·s²_w + κ·n_eff/λ·(x̄_w − μ₀)²) / λ

  With no neighbour the estimate is the prior (the role estimate); with many identical
  neighbours it converges to their mean; the Thompson draw θ ~ N(μ, σ²/λ) is wider the less
  local evidence there is.
- :class:`LinearEstimator` (``estimator="linear"``): per model a Bayesian ridge regression of
  P, C and D on the step's embedding, a one-hot of its role (nearly unpenalised: the role
  means) and its tool bits — the LinTS posterior N(xᵀβ, s²·xᵀA⁻¹x), trained incrementally as
  records arrive (Woodbury updates of A⁻¹). Its effective sample size at x is 1 / xᵀA⁻¹x.

Both return :class:`QueryEstimates` (the paper's :class:`Estimates` plus λ per metric and the
evidence per model for the explanation). "Explored" (n ≥ n_min) counts a model's records of
the step's role (or, when the role has none, of the whole base), exactly as the paper's role
channel does, so cold start and unexplored-first behave the same in every design.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evoroute.retrieval.index import Estimates, ExperienceIndex

ESTIMATORS = ("paper", "knn", "linear")
TOP_SHOWN = 3          # neighbours named per model in the explanation


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


# ------------------------------------------------------------------------------ shared prior
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
        out = np.where(n_r > 0, (n_r * np.nan_to_num(m_r) + kappa * m_g) / (n_r + kappa), m_g)
    return out


def role_prior(index: ExperienceIndex, names: Sequence[str], role: str | None,
               kappa: float) -> Prior:
    """Empirical-Bayes prior of every candidate for this step: the role estimate shrunk toward
    the global one. ``role=None`` (the semantic-only ablation) uses the global estimate."""
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
    from evoroute.retrieval.index import Retrieval
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
    xl = np.where(n_eff > 0, np.nan_to_num(local_mean), 0.0)
    vl = np.where(n_eff > 0, np.nan_to_num(local_var), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(lam > 0, (k * m0 + n_eff * xl) / lam, np.nan)
        var = np.where(lam > 0, (k * v0 + n_eff * vl + k * n_eff / np.maximum(lam, 1e-12)
                                 * (xl - m0) ** 2) / lam, 0.0)
    return mean, np.maximum(var, 0.0), lam


def text_vectors(index: ExperienceIndex, text_ids: np.ndarray) -> np.ndarray:
    """Stored embeddings of unique texts by text id (positions in the index's VectorIndex:
    the exact float32 store while small, the HNSW graph's vectors after)."""
    vi = index._emb
    getter = getattr(vi, "vectors", None)
    if callable(getter):
        return np.asarray(getter(text_ids), np.float32)
    pos = np.asarray(text_ids, np.int64)
    if getattr(vi, "_graph", None) is None:
        return vi._vec[pos]
    return vi._graph.get(pos.astype(np.uint64), dtype=np.float32)


def _scales(prior: Prior) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {"role": (prior.c, prior.d), "global": (prior.c_global, prior.d_global)}


# ------------------------------------------------------------------------------ kNN design
class TextRecords:
    """Records of each unique text of an index, as a CSR rebuilt when the tail of records
    appended since the last build exceeds 10 % (amortised O(1) per record)."""

    def __init__(self, index: ExperienceIndex) -> None:
        self.index = index
        self.built = 0
        self.order = np.empty(0, np.int64)
        self.indptr = np.zeros(1, np.int64)

    def _build(self) -> None:
        n = len(self.index)
        tids = self.index._r_text.view[:n]
        ok = np.flatnonzero(tids >= 0)
        self.order = ok[np.argsort(tids[ok], kind="stable")]
        counts = np.bincount(tids[ok], minlength=self.index.n_texts)
        self.indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.built = n

    def records(self, text_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(record ids, position of their text in ``text_ids``) for the given texts."""
        n = len(self.index)
        if n - self.built > max(256, self.built // 10):
            self._build()
        tids = np.asarray(text_ids, np.int64)
        inb = tids < len(self.indptr) - 1
        starts = np.where(inb, self.indptr[np.minimum(tids, len(self.indptr) - 1)], 0)
        ends = np.where(inb, self.indptr[np.minimum(tids + 1, len(self.indptr) - 1)], 0)
        lens = ends - starts
        pos = np.repeat(np.arange(tids.size), lens)
        offs = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
        recs = self.order[np.repeat(starts, lens) + offs] if lens.sum() else np.empty(0, np.int64)
        if n > self.built:                       # the tail not yet in the CSR
            tail_t = self.index._r_text.view[self.built:n]
            hit = np.flatnonzero(np.isin(tail_t, tids))
            if hit.size:
                where = {int(t): i for i, t in enumerate(tids)}
                recs = np.concatenate([recs, self.built + hit])
                pos = np.concatenate([pos, [where[int(t)] for t in tail_t[hit]]])
        return recs.astype(np.int64), pos.astype(np.int64)


def kernel_weights(sims: np.ndarray, tau_rel: float) -> np.ndarray:
    """w = exp((s − s_max)/τ), τ = τ_rel·(s_max − s_min): in (0, 1], the most similar is 1;
    all equal (one neighbour, or identical similarities) gives weight 1 each."""
    s = np.asarray(sims, float)
    if s.size == 0:
        return s
    spread = float(s.max() - s.min())
    if spread <= 1e-12 or not np.isfinite(tau_rel):
        return np.ones_like(s)
    return np.exp((s - s.max()) / (tau_rel * spread))


def effective_n(w: np.ndarray, groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(Σw, Kish's n_eff = (Σw)² / Σw²) per group; 0 where a group has no weight."""
    sw = np.bincount(groups, weights=w, minlength=n_groups)
    sw2 = np.bincount(groups, weights=w * w, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        neff = np.where(sw2 > 0, sw * sw / np.where(sw2 > 0, sw2, 1.0), 0.0)
    return sw, neff


def _weighted(w: np.ndarray, x: np.ndarray, g: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    sw = np.bincount(g, weights=w, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(g, weights=w * x, minlength=n) / sw
        var = np.bincount(g, weights=w * x * x, minlength=n) / sw - mean ** 2
    return mean, np.maximum(np.nan_to_num(var), 0.0)


# ------------------------------------------------------------------ empirical-Bayes prior strength
KAPPA_AUTO = "auto"
KAPPA_FALLBACK = 64.0      # the CV constant (docs/query_aware.md), used when EB has too little data
KAPPA_MIN, KAPPA_MAX = 1.0, 256.0
EB_ANCHORS = 96            # texts of the role whose neighbourhoods are compared
EB_MIN_ANCHORS = 12        # fewer usable neighbourhoods for a model: fall back to KAPPA_FALLBACK


def moment_kappa(means: np.ndarray, variances: np.ndarray, n_eff: np.ndarray,
                 lo: float = KAPPA_MIN, hi: float = KAPPA_MAX) -> float:
    """Method-of-moments prior strength from L neighbourhoods' local means x̄_l (weights' Kish
    size n_l, unbiased within variance s²_l): σ² = mean s²_l (the within variance),
    τ² = max(0, Var_l(x̄_l) − mean(s²_l / n_l)) (the between-neighbourhood variance of the true
    local means, net of the sampling noise of x̄_l), κ = σ²/τ² clipped to [lo, hi]. No
    between variance (τ² ≤ 0) gives ``hi``; no within variance with a between variance, ``lo``."""
    x, v, n = (np.asarray(a, float) for a in (means, variances, n_eff))
    if x.size < 2:
        return float(hi)
    sigma2 = float(np.mean(v))
    tau2 = float(np.var(x, ddof=1) - np.mean(v / n))
    if not tau2 > 0:
        return float(hi)
    return float(np.clip(sigma2 / tau2, lo, hi))


class PriorStrength:
    """Empirical-Bayes κ per (role, model, metric) for ``prior_strength="auto"``, estimated from
    the experience base itself and cached per role: recomputed only when the base has grown by
    more than ``max(refresh_min, refresh_frac × size)`` records (or as many new performance
    signals arrived) since — O(log n) recomputes as a base grows, each ~``anchors`` searches.

    For up to ``EB_ANCHORS`` texts of the role (evenly spaced over its text ids, deterministic),
    the anchor's k nearest *other* texts of the role (the anchor itself left out, as a step being
    routed is not in the base) are weighted exactly as :func:`knn_estimates` weighs them; per
    model this gives a local mean, its Kish size and within variance per neighbourhood, and
    :func:`moment_kappa` turns them into κ = σ²/τ². Separate κ for P and for C (D uses C's)."""

    def __init__(self, index: ExperienceIndex, *, k: int, kernel_tau: float,
                 text_records: TextRecords, sem_scan_limit: int | None = None,
                 refresh_min: int = 256, refresh_frac: float = 0.25, anchors: int = EB_ANCHORS,
                 fallback: float = KAPPA_FALLBACK,
                 bounds: tuple[float, float] = (KAPPA_MIN, KAPPA_MAX)) -> None:
        self.index, self.k, self.kernel_tau = index, int(k), float(kernel_tau)
        self.text_records, self.sem_scan_limit = text_records, sem_scan_limit
        self.refresh_min, self.refresh_frac = int(refresh_min), float(refresh_frac)
        self.anchors = int(anchors)
        self.fallback = float(fallback)
        self.bounds = (float(bounds[0]), float(bounds[1]))
        # role -> (records at computation, known perf at computation, {model id: (κ_p, κ_c)})
        self._cache: dict[str | None, tuple[int, int, dict[int, tuple[float, float]]]] = {}

    def _stale(self, role: str | None) -> bool:
        hit = self._cache.get(role)
        if hit is None:
            return True
        n, known = len(self.index), int(np.count_nonzero(~np.isnan(self.index._r_perf.view)))
        grow = max(self.refresh_min, int(self.refresh_frac * hit[0]))
        return n - hit[0] > grow or known - hit[1] > grow

    def for_models(self, names: Sequence[str], role: str | None) -> tuple[np.ndarray, np.ndarray]:
        """(κ_p, κ_c) per candidate, the fallback constant where EB has too little data."""
        if self._stale(role):
            n = len(self.index)
            known = int(np.count_nonzero(~np.isnan(self.index._r_perf.view)))
            from evoroute.retrieval.index import one_blas_thread
            with one_blas_thread():
                self._cache[role] = (n, known, self._compute(role))
        table = self._cache[role][2]
        kp = np.full(len(names), self.fallback)
        kc = np.full(len(names), self.fallback)
        for j, name in enumerate(names):
            got = table.get(self.index.model_ids.get(name, -1))
            if got is not None:
                kp[j], kc[j] = got
        return kp, kc

    def _compute(self, role: str | None) -> dict[int, tuple[float, float]]:
        idx = self.index
        n = len(idx)
        if n == 0 or idx.n_texts < 3:
            return {}
        roles = idx._r_role.view[:n]
        tids_all = idx._r_text.view[:n]
        rid = None if role is None else idx.role_ids.get(role, -2)
        mine = tids_all >= 0 if rid is None else (roles == rid) & (tids_all >= 0)
        texts = np.unique(tids_all[mine])
        if texts.size < 3:
            return {}
        pick = texts[np.unique(np.linspace(0, texts.size - 1, min(self.anchors, texts.size))
                               .round().astype(np.int64))]
        vecs = text_vectors(idx, pick)
        M = len(idx.models)
        stats: dict[int, list[list[np.ndarray]]] = {}
        for a, emb in zip(pick, vecs):
            tids, sims = idx.nearest_texts(emb, self.k + 1, self.sem_scan_limit)
            keep = tids != a
            tids, sims = tids[keep][: self.k], sims[keep][: self.k]
            if tids.size == 0:
                continue
            recs, pos = self.text_records.records(tids)
            if rid is not None:
                same = idx._r_role.view[recs] == rid
                recs, pos = recs[same], pos[same]
            if recs.size == 0:
                continue
            w = kernel_weights(sims.astype(float), self.kernel_tau)[pos]
            g = idx._r_model.view[recs].astype(np.int64)
            perf = idx._r_perf.view[recs]
            known = ~np.isnan(perf)
            for metric, (ww, x) in enumerate(((np.where(known, w, 0.0), np.nan_to_num(perf)),
                                              (w, idx._r_cost.view[recs]))):
                sw, neff = effective_n(ww, g, M)
                mean, var = _weighted(ww, x, g, M)
                ok = np.flatnonzero(neff >= 2.0)
                unb = var[ok] * neff[ok] / (neff[ok] - 1.0)
                for mid, mu, vv, ne in zip(ok, mean[ok], unb, neff[ok]):
                    stats.setdefault(int(mid), [[], []])[metric].append(np.array([mu, vv, ne]))
        out: dict[int, tuple[float, float]] = {}
        lo, hi = self.bounds
        for mid, per_metric in stats.items():
            ks = []
            for rows in per_metric:
                if len(rows) < EB_MIN_ANCHORS:
                    ks.append(self.fallback)
                    continue
                arr = np.asarray(rows)
                ks.append(moment_kappa(arr[:, 0], arr[:, 1], arr[:, 2], lo, hi))
            out[mid] = (ks[0], ks[1])
        return out


def knn_estimates(index: ExperienceIndex, names: Sequence[str], role: str | None,
                  embedding: np.ndarray | None, *, k: int, kernel_tau: float,
                  prior_strength: float | str, cross_role: float, text_records: TextRecords,
                  sem_scan_limit: int | None = None,
                  eb: PriorStrength | None = None) -> QueryEstimates:
    """Similarity-weighted, prior-shrunk P̂, Ĉ, D̂ of every candidate for one step.

    ``prior_strength`` is κ in observations, or ``"auto"``: κ per (model, role, metric) by
    empirical Bayes from the base (:class:`PriorStrength`; ``eb`` is the caller's cache, one is
    built for this call when None). ``role=None`` is the semantic-only ablation: neighbours of
    any role count fully and the prior is the global estimate."""
    auto = prior_strength == KAPPA_AUTO
    kappa = KAPPA_FALLBACK if auto else float(prior_strength)
    prior = role_prior(index, names, role, kappa)
    m = len(names)
    col = {mid: j for j, name in enumerate(names) if (mid := index.model_ids.get(name)) is not None}
    zeros = np.zeros(m)
    n_eff_p = n_eff_c = sw_p = zeros
    lp, vp, lc, vc, ld, vd = (np.full(m, np.nan), zeros, np.full(m, np.nan), zeros,
                              np.full(m, np.nan), zeros)
    evidence = [dict(neighbours=0, top=[]) for _ in names]
    n_nb = 0
    if embedding is not None and index.n_texts and col:
        tids, sims = index.nearest_texts(embedding, int(k), sem_scan_limit)
        recs, pos = text_records.records(tids)
        mids = index._r_model.view[recs]
        keep = np.isin(mids, list(col))
        recs, pos, mids = recs[keep], pos[keep], mids[keep]
        if recs.size:
            s = sims[pos].astype(float)
            w = kernel_weights(sims.astype(float), kernel_tau)[pos]
            if role is not None:
                rid = index.role_ids.get(role, -2)
                w = np.where(index._r_role.view[recs] == rid, w, w * float(cross_role))
            live = w > 0
            recs, pos, mids, s, w = recs[live], pos[live], mids[live], s[live], w[live]
        if recs.size:
            g = np.fromiter((col[int(x)] for x in mids), np.int64, mids.size)
            perf = index._r_perf.view[recs]
            known = ~np.isnan(perf)
            wp = np.where(known, w, 0.0)
            sw_p, n_eff_p = effective_n(wp, g, m)
            _, n_eff_c = effective_n(w, g, m)
            lp, vp = _weighted(wp, np.nan_to_num(perf), g, m)
            lc, vc = _weighted(w, index._r_cost.view[recs], g, m)
            ld, vd = _weighted(w, index._r_dur.view[recs], g, m)
            n_nb = int(recs.size)
            order = np.lexsort((-w, g))          # by model, heaviest first
            for j in range(m):
                mine = order[g[order] == j]
                evidence[j]["neighbours"] = int(mine.size)
                evidence[j]["top"] = [[index.text(int(index._r_text.view[recs[i]]))[:80],
                                       round(float(s[i]), 4)] for i in mine[:TOP_SHOWN]]
    # a prior is never worth more observations than it rests on: κ_m = min(κ, n_role,m)
    # (and at least 1, so with no local evidence the estimate is the prior itself)
    if auto:
        if eb is None:
            eb = PriorStrength(index, k=k, kernel_tau=kernel_tau, text_records=text_records,
                               sem_scan_limit=sem_scan_limit)
        kappa_p, kappa_c = eb.for_models(names, role)
    else:
        kappa_p = kappa_c = np.full(m, kappa)
    kap_p = np.minimum(kappa_p, np.maximum(prior.n, 1).astype(float))
    kap_c = np.minimum(kappa_c, np.maximum(prior.n_records, 1).astype(float))
    p_mean, p_var, lam_p = combine(prior.p, prior.p_var, kap_p, n_eff_p, lp, vp)
    c_mean, c_var, lam_c = combine(prior.c, prior.c_var, kap_c, n_eff_c, lc, vc)
    d_mean, d_var, _ = combine(prior.d, prior.d_var, kap_c, n_eff_c, ld, vd)
    for j, ev in enumerate(evidence):
        lam = float(lam_p[j])
        ev["n_eff"] = round(float(n_eff_p[j]), 3)
        ev["weight_sum"] = round(float(sw_p[j]), 3)
        ev["prior_weight"] = None if lam <= 0 or not np.isfinite(prior.p[j]) else \
            round(float(kap_p[j]) / lam, 4)
        ev["p_prior"] = None if not np.isfinite(prior.p[j]) else round(float(prior.p[j]), 4)
        ev["kappa"] = round(float(kap_p[j]), 3)
    return QueryEstimates(list(names), prior.n_records.astype(int), prior.n.astype(int),
                          p_mean, p_var, c_mean, c_var, d_mean, d_var,
                          lam_p=lam_p, lam_c=lam_c, evidence=evidence, fallback=prior.fallback,
                          neighbours=n_nb, scales=_scales(prior))


# ------------------------------------------------------------------------------ linear design
class LinearEstimator:
    """Per-model Bayesian ridge regression of (P, C, D) on [embedding, role one-hot, tool bits],
    kept in sync with an :class:`ExperienceIndex` incrementally (records are consumed once
    their performance signal is known). Prior precision: ``ridge`` on embedding and tool
    coefficients, ``ridge · ROLE_RIDGE`` on the role coefficients (the role means are nearly
    free, so with no embedding signal the prediction is the role mean)."""

    ROLE_RIDGE = 1e-2

    def __init__(self, index: ExperienceIndex, ridge: float, use_role: bool = True,
                 use_tools: bool = True) -> None:
        self.index, self.ridge = index, float(ridge)
        self.use_role, self.use_tools = use_role, use_tools
        self.dim = index.dim
        self.roles: dict[int, int] = {}        # index role id -> feature slot
        self.tools: dict[int, int] = {}        # tool bit -> feature slot
        self.D = self.dim + 1                   # + an intercept slot when roles are off
        self.prec = np.concatenate([np.full(self.dim, self.ridge), [self.ridge * self.ROLE_RIDGE]])
        self.models: dict[int, int] = {}        # index model id -> row
        self.A = np.zeros((0, self.D, self.D))
        self.Ainv = np.zeros((0, self.D, self.D))
        self.b = np.zeros((0, 3, self.D))
        self.yy = np.zeros((0, 3))
        self.count = np.zeros(0)
        self.cursor = 0
        self.pending: list[int] = []
        self.beta: np.ndarray | None = None
        self.s2 = np.zeros((0, 3))
        self.dirty: set[int] = set()

    # ---------------------------------------------------------- features
    def _grow(self, extra: int, precision: float) -> None:
        D2 = self.D + extra
        idx = np.arange(self.D, D2)
        Ai = np.zeros((self.Ainv.shape[0], D2, D2))
        Ai[:, : self.D, : self.D] = self.Ainv
        Ai[:, idx, idx] = 1.0 / precision
        A = np.zeros((self.A.shape[0], D2, D2))
        A[:, : self.D, : self.D] = self.A
        A[:, idx, idx] = precision
        b = np.zeros((self.b.shape[0], 3, D2))
        b[:, :, : self.D] = self.b
        self.A, self.Ainv, self.b, self.D = A, Ai, b, D2
        self.prec = np.concatenate([self.prec, np.full(extra, precision)])

    def _slot_role(self, rid: int, create: bool) -> int | None:
        if not self.use_role:
            return self.dim
        if rid not in self.roles:
            if not create:
                return None
            self.roles[rid] = self.D
            self._grow(1, self.ridge * self.ROLE_RIDGE)
        return self.roles[rid]

    def _tool_slots(self, mask: int, create: bool) -> list[int]:
        if not self.use_tools or not mask:
            return []
        out = []
        for bit in range(63):
            if mask >> bit & 1:
                if bit not in self.tools:
                    if not create:
                        continue
                    self.tools[bit] = self.D
                    self._grow(1, self.ridge)
                out.append(self.tools[bit])
        return out

    def features(self, emb: np.ndarray | None, role_id: int, mask: int, create: bool) -> np.ndarray:
        slot = self._slot_role(role_id, create)
        tslots = self._tool_slots(mask, create)
        x = np.zeros(self.D)
        if emb is not None:
            x[: self.dim] = emb
        if slot is not None:
            x[slot] = 1.0
        x[tslots] = 1.0
        return x

    def _row(self, mid: int) -> int:
        if mid not in self.models:
            self.models[mid] = len(self.models)
            A = np.zeros((1, self.D, self.D))
            A[0][np.diag_indices(self.D)] = self.prec
            self.A = np.concatenate([self.A, A])
            self.Ainv = np.concatenate([self.Ainv, 1.0 / np.where(A > 0, A, np.inf)])
            self.b = np.concatenate([self.b, np.zeros((1, 3, self.D))])
            self.yy = np.concatenate([self.yy, np.zeros((1, 3))])
            self.count = np.concatenate([self.count, [0.0]])
        return self.models[mid]

    # ---------------------------------------------------------- learning
    def sync(self) -> None:
        """Consume every record whose performance signal is known and not yet consumed."""
        ix = self.index
        n = len(ix)
        new = list(range(self.cursor, n))
        self.cursor = n
        todo = self.pending + new
        if not todo:
            return
        recs = np.asarray(todo, np.int64)
        perf = ix._r_perf.view[recs]
        known = ~np.isnan(perf)
        self.pending = recs[~known].tolist()
        recs = recs[known]
        if recs.size == 0:
            return
        tids = ix._r_text.view[recs]
        roles, masks = ix._r_role.view[recs], ix._r_mask.view[recs]
        for r in np.unique(roles):                 # new feature slots first: every x has length D
            self._slot_role(int(r), True)
        for mk in np.unique(masks):
            self._tool_slots(int(mk), True)
        X = np.zeros((recs.size, self.D))
        has = tids >= 0
        X[has, : self.dim] = text_vectors(ix, tids[has])
        for i, (r, mk) in enumerate(zip(roles, masks)):
            X[i, self._slot_role(int(r), False)] = 1.0
            X[i, self._tool_slots(int(mk), False)] = 1.0
        Y = np.stack([ix._r_perf.view[recs], ix._r_cost.view[recs], ix._r_dur.view[recs]], axis=1)
        mids = ix._r_model.view[recs]
        for mid in np.unique(mids):
            row = self._row(int(mid))
            sel = mids == mid
            self._update(row, X[sel], Y[sel])

    def _refresh(self) -> None:
        """β = A⁻¹b and the residual variances s² of the rows updated since the last call."""
        if self.beta is None or self.beta.shape != self.b.shape:
            self.beta = np.zeros_like(self.b)
            self.s2 = np.zeros(self.yy.shape)
            self.dirty = set(range(self.b.shape[0]))
        for row in self.dirty:
            self.beta[row] = self.b[row] @ self.Ainv[row]   # A⁻¹ is symmetric
            rss = self.yy[row] - (self.beta[row] * self.b[row]).sum(axis=1)
            self.s2[row] = np.maximum(rss, 0.0) / max(self.count[row] - 1.0, 1.0)
        self.dirty = set()

    def _update(self, row: int, X: np.ndarray, Y: np.ndarray) -> None:
        Ai = self.Ainv[row]
        self.A[row] += X.T @ X
        if X.shape[0] * 4 >= self.D:                       # large batch: invert A afresh
            self.Ainv[row] = np.linalg.inv(self.A[row])
        else:                                               # Woodbury rank-k update
            AX = Ai @ X.T
            S = np.eye(X.shape[0]) + X @ AX
            self.Ainv[row] = Ai - AX @ np.linalg.solve(S, AX.T)
        self.b[row] += (X.T @ Y).T
        self.yy[row] += (Y * Y).sum(axis=0)
        self.count[row] += X.shape[0]
        self.dirty.add(row)

    # ---------------------------------------------------------- predicting
    def predict(self, names: Sequence[str], x: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(means (m, 3), residual variances (m, 3), effective sample size 1/xᵀA⁻¹x (m,))."""
        m = len(names)
        mean = np.full((m, 3), np.nan)
        var = np.zeros((m, 3))
        neff = np.zeros(m)
        rows = [self.models.get(self.index.model_ids.get(nm, -1)) for nm in names]
        have = [j for j, r in enumerate(rows) if r is not None]
        if not have:
            return mean, var, neff
        R = np.asarray([rows[j] for j in have])
        self._refresh()
        mean[have] = self.beta[R] @ x                      # (h, 3)
        Ax = self.Ainv[R] @ x                              # (h, D)
        neff[have] = 1.0 / np.maximum(Ax @ x, 1e-12)
        var[have] = self.s2[R]
        return mean, var, neff


def linear_estimates(est: LinearEstimator, index: ExperienceIndex, names: Sequence[str],
                     role: str | None, embedding: np.ndarray | None, tool_mask: int,
                     prior_strength: float | str) -> QueryEstimates:
    """LinTS estimates of every candidate for one step (see :class:`LinearEstimator`)."""
    est.sync()
    if prior_strength == KAPPA_AUTO:        # the linear design's κ only shrinks role → global
        prior_strength = KAPPA_FALLBACK
    prior = role_prior(index, names, role, float(prior_strength))
    rid = index.role_ids.get(role, -2) if role is not None else -2
    x = est.features(embedding, rid, tool_mask, create=False)
    mean, var, neff = est.predict(names, x)
    evidence = []
    for j in range(len(names)):
        ok = np.isfinite(mean[j, 0])
        evidence.append(dict(neighbours=None, top=[], n_eff=round(float(neff[j]), 3) if ok else 0.0,
                             weight_sum=None, prior_weight=None,
                             p_prior=None if not np.isfinite(prior.p[j]) else round(float(prior.p[j]), 4)))
    # where the model has no linear fit yet (no known record), fall back to the prior
    p = np.where(np.isfinite(mean[:, 0]), mean[:, 0], prior.p)
    c = np.where(np.isfinite(mean[:, 1]), np.maximum(mean[:, 1], 0.0), prior.c)
    d = np.where(np.isfinite(mean[:, 2]), np.maximum(mean[:, 2], 0.0), prior.d)
    lam = np.where(neff > 0, neff, float(prior_strength))
    pv = np.where(neff > 0, var[:, 0], prior.p_var)
    cv = np.where(neff > 0, var[:, 1], prior.c_var)
    dv = np.where(neff > 0, var[:, 2], prior.d_var)
    return QueryEstimates(list(names), prior.n_records.astype(int), prior.n.astype(int),
                          p, pv, c, cv, d, dv, lam_p=lam, lam_c=lam, evidence=evidence,
                          fallback=prior.fallback, neighbours=0, scales=_scales(prior))


__all__ = ["ESTIMATORS", "QueryEstimates", "knn_estimates", "LinearEstimator", "linear_estimates",
           "kernel_weights", "effective_n", "combine", "role_prior", "TextRecords",
           "PriorStrength", "moment_kappa", "KAPPA_AUTO", "KAPPA_FALLBACK", "KAPPA_MIN", "KAPPA_MAX"]
