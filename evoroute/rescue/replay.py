"""Swap decisions, their replayed outcomes, the threshold sweep and per-decision explanations.

A run starts on the base policy. After each step t (the base model answered it and, on a
multiple-choice step, the second opinion did too), the predictor gives P(the run fails | steps
1..t). At the first t where P > ``threshold`` the run swaps to the strong model, once:

- ``redo=True`` (the default, the hot swap): step t's base answer is discarded and the strong
  model answers step t and every later step. Cost: the calls made, i.e. the base and second-
  opinion calls of steps 1..t plus the strong calls of steps t..n. The replay cannot hand the
  strong model the run's context to repair *earlier* steps (each step's outcome is one recorded
  call), so steps before t keep their base outcomes.
- ``redo=False``: only steps t+1..n go to the strong model; a "swap" after the last step changes
  nothing and is not counted as one.

Success = all steps succeed (the minimum of the replayed step scores). ``threshold`` is the cost
knob: 1 never swaps (the base policy plus its second opinions), 0 swaps after the first step.

The decisions are computed by :func:`decide` from the predictor's probabilities alone, which
:func:`probabilities` computes from :func:`~.observe.observe` alone; the recorded scores enter
only :func:`outcomes`, after every decision is taken.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evoroute.rescue.metrics import atropos_metrics
from evoroute.rescue.observe import Observed, observe
from evoroute.rescue.plan import Plan
from evoroute.rescue.predictors import PREDICTORS, FailurePredictor
from evoroute.rescue.steps import StepTable, task_min

LABEL = "replayed"


def base_failures(table: StepTable, plan: Plan) -> np.ndarray:
    """Per run, 1 when it fails under the base policy alone (the training label, train only).
    A run succeeds when all its steps do, or, when the base policy is one model and the source
    records the task's own success (a live pass: the final answer), when that says so."""
    base = np.array([table.col(plan.base_model(r)) for r in table.roles])
    rows = np.arange(len(table))
    s = task_min(table.score[rows, base], table.task, table.n_tasks)
    if table.task_score is not None and np.unique(base).size == 1:
        own = task_min(table.task_score[rows, base], table.task, table.n_tasks)
        s = np.where(np.isnan(own), s, own)
    return (s < 0.5).astype(int)


def probabilities(predictor: FailurePredictor, obs: Observed) -> np.ndarray:
    """P(fail) after every step of every run (the prefix ending at that row)."""
    return np.asarray(predictor.predict(obs), dtype=float)


def decide(p_fail: np.ndarray, obs: Observed, threshold: float, n_tasks: int) -> np.ndarray:
    """Per run, the row at which it swaps (the first with P > threshold), -1 for none."""
    none = len(obs)
    swap = np.full(n_tasks, none, dtype=np.int64)
    hit = np.flatnonzero(np.asarray(p_fail) > threshold)
    np.minimum.at(swap, obs.task[hit], hit)     # rows are in run order: the first hit is the smallest
    return np.where(swap == none, -1, swap)


@dataclass(frozen=True)
class Outcomes:
    success: np.ndarray     # (T,) 0/1
    cost: np.ndarray        # (T,) USD of the calls made
    swapped: np.ndarray     # (T,) bool
    swap_step: np.ndarray   # (T,) 0-based step of the swap, -1 for none


def outcomes(table: StepTable, plan: Plan, obs: Observed, swap_row: np.ndarray,
             redo: bool = True) -> Outcomes:
    """Replay the runs with their swaps on the recorded scores and costs."""
    n = len(table)
    rows = np.arange(n)
    base = np.array([table.col(plan.base_model(r)) for r in table.roles])
    j = table.col(plan.strong)
    at_row = np.where(swap_row >= 0, swap_row, n)[table.task]
    before, at, after = rows < at_row, rows == at_row, rows > at_row
    take_base = before | (at & ~redo)
    score = np.where(take_base, table.score[rows, base], table.score[:, j])
    cost = (np.where(before | at, obs.cost + obs.opinion_cost, 0.0)
            + np.where(after | (at & redo), table.cost[:, j], 0.0))
    T = table.n_tasks
    tcost = np.zeros(T)
    np.add.at(tcost, table.task, cost)
    last = np.full(T, -1)
    np.maximum.at(last, table.task, rows)
    effective = (swap_row >= 0) & (redo | (swap_row < last))
    step = np.where(effective, table.position[np.maximum(swap_row, 0)], -1)
    return Outcomes(success=task_min(score, table.task, T), cost=tcost, swapped=effective,
                    swap_step=step)


def reference_points(table: StepTable, plan: Plan) -> dict[str, tuple[float, float]]:
    """(total cost, quality) of every single model, the base policy and the strong model."""
    out = {}
    for m in table.models:
        s, c = table.single_model(m)
        out[m] = (c, float(s.mean()))
    obs = observe(table, plan)
    none = outcomes(table, plan, obs, np.full(table.n_tasks, -1))
    out["base policy"] = (float(obs.cost.sum()), float(none.success.mean()))
    out["strong model"] = out[plan.strong]
    return out


def default_thresholds(train_p: np.ndarray) -> np.ndarray:
    """The sweep: 0..1 in steps of 0.05 and the percentiles of the train probabilities."""
    grid = np.r_[np.linspace(0.0, 1.0, 21), np.percentile(train_p, np.arange(0, 101, 2))]
    return np.unique(np.round(grid, 6))


def sweep(table: StepTable, plan: Plan, obs: Observed, p_fail: np.ndarray,
          thresholds: np.ndarray, redo: bool = True) -> list[dict]:
    """Atropos' numbers at every threshold (the strong model's quality and cost as reference)."""
    s_succ, s_cost = table.single_model(plan.strong)
    base_run = outcomes(table, plan, obs, np.full(table.n_tasks, -1))
    rows = []
    for th in thresholds:
        o = outcomes(table, plan, obs, decide(p_fail, obs, float(th), table.n_tasks), redo)
        m = atropos_metrics(base_run.success, o.success, o.swapped, o.cost,
                            float(s_succ.mean()), s_cost)
        rows.append({"threshold": float(th), **m})
    return rows


def explain(predictor: FailurePredictor, obs: Observed, p_fail: np.ndarray, threshold: float,
            task: int) -> dict:
    """Every decision of one run: P(fail) after each step, the features behind it, the
    threshold, and where it swapped (for the studio's Runs page)."""
    rows = np.flatnonzero(obs.task == task)
    swapped_at = None
    steps = []
    for r in rows:
        if swapped_at is not None:
            break
        p = float(p_fail[r])
        swap = p > threshold
        steps.append({"step": int(obs.position[r]), "role": str(obs.roles[r]),
                      "model": str(obs.model[r]), "p_fail": p, "threshold": float(threshold),
                      "swap": bool(swap), "features": predictor.features(obs, int(r))})
        if swap:
            swapped_at = int(obs.position[r])
    return {"label": LABEL, "predictor": predictor.name, "threshold": float(threshold),
            "swapped_at_step": swapped_at, "decisions": steps}


@dataclass
class Rescue:
    """A fitted rescue: the plan and the predictor, both learned on train."""

    plan: Plan
    predictor: FailurePredictor
    train_p: np.ndarray

    def probabilities(self, table: StepTable) -> tuple[Observed, np.ndarray]:
        obs = observe(table, self.plan)
        return obs, probabilities(self.predictor, obs)

    def decisions(self, table: StepTable, threshold: float) -> np.ndarray:
        obs, p = self.probabilities(table)
        return decide(p, obs, threshold, table.n_tasks)


def fit_rescue(train: StepTable, plan: Plan, kind: str = "logistic", seed: int = 0) -> Rescue:
    """Fit the predictor ``kind`` (``logistic`` | ``graph``) on the train runs."""
    obs = observe(train, plan)
    fails = base_failures(train, plan)[obs.task]
    predictor = PREDICTORS[kind](seed).fit(obs, fails)
    return Rescue(plan, predictor, probabilities(predictor, obs))
