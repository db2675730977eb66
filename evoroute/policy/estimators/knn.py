"""The kNN design (``estimator="knn"``): similarity-weighted evidence of the k past steps most
similar to this one, shrunk toward the role prior (see :mod:`evoroute.policy.estimators`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evoroute.policy.estimators.neighbours import (
    TextRecords,
    effective_n,
    finite_or_zero,
    kernel_weights,
    weighted,
)
from evoroute.policy.estimators.prior import QueryEstimates, combine, role_prior, scales
from evoroute.policy.estimators.prior_strength import KAPPA_AUTO, KAPPA_FALLBACK, PriorStrength
from evoroute.retrieval.index import ExperienceIndex

TOP_SHOWN = 3          # neighbours named per model in the explanation


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
            lp, vp = weighted(wp, finite_or_zero(perf), g, m)
            lc, vc = weighted(w, index._r_cost.view[recs], g, m)
            ld, vd = weighted(w, index._r_dur.view[recs], g, m)
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
                          neighbours=n_nb, scales=scales(prior))
