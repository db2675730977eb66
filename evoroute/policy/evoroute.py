"""EvoRoute: retrieve similar past steps, keep Pareto-optimal models, Thompson-sample a
weighted utility (spec §3, arXiv 2601.02695)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from evoroute.core.errors import ValidationError
from evoroute.core.pareto import pareto_mask
from evoroute.core.posterior import nig_sample, nig_sample_effective, variance_floor
from evoroute.core.types import (
    CandidateStat,
    Decision,
    Explanation,
    ModelInfo,
    StepContext,
    StepOutcome,
    Weights,
    validate_theta,
)
from evoroute.core.utility import reference_scale, utility
from evoroute.policy.base import W_C_KNOB, Router
from evoroute.policy.estimators import ESTIMATORS
from evoroute.policy.estimators.knn import knn_estimates
from evoroute.policy.estimators.linear import LinearEstimator, linear_estimates
from evoroute.policy.estimators.neighbours import TextRecords
from evoroute.policy.estimators.prior import QueryEstimates
from evoroute.policy.estimators.prior_strength import KAPPA_AUTO, PriorStrength
from evoroute.retrieval.index import CHANNELS, Estimates, ExperienceIndex, Retrieval
from evoroute.retrieval.tools import ToolPredictor
from evoroute.settings import DEFAULTS


@dataclass(frozen=True)
class EvoRouteConfig:
    """Every knob of the algorithm; recorded with each run so it can be repeated exactly."""

    weights: Weights = field(default_factory=Weights)
    theta: float = DEFAULTS.theta           # cosine threshold of the semantic channel
    n_min: int = 2                          # fewer observations = unexplored
    perf_signal: str = "task"               # task success P(τ) (paper) or step success σ
    channels: tuple[str, ...] = CHANNELS    # ("semantic",) is the semantic-only ablation
    thompson: bool = True                   # False: posterior mean (no-TS ablation)
    pareto: bool = True                     # False: no Pareto filter ablation
    cold_start: bool = True                 # False: no cold-start ablation (read by the runner)
    cold_start_tasks: int = DEFAULTS.cold_start_tasks
    raw_units: bool = False                 # paper-literal utility in USD and seconds
    max_per_channel: int | None = None      # optional cap per channel (None = full union)
    sem_scan_limit: int | None = None       # scan only the N most recent unique texts
    propensity_draws: int = 256
    default_model: str | None = None
    tool_keywords: Mapping[str, Sequence[str]] | None = None
    # Query-aware estimates (spec §3; evoroute/policy/estimators/). "paper" is the literal
    # union R_role ∪ R_sem ∪ R_tool of steps 3-4; defaults chosen by benchmarks/cv_evoroute.py
    # on the RouterBench train split only (docs/query_aware.md).
    estimator: str = "knn"                  # knn | linear | paper
    k: int = 32                             # neighbours (unique texts) per step (knn)
    kernel_tau: float = 1.0                 # kernel temperature / neighbours' similarity spread
    prior_strength: float | str = "auto"    # κ: the role prior is worth κ observations, or
    #                                         "auto": empirical Bayes per (model, role), κ in
    #                                         [1, 256], 64 (the CV constant) on too little data
    cross_role: float = 0.0                 # weight factor of neighbours of another role (knn)
    ridge: float | str = "auto"             # prior precision of the linear design: "auto" =
    #                                         empirical Bayes per model (type-II ML on its P
    #                                         records), 300 (the train-split CV constant) on too
    #                                         little data; or a number (docs/query_aware.md)
    cost_ref: str = "role"                  # C_ref/D_ref from the step's estimates ("step",
    #                                         spec §3 step 7), the role or the whole base

    def __post_init__(self) -> None:
        # values a user sets (studio, CLI, router_params JSON) that would otherwise fail silently:
        # max_per_channel=0 took *every* record (x[-0:]), an unknown channel name turned
        # retrieval off, n_min=0 let models with no observations into the Pareto filter as NaN
        if self.perf_signal not in ("task", "step"):
            raise ValidationError(f"perf_signal must be 'task' or 'step', got {self.perf_signal!r}",
                                  "perf_signal")
        validate_theta(self.theta)   # in (0, 1]: nan took no neighbour, <= 0 took every record
        unknown = [c for c in self.channels if c not in CHANNELS]
        if unknown or not self.channels:
            raise ValidationError(f"channels must be a non-empty subset of {', '.join(CHANNELS)}; "
                                  f"got {list(self.channels)}", "channels")
        for name in ("max_per_channel", "sem_scan_limit"):
            v = getattr(self, name)
            if v is not None and not v >= 1:
                raise ValidationError(f"{name} must be None (no cap) or >= 1, got {v!r}", name)
        if not self.n_min >= 1:
            raise ValidationError(f"n_min must be >= 1, got {self.n_min!r}", "n_min")
        if self.estimator not in ESTIMATORS:
            raise ValidationError(f"estimator must be one of {', '.join(ESTIMATORS)}, got "
                                  f"{self.estimator!r}", "estimator")
        for name, lo, strict in (("k", 1, False), ("kernel_tau", 0.0, True),
                                 ("prior_strength", 0.0, True), ("ridge", 0.0, True),
                                 ("cross_role", 0.0, False)):
            v = getattr(self, name)
            if name in ("prior_strength", "ridge") and v == KAPPA_AUTO:   # "auto" (EB)
                continue
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and \
                (v > lo if strict else v >= lo)
            if not ok:
                auto = f" or {KAPPA_AUTO!r}" if name in ("prior_strength", "ridge") else ""
                raise ValidationError(f"{name} must be a number {'>' if strict else '>='} {lo}"
                                      f"{auto}, got {v!r}", name)
        if self.cost_ref not in ("step", "role", "global"):
            raise ValidationError(f"cost_ref must be 'step', 'role' or 'global', got "
                                  f"{self.cost_ref!r}", "cost_ref")
        if self.cross_role > 1:
            raise ValidationError(f"cross_role must be in [0, 1], got {self.cross_role!r}",
                                  "cross_role")
        if not self.propensity_draws >= 0:
            raise ValidationError(f"propensity_draws must be >= 0, got {self.propensity_draws!r}",
                                  "propensity_draws")

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["weights"] = list(self.weights.as_tuple())
        d["channels"] = list(self.channels)
        d["tool_keywords"] = None if self.tool_keywords is None else {
            k: list(v) for k, v in self.tool_keywords.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EvoRouteConfig":
        d = dict(d)
        # a configuration stored before the query-aware estimators ran the paper's union
        d.setdefault("estimator", "paper")
        if "weights" in d and not isinstance(d["weights"], Weights):
            d["weights"] = Weights(*d["weights"])
        if "channels" in d:
            d["channels"] = tuple(d["channels"])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


ABLATIONS: dict[str, dict[str, Any]] = {
    "no-cold-start": {"cold_start": False},
    "no-role-tool": {"channels": ("semantic",)},      # the paper's "semantic-only retrieval"
    "no-ts": {"thompson": False},
    "no-pareto": {"pareto": False},
}


class EvoRouteRouter(Router):
    name = "evoroute"
    needs_embedding = True
    run_params = ("weights", "cold_start_tasks")
    experience_preload = "index"
    cost_knob = W_C_KNOB               # the run's cost weight w_c (the runner sets the weights)
    family = "evoroute"
    order = 0

    def __init__(self, models: list[ModelInfo], config: EvoRouteConfig | None = None,
                 index: ExperienceIndex | None = None, embedder: Any = None,
                 name: str | None = None, **overrides: Any) -> None:
        super().__init__(models)
        cfg = config or EvoRouteConfig()
        if overrides:
            if "weights" in overrides and not isinstance(overrides["weights"], Weights):
                overrides["weights"] = Weights(*overrides["weights"])
            cfg = replace(cfg, **overrides)
        self.config = cfg
        self.name = name or self.name
        # `is None`, not `or`: an empty index is falsy (len 0) but is still the caller's index
        self.index = index if index is not None else ExperienceIndex(perf_signal=cfg.perf_signal)
        self.embedder = embedder
        self.tool_predictor = ToolPredictor(cfg.tool_keywords)
        self.needs_embedding = "semantic" in cfg.channels
        self.cold_start = cfg.cold_start
        self._text_records: TextRecords | None = None
        self._linear: LinearEstimator | None = None
        self._eb: PriorStrength | None = None          # cached EB κ (prior_strength="auto")

    # ------------------------------------------------------------ learning
    def observe(self, step: StepContext, decision: Decision, outcome: StepOutcome) -> None:
        if outcome.error:
            return      # a failed call is stored in the base but teaches no P/C/D estimate
        perf = outcome.step_success if self.config.perf_signal == "step" else None
        self.index.add(role=step.role, model=outcome.model, text=step.instruction,
                       embedding=self._embedding(step), tools=self._tools(step),
                       cost=outcome.cost_usd, duration=outcome.duration_s, perf=perf,
                       # only a record still waiting for its task's success is pending
                       task_ref=step.task_key if perf is None else None)

    def finish_task(self, task_key: str, success: float) -> None:
        if self.config.perf_signal == "task":
            self.index.set_task_perf(task_key, success)

    # ------------------------------------------------------------ deciding
    def _tools(self, step: StepContext) -> frozenset[str]:
        return step.tools or self.tool_predictor.predict(step.instruction)

    def _embedding(self, step: StepContext) -> np.ndarray | None:
        if step.embedding is not None:
            return step.embedding
        if not self.needs_embedding:
            return None
        if self.embedder is None:
            from evoroute.retrieval.embedder import get_embedder
            self.embedder = get_embedder()
        return self.embedder.encode_one(step.instruction)

    def retrieve(self, step: StepContext) -> Retrieval:
        cfg = self.config
        return self.index.retrieve(step.role, self._embedding(step), self._tools(step),
                                   theta=cfg.theta, channels=cfg.channels,
                                   max_per_channel=cfg.max_per_channel,
                                   sem_scan_limit=cfg.sem_scan_limit)

    def query_estimates(self, step: StepContext, names: list[str]) -> QueryEstimates:
        """P̂, Ĉ, D̂ of every candidate for this step (policy/estimators/). The semantic-only
        ablation drops the role: neighbours of any role, a global prior, no role features."""
        cfg = self.config
        role = step.role if "role" in cfg.channels else None
        emb = self._embedding(step) if "semantic" in cfg.channels else None
        if cfg.estimator == "knn":
            if self._text_records is None:
                self._text_records = TextRecords(self.index)
            if cfg.prior_strength == KAPPA_AUTO and self._eb is None:
                self._eb = PriorStrength(self.index, k=cfg.k, kernel_tau=cfg.kernel_tau,
                                         text_records=self._text_records,
                                         sem_scan_limit=cfg.sem_scan_limit)
            return knn_estimates(self.index, names, role, emb, k=cfg.k, kernel_tau=cfg.kernel_tau,
                                 prior_strength=cfg.prior_strength, cross_role=cfg.cross_role,
                                 text_records=self._text_records,
                                 sem_scan_limit=cfg.sem_scan_limit, eb=self._eb)
        if self._linear is None:
            self._linear = LinearEstimator(self.index, cfg.ridge, use_role="role" in cfg.channels,
                                           use_tools="tool" in cfg.channels)
        mask = self.index.tool_mask(self._tools(step)) if "tool" in cfg.channels else 0
        return linear_estimates(self._linear, self.index, names, role, emb, mask,
                                cfg.prior_strength)

    def decide(self, step: StepContext, rng: np.random.Generator) -> Decision:
        names = self.candidates(step)
        cfg = self.config
        expl = Explanation(router=self.name, phase=step.phase, mode="",
                           weights=cfg.weights.as_tuple(),
                           predicted_tools=sorted(self._tools(step)))
        if step.phase == "cold_start":
            pick = names[int(rng.integers(len(names)))]
            expl.mode, expl.chosen = "cold_start", pick
            expl.reason = f"cold start: uniformly random among {len(names)} models"
            expl.candidates = [CandidateStat(m, propensity=1 / len(names)) for m in names]
            return Decision(pick, 1 / len(names), expl)
        if cfg.estimator != "paper":
            est = self.query_estimates(step, names)
            expl.fallback = est.fallback
            expl.estimator = cfg.estimator
            expl.channels = {"role" if "role" in cfg.channels else "global": int(est.n_records.sum()),
                             "neighbours": est.neighbours}
            if est.n_records.sum() == 0:
                return self._default(names, step, rng, expl, "the experience base has no record "
                                                             "of these models")
            return self._choose(names, est, step, rng, expl)
        ret = self.retrieve(step)
        est = ret.for_models(names)
        expl.channels = ret.channel_totals(names)
        if est.n_records.sum() == 0:
            role_est = Retrieval(self.index.models, self.index.group_stats(step.role), {}).for_models(names)
            if role_est.n_records.sum() > 0:
                est, expl.fallback = role_est, "role"
            else:
                glob = Retrieval(self.index.models, self.index.group_stats(None), {}).for_models(names)
                if glob.n_records.sum() > 0:
                    est, expl.fallback = glob, "global"
                else:
                    return self._default(names, step, rng, expl, "retrieval and fallbacks are empty")
        return self._choose(names, est, step, rng, expl)

    def _default(self, names: list[str], step: StepContext, rng: np.random.Generator,
                 expl: Explanation, why: str) -> Decision:
        cfg = self.config
        expl.fallback = "default_model"
        expl.mode = "default_model"
        if cfg.default_model in names:
            expl.chosen, expl.reason = cfg.default_model, f"{why}: the default model"
            expl.candidates = [CandidateStat(m, propensity=float(m == cfg.default_model)) for m in names]
            return Decision(cfg.default_model, 1.0, expl)
        pick = names[int(rng.integers(len(names)))]
        expl.chosen = pick
        expl.reason = f"{why} and no default model is set: uniformly random"
        expl.candidates = [CandidateStat(m, propensity=1 / len(names)) for m in names]
        return Decision(pick, 1 / len(names), expl)

    def _choose(self, names: list[str], est: Estimates, step: StepContext,
                rng: np.random.Generator, expl: Explanation) -> Decision:
        cfg = self.config
        cands = [CandidateStat(m, n=int(est.n[i]),
                               p_hat=_f(est.p_mean[i]), c_hat=_f(est.c_mean[i]), d_hat=_f(est.d_mean[i]),
                               unexplored=bool(est.n[i] < cfg.n_min))
                 for i, m in enumerate(names)]
        if isinstance(est, QueryEstimates):
            for c, ev in zip(cands, est.evidence):
                c.neighbours, c.n_eff = ev["neighbours"], ev["n_eff"]
                c.prior_weight, c.p_prior = ev["prior_weight"], ev["p_prior"]
                c.top_neighbours = [list(t) for t in ev["top"]]
        expl.candidates = cands
        explored = est.n >= cfg.n_min
        where = f" ({expl.fallback} fallback)" if expl.fallback else ""
        if step.phase != "inference" and not explored.all():
            un = np.flatnonzero(~explored)
            i = int(un[rng.integers(un.size)])
            for j in un:
                cands[j].propensity = 1 / un.size
            expl.mode, expl.chosen = "explore_unexplored", names[i]
            expl.reason = (f"{un.size} model(s) have fewer than n_min={cfg.n_min} observations"
                           f"{where}; trying one of them uniformly")
            return Decision(names[i], 1 / un.size, expl)
        pool = np.flatnonzero(explored)
        if pool.size == 0:
            pool = np.flatnonzero(est.n >= 1)
            if pool.size == 0:
                return self._default(names, step, rng, expl, "no model has a known outcome")
        front = pareto_mask(est.p_mean[pool], est.c_mean[pool], est.d_mean[pool])
        for j, keep in zip(pool, front):
            cands[j].pareto = bool(keep)
        keep = pool[front] if cfg.pareto else pool
        # C_ref, D_ref over every explored candidate, not only the Pareto survivors: a kept
        # model's utility must not change because a dominated model was pruned (docs/decisions.md)
        c_scale, d_scale = est.c_mean, est.d_mean
        if isinstance(est, QueryEstimates) and cfg.cost_ref != "step":
            # one cost scale for every step of the role / base: the utility is then one
            # Lagrangian trade-off of quality against USD across steps (docs/query_aware.md)
            c_scale, d_scale = est.scales[cfg.cost_ref]
        c_ref = reference_scale(c_scale[pool])
        d_ref = reference_scale(d_scale[pool])
        if not cfg.raw_units:                 # raw units (USD, s) use no scales
            expl.c_ref, expl.d_ref = c_ref, d_ref
        sample = cfg.thompson and step.phase != "inference" and bool((est.n[keep] >= 2).all())
        if sample:
            th_p, th_c, th_d = self._draw(est, keep, rng, None)
        else:
            th_p, th_c, th_d = est.p_mean[keep], est.c_mean[keep], est.d_mean[keep]
        u = utility(th_p, th_c, th_d, cfg.weights, c_ref, d_ref, cfg.raw_units)
        best = int(np.argmax(u))
        for k, j in enumerate(keep):
            cands[j].theta_p, cands[j].theta_c, cands[j].theta_d = _f(th_p[k]), _f(th_c[k]), _f(th_d[k])
            cands[j].utility = _f(u[k])
        if sample:
            K = cfg.propensity_draws
            dp, dc, dd = self._draw(est, keep, rng, K)
            wins = np.bincount(np.argmax(utility(dp, dc, dd, cfg.weights, c_ref, d_ref, cfg.raw_units),
                                         axis=1), minlength=keep.size).astype(float)
            wins[best] += 1          # the draw actually taken is one of the K + 1 samples
            props = wins / (K + 1)
        else:
            props = np.zeros(keep.size)
            props[best] = 1.0
        for k, j in enumerate(keep):
            cands[j].propensity = float(props[k])
        chosen = names[int(keep[best])]
        expl.mode = "thompson" if sample else "posterior_mean"
        expl.chosen = chosen
        kept = f"{keep.size} of {pool.size} explored model(s) kept by the Pareto filter" if cfg.pareto \
            else f"Pareto filter off: all {pool.size} explored model(s) compete"
        how = "highest sampled utility (Thompson sampling)" if sample else "highest posterior-mean utility"
        expl.reason = f"{kept}{where}; {chosen} has the {how}"
        return Decision(chosen, float(props[best]), expl)

    def _draw(self, est: Estimates, keep: np.ndarray, rng: np.random.Generator, size: int | None):
        out = []
        if isinstance(est, QueryEstimates):       # λ = κ + n_eff (knn) or 1/xᵀA⁻¹x (linear)
            for mean, var, lam, metric in ((est.p_mean, est.p_var, est.lam_p, "p"),
                                           (est.c_mean, est.c_var, est.lam_c, "c"),
                                           (est.d_mean, est.d_var, est.lam_c, "d")):
                m = mean[keep]
                out.append(nig_sample_effective(m, var[keep], lam[keep], variance_floor(m, metric),
                                                rng, size))
            return out
        for mean, var, n, metric in ((est.p_mean, est.p_var, est.n, "p"),
                                     (est.c_mean, est.c_var, est.n_records, "c"),
                                     (est.d_mean, est.d_var, est.n_records, "d")):
            m = mean[keep]
            out.append(nig_sample(m, var[keep], n[keep], variance_floor(m, metric), rng, size))
        return out


def _f(x: float) -> float | None:
    x = float(x)
    return None if not np.isfinite(x) else x
