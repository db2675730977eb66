"""Learned baselines: the routers a user would write instead of EvoRoute, on the same interface.

This module: ``per-role``, ``knn``, ``logistic``; ``lints`` and ``cascade`` are in
:mod:`~evoroute.policy.routers.lints` and :mod:`~evoroute.policy.routers.cascade`.

- ``per-role``: the best model per role from the train means of quality and cost;
- ``knn``: the k most similar train queries (MiniLM cosine) predict each model's quality and
  cost;
- ``logistic``: one logistic regression per model on the query embedding (+ role), the
  RouterBench / RouteLLM style of predicting a model's success on a query;
- ``lints``: an online linear Thompson-sampling contextual bandit that sees only the outcome
  of its own choices (the paper's bandit protocol);
- ``cascade``: a confidence cascade that climbs the train split's cost/quality ladder until the
  router's *own* predicted probability of success reaches a threshold (it never reads the
  recorded answer; the cascade that does is ``oracle-cascade``).

The four predictors choose ``argmax_m  q̂_m − λ · ĉ_m / C_ref`` with ``λ`` (``cost_weight``) their
cost knob, the counterpart of EvoRoute's w_c (w_p = 1), and ``C_ref`` the largest mean cost per
query of any model (train split; for LinTS the largest it has observed). Hyperparameters (k and
the shrinkage of kNN, the regularisation C of the logistic models) are chosen inside ``fit`` by
cross-validation on the train split only, with folds fixed by a hash of the task key (so they
do not depend on row order, and the steps of one task never sit on both sides). LinTS has no
labelled data to cross-validate on in the bandit protocol: its prior precision and projection
size were chosen once on a validation split of RouterBench's train split (see
:class:`~evoroute.policy.routers.lints.LinTSRouter`) and its noise scale is estimated online
from its residuals.

The predictors are trained on every model's outcome on the full train split in both protocols
(as RouteLLM trains on preference data), so they give the same numbers in both; LinTS learns
online in the bandit protocol and starts from every model's train outcome in the full one.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np

from evoroute.core.errors import EvoRouteError, ValidationError
from evoroute.core.types import CandidateStat, Decision, Explanation, ModelInfo, StepContext
from evoroute.policy.base import COST_WEIGHT_GRID, CostKnob
from evoroute.policy.baseline import Baseline
from evoroute.policy.training import N_FOLDS, TrainStats, cached_fit, l2, role_onehot, task_folds
from evoroute.settings import DEFAULTS

#: λ of the learned baselines' utility q̂ − λ·ĉ/C_ref at EvoRoute's default w_c / w_p
DEFAULT_COST_WEIGHT = DEFAULTS.weights[1] / DEFAULTS.weights[0]
LAMBDA_KNOB = CostKnob("cost_weight", COST_WEIGHT_GRID, DEFAULT_COST_WEIGHT, "cost weight λ")
K_GRID: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)
PRIOR_GRID: tuple[float, ...] = (1.0, 4.0, 16.0, 64.0)
C_GRID: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)
MAX_CV_ROWS = 2000                 # kNN leave-one-out on at most this many rows per role


class LearnedRouter(Baseline):
    """A predictor of every model's quality and cost on a step, and the cost-aware argmax."""

    needs_training = True
    seed_invariant = True
    cost_knob = LAMBDA_KNOB
    family = "learned"

    def __init__(self, models: list[ModelInfo], cost_weight: float = DEFAULT_COST_WEIGHT) -> None:
        super().__init__(models)
        lam = float(cost_weight)
        if not math.isfinite(lam) or lam < 0:
            raise ValidationError("cost_weight must be a finite number >= 0", "cost_weight")
        self.cost_weight = lam
        self.stats: TrainStats | None = None

    def fit(self, table: Any) -> None:
        self.stats = TrainStats(table, self.model_names)
        self._fit(table)

    def _fit(self, table: Any) -> None:
        """Fit the predictor (default: the train means alone)."""

    def estimate(self, step: StepContext) -> tuple[np.ndarray, np.ndarray, str]:
        """Predicted quality and cost of every model of ``self.stats.models`` on the step."""
        raise NotImplementedError

    def _require_fit(self) -> TrainStats:
        if self.stats is None:
            raise EvoRouteError(f"the {self.name} router must be trained first (fit on the train "
                                f"split); the runner does this for replay and simulated runs")
        return self.stats

    def decide(self, step: StepContext, rng: np.random.Generator) -> Decision:
        st = self._require_fit()
        names = self.candidates(step)
        q, c, note = self.estimate(step)
        col = {n: j for j, n in enumerate(st.models)}
        known = [n for n in names if n in col and np.isfinite(q[col[n]]) and np.isfinite(c[col[n]])]
        if not known:
            pick = self._cheapest(names)
            return self._decision(step, pick, f"{self.name}: no candidate has train outcomes; "
                                              f"the cheapest available {pick}")
        u = {n: float(q[col[n]] - self.cost_weight * c[col[n]] / st.c_ref) for n in known}
        ranked = sorted(known, key=lambda n: (-u[n], c[col[n]], n))
        pick = ranked[0]
        reason = (f"{self.name}: {note}; utility q̂ − λ·ĉ/C_ref with λ = {self.cost_weight:g}, "
                  f"C_ref = ${st.c_ref:.6f}: {pick} {u[pick]:.3f} (q̂ {q[col[pick]]:.3f}, "
                  f"ĉ ${c[col[pick]]:.6f})")
        if len(ranked) > 1:
            reason += f", next {ranked[1]} {u[ranked[1]]:.3f}"
        cands = [CandidateStat(n, p_hat=float(q[col[n]]) if n in col else None,
                               c_hat=float(c[col[n]]) if n in col else None,
                               utility=u.get(n), unexplored=False,
                               propensity=1.0 if n == pick else 0.0) for n in names]
        expl = Explanation(router=self.name, phase=step.phase, mode="baseline", chosen=pick,
                           reason=reason, candidates=cands, c_ref=st.c_ref)
        return Decision(pick, 1.0, expl)


class PerRoleRouter(LearnedRouter):
    """The best model per role on the train split's means (a lookup table)."""

    name = "per-role"
    order = 30

    def estimate(self, step: StepContext) -> tuple[np.ndarray, np.ndarray, str]:
        st = self._require_fit()
        q, c, seen = st.role_means(step.role)
        return q, c, (f"train means of role {step.role!r}" if seen else
                      f"role {step.role!r} not in the train split: global train means")


class _KNNModel:
    """L2-normalised train embeddings with the chosen k and shrinkage (from leave-one-out)."""

    def __init__(self, st: TrainStats, table: Any) -> None:
        if table.embeddings is None:
            raise EvoRouteError("the knn router needs the train split's embeddings")
        self.emb = l2(table.embeddings)
        self.task = np.unique(np.asarray(table.task_keys, dtype=object), return_inverse=True)[1]
        self.rows_of = {i: np.flatnonzero(st.role_idx == i) for i in range(len(st.role_names))}
        self.k, self.prior, self.cv = self._choose(st, table)

    def _choose(self, st: TrainStats, table: Any) -> tuple[int, float, dict[str, float]]:
        """Leave-one-task-out Brier score over every recorded (row, model), per (k, prior)."""
        sse = np.zeros((len(K_GRID), len(PRIOR_GRID)))
        n_obs = 0
        order = np.array([zlib.crc32(str(k).encode()) for k in table.task_keys], dtype=np.int64)
        S = st.scores
        for _i, rows in self.rows_of.items():
            if rows.size < 2:
                continue
            qrows = rows[np.argsort(order[rows], kind="stable")[:MAX_CV_ROWS]]
            tot = np.nansum(S[rows], axis=0)
            cnt = (~np.isnan(S[rows])).sum(axis=0)
            kmax = min(max(K_GRID), rows.size - 1)
            for start in range(0, qrows.size, 256):
                qs = qrows[start:start + 256]
                sims = self.emb[qs] @ self.emb[rows].T
                sims[self.task[qs][:, None] == self.task[rows][None, :]] = -np.inf
                top = np.argpartition(-sims, kmax - 1, axis=1)[:, :kmax]
                ts = np.take_along_axis(sims, top, axis=1)
                o = np.argsort(-ts, axis=1)
                top, ts = np.take_along_axis(top, o, axis=1), np.take_along_axis(ts, o, axis=1)
                w = np.clip(np.where(np.isfinite(ts), ts, 0.0), 0.0, None)[:, :, None]
                y = S[rows][top]                                   # (b, kmax, m)
                ok = ~np.isnan(y)
                cw = np.cumsum(w * ok, axis=1)
                cy = np.cumsum(w * np.where(ok, y, 0.0), axis=1)
                truth = S[qs]                                      # (b, m)
                have = ~np.isnan(truth)
                t0 = np.where(have, truth, 0.0)
                base = (tot - t0) / np.maximum(cnt - have, 1)      # role mean without the row
                base = np.where(cnt - have > 0, base, st.q_glob)
                n_obs += int(have.sum())
                for a, k in enumerate(K_GRID):
                    kk = min(k, kmax) - 1
                    for b, prior in enumerate(PRIOR_GRID):
                        pred = (cy[:, kk] + prior * base) / (cw[:, kk] + prior)
                        sse[a, b] += float(np.sum(np.where(have, (pred - t0) ** 2, 0.0)))
        if n_obs == 0:
            return K_GRID[0], PRIOR_GRID[-1], {}
        a, b = np.unravel_index(int(np.argmin(sse)), sse.shape)
        cv = {f"k={k},prior={p:g}": float(sse[i, j] / n_obs)
              for i, k in enumerate(K_GRID) for j, p in enumerate(PRIOR_GRID)}
        return int(K_GRID[a]), float(PRIOR_GRID[b]), cv


class KNNRouter(LearnedRouter):
    """Similarity-weighted mean of the k most similar train queries of the step's role, per
    model, shrunk toward the role's mean by ``prior`` pseudo-observations; k and prior from
    leave-one-task-out cross-validation on the train split (Brier score)."""

    name = "knn"
    needs_embedding = True
    order = 31

    def _fit(self, table: Any) -> None:
        st = self.stats
        self.fitted = cached_fit("knn", (tuple(st.models),), table, lambda: _KNNModel(st, table))
        self.k, self.prior = self.fitted.k, self.fitted.prior

    def estimate(self, step: StepContext) -> tuple[np.ndarray, np.ndarray, str]:
        st = self._require_fit()
        qb, cb, seen = st.role_means(step.role)
        if step.embedding is None:
            return qb, cb, "no embedding for this step: train means of its role"
        m = self.fitted
        rows = m.rows_of[st.role_of[str(step.role)]] if seen else np.arange(m.emb.shape[0])
        k = min(m.k, rows.size)
        sims = m.emb[rows] @ l2(step.embedding)
        top = np.argpartition(-sims, k - 1)[:k]
        w = np.clip(sims[top], 0.0, None)[:, None]
        y, c = st.scores[rows[top]], st.costs[rows[top]]
        ok = ~np.isnan(y)
        den = (w * ok).sum(axis=0) + m.prior
        q = ((w * np.where(ok, y, 0.0)).sum(axis=0) + m.prior * qb) / den
        cc = ((w * np.where(ok, c, 0.0)).sum(axis=0) + m.prior * cb) / den
        return q, cc, (f"{k} nearest train queries (cosine {sims[top].min():.2f}–"
                       f"{sims[top].max():.2f}), shrunk toward the role mean by prior {m.prior:g}")


def fit_logistic(X: np.ndarray, Y: np.ndarray, C: np.ndarray | float,
                 init: np.ndarray | None = None) -> np.ndarray:
    """L2-regularised logistic regressions of every column of ``Y`` on ``X``, in one L-BFGS run.

    Minimises, per column j, sklearn's objective ``C_j · Σ_i CE(y_ij, σ(x_i·w_j + b_j)) +
    ½‖w_j‖²`` (intercept not penalised) over the rows where ``y_ij`` is recorded (NaN = not);
    ``y`` may be graded in [0, 1] (soft-label cross-entropy, the same as a success with weight
    y and a failure with weight 1 − y). The columns are independent, so one joint run gives
    the per-column solutions, with one matrix product per step for all models.
    Returns (d + 1, m): the weights, then the intercepts.
    """
    from scipy.optimize import minimize

    n, d = X.shape
    m = Y.shape[1]
    ok = ~np.isnan(Y)
    Yz = np.where(ok, Y, 0.0)
    Cv = np.broadcast_to(np.asarray(C, dtype=float), (m,))
    Xb = np.hstack([X, np.ones((n, 1))]).astype(np.float32)   # float32 products: 2x faster
    XbT = np.ascontiguousarray(Xb.T)

    def f(theta: np.ndarray) -> tuple[float, np.ndarray]:
        W = theta.reshape(d + 1, m)
        Z = (Xb @ W.astype(np.float32)).astype(np.float64)
        # cross-entropy with logits, numerically stable: log(1 + e^z) - y z
        ce = np.where(ok, np.logaddexp(0.0, Z) - Yz * Z, 0.0)
        P = 0.5 * (1.0 + np.tanh(0.5 * Z))
        G = (XbT @ np.where(ok, P - Yz, 0.0).astype(np.float32)).astype(np.float64)
        loss = float((Cv * ce.sum(axis=0)).sum() + 0.5 * (W[:d] ** 2).sum())
        G = G * Cv
        G[:d] += W[:d]
        return loss, G.ravel()

    x0 = np.zeros((d + 1) * m) if init is None else init.ravel()
    res = minimize(f, x0, jac=True, method="L-BFGS-B", options={"maxiter": 1000, "gtol": 1e-6})
    return res.x.reshape(d + 1, m)


class _LogisticModel:
    """One L2-regularised logistic regression per model on [embedding, role one-hot]; C per
    model from 5-fold (by task) cross-validated log-loss; graded scores as soft labels."""

    def __init__(self, st: TrainStats, table: Any) -> None:
        if table.embeddings is None:
            raise EvoRouteError("the logistic router needs the train split's embeddings")
        X = np.hstack([l2(table.embeddings), role_onehot(st.role_idx, len(st.role_names))])
        X = X.astype(np.float64)
        folds = task_folds(table.task_keys)
        Y = st.scores
        m = Y.shape[1]
        ok = ~np.isnan(Y)
        pos = np.where(ok, Y, 0.0).sum(axis=0)
        neg = np.where(ok, 1.0 - Y, 0.0).sum(axis=0)
        # too few of one class to cross-validate: that model's prediction is its role mean
        self.constant = (np.minimum(pos, neg) < N_FOLDS) | (len(set(folds.tolist())) < 2)
        loss = np.zeros((len(C_GRID), m))
        cnt = np.zeros(m)
        for f in sorted(set(folds.tolist())):
            tr, te = folds != f, folds == f
            if not te.any() or not tr.any():
                continue
            init = None
            for a, C in enumerate(C_GRID):          # warm start along the C path
                init = fit_logistic(X[tr], Y[tr], C, init)
                p = 1.0 / (1.0 + np.exp(-(X[te] @ init[:-1] + init[-1])))
                p = np.clip(p, 1e-6, 1 - 1e-6)
                yt = Y[te]
                ll = -(yt * np.log(p) + (1 - yt) * np.log(1 - p))
                loss[a] += np.where(np.isnan(yt), 0.0, ll).sum(axis=0)
            cnt += (~np.isnan(Y[te])).sum(axis=0)
        loss = loss / np.maximum(cnt, 1)
        best = np.argmin(loss, axis=0)
        self.C = np.where(self.constant, np.nan, np.asarray(C_GRID)[best])
        self.cv_logloss = {st.models[j]: {f"{c:g}": round(float(loss[a, j]), 5)
                                          for a, c in enumerate(C_GRID)} for j in range(m)}
        W = fit_logistic(X, Y, np.asarray(C_GRID)[best])
        self.coef, self.intercept = W[:-1].T.copy(), W[-1].copy()


class LogisticRouter(LearnedRouter):
    """Per-model logistic regression of success on the query embedding and role (RouterBench /
    RouteLLM style); cost = the model's train mean cost in the step's role."""

    name = "logistic"
    needs_embedding = True
    order = 32

    def _fit(self, table: Any) -> None:
        st = self.stats
        self.fitted = cached_fit("logistic", (tuple(st.models),), table,
                             lambda: _LogisticModel(st, table))

    def success_probability(self, step: StepContext) -> tuple[np.ndarray, str]:
        st = self._require_fit()
        qb, _, seen = st.role_means(step.role)
        if step.embedding is None:
            return qb, "no embedding for this step: train means of its role"
        m = self.fitted
        x = np.r_[l2(step.embedding),
                  role_onehot(np.array([st.role_of[str(step.role)] if seen else -1]),
                               len(st.role_names))[0]]
        p = 1.0 / (1.0 + np.exp(-(m.coef @ x + m.intercept)))
        p = np.where(m.constant, qb, p)
        cs = ", ".join(f"{c:g}" for c in sorted(set(m.C[~np.isnan(m.C)].tolist())))
        return p, f"per-model logistic regression on the embedding (C chosen by 5-fold CV: {cs})"

    def estimate(self, step: StepContext) -> tuple[np.ndarray, np.ndarray, str]:
        st = self._require_fit()
        p, note = self.success_probability(step)
        return p, st.role_means(step.role)[1], note


ROUTERS = {"per-role": PerRoleRouter, "knn": KNNRouter, "logistic": LogisticRouter}
