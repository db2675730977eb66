"""The neighbourhood of a step in the experience base: the records of each unique text, the
kernel weights of the neighbours, their effective sample size and weighted moments."""

from __future__ import annotations

import numpy as np

from evoroute.retrieval.index import ExperienceIndex


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


def finite_or_zero(x: np.ndarray) -> np.ndarray:
    """``x`` with NaN / ±inf replaced by 0 (np.nan_to_num without its per-call dtype queries;
    the same result for every finite value and NaN, the values the estimators produce)."""
    x = np.asarray(x, float)
    return np.where(np.isfinite(x), x, 0.0)


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


def weighted(w: np.ndarray, x: np.ndarray, g: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    sw = np.bincount(g, weights=w, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(g, weights=w * x, minlength=n) / sw
        var = np.bincount(g, weights=w * x * x, minlength=n) / sw - mean ** 2
    return mean, np.maximum(finite_or_zero(var), 0.0)
