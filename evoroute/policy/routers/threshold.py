"""``threshold``: RouteLLM-style strong/weak routing on a predicted win probability."""

from __future__ import annotations

from typing import Any

import numpy as np

from evoroute.core.errors import EvoRouteError, UnknownModelError, ValidationError
from evoroute.core.types import Decision, ModelInfo, StepContext
from evoroute.policy.base import CostKnob
from evoroute.policy.baseline import Baseline
from evoroute.policy.training import l2, strong_weak_pair

#: the threshold router's strong-call shares swept by the benchmark (13 settings)
SHARE_GRID: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
DEFAULT_SHARE = 0.5


class ThresholdRouter(Baseline):
    """RouteLLM-style two-model router: strong model when the predicted probability that it
    beats the weak model on this query reaches a threshold (the cost knob).

    - strong = the best single model on the train split; weak = the best model whose mean
      train cost is at most ``weak_cost_ratio`` of the strong one's (the cheapest if none).
    - win predictor: similarity-weighted k-nearest-neighbour win rate over train queries of
      the same role, on the MiniLM embeddings (label 1 when strong scored above weak),
      shrunk towards the role's win rate by ``prior`` pseudo-observations.
    - threshold: given, or calibrated on leave-one-out train predictions so that a
      ``strong_share`` fraction of train queries goes to the strong model.
    Trained on the full train split in both protocols, as RouteLLM trains on preference data.
    """

    name = "threshold"
    needs_training = True
    needs_embedding = True
    seed_invariant = True
    cost_knob = CostKnob("strong_share", SHARE_GRID, DEFAULT_SHARE, "share of strong calls")
    order = 20

    def __init__(self, models: list[ModelInfo], strong: str | None = None, weak: str | None = None,
                 threshold: float | None = None, strong_share: float = DEFAULT_SHARE, k: int = 25,
                 prior: float = 2.0, weak_cost_ratio: float = 0.1) -> None:
        super().__init__(models)
        for n in (strong, weak):
            if n is not None and n not in self.by_name:
                raise UnknownModelError(n, self.model_names)
        if not 0.0 <= strong_share <= 1.0:
            raise ValidationError("strong_share must be in [0, 1]", "strong_share")
        if k < 1:
            raise ValidationError("k must be >= 1", "k")
        self.strong, self.weak = strong, weak
        self.threshold, self.strong_share = threshold, float(strong_share)
        self.k, self.prior, self.weak_cost_ratio = int(k), float(prior), float(weak_cost_ratio)
        self._fitted = False

    def fit(self, table: Any) -> None:
        cols = {n: j for j, n in enumerate(table.models)}
        if self.strong is None or self.weak is None:
            strong, weak = strong_weak_pair(self.model_names, table, self.weak_cost_ratio)
            if self.strong is None:
                self.strong = strong
            if self.weak is None:
                self.weak = weak if weak != self.strong else strong
        for n in (self.strong, self.weak):
            if n not in cols:
                raise EvoRouteError(f"the threshold router has no train outcomes of {n}")
        ys, yw = table.scores[:, cols[self.strong]], table.scores[:, cols[self.weak]]
        ok = ~(np.isnan(ys) | np.isnan(yw))
        self._y = (ys[ok] > yw[ok]).astype(float)
        self._roles = np.asarray(table.roles, dtype=object)[ok]
        self._base = {r: float(self._y[self._roles == r].mean()) for r in np.unique(self._roles)}
        self._global = float(self._y.mean()) if self._y.size else 0.5
        self._emb = None if table.embeddings is None else l2(table.embeddings[ok])
        self._by_role = {r: np.flatnonzero(self._roles == r) for r in self._base}
        if self.threshold is None:
            self.threshold = self.threshold_for_share(self.strong_share)
        self._fitted = True

    def _predict_rows(self, sims: np.ndarray, idx: np.ndarray, base: float) -> np.ndarray:
        """Win probability from similarities (rows: queries, cols: train rows idx)."""
        k = min(self.k, sims.shape[1])
        if k == 0:
            return np.full(sims.shape[0], base)
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        s = np.take_along_axis(sims, top, axis=1)
        w = np.clip(s, 0.0, None)
        y = self._y[idx][top]
        return ((w * y).sum(axis=1) + self.prior * base) / (w.sum(axis=1) + self.prior)

    def loo_predictions(self) -> np.ndarray:
        """Leave-one-out win predictions on the train split (used to calibrate thresholds)."""
        out = np.empty(self._y.size)
        for r, idx in self._by_role.items():
            if self._emb is None:
                out[idx] = self._base[r]
                continue
            e = self._emb[idx]
            sims = e @ e.T
            np.fill_diagonal(sims, -np.inf)
            out[idx] = self._predict_rows(sims, idx, self._base[r])
        return out

    def threshold_for_share(self, share: float) -> float:
        """The threshold that sends a ``share`` fraction of train queries to the strong model."""
        if share <= 0:
            return float("inf")
        if share >= 1:
            return float("-inf")
        return float(np.quantile(self.loo_predictions(), 1.0 - share, method="higher"))

    def win_probability(self, step: StepContext) -> float:
        base = self._base.get(step.role, self._global)
        idx = self._by_role.get(step.role)
        if idx is None:
            idx = np.arange(self._y.size)
        if self._emb is None or step.embedding is None or idx.size == 0:
            return base
        sims = (self._emb[idx] @ l2(step.embedding))[None, :]
        return float(self._predict_rows(sims, idx, base)[0])

    def decide(self, step: StepContext, rng: np.random.Generator) -> Decision:
        if not self._fitted:
            raise EvoRouteError("the threshold router must be trained first (fit on the train "
                                "split); the runner does this for replay and simulated runs")
        names = self.candidates(step)
        p = self.win_probability(step)
        want = self.strong if p >= self.threshold else self.weak
        side = "strong" if want == self.strong else "weak"
        reason = (f"threshold router: predicted probability that {self.strong} beats "
                  f"{self.weak} on this query is {p:.3f} ({'>=' if side == 'strong' else '<'} "
                  f"threshold {self.threshold:.3f}), so the {side} model")
        if want not in names:
            want = self._cheapest(names)
            reason += f"; it has no outcome for this step, so the cheapest available {want}"
        return self._decision(step, want, reason)


ROUTERS = {"threshold": ThresholdRouter}
