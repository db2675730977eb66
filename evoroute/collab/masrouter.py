"""A MasRouter-style router over collaboration modes (arXiv 2502.11133, adapted to replay).

Per query it chooses a collaboration mode *and* the models filling it (one model, a vote of k,
an escalation chain), learned from the train split with the same MiniLM embeddings EvoRoute
uses. MasRouter's cascaded controller (mode -> roles -> LLMs) is a factorisation of one joint
choice; with one role per query (the multiple-choice tasks) the cascade reduces to scoring
every (mode, models) candidate and keeping the best, which is what :meth:`MasRouter.choose`
does, reporting the winning mode kind and the best candidate of every other kind as the why.

Estimates, per candidate mode m and query q (the estimator of EvoRoute's query-aware design,
applied to modes): the similarity-weighted success of m on q's k nearest train queries of the
same role, shrunk toward m's success rate on the role by a prior of strength ``kappa``::

    P(m | q) = (sum_i w_i y_im + kappa p_m,role) / (sum_i w_i + kappa),  w_i = exp((s_i - 1) / tau)

Cost: m's mean train cost on the role. Choice: argmax P - lam * cost / c_ref (c_ref: the mean
cost of the role's strongest single model), ``lam`` the cost knob swept over the benchmark's
cost-weight grid. Candidate modes: the train-split Pareto front (quality up, cost down) of every
single model, vote and escalation per role — only modes that are not dominated on train can
ever be worth routing to, and pruning the rest removes a winner's curse over 700+ candidates.
``k``, ``kappa`` and ``tau`` are chosen by 5-fold cross-validation on the train split only.

On a role that is not multiple choice (or whose recorded responses do not parse) only
single-model modes are defined (a vote needs comparable answers): there the mode layer has one
choice and the router reduces to MasRouter's role allocation, a model per (role, query) by the
same estimate and utility — how it runs on the live agent's planner/solver/verifier/answerer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from evoroute.collab.answers import CHOICE_TASKS, ChoiceTable
from evoroute.collab.modes import Mode, ModeOutcome, candidate_modes, order_by_strength, replay
from evoroute.core.pareto import pareto_mask

K_GRID = (8, 16, 32, 64, 128)
KAPPA_GRID = (1.0, 4.0, 16.0, 64.0, 256.0)
TAU_GRID = (0.05, 0.2)


@dataclass(frozen=True)
class Choice:
    mode: Mode
    p_success: float
    cost: float
    n_eff: float
    prior_weight: float
    alternatives: dict[str, tuple[str, float, float]]   # kind -> (mode name, P, cost)
    p_all: tuple[float, ...] = ()          # P of every candidate mode of the role (its order)
    utility: tuple[float, ...] = ()        # P - lam * cost / c_ref (-inf: not allowed)

    def reason(self) -> str:
        alt = "; ".join(f"best {k}: {n} (P {p:.2f}, ${c:.5f})"
                        for k, (n, p, c) in self.alternatives.items() if n != self.mode.name)
        return (f"{self.mode.kind} {'+'.join(self.mode.models)}: P {self.p_success:.2f} from "
                f"{self.n_eff:.1f} effective neighbours (prior weight {self.prior_weight:.2f}), "
                f"${self.cost:.5f}" + (f"; {alt}" if alt else ""))


@dataclass
class MasRouter:
    k: int = 64             # defaults: 5-fold CV on the RouterBench train split (docs/collaboration.md)
    kappa: float = 64.0
    tau: float = 0.2
    vote_sizes: tuple[int, ...] = (3, 5)
    modes_by_role: dict[str, list[Mode]] = field(default_factory=dict)

    def fit(self, table: ChoiceTable, emb: np.ndarray) -> MasRouter:
        """Learn from the train queries of ``table`` (rows aligned with ``emb``)."""
        self._emb = _unit(emb)
        self._roles = table.roles
        ranked = order_by_strength(table)
        allm = list(candidate_modes(ranked, self.vote_sizes))
        self._y: dict[str, np.ndarray] = {}
        self._prior: dict[str, np.ndarray] = {}
        self._cost: dict[str, np.ndarray] = {}
        self._cref: dict[str, float] = {}
        singles = [m for m in allm if m.kind == "single"]
        self.collaborates: dict[str, bool] = {}
        for role in dict.fromkeys(table.roles):
            rows = table.roles == role
            sub = table.rows(rows)
            # modes of several calls read parsed answers: only on multiple-choice roles whose
            # recorded responses parse; elsewhere the cascade's mode layer has one choice
            # (one call) and masrouter allocates a model to the role per query
            self.collaborates[role] = bool(role in CHOICE_TASKS and (sub.answers != "").any())
            cands = allm if self.collaborates[role] else singles
            outs = [replay(m, sub) for m in cands]
            q = np.array([o.quality for o in outs])
            c = np.array([o.cost.mean() for o in outs])
            keep = pareto_mask(q, c, np.zeros_like(c))
            modes = [m for m, k in zip(cands, keep) if k]
            self.modes_by_role[role] = modes
            self._y[role] = np.column_stack([o.correct for o, k in zip(outs, keep) if k])
            self._prior[role] = q[keep]
            self._cost[role] = c[keep]
            best = max((o for m, o in zip(cands, outs) if m.kind == "single"),
                       key=lambda o: o.quality)
            self._cref[role] = float(best.cost.mean()) or 1.0
        return self

    def estimate(self, e: np.ndarray, role: str) -> tuple[np.ndarray, float, float]:
        """P(success) of every candidate mode of ``role`` for a query embedding ``e``, with the
        neighbours' effective sample size and the prior's weight (for the explanation)."""
        w, p = self._neighbours(_unit(e[None, :]), role)
        w = w[0]
        n_eff = float(w.sum() ** 2 / max((w ** 2).sum(), 1e-12))
        return p[0], n_eff, float(self.kappa / (w.sum() + self.kappa))

    def choose(self, e: np.ndarray | None, role: str, lam: float,
               allowed: np.ndarray | None = None) -> Choice:
        """The best mode of ``role`` for a query embedding ``e`` (None: the role's train rates
        alone) among the ``allowed`` ones (a mask over :attr:`modes_by_role`; None: all)."""
        if e is None:
            p, n_eff, prior_w = self._prior[role].copy(), 0.0, 1.0
        else:
            p, n_eff, prior_w = self.estimate(e, role)
        cost = self._cost[role]
        u = p - lam * cost / self._cref[role]
        if allowed is not None:
            u = np.where(allowed, u, -np.inf)
        modes = self.modes_by_role[role]
        best = int(np.argmax(u))
        alts: dict[str, tuple[str, float, float]] = {}
        for kind in ("single", "vote", "escalate"):
            idx = [i for i, m in enumerate(modes) if m.kind == kind and np.isfinite(u[i])]
            if idx:
                i = max(idx, key=lambda j: u[j])
                alts[kind] = (modes[i].name, float(p[i]), float(cost[i]))
        return Choice(modes[best], float(p[best]), float(cost[best]), n_eff, prior_w, alts,
                      tuple(float(x) for x in p), tuple(float(x) for x in u))

    def prior(self, role: str) -> np.ndarray:
        """Every candidate mode's success rate on the role's train queries."""
        return self._prior[role]

    def mean_cost(self, role: str) -> np.ndarray:
        """Every candidate mode's mean train cost on the role."""
        return self._cost[role]

    def c_ref(self, role: str) -> float:
        return self._cref[role]

    def k_used(self, role: str) -> int:
        """How many neighbours an estimate of ``role`` weighs (k, or the role's train size)."""
        return min(self.k, int((self._roles == role).sum()))

    def nearest(self, e: np.ndarray, role: str, n: int = 3) -> list[tuple[int, float]]:
        """The ``n`` most similar train queries of ``role`` (train row, cosine), nearest first."""
        rows = np.flatnonzero(self._roles == role)
        sims = self._emb[rows] @ _unit(e[None, :])[0]
        top = np.argsort(-sims, kind="stable")[:n]
        return [(int(rows[t]), float(sims[t])) for t in top]

    def estimate_many(self, emb: np.ndarray, roles: np.ndarray) -> dict[str, np.ndarray]:
        """P(success) of every candidate mode, for many queries at once: role -> (n_q, n_modes)."""
        e = _unit(emb)
        return {role: self._neighbours(e[roles == role], role)[1] for role in dict.fromkeys(roles)}

    def _neighbours(self, e: np.ndarray, role: str) -> tuple[np.ndarray, np.ndarray]:
        """Kernel weights of each query's k nearest train queries of ``role`` (unit embeddings
        ``e``, one row per query) and the shrunk success estimates they give."""
        rows = np.flatnonzero(self._roles == role)
        sims = e @ self._emb[rows].T
        k = min(self.k, len(rows))
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        w = np.exp((np.take_along_axis(sims, top, axis=1) - 1.0) / self.tau)
        y = self._y[role][top]                                  # (n_q, k, n_modes)
        p = (np.einsum("qk,qkm->qm", w, y) + self.kappa * self._prior[role]) / (
            w.sum(axis=1, keepdims=True) + self.kappa)
        return w, p

    def route(self, table: ChoiceTable, emb: np.ndarray, lam: float,
              estimates: dict[str, np.ndarray] | None = None) -> ModeOutcome:
        """Route every query of ``table`` and score the chosen modes on their recorded answers
        (``estimates``: :meth:`estimate_many` of these queries, to sweep the knob cheaply)."""
        est = estimates if estimates is not None else self.estimate_many(emb, table.roles)
        n = len(table.query_ids)
        correct, cost, calls = np.zeros(n), np.zeros(n), np.zeros(n)
        for role, p in est.items():
            q = np.flatnonzero(table.roles == role)
            pick = np.argmax(p - lam * self._cost[role] / self._cref[role], axis=1)
            for j in np.unique(pick):
                idx = q[pick == j]
                keep = np.zeros(n, dtype=bool)
                keep[idx] = True
                o = replay(self.modes_by_role[role][j], table.rows(keep))
                correct[idx], cost[idx], calls[idx] = o.correct, o.cost, o.calls
        return ModeOutcome(correct, cost, calls)


def sweep(router: MasRouter, table: ChoiceTable, emb: np.ndarray,
          grid: Sequence[float]) -> np.ndarray:
    """(total cost, quality) of every setting of the cost knob."""
    est = router.estimate_many(emb, table.roles)
    pts = []
    for lam in grid:
        out = router.route(table, emb, lam, est)
        pts.append((out.total_cost, out.quality))
    return np.array(pts)


def cross_validate(table: ChoiceTable, emb: np.ndarray, grid: Sequence[float], folds: int = 5,
                   seed: int = 0) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Choose ``k``, ``kappa``, ``tau`` by the mean AIQ of the held-out folds (train only)."""
    from evoroute.evaluation.metrics import aiq

    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(table.query_ids)) % folds
    fitted = []           # the fit does not depend on k, kappa, tau: once per fold
    for f in range(folds):
        tr, te = fold != f, fold == f
        fitted.append((MasRouter().fit(table.rows(tr), emb[tr]), table.rows(te), emb[te]))
    rows = []
    for k in K_GRID:
        for kappa in KAPPA_GRID:
            for tau in TAU_GRID:
                scores = []
                for r, held, e in fitted:
                    r.k, r.kappa, r.tau = k, kappa, tau
                    pts = sweep(r, held, e, grid)
                    top = max(held.cost.sum(axis=0).max(), pts[:, 0].max())
                    scores.append(aiq(pts, max_cost=float(top)))
                rows.append({"k": k, "kappa": kappa, "tau": tau, "aiq": float(np.mean(scores))})
    best = max(rows, key=lambda r: r["aiq"])
    return best, rows


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
