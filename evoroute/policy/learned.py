"""Learned baselines: the routers a user would write instead of EvoRoute, on the same interface.

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
:class:`LinTSRouter`) and its noise scale is estimated online from its residuals.

The predictors are trained on every model's outcome on the full train split in both protocols
(as RouteLLM trains on preference data), so they give the same numbers in both; LinTS learns
online in the bandit protocol and starts from every model's train outcome in the full one.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from evoroute.core.types import CandidateStat, Decision, Explanation, ModelInfo, StepContext, StepOutcome
from evoroute.errors import EvoRouteError, ValidationError
from evoroute.policy.base import COST_WEIGHT_GRID, CostKnob, register
from evoroute.policy.baselines import Baseline, _l2, cost_quality_ladder

DEFAULT_COST_WEIGHT = 0.1          # = EvoRoute's default w_c / w_p
LAMBDA_KNOB = CostKnob("cost_weight", COST_WEIGHT_GRID, DEFAULT_COST_WEIGHT, "cost weight λ")
#: the confidence cascade's thresholds on the predicted success probability (14 settings)
CONFIDENCE_GRID: tuple[float, ...] = (0.0, 0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9,
                                      0.95, 0.98, 1.0)
DEFAULT_CONFIDENCE = 0.8
K_GRID: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)
PRIOR_GRID: tuple[float, ...] = (1.0, 4.0, 16.0, 64.0)
C_GRID: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)
N_FOLDS = 5
MAX_CV_ROWS = 2000                 # kNN leave-one-out on at most this many rows per role
_FIT_CACHE: dict[tuple, Any] = {}  # fitted predictors per (kind, params, table fingerprint)


# ------------------------------------------------------------------------------ helpers
def _fingerprint(table: Any) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in (table.scores, table.costs, table.embeddings):
        if a is not None:
            h.update(np.ascontiguousarray(a).tobytes())
    h.update("\x1f".join(map(str, table.models)).encode())
    h.update("\x1f".join(map(str, table.roles)).encode())
    h.update("\x1f".join(map(str, table.task_keys)).encode())
    return h.hexdigest()


def _cached(kind: str, params: tuple, table: Any, build: Any) -> Any:
    """Fitted predictors are reused across runs on the same train table (the benchmark fits
    each router once per process, not once per cost-knob setting)."""
    key = (kind, params, _fingerprint(table))
    if key not in _FIT_CACHE:
        if len(_FIT_CACHE) >= 16:
            _FIT_CACHE.pop(next(iter(_FIT_CACHE)))
        _FIT_CACHE[key] = build()
    return _FIT_CACHE[key]


def task_folds(task_keys: Sequence[str], n_folds: int = N_FOLDS) -> np.ndarray:
    """Fold of each row from a hash of its task key: independent of row order and seed, and
    the steps of one task always share a fold."""
    return np.array([zlib.crc32(str(k).encode()) % n_folds for k in task_keys], dtype=np.int64)


def _nanmean_cols(a: np.ndarray) -> np.ndarray:
    cnt = (~np.isnan(a)).sum(axis=0)
    return np.where(cnt > 0, np.nansum(a, axis=0) / np.maximum(cnt, 1), np.nan)


class TrainStats:
    """Per-role and global train means of every model's score and cost, and C_ref."""

    def __init__(self, table: Any, names: Sequence[str]) -> None:
        cols = {n: j for j, n in enumerate(table.models)}
        self.models = [n for n in names if n in cols]
        if not self.models:
            raise EvoRouteError("no train outcomes of any candidate model")
        pick = [cols[n] for n in self.models]
        self.scores = np.asarray(table.scores, dtype=float)[:, pick]
        self.costs = np.asarray(table.costs, dtype=float)[:, pick]
        self.roles = np.asarray(table.roles, dtype=object)
        self.role_names = sorted({str(r) for r in self.roles})
        self.role_of = {r: i for i, r in enumerate(self.role_names)}
        self.role_idx = np.array([self.role_of[str(r)] for r in self.roles], dtype=np.int64)
        self.q_glob, self.c_glob = _nanmean_cols(self.scores), _nanmean_cols(self.costs)
        self.q_role = np.full((len(self.role_names), len(self.models)), np.nan)
        self.c_role = np.full_like(self.q_role, np.nan)
        self.n_role = np.zeros_like(self.q_role)
        for i in range(len(self.role_names)):
            sel = self.role_idx == i
            self.q_role[i] = _nanmean_cols(self.scores[sel])
            self.c_role[i] = _nanmean_cols(self.costs[sel])
            self.n_role[i] = (~np.isnan(self.scores[sel])).sum(axis=0)
        # a model without outcomes in a role falls back to its global mean
        self.q_role = np.where(np.isnan(self.q_role), self.q_glob, self.q_role)
        self.c_role = np.where(np.isnan(self.c_role), self.c_glob, self.c_role)
        finite = self.c_glob[np.isfinite(self.c_glob)]
        self.c_ref = float(finite.max()) if finite.size and finite.max() > 0 else 1.0

    def role_means(self, role: str) -> tuple[np.ndarray, np.ndarray, bool]:
        i = self.role_of.get(str(role))
        if i is None:
            return self.q_glob, self.c_glob, False
        return self.q_role[i], self.c_role[i], True


def _role_onehot(role_idx: np.ndarray, n_roles: int) -> np.ndarray:
    out = np.zeros((role_idx.size, n_roles), dtype=np.float32)
    ok = role_idx >= 0
    out[np.flatnonzero(ok), role_idx[ok]] = 1.0
    return out


# ------------------------------------------------------------------------------ the routers
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
        self.emb = _l2(table.embeddings)
        self.task = np.unique(np.asarray(table.task_keys, dtype=object), return_inverse=True)[1]
        self.rows_of = {i: np.flatnonzero(st.role_idx == i) for i in range(len(st.role_names))}
        self.k, self.prior, self.cv = self._choose(st, table)

    def _choose(self, st: TrainStats, table: Any) -> tuple[int, float, dict[str, float]]:
        """Leave-one-task-out Brier score over every recorded (row, model), per (k, prior)."""
        sse = np.zeros((len(K_GRID), len(PRIOR_GRID)))
        n_obs = 0
        order = np.array([zlib.crc32(str(k).encode()) for k in table.task_keys], dtype=np.int64)
        S = st.scores
        for i, rows in self.rows_of.items():
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
        self.fitted = _cached("knn", (tuple(st.models),), table, lambda: _KNNModel(st, table))
        self.k, self.prior = self.fitted.k, self.fitted.prior

    def estimate(self, step: StepContext) -> tuple[np.ndarray, np.ndarray, str]:
        st = self._require_fit()
        qb, cb, seen = st.role_means(step.role)
        if step.embedding is None:
            return qb, cb, "no embedding for this step: train means of its role"
        m = self.fitted
        rows = m.rows_of[st.role_of[str(step.role)]] if seen else np.arange(m.emb.shape[0])
        k = min(m.k, rows.size)
        sims = m.emb[rows] @ _l2(step.embedding)
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
        X = np.hstack([_l2(table.embeddings), _role_onehot(st.role_idx, len(st.role_names))])
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
        self.fitted = _cached("logistic", (tuple(st.models),), table,
                             lambda: _LogisticModel(st, table))

    def success_probability(self, step: StepContext) -> tuple[np.ndarray, str]:
        st = self._require_fit()
        qb, _, seen = st.role_means(step.role)
        if step.embedding is None:
            return qb, "no embedding for this step: train means of its role"
        m = self.fitted
        x = np.r_[_l2(step.embedding),
                  _role_onehot(np.array([st.role_of[str(step.role)] if seen else -1]),
                               len(st.role_names))[0]]
        p = 1.0 / (1.0 + np.exp(-(m.coef @ x + m.intercept)))
        p = np.where(m.constant, qb, p)
        cs = ", ".join(f"{c:g}" for c in sorted(set(m.C[~np.isnan(m.C)].tolist())))
        return p, f"per-model logistic regression on the embedding (C chosen by 5-fold CV: {cs})"

    def estimate(self, step: StepContext) -> tuple[np.ndarray, np.ndarray, str]:
        st = self._require_fit()
        p, note = self.success_probability(step)
        return p, st.role_means(step.role)[1], note


class ConfidenceCascadeRouter(Baseline):
    """Climb the train split's cost/quality ladder (cheapest first) while the router's own
    predicted probability of success on this query (per-model logistic regression) is below
    ``confidence``; the top rung takes what no cheaper rung is confident of.

    It decides before any call, on its prediction only: the recorded answer is never read (a
    cascade that called the cheap model first and then escalated on the same query-only
    prediction would pay for an answer it ignores). The knob is ``confidence``: 0 = always the
    cheapest rung, 1 = always the top rung.
    """

    name = "cascade"
    needs_training = True
    needs_embedding = True
    seed_invariant = True
    cost_knob = CostKnob("confidence", CONFIDENCE_GRID, DEFAULT_CONFIDENCE,
                         "confidence threshold")
    family = "learned"
    order = 34

    def __init__(self, models: list[ModelInfo], confidence: float = DEFAULT_CONFIDENCE,
                 ladder: Sequence[str] | None = None) -> None:
        super().__init__(models)
        tau = float(confidence)
        if not 0.0 <= tau <= 1.0:
            raise ValidationError("confidence must be in [0, 1]", "confidence")
        self.confidence = tau
        self.full_ladder = list(ladder) if ladder is not None else None
        self.predictor = LogisticRouter(models)

    def fit(self, table: Any) -> None:
        self.predictor.fit(table)
        if self.full_ladder is None:
            self.full_ladder = cost_quality_ladder(self.model_names, table)

    def decide(self, step: StepContext, rng: np.random.Generator) -> Decision:
        if self.full_ladder is None or self.predictor.stats is None:
            raise EvoRouteError("the cascade router must be trained first (fit on the train split)")
        names = self.candidates(step)
        p, _ = self.predictor.success_probability(step)
        col = {n: j for j, n in enumerate(self.predictor.stats.models)}
        rungs = [n for n in self.full_ladder if n in names and n in col]
        if not rungs:
            pick = self._cheapest(names)
            return self._decision(step, pick, f"cascade: no ladder model can run this step; the "
                                              f"cheapest available {pick}")
        seen = []
        pick = rungs[-1]
        for n in rungs:
            seen.append(f"{n} {p[col[n]]:.2f}")
            if p[col[n]] >= self.confidence:
                pick = n
                break
        how = ("the first rung predicted to succeed with probability >= "
               f"{self.confidence:g}" if pick != rungs[-1] or p[col[pick]] >= self.confidence
               else f"no rung reaches {self.confidence:g}, so the top rung")
        reason = (f"cascade (own predicted confidence, never the recorded answer): rungs "
                  f"{' -> '.join(rungs)}; predicted success {', '.join(seen)}: {how}, {pick}")
        cands = [CandidateStat(n, p_hat=float(p[col[n]]) if n in col else None, unexplored=False,
                               propensity=1.0 if n == pick else 0.0) for n in names]
        return Decision(pick, 1.0, Explanation(router=self.name, phase=step.phase, mode="baseline",
                                               chosen=pick, reason=reason, candidates=cands))


class LinTSRouter(Baseline):
    """Linear Thompson sampling (Agrawal & Goyal 2013) over the models, one Bayesian linear
    regression of the score per model on x = [P·embedding, role one-hot (hashed), 1], seeing
    only the outcome of its own choice; cost per model and role is its observed running mean.
    P is a fixed, data-independent random orthonormal projection of the embedding onto
    ``dims`` dimensions (seeded, the same in every run): it keeps inner products on average
    and makes a step O(models · dims²).

    Decision: each model's sampled score x·θ̃ − λ·ĉ/C_ref, C_ref the largest observed mean
    cost per call. Sampling the scalar x·θ̃ ~ N(x·μ, v²·xᵀA⁻¹x) is exactly x times a draw of
    θ̃ from the posterior, at O(d²) instead of a d×d Cholesky per model and step. Prior
    θ ~ N(0, v²/α·I) with α = ``prior_precision``; v is estimated online from the residuals
    (starting at 0.5, the largest sd of a 0/1 score). The defaults α = 16 and 64 dimensions
    were chosen on a validation split of RouterBench's *train* split (bench ``validation=0.3``,
    2 seeds; α in {1, 4, 16, 64}, dims in {32, 64, 128}): the best utility at the default λ over
    both protocols (bandit: α 4 → 0.814 quality for $0.85, α 16 → 0.807 for $0.45; full: α 16
    0.837, α 4 0.816). The test split was not used. Every model is tried once before
    sampling starts. At inference (the test split) it takes the posterior mean unless
    ``explore_at_inference``, as EvoRoute does; it keeps learning from what it observes.
    """

    name = "lints"
    learns_online = True
    experience_preload = "table"
    needs_embedding = True
    cost_knob = LAMBDA_KNOB
    family = "learned"
    order = 33
    ROLE_SLOTS = 16
    PROJECTION_SEED = 20_260_102

    def __init__(self, models: list[ModelInfo], cost_weight: float = DEFAULT_COST_WEIGHT,
                 prior_precision: float = 16.0, dims: int = 64, explore_at_inference: bool = False,
                 propensity_draws: int = 100) -> None:
        super().__init__(models)
        lam, alpha = float(cost_weight), float(prior_precision)
        if not math.isfinite(lam) or lam < 0:
            raise ValidationError("cost_weight must be a finite number >= 0", "cost_weight")
        if not math.isfinite(alpha) or alpha <= 0:
            raise ValidationError("prior_precision must be > 0", "prior_precision")
        if int(dims) < 1:
            raise ValidationError("dims must be >= 1", "dims")
        self.cost_weight, self.prior_precision, self.dims = lam, alpha, int(dims)
        self.explore_at_inference = bool(explore_at_inference)
        self.propensity_draws = int(propensity_draws)
        self._dim: int | None = None
        self._arm = {m.name: i for i, m in enumerate(self.models)}

    # ------------------------------------------------------------ state
    def _init(self, d_emb: int) -> None:
        self._d_in = d_emb
        d_emb = min(d_emb, self.dims)
        self._proj = None
        if 0 < d_emb < self._d_in:
            g = np.random.default_rng(self.PROJECTION_SEED).standard_normal((self._d_in, d_emb))
            self._proj = np.linalg.qr(g)[0] * math.sqrt(self._d_in / d_emb)
        K, D = len(self.models), d_emb + self.ROLE_SLOTS + 1
        self._d_emb, self._dim = d_emb, D
        self.A_inv = np.repeat(np.eye(D)[None] / self.prior_precision, K, axis=0)
        self.b = np.zeros((K, D))
        self.theta = np.zeros((K, D))
        self.n = np.zeros(K, dtype=np.int64)
        self.c_sum = np.zeros((K, self.ROLE_SLOTS))
        self.c_cnt = np.zeros((K, self.ROLE_SLOTS))
        self.sse, self.n_res = 0.5, 2.0          # noise variance 0.25 as two pseudo-residuals

    def _slot(self, role: str) -> int:
        return zlib.crc32(str(role).encode()) % self.ROLE_SLOTS

    def _x(self, embedding: Any, role: str) -> np.ndarray:
        if self._dim is None:
            self._init(0 if embedding is None else int(np.asarray(embedding).size))
        x = np.zeros(self._dim)
        if embedding is not None and np.asarray(embedding).size == self._d_in and self._d_emb:
            e = _l2(np.asarray(embedding, dtype=np.float64))
            x[: self._d_emb] = e if self._proj is None else e @ self._proj
        x[self._d_emb + self._slot(role)] = 1.0
        x[-1] = 1.0
        return x

    def _cost(self, slot: int) -> tuple[np.ndarray, float]:
        tot = self.c_cnt.sum(axis=1)
        arm_mean = np.where(tot > 0, self.c_sum.sum(axis=1) / np.maximum(tot, 1), np.nan)
        c = np.where(self.c_cnt[:, slot] > 0, self.c_sum[:, slot] / np.maximum(self.c_cnt[:, slot], 1),
                     arm_mean)
        finite = arm_mean[np.isfinite(arm_mean)]
        c_ref = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        return c, c_ref

    @property
    def noise_sd(self) -> float:
        return math.sqrt(self.sse / self.n_res) if self._dim is not None else 0.5

    # ------------------------------------------------------------ deciding
    def decide(self, step: StepContext, rng: np.random.Generator) -> Decision:
        names = self.candidates(step)
        x = self._x(step.embedding, step.role)
        idx = np.array([self._arm[n] for n in names])
        fresh = [n for n in names if self.n[self._arm[n]] == 0]
        if fresh:
            pick = fresh[0]
            return self._decision(step, pick, f"lints: {pick} has no observation yet; every model "
                                              f"is tried once before sampling")
        mean = self.theta[idx] @ x
        Ax = np.einsum("kij,j->ki", self.A_inv[idx], x)
        sd = self.noise_sd * np.sqrt(np.clip(Ax @ x, 0.0, None))
        c, c_ref = self._cost(self._slot(step.role))
        cost_term = self.cost_weight * c[idx] / c_ref
        sample = step.phase != "inference" or self.explore_at_inference
        draw = mean + sd * rng.standard_normal(idx.size) if sample else mean
        u = draw - cost_term
        j = int(np.argmax(u))
        pick = names[j]
        if sample and self.propensity_draws > 0:
            z = rng.standard_normal((self.propensity_draws, idx.size))
            wins = np.argmax(mean + sd * z - cost_term, axis=1)
            # the draw that decided counts too, so the chosen model never gets propensity 0
            props = (np.bincount(wins, minlength=idx.size) + (np.arange(idx.size) == j)) / (
                self.propensity_draws + 1)
        else:
            props = (np.arange(idx.size) == j).astype(float)
        reason = (f"lints: {'Thompson sample' if sample else 'posterior mean'} of each model's "
                  f"score on this query (x·θ, noise sd {self.noise_sd:.3f}) − λ·ĉ/C_ref with "
                  f"λ = {self.cost_weight:g}, C_ref = ${c_ref:.6f}: {pick} {u[j]:.3f} "
                  f"(mean {mean[j]:.3f} ± {sd[j]:.3f}, ĉ ${c[idx][j]:.6f}, {int(self.n[idx][j])} "
                  f"observations)")
        cands = [CandidateStat(n, n=int(self.n[i]), p_hat=float(mean[k]), c_hat=float(c[i]),
                               theta_p=float(draw[k]), utility=float(u[k]), unexplored=False,
                               propensity=float(props[k])) for k, (n, i) in enumerate(zip(names, idx))]
        expl = Explanation(router=self.name, phase=step.phase,
                           mode="thompson" if sample else "posterior_mean", chosen=pick,
                           reason=reason, candidates=cands, c_ref=c_ref)
        return Decision(pick, float(props[j]), expl)

    # ------------------------------------------------------------ learning
    def observe(self, step: StepContext, decision: Decision, outcome: StepOutcome) -> None:
        k = self._arm.get(outcome.model)
        if k is None or outcome.error or outcome.step_success is None:
            return
        x = self._x(step.embedding, step.role)
        y = float(outcome.step_success)
        self.sse += (y - float(self.theta[k] @ x)) ** 2
        self.n_res += 1
        Ax = self.A_inv[k] @ x
        self.A_inv[k] -= np.outer(Ax, Ax) / (1.0 + float(x @ Ax))
        self.b[k] += y * x
        self.theta[k] = self.A_inv[k] @ self.b[k]
        self.n[k] += 1
        s = self._slot(step.role)
        self.c_sum[k, s] += float(outcome.cost_usd)
        self.c_cnt[k, s] += 1

    def preload(self, table: Any) -> None:
        """Full protocol: start from every model's outcome on the train split (batch posterior)."""
        emb = table.embeddings
        d = 0 if emb is None else int(emb.shape[1])
        if self._dim is None:
            self._init(d)
        X = np.zeros((len(table), self._dim))
        if emb is not None and d == self._d_in and self._d_emb:
            e = _l2(np.asarray(emb, dtype=np.float64))
            X[:, : self._d_emb] = e if self._proj is None else e @ self._proj
        slots = np.array([self._slot(r) for r in table.roles], dtype=np.int64)
        X[np.arange(len(table)), self._d_emb + slots] = 1.0
        X[:, -1] = 1.0
        cols = {n: j for j, n in enumerate(table.models)}
        for name, k in self._arm.items():
            if name not in cols:
                continue
            y = np.asarray(table.scores[:, cols[name]], dtype=float)
            c = np.asarray(table.costs[:, cols[name]], dtype=float)
            ok = ~np.isnan(y)
            Xk, yk = X[ok], y[ok]
            self.A_inv[k] = np.linalg.inv(np.linalg.inv(self.A_inv[k]) + Xk.T @ Xk)
            self.b[k] += Xk.T @ yk
            self.theta[k] = self.A_inv[k] @ self.b[k]
            self.n[k] += int(ok.sum())
            self.sse += float(np.sum((yk - Xk @ self.theta[k]) ** 2))
            self.n_res += int(ok.sum())
            okc = ok & ~np.isnan(c)
            np.add.at(self.c_sum[k], slots[okc], c[okc])
            np.add.at(self.c_cnt[k], slots[okc], 1.0)


register("per-role")(PerRoleRouter)
register("knn")(KNNRouter)
register("logistic")(LogisticRouter)
register("lints")(LinTSRouter)
register("cascade")(ConfidenceCascadeRouter)

__all__ = ["PerRoleRouter", "KNNRouter", "LogisticRouter", "LinTSRouter",
           "ConfidenceCascadeRouter", "TrainStats", "task_folds", "LAMBDA_KNOB",
           "CONFIDENCE_GRID", "DEFAULT_COST_WEIGHT", "DEFAULT_CONFIDENCE"]
