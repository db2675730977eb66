"""Collaboration modes replayed from recorded responses: one model, a vote, escalation.

Only what the data holds is used: one recorded response (read by
:func:`evoroute.collab.answers.parse_choice`) and one recorded cost per (model, query).

- ``single``: the model's recorded score and cost.
- ``vote``: k distinct models each answer once; the answer most of them give wins. Unparseable
  responses abstain. A tie goes to the tied answer of the voter listed first (modes list their
  voters strongest first, by train-split accuracy: :func:`order_by_strength`). Correct iff the
  winner equals the gold answer; no parseable vote, or no gold answer, is wrong. Cost: the sum
  of the k calls.
- ``escalate``: two models answer; when both parse to the same choice that is the answer,
  otherwise a third (strong) model is called and its recorded score counts. Cost: the calls
  made (two, or three on disagreement).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from evoroute.collab.answers import ChoiceTable

KINDS = ("single", "vote", "escalate")


@dataclass(frozen=True)
class Mode:
    kind: str
    models: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown collaboration mode {self.kind!r}; known: {', '.join(KINDS)}")
        need = {"single": 1, "escalate": 3}.get(self.kind)
        if need is not None and len(self.models) != need:
            raise ValueError(f"a {self.kind} mode takes {need} model(s), got {len(self.models)}")
        if self.kind == "vote" and (len(self.models) < 2 or len(set(self.models)) != len(self.models)):
            raise ValueError("a vote takes at least two distinct models")

    @property
    def name(self) -> str:
        return f"{self.kind}:{'+'.join(self.models)}"


@dataclass(frozen=True)
class ModeOutcome:
    correct: np.ndarray     # per query, 0/1
    cost: np.ndarray        # per query, USD of the calls made
    calls: np.ndarray       # per query, number of calls

    @property
    def quality(self) -> float:
        return float(self.correct.mean()) if self.correct.size else float("nan")

    @property
    def total_cost(self) -> float:
        return float(self.cost.sum())


def majority(answers: Sequence[str]) -> str:
    """The most frequent non-empty answer; ties to the earliest voter's; '' if none parse."""
    votes = [a for a in answers if a]
    if not votes:
        return ""
    counts = Counter(votes)
    top = max(counts.values())
    return next(a for a in votes if counts[a] == top)


def replay(mode: Mode, table: ChoiceTable) -> ModeOutcome:
    """Score one mode on every query of the table."""
    idx = [table.models.index(m) for m in mode.models]
    n = len(table.query_ids)
    if mode.kind == "single":
        j = idx[0]
        return ModeOutcome(table.score[:, j].copy(), table.cost[:, j].copy(), np.ones(n))
    has_gold = table.gold != ""
    if mode.kind == "vote":
        winner = np.array([majority(row) for row in table.answers[:, idx]], dtype=object)
        correct = ((winner == table.gold) & (winner != "") & has_gold).astype(float)
        return ModeOutcome(correct, table.cost[:, idx].sum(axis=1), np.full(n, len(idx), float))
    a, b, strong = idx
    agree = (table.answers[:, a] == table.answers[:, b]) & (table.answers[:, a] != "")
    agreed_right = (table.answers[:, a] == table.gold) & has_gold
    correct = np.where(agree, agreed_right, table.score[:, strong] >= 0.5).astype(float)
    cost = table.cost[:, a] + table.cost[:, b] + np.where(agree, 0.0, table.cost[:, strong])
    return ModeOutcome(correct, cost, np.where(agree, 2.0, 3.0))


def order_by_strength(table: ChoiceTable) -> list[str]:
    """Models strongest first by mean recorded score on ``table`` (pass the train split)."""
    acc = table.score.mean(axis=0)
    return [table.models[j] for j in sorted(range(len(table.models)), key=lambda j: (-acc[j], j))]


def candidate_modes(ranked: Sequence[str], vote_sizes: Sequence[int] = (3, 5),
                    strong: int = 3) -> Iterator[Mode]:
    """Every single model; every vote of the given sizes (voters strongest first); every
    escalation of two models to one of the ``strong`` strongest not among them."""
    ranked = list(ranked)
    for m in ranked:
        yield Mode("single", (m,))
    for k in vote_sizes:
        for combo in itertools.combinations(ranked, k):
            yield Mode("vote", combo)
    for pair in itertools.combinations(ranked, 2):
        for s in ranked[:strong]:
            if s not in pair:
                yield Mode("escalate", (*pair, s))
