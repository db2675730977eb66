"""What a real system sees mid-run, and the predictor features built from it.

After step t of a run has gone to the base model, a real system knows the steps so far: their
roles, the model each used, their position, what each call cost, and signals that need no
ground truth. The step signals here are, on a multiple-choice step, whether the base model's
parsed answer agrees with a cheap second opinion's parsed answer (both read from their recorded
responses; the second opinion's recorded cost is paid), and whether the base answer parsed at
all; on the live agent's verifier step, the verdict its reply gives (``VERDICT: CORRECT`` /
``WRONG``, the model's own judgement). The verdict features exist only when the train split has
verifier steps (``verdicts=True``), so predictors of data without them are unchanged.
:func:`observe` builds exactly that from a :class:`~.steps.StepTable` and a
:class:`~.plan.Plan`; it never reads ``StepTable.score``, so no recorded correctness of any
step, current, past or future, reaches a decision (``tests/unit/test_atropos.py`` corrupts it).

Every feature of the prefix ending at row r reads rows of r's task at positions <= r's only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evoroute.rescue.plan import Plan
from evoroute.rescue.steps import StepTable


@dataclass(frozen=True)
class Observed:
    """Per step, what the run has seen once the base model answered it."""

    task: np.ndarray            # (n,) task index
    position: np.ndarray        # (n,) 0-based
    roles: np.ndarray           # (n,) str
    model: np.ndarray           # (n,) str, the base model that ran the step
    cost: np.ndarray            # (n,) USD of the base call
    opinion_cost: np.ndarray    # (n,) USD of the second-opinion call (0 without one)
    has_opinion: np.ndarray     # (n,) bool
    agree: np.ndarray           # (n,) bool: both parsed and equal
    unparsed: np.ndarray        # (n,) bool: a multiple-choice step whose base answer did not parse
    ref_cost: np.ndarray        # (n,) the strong model's mean train cost on the role
    verdict: np.ndarray | None = None   # (n,) the base reply's verdict: +1 / -1 / 0 (None: 0)

    def verdicts(self) -> np.ndarray:
        return np.zeros(len(self.roles)) if self.verdict is None else np.asarray(self.verdict, float)

    def __len__(self) -> int:
        return len(self.roles)


def observe(table: StepTable, plan: Plan) -> Observed:
    """The mid-run view of every step run on the base policy (no ``score`` read)."""
    n = len(table)
    base = np.array([table.col(plan.base_model(r)) for r in table.roles], dtype=np.int64)
    second = [plan.opinion_model(r) for r in table.roles]
    has = np.array([s is not None and c for s, c in zip(second, table.choice)], dtype=bool)
    sec = np.array([table.col(s) if s is not None else 0 for s in second], dtype=np.int64)
    rows = np.arange(n)
    mine, theirs = table.answer[rows, base], table.answer[rows, sec]
    agree = has & (mine != "") & (mine == theirs)
    return Observed(task=table.task, position=table.position, roles=table.roles,
                    model=np.array([table.models[j] for j in base], dtype=object),
                    cost=table.cost[rows, base], opinion_cost=np.where(has, table.cost[rows, sec], 0.0),
                    has_opinion=has, agree=agree, unparsed=table.choice & (mine == ""),
                    ref_cost=np.array([plan.ref_cost.get(r, 1.0) for r in table.roles]),
                    verdict=None if table.verdict is None else table.verdict[rows, base])


VERDICT_NAMES = ("verifier says wrong", "verifier says correct")


def node_names(roles: tuple[str, ...], verdicts: bool = False) -> list[str]:
    return [*(f"role={r}" for r in roles), "log1p(position)", "cost/strong cost",
            "has second opinion", "agrees", "disagrees", "unparsed",
            *(VERDICT_NAMES if verdicts else ())]


def node_features(obs: Observed, roles: tuple[str, ...], verdicts: bool = False) -> np.ndarray:
    """(n, d) features of each step on its own (the graph network's node features)."""
    onehot = (obs.roles[:, None] == np.asarray(roles, dtype=object)[None, :]).astype(float)
    spent = (obs.cost + obs.opinion_cost) / np.maximum(obs.ref_cost, 1e-12)
    cols = [onehot, np.log1p(obs.position), spent, obs.has_opinion, obs.agree,
            obs.has_opinion & ~obs.agree, obs.unparsed]
    if verdicts:
        v = obs.verdicts()
        cols += [v < 0, v > 0]
    return np.column_stack(cols).astype(float)


def prefix_names(roles: tuple[str, ...], verdicts: bool = False) -> list[str]:
    return ["steps so far", "cost so far/strong step cost", "disagreements so far",
            "share of opinions disagreeing", "unparsed so far",
            *(["wrong verdicts so far"] if verdicts else []),
            *(f"now: {n}" for n in node_names(roles, verdicts)),
            *(f"share so far: role={r}" for r in roles)]


def prefix_features(obs: Observed, roles: tuple[str, ...], verdicts: bool = False) -> np.ndarray:
    """(n, d) features of the prefix of each run ending at each row (logistic regression)."""
    node = node_features(obs, roles, verdicts)
    k = len(roles)
    spent = node[:, k + 1]
    dis = node[:, k + 4]
    # summed over each run so far: spent, disagreements, opinions, unparsed, the roles' one-hot,
    # and (with verdicts) the wrong verdicts
    each = np.column_stack([spent, dis, obs.has_opinion, obs.unparsed, node[:, :k],
                            *([node[:, k + 6]] if verdicts else [])])
    cums = np.zeros_like(each)
    running = np.zeros(each.shape[1])
    for r in range(len(obs)):
        if r == 0 or obs.task[r] != obs.task[r - 1]:
            running[:] = 0.0
        running += each[r]
        cums[r] = running
    steps = obs.position + 1.0
    share_dis = np.where(cums[:, 2] > 0, cums[:, 1] / np.maximum(cums[:, 2], 1), 0.0)
    wrong = [cums[:, 4 + k]] if verdicts else []
    return np.column_stack([steps, cums[:, 0], cums[:, 1], share_dis, cums[:, 3], *wrong, node,
                            cums[:, 4:4 + k] / steps[:, None]])


def prefixes(obs: Observed) -> list[np.ndarray]:
    """Per row, the rows of its run so far (the partial step graph's nodes, in order)."""
    out, start = [], 0
    for r in range(len(obs)):
        if r == 0 or obs.task[r] != obs.task[r - 1]:
            start = r
        out.append(np.arange(start, r + 1))
    return out
