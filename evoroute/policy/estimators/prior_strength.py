"""Empirical-Bayes prior strength κ per (role, model, metric) for ``prior_strength="auto"``:
how many observations the role prior is worth, from the spread of the base's own
neighbourhoods (method of moments)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evoroute.policy.estimators.neighbours import TextRecords, effective_n, kernel_weights, weighted
from evoroute.policy.estimators.prior import text_vectors
from evoroute.retrieval.index import ExperienceIndex, one_blas_thread

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

    def _known(self) -> int:
        """Records with a known performance signal (an O(N) count, once per revision)."""
        view = self.index._r_perf.view
        return self.index.cached(("known_perf",), lambda: int(np.count_nonzero(~np.isnan(view))))

    def _stale(self, role: str | None) -> bool:
        hit = self._cache.get(role)
        if hit is None:
            return True
        n, known = len(self.index), self._known()
        grow = max(self.refresh_min, int(self.refresh_frac * hit[0]))
        return n - hit[0] > grow or known - hit[1] > grow

    def for_models(self, names: Sequence[str], role: str | None) -> tuple[np.ndarray, np.ndarray]:
        """(κ_p, κ_c) per candidate, the fallback constant where EB has too little data."""
        if self._stale(role):
            n, known = len(self.index), self._known()
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
                mean, var = weighted(ww, x, g, M)
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
