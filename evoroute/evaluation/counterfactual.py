"""Counterfactual re-decision: what EvoRoute would choose for recorded steps under other weights.

Offline and labelled as such: a seeded sample of recorded steps is routed again against the
stored experience (an :class:`~evoroute.retrieval.index.ExperienceIndex`, normally the studio's
:class:`~evoroute.experience.SyncedIndex`) by :class:`~evoroute.policy.evoroute.EvoRouteRouter`
in posterior-mean mode (inference phase: no Thompson draw), so the same weights always give
the same answer. For each step the chosen model's *expected* quality, cost and latency are the
retrieval estimates the router itself used (P̂, Ĉ, D̂); nothing is executed. The recorded
mix and outcomes of the same steps are returned beside it, so the shift can be read off.

Caveat, stated in the studio too: the sampled steps are themselves in the experience base,
so their own outcomes take part in the estimates (as they would for a router re-deciding
them after the fact).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from sqlmodel import Session

from evoroute.core.errors import ValidationError
from evoroute.core.types import ModelInfo, StepContext, Weights
from evoroute.policy.evoroute import EvoRouteConfig, EvoRouteRouter
from evoroute.retrieval.index import ExperienceIndex, one_blas_thread
from evoroute.retrieval.tools import parse_tools
from evoroute.storage import repo, run_store

LABEL = "counterfactual (offline re-decision against the stored experience; nothing executed)"


@dataclass(frozen=True)
class SampledStep:
    id: int
    role: str
    instruction: str
    embedding: np.ndarray | None
    tools: frozenset[str]
    model: str
    quality: float | None
    cost_usd: float
    duration_s: float


@dataclass
class CounterfactualResult:
    weights: Weights
    n_steps: int
    mix: dict[str, float]                 # model -> share of re-decided steps
    expected_quality: float | None
    expected_cost_usd: float | None
    expected_latency_s: float | None
    recorded_mix: dict[str, float]
    recorded_quality: float | None
    recorded_cost_usd: float
    recorded_latency_s: float
    per_step: pd.DataFrame = field(repr=False)
    label: str = LABEL

    @property
    def changed_share(self) -> float:
        """Share of sampled steps whose model differs from the one recorded."""
        if self.per_step.empty:
            return 0.0
        return float((self.per_step["recorded"] != self.per_step["counterfactual"]).mean())

    def mix_frame(self) -> pd.DataFrame:
        models = sorted(set(self.mix) | set(self.recorded_mix))
        return pd.DataFrame({"model": models,
                             "recorded": [self.recorded_mix.get(m, 0.0) for m in models],
                             "counterfactual": [self.mix.get(m, 0.0) for m in models]})


def sample_steps(flt: repo.StepFilter | None, *, session: Session, n: int = 200,
                 seed: int = 0) -> list[SampledStep]:
    """A seeded uniform sample of ``n`` recorded steps matching ``flt`` (errors excluded).

    The ids are read in SQL, sampled with ``numpy.random.default_rng(seed)``, then only those
    rows are fetched, so sampling 200 of 100,000 records reads 100,000 integers, not rows.
    """
    if n < 1:
        raise ValidationError(f"sample size must be >= 1, got {n}", "n")
    ids = run_store.step_ids(session, flt)
    if ids.size == 0:
        return []
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(ids, size=min(n, ids.size), replace=False))
    out: list[SampledStep] = []
    for i in range(0, pick.size, 500):
        rows = run_store.sampled_rows(session, [int(x) for x in pick[i:i + 500]])
        out.extend(SampledStep(int(r.id), r.role, r.instruction,
                               repo.embedding_from_bytes(r.embedding),
                               frozenset(parse_tools(r.tools)), r.model,
                               None if r.quality is None else float(r.quality),
                               float(r.cost_usd or 0.0), float(r.duration_s or 0.0)) for r in rows)
    return out


class _MemoRouter(EvoRouteRouter):
    """EvoRoute whose retrievals (paper estimator) or query-aware estimates are remembered per
    step: neither depends on the weights, so moving a slider re-runs only the Pareto filter and
    the utility."""

    def __init__(self, *args: Any, memo: dict, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.memo = memo

    def retrieve(self, step: StepContext):
        key = (step.task_key, self.config.channels, self.config.theta)
        hit = self.memo.get(key)
        if hit is None:
            hit = self.memo[key] = super().retrieve(step)
        return hit

    def query_estimates(self, step: StepContext, names: list[str]):
        """The query-aware estimates do not depend on the weights either (the utility does)."""
        c = self.config
        key = (step.task_key, c.channels, c.estimator, c.k, c.kernel_tau, c.prior_strength,
               c.cross_role, c.ridge, tuple(names))
        hit = self.memo.get(key)
        if hit is None:
            hit = self.memo[key] = super().query_estimates(step, names)
        return hit


def redecide(steps: Sequence[SampledStep], index: ExperienceIndex, models: Sequence[ModelInfo],
             weights: Weights, *, config: Any = None, memo: dict | None = None
             ) -> CounterfactualResult:
    """Route ``steps`` again with ``weights`` in posterior-mean mode; deterministic.

    ``memo`` (a dict the caller keeps) remembers each step's retrieval, so calling again with
    other weights on the same steps and the same index skips retrieval; drop it when the
    index changes.
    """
    if not models:
        raise ValidationError("no candidate models to re-decide with", "models")
    cfg = replace(config or EvoRouteConfig(), weights=weights, thompson=False)
    has_emb = [s.embedding is not None for s in steps]
    memo = {} if memo is None else memo
    # steps stored without an embedding cannot use the semantic channel: route them on
    # role and tool retrieval rather than loading a sentence model to re-embed them
    routers = {True: _MemoRouter(list(models), cfg, index=index, memo=memo),
               False: _MemoRouter(list(models), replace(cfg, channels=tuple(
                   c for c in cfg.channels if c != "semantic") or ("role",)), index=index,
                   memo=memo)}
    rng = np.random.default_rng(0)   # posterior-mean mode draws nothing; the rng is unused
    with one_blas_thread():
        rows = [_redecide_one(s, emb_ok, routers, rng) for s, emb_ok in zip(steps, has_emb)]
    return _result(rows, weights)


PER_STEP_COLUMNS = ["step", "role", "recorded", "counterfactual", "recorded quality",
                    "recorded cost", "recorded latency", "expected quality", "expected cost",
                    "expected latency", "mode"]


def _redecide_one(s: SampledStep, emb_ok: bool, routers: dict, rng: np.random.Generator) -> dict:
    step = StepContext(task_key=f"cf-{s.id}", step_index=0, role=s.role, instruction=s.instruction,
                       phase="inference", tools=s.tools, embedding=s.embedding)
    d = routers[emb_ok].decide(step, rng)
    chosen = next((c for c in d.explanation.candidates if c.model == d.model), None)
    return {"step": s.id, "role": s.role, "recorded": s.model, "counterfactual": d.model,
            "recorded quality": s.quality, "recorded cost": s.cost_usd,
            "recorded latency": s.duration_s,
            "expected quality": None if chosen is None else chosen.p_hat,
            "expected cost": None if chosen is None else chosen.c_hat,
            "expected latency": None if chosen is None else chosen.d_hat,
            "mode": d.explanation.mode}


def _result(rows: list[dict], weights: Weights) -> CounterfactualResult:
    df = pd.DataFrame(rows, columns=PER_STEP_COLUMNS)
    n = len(df)

    def share(colname: str) -> dict[str, float]:
        return {} if n == 0 else {str(k): float(v) for k, v in
                                  df[colname].value_counts(normalize=True).sort_index().items()}

    def mean(colname: str) -> float | None:
        v = pd.to_numeric(df[colname], errors="coerce").dropna()
        return None if v.empty else float(v.mean())

    return CounterfactualResult(
        weights=weights, n_steps=n, mix=share("counterfactual"),
        expected_quality=mean("expected quality"), expected_cost_usd=mean("expected cost"),
        expected_latency_s=mean("expected latency"), recorded_mix=share("recorded"),
        recorded_quality=mean("recorded quality"), recorded_cost_usd=mean("recorded cost") or 0.0,
        recorded_latency_s=mean("recorded latency") or 0.0, per_step=df)


def counterfactual(index: ExperienceIndex, models: Sequence[ModelInfo], weights: Weights,
                   flt: repo.StepFilter | None = None, *, session: Session, n: int = 200,
                   seed: int = 0, config: Any = None, memo: dict | None = None
                   ) -> CounterfactualResult:
    """Sample recorded steps in ``flt`` and re-decide them under ``weights``."""
    steps = sample_steps(flt, session=session, n=n, seed=seed)
    return redecide(steps, index, models, weights, config=config, memo=memo)


def index_from_records(steps: Sequence[SampledStep], perf_signal: str = "task") -> ExperienceIndex:
    """An index over in-memory records (for callers without a database, e.g. tests)."""
    idx = ExperienceIndex(perf_signal=perf_signal)
    emb = [s.embedding for s in steps]
    idx.add_batch(roles=[s.role for s in steps], models=[s.model for s in steps],
                  texts=[s.instruction for s in steps],
                  embeddings=emb if any(e is not None for e in emb) else None,
                  tools=[s.tools for s in steps], costs=[s.cost_usd for s in steps],
                  durations=[s.duration_s for s in steps], perf=[s.quality for s in steps])
    return idx


__all__ = ["LABEL", "SampledStep", "CounterfactualResult", "sample_steps", "redecide",
           "counterfactual", "index_from_records"]
