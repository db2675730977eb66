"""Baseline routers on the same interface as EvoRoute (spec §6).

``single`` (one model for everything), ``cheapest``, ``random``, ``round_robin``, ``oracle``
(replay/simulated only: the cheapest model with the best recorded score), ``threshold``
(RouteLLM-style strong/weak routing on a predicted win probability) and ``oracle-cascade``
(Atropos-style: cheap first, escalate when the step fails its check; in replay the check is the
recorded correctness, so it is listed with the oracles). The learned baselines (per-role table,
kNN, logistic regression, LinTS, the confidence cascade) are in :mod:`evoroute.policy.learned`.
Each decision's explanation says why the model was chosen.

Hooks the runner honours (all optional, so a router stays one small class; the capabilities
are declared as class attributes, see :class:`~evoroute.policy.base.Router`):

- ``learns_online = False``: the router does not learn from outcomes, so the runner skips the
  train-split phases for it and runs it on the test split only;
- ``needs_training = True`` + ``fit(table)``: trained before the run on every model's outcome
  on the *full* train split (:class:`~evoroute.backends.base.OutcomeTable`), in both protocols,
  as RouteLLM trains its routers on preference data;
- ``preload(table)``: an online learner's start in the ``full`` protocol (every model's train
  outcome, as EvoRoute's experience base is bulk-loaded);
- ``needs_oracle = True`` + ``attach_oracle(fn)``: ``fn(step)`` gives every model's outcome on
  the step (only backends that know them offer it);
- ``escalate(step, decision, outcome, rng)``: after a step ran, return another decision to try
  the step again on a different model (the runner charges every attempted call's cost and the
  summed latency to the step), or None to keep the outcome.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from evoroute.core.types import (CandidateStat, Decision, Explanation, ModelInfo, StepContext,
                                 StepOutcome)
from evoroute.errors import EvoRouteError, UnknownModelError, ValidationError
from evoroute.policy.base import CostKnob, Router, register

#: the threshold router's strong-call shares swept by the benchmark (13 settings)
SHARE_GRID: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
DEFAULT_SHARE = 0.5

# Prices are compared on one typical call so input- and output-heavy price lists rank fairly.
TYPICAL_CALL_TOKENS = (1000, 200)


def typical_cost(m: ModelInfo) -> float:
    return m.cost(*TYPICAL_CALL_TOKENS)


class Baseline(Router):
    learns_online = False
    #: routers that pick by price (cheapest, a single model's stand-in)
    ranks_by_price = False
    #: mean recorded cost per call on the train split; set by :meth:`fit_costs` only when every
    #: registered price is zero (a replay file without token counts: prices cannot be fitted)
    recorded_cost: dict[str, float] | None = None

    def prices_unknown(self) -> bool:
        return (self.ranks_by_price and len(self.models) > 1
                and all(typical_cost(m) == 0 for m in self.models))

    def fit_costs(self, table: Any) -> None:
        """Rank by mean recorded cost when the registered prices cannot tell models apart.

        Left unset when the recorded costs cannot tell them apart either (e.g. override or
        notional prices of 0, which replay recomputes as 0). Costs are averaged over the train
        queries every model has an outcome on, so all models are compared on the same queries.
        """
        if not self.prices_unknown():
            return
        costs = np.asarray(table.costs, dtype=float)
        both = np.isfinite(costs).all(axis=1)
        if not both.any():
            return
        means = costs[both].mean(axis=0)
        out = {name: float(means[j]) for j, name in enumerate(table.models)}
        self.recorded_cost = out if len(set(out.values())) > 1 else None

    def _decision(self, step: StepContext, model: str, reason: str,
                  props: Mapping[str, float] | None = None) -> Decision:
        names = self.candidates(step)
        props = props if props is not None else {model: 1.0}
        expl = Explanation(router=self.name, phase=step.phase, mode="baseline", chosen=model,
                           reason=reason,
                           candidates=[CandidateStat(m, propensity=float(props.get(m, 0.0)))
                                       for m in names])
        return Decision(model, float(props.get(model, 0.0)), expl)

    def _cheapest(self, names: Sequence[str]) -> str:
        rec = self.recorded_cost or {}
        return min(names, key=lambda n: (typical_cost(self.by_name[n]), rec.get(n, math.inf), n))


class SingleModelRouter(Baseline):
    """Every step to one model: the reference points of every comparison."""

    seed_invariant = True
    ranks_by_price = True              # for the stand-in when its model cannot run a step
    family = "single"

    def __init__(self, models: list[ModelInfo], model: str) -> None:
        super().__init__(models)
        if model not in self.by_name:
            raise UnknownModelError(model, self.model_names)
        self.model = model
        self.name = f"single:{model}"

    def decide(self, step: StepContext, rng: np.random.Generator) -> Decision:
        names = self.candidates(step)
        if self.model in names:
            return self._decision(step, self.model, f"baseline: every step goes to {self.model}")
        pick = self._cheapest(names)
        how = ("by mean recorded cost, every registered price being 0"
               if self.recorded_cost and pick in self.recorded_cost else "by registered price")
        return self._decision(step, pick, f"{self.model} has no outcome for this step; the "
                                          f"cheapest available model {pick} ({how}) stands in")


class CheapestRouter(Baseline):
    """Always the lowest registered price (the lowest mean recorded train cost when every
    registered price is 0): the cost floor of every comparison."""

    name = "cheapest"
    ranks_by_price = True
    seed_invariant = True
    order = 42

    def decide(self, step: StepContext, rng: np.random.Generator) -> Decision:
        pick = self._cheapest(self.candidates(step))
        if self.recorded_cost and pick in self.recorded_cost:
            return self._decision(step, pick, f"baseline: every registered price is 0, so models are "
                                              f"ranked by mean recorded cost on the train split; "
                                              f"{pick}'s is the lowest "
                                              f"(${self.recorded_cost[pick]:.6f} per call)")
        return self._decision(step, pick, f"baseline: {pick} has the lowest registered price "
                                          f"(${typical_cost(self.by_name[pick]):.6f} for a typical "
                                          f"{TYPICAL_CALL_TOKENS[0]}-in / {TYPICAL_CALL_TOKENS[1]}-"
                                          f"out call)")


class RandomRouter(Baseline):
    """Uniformly random model per step: what routing without information achieves."""

    name = "random"
    order = 40

    def decide(self, step: StepContext, rng: np.random.Generator) -> Decision:
        names = self.candidates(step)
        pick = names[int(rng.integers(len(names)))]
        p = 1.0 / len(names)
        return self._decision(step, pick, f"baseline: uniformly random among {len(names)} models",
                              {n: p for n in names})


class RoundRobinRouter(Baseline):
    """Models in a fixed cycle: load spreading with no regard for the step."""

    name = "round_robin"
    order = 41

    def __init__(self, models: list[ModelInfo]) -> None:
        super().__init__(models)
        self._next = 0

    def decide(self, step: StepContext, rng: np.random.Generator) -> Decision:
        names = set(self.candidates(step))
        n = len(self.models)
        for k in range(n):
            pos = (self._next + k) % n
            if self.models[pos].name in names:
                self._next = pos + 1
                pick = self.models[pos].name
                return self._decision(step, pick, f"baseline: next model in the fixed cycle "
                                                  f"(position {pos + 1} of {n})")
        raise EvoRouteError("no candidate model for this step")


OracleFn = Callable[[StepContext], Mapping[str, Any]]


class OracleRouter(Baseline):
    """The cheapest model with the best recorded score on this step: an upper bound that
    reads every model's outcome, so it exists only where the backend knows them (replay,
    simulated). When no model succeeds it takes the cheapest (as RouterBench's oracle)."""

    name = "oracle"
    needs_oracle = True
    is_oracle = True
    seed_invariant = True
    family = "oracle"
    order = 10

    def __init__(self, models: list[ModelInfo], oracle: OracleFn | None = None) -> None:
        super().__init__(models)
        self._oracle = oracle

    def attach_oracle(self, oracle: OracleFn) -> None:
        self._oracle = oracle

    def decide(self, step: StepContext, rng: np.random.Generator) -> Decision:
        if self._oracle is None:
            raise EvoRouteError("the oracle router needs every model's recorded outcome: use it "
                                "with the replay or simulated backend")
        names = self.candidates(step)
        entries = self._oracle(step)
        known = [n for n in names if n in entries]
        if not known:
            raise EvoRouteError(f"no recorded outcome for step {step.step_index} of task "
                                f"{step.task_key!r}")
        best = max(entries[n].score for n in known)
        pick = min((n for n in known if entries[n].score == best),
                   key=lambda n: (entries[n].cost_usd, n))
        why = (f"oracle (reads every model's recorded outcome): {pick} is the cheapest model "
               f"with the best recorded score {best:g} on this step") if best > 0 else (
               f"oracle: no model succeeds on this step, so the cheapest, {pick}")
        return self._decision(step, pick, why)


def _mean_cols(a: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        cnt = (~np.isnan(a)).sum(axis=0)
        return np.where(cnt > 0, np.nansum(a, axis=0) / np.maximum(cnt, 1), np.nan)


def strong_weak_pair(names: Sequence[str], table: Any, weak_cost_ratio: float = 0.1
                     ) -> tuple[str, str]:
    """RouteLLM's pair from train outcomes: strong = the best single model; weak = the best
    model whose mean cost is at most ``weak_cost_ratio`` of the strong one's (else the
    cheapest other model)."""
    cols = {n: j for j, n in enumerate(table.models)}
    mine = [n for n in names if n in cols]
    if len(mine) < 2:
        raise EvoRouteError("a strong/weak pair needs train outcomes of at least two models")
    q = _mean_cols(table.scores[:, [cols[n] for n in mine]])
    c = _mean_cols(table.costs[:, [cols[n] for n in mine]])
    s = int(np.nanargmax(q))
    others = [i for i in range(len(mine)) if i != s]
    cheap = [i for i in others if c[i] <= weak_cost_ratio * c[s]]
    w = max(cheap, key=lambda i: (q[i], -c[i])) if cheap else min(others, key=lambda i: c[i])
    return mine[s], mine[w]


def cost_quality_ladder(names: Sequence[str], table: Any) -> list[str]:
    """Models by mean train cost, keeping each that beats every cheaper one kept: the
    train split's cost/quality frontier, cheapest first (the cascade's escalation order)."""
    cols = {n: j for j, n in enumerate(table.models)}
    mine = [n for n in names if n in cols]
    q = _mean_cols(table.scores[:, [cols[n] for n in mine]])
    c = _mean_cols(table.costs[:, [cols[n] for n in mine]])
    ladder, best = [], -np.inf
    for i in sorted(range(len(mine)), key=lambda i: (c[i], -q[i], mine[i])):
        if q[i] > best:
            ladder.append(mine[i])
            best = q[i]
    return ladder


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


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
        self._emb = None if table.embeddings is None else _l2(table.embeddings[ok])
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
        sims = (self._emb[idx] @ _l2(step.embedding))[None, :]
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


class OracleCascadeRouter(Baseline):
    """Atropos-style escalation: the cheapest rung first; when the step fails its check, the
    same step goes to the next stronger model, until one passes or the ladder ends.

    Named ``oracle-cascade`` and listed with the oracles: in replay its check *is* the
    recorded answer. The cascade that escalates on its own predicted confidence only is
    ``cascade`` (:class:`~evoroute.policy.learned.ConfidenceCascadeRouter`).

    The ladder is the train split's cost/quality frontier: models by mean train cost, keeping
    each that beats every cheaper one kept (or an explicit ``ladder``); ``max_rungs`` caps it
    (the cost knob). The check is the step's success signal as the backend reports it: in
    replay that is the *recorded correctness*, i.e. an oracle-like verifier no deployed system
    has, so replayed cascade numbers are an upper bound. ``verifier_accuracy`` < 1 flips the
    check with that error rate (seeded) to show how a realistic verifier degrades it. Every
    attempted call's cost and the summed latency are charged to the step.
    """

    name = "oracle-cascade"
    needs_training = True
    is_oracle = True
    escalates = True
    cost_knob = CostKnob("max_rungs", (), None, "ladder length", integer=True)
    family = "oracle"
    order = 11

    def __init__(self, models: list[ModelInfo], ladder: Sequence[str] | None = None,
                 max_rungs: int | None = None, verifier_accuracy: float = 1.0) -> None:
        super().__init__(models)
        if ladder is not None:
            for n in ladder:
                if n not in self.by_name:
                    raise UnknownModelError(n, self.model_names)
        if max_rungs is not None and max_rungs < 1:
            raise ValidationError("max_rungs must be >= 1", "max_rungs")
        if not 0.0 <= verifier_accuracy <= 1.0:
            raise ValidationError("verifier_accuracy must be in [0, 1]", "verifier_accuracy")
        self.max_rungs, self.verifier_accuracy = max_rungs, float(verifier_accuracy)
        self.full_ladder: list[str] | None = list(ladder) if ladder is not None else None
        # a noisy verifier draws from the seed: then every seed gives its own run
        self.seed_invariant = self.verifier_accuracy >= 1.0

    def sweep(self, train_table: Any, weights: Sequence[float]) -> tuple[list[float], float | None]:
        """Ladder lengths 1..n (the train frontier's length): one setting per rung."""
        n = len(self.full_ladder) if self.full_ladder is not None else (
            len(cost_quality_ladder(self.model_names, train_table)) if train_table is not None else 0)
        return [float(k) for k in range(1, n + 1)], (float(n) if n else None)

    @property
    def ladder(self) -> list[str]:
        if self.full_ladder is None:
            raise EvoRouteError("the oracle-cascade router must be trained first (its ladder comes from "
                                "the train split) or be given a ladder")
        return self.full_ladder[: self.max_rungs] if self.max_rungs else list(self.full_ladder)

    def fit(self, table: Any) -> None:
        if self.full_ladder is None:
            self.full_ladder = cost_quality_ladder(self.model_names, table)

    def _rung(self, names: Sequence[str], start: int) -> int | None:
        lad = self.ladder
        for i in range(start, len(lad)):
            if lad[i] in names:
                return i
        return None

    def decide(self, step: StepContext, rng: np.random.Generator) -> Decision:
        names = self.candidates(step)
        i = self._rung(names, 0)
        if i is None:
            pick = self._cheapest(names)
            return self._decision(step, pick, f"oracle-cascade: no ladder model can run this step; the "
                                              f"cheapest available {pick}")
        return self._decision(step, self.ladder[i], self._why(i, "cheapest rung first"))

    def _why(self, i: int, what: str) -> str:
        lad = self.ladder
        return (f"oracle-cascade rung {i + 1} of {len(lad)} ({' -> '.join(lad)}): {what}; escalates "
                f"when the step fails its check (in replay: the recorded correctness, an "
                f"oracle-like verifier)")

    def escalate(self, step: StepContext, decision: Decision, outcome: StepOutcome,
                 rng: np.random.Generator) -> Decision | None:
        passed = outcome.error is None and (outcome.step_success or 0.0) >= 0.5
        if self.verifier_accuracy < 1.0 and rng.random() >= self.verifier_accuracy:
            passed = not passed
        if passed:
            return None
        lad = self.ladder
        cur = lad.index(decision.model) if decision.model in lad else len(lad)
        nxt = self._rung(self.candidates(step), cur + 1)
        if nxt is None:
            return None
        return self._decision(step, lad[nxt], self._why(nxt, f"{decision.model} failed the check"))


register("single")(SingleModelRouter)
register("cheapest")(CheapestRouter)
register("random")(RandomRouter)
register("round_robin")(RoundRobinRouter)
register("oracle")(OracleRouter)
register("threshold")(ThresholdRouter)
register("oracle-cascade")(OracleCascadeRouter)
