"""The linear design (``estimator="linear"``): per model a Bayesian ridge regression of P, C
and D on the step's embedding, role and tool bits (see :mod:`evoroute.policy.estimators`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evoroute.policy.estimators.prior import QueryEstimates, role_prior, scales, text_vectors
from evoroute.policy.estimators.prior_strength import KAPPA_AUTO, KAPPA_FALLBACK
from evoroute.retrieval.index import ExperienceIndex

#: ``ridge="auto"``: the prior precision chosen per model by maximising the marginal likelihood
#: (type-II ML / empirical Bayes) of its quality signal over this log grid
RIDGE_AUTO = "auto"
RIDGE_GRID = tuple(float(x) for x in np.geomspace(0.3, 10_000.0, 31))
RIDGE_FALLBACK = 300.0           # the train-split CV constant, used until EB has data
EB_MIN_RECORDS = 32              # fewer known records of a model: the fallback


def evidence_ridge(xtx: np.ndarray, xty: np.ndarray, yty: float, n: float, p0: np.ndarray,
                   grid: Sequence[float] = RIDGE_GRID) -> tuple[float, np.ndarray]:
    """The ridge r maximising the profile marginal likelihood of y = Xw + ε with
    w ~ N(0, σ²/r · P0⁻¹), ε ~ N(0, σ²), σ² profiled out, from the sufficient statistics
    XᵀX, Xᵀy, yᵀy and n alone; returns (r, log evidence per grid value).

    With λ_i the eigenvalues of P0^-½ XᵀX P0^-½ and z = Vᵀ P0^-½ Xᵀy:
    log p(y | r) = −n/2 · log σ̂²(r) − ½ Σ log(1 + λ_i/r) + const,
    σ̂²(r) = (yᵀy − Σ z_i²/(r + λ_i)) / n."""
    q = 1.0 / np.sqrt(p0)
    lam, V = np.linalg.eigh(xtx * q[:, None] * q[None, :])
    lam = np.maximum(lam, 0.0)
    z2 = (V.T @ (xty * q)) ** 2
    out = np.empty(len(grid))
    for i, r in enumerate(grid):
        rss = max(yty - float(np.sum(z2 / (r + lam))), 1e-12 * max(yty, 1e-12))
        out[i] = -0.5 * n * np.log(rss / n) - 0.5 * float(np.sum(np.log1p(lam / r)))
    return float(grid[int(np.argmax(out))]), out


class LinearEstimator:
    """Per-model Bayesian ridge regression of (P, C, D) on [embedding, role one-hot, tool bits],
    kept in sync with an :class:`ExperienceIndex` incrementally (records are consumed once
    their performance signal is known). Prior precision: ``ridge`` on embedding and tool
    coefficients, ``ridge · ROLE_RIDGE`` on the role coefficients (the role means are nearly
    free, so with no embedding signal the prediction is the role mean)."""

    ROLE_RIDGE = 1e-2

    def __init__(self, index: ExperienceIndex, ridge: float | str, use_role: bool = True,
                 use_tools: bool = True) -> None:
        # ridge="auto": empirical Bayes per model (evidence_ridge on its P records), refreshed
        # when its record count has grown by a quarter; RIDGE_FALLBACK until then
        self.auto = ridge == RIDGE_AUTO
        self.index, self.ridge = index, RIDGE_FALLBACK if self.auto else float(ridge)
        self.row_ridge: dict[int, float] = {}           # row -> its ridge (auto)
        self.eb_at: dict[int, float] = {}               # row -> record count at its last EB
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
        for row, r in self.row_ridge.items():       # rows with their own (EB) ridge
            A[row, idx, idx] = precision * r / self.ridge
            Ai[row, idx, idx] = self.ridge / (precision * r)
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
            if self.auto:
                self._maybe_eb(row)

    def _maybe_eb(self, row: int) -> None:
        """Re-choose this model's ridge by empirical Bayes once its records grew by 25 %."""
        n = float(self.count[row])
        if n < EB_MIN_RECORDS or n < 1.25 * self.eb_at.get(row, 0.0):
            return
        self.eb_at[row] = n
        p0 = self.prec / self.ridge                  # the shape of the prior (1, ROLE_RIDGE)
        old = self.row_ridge.get(row, self.ridge)
        xtx = self.A[row] - np.diag(old * p0)
        r, _ = evidence_ridge(xtx, self.b[row, 0], float(self.yy[row, 0]), n, p0)
        if r != old:
            self.row_ridge[row] = r
            self.A[row] = xtx + np.diag(r * p0)
            self.Ainv[row] = np.linalg.inv(self.A[row])
            self.dirty.add(row)

    def ridge_of(self, name: str) -> float | None:
        """The ridge in use for a model (None: no record of it yet)."""
        row = self.models.get(self.index.model_ids.get(name, -1))
        return None if row is None else self.row_ridge.get(row, self.ridge)

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
                          fallback=prior.fallback, neighbours=0, scales=scales(prior))
