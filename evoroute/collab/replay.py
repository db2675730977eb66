"""Collaboration modes as composite arms of the replay backend (issue 13).

The runner routes one call per step. A mode that makes several calls (a vote, an escalation)
is offered to it as one *composite arm* named like the mode (``vote:a+b+c``,
``escalate:a+b+s``): executing it replays the mode on the step's query from the members'
recorded answers with :func:`evoroute.collab.modes.replay` (the scoring of
docs/collaboration.md), so nothing is invented:

- correctness: the mode's, from the members' parsed answers and the query's gold answer;
- cost and tokens: the sums over the calls made (every voter; the pair, and the strong model
  only when the pair disagrees), at the backend's costs (recorded, or recomputed at the
  registered prices);
- latency: calls a mode can make at once overlap: a vote takes its slowest voter, an
  escalation the slower of the pair plus the strong model when it is called.

A single-model mode is an ordinary call (the model's own name), never a composite arm.
Modes are defined only on multiple-choice queries (:data:`~evoroute.collab.answers.CHOICE_TASKS`)
with every routable model's recorded response: :func:`modes_undefined` says why not elsewhere.
A dataset that mixes such roles with others (``routerbench``) has composite arms on the former
rows only (:meth:`ChoiceReplay.covers`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evoroute.collab.answers import CHOICE_TASKS, ChoiceTable, choice_rows
from evoroute.collab.modes import Mode, ModeOutcome, majority, replay
from evoroute.core.types import ModelInfo, StepOutcome

#: the modes a composite arm can be (a single model is an ordinary call)
COMPOSITE_KINDS = ("vote", "escalate")


def modes_undefined(responses: Any, roles: Any, dataset: str | None = None) -> str | None:
    """Why collaboration modes cannot be replayed on these rows (None: they can)."""
    where = f"dataset {dataset!r}" if dataset else "this dataset"
    hint = "; the bundled routerbench-choice (ARC-Challenge + Winogrande) has them"
    if responses is None:
        return (f"collaboration modes are not defined on {where}: it holds no recorded responses "
                f"to read the models' answers from{hint}")
    other = sorted({str(r) for r in roles} - set(CHOICE_TASKS))
    if other:
        return (f"collaboration modes are not defined on {where}: role(s) "
                f"{', '.join(map(repr, other))} are not multiple choice (modes need every query to "
                f"be one of {', '.join(CHOICE_TASKS)}){hint}")
    return None


def parse_mode(name: str, models: tuple[str, ...]) -> Mode | None:
    """The composite mode a name such as ``vote:a+b+c`` stands for, or None."""
    kind, sep, rest = name.partition(":")
    if not sep or kind not in COMPOSITE_KINDS or not rest:
        return None
    members = tuple(rest.split("+"))
    if any(m not in models for m in members):
        return None
    try:
        return Mode(kind, members)
    except ValueError:
        return None


def fingerprint(table: ChoiceTable) -> str:
    """A digest of the parsed answers (what a fitted mode router depends on beyond scores)."""
    h = hashlib.blake2b(digest_size=12)
    h.update("\x1f".join(table.models).encode())
    h.update("\x1f".join(table.answers.ravel().tolist()).encode())
    return h.hexdigest()


@dataclass
class ChoiceReplay:
    """Every routable model's parsed answer per backend row, and the composite arms' outcomes."""

    table: ChoiceTable                 # rows: the backend rows that every model answered
    rows: np.ndarray                   # backend row of each table row
    latency: np.ndarray                # (n, m) per table row and model
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    latency_label: str
    _index: dict[int, int] = field(default_factory=dict)
    _outcomes: dict[Mode, ModeOutcome] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index = {int(r): i for i, r in enumerate(self.rows)}

    def covers(self, row: int) -> bool:
        return int(row) in self._index

    def mode(self, name: str) -> Mode | None:
        return parse_mode(name, self.table.models)

    def arm(self, mode: Mode) -> ModelInfo:
        """The composite arm as the runner sees a model (prices 0: its cost is the replay's)."""
        return ModelInfo(mode.name, price_source="composite")

    def execute(self, row: int, mode: Mode) -> StepOutcome:
        i = self._index[int(row)]
        out = self._outcomes.get(mode)
        if out is None:
            out = self._outcomes[mode] = replay(mode, self.table)
        t = self.table
        idx = [t.models.index(m) for m in mode.models]
        lat = self.latency[i]
        if mode.kind == "vote":
            called, duration = idx, float(lat[idx].max())
            answer = majority(list(t.answers[i, idx]))
        else:
            strong = out.calls[i] > 2
            called = idx if strong else idx[:2]
            duration = float(max(lat[idx[0]], lat[idx[1]]) + (lat[idx[2]] if strong else 0.0))
            answer = t.answers[i, idx[2]] if strong else t.answers[i, idx[0]]
        return StepOutcome(model=mode.name, step_success=float(out.correct[i]),
                           cost_usd=float(out.cost[i]), duration_s=duration,
                           latency_label=self.latency_label,
                           input_tokens=int(self.input_tokens[i, called].sum()),
                           output_tokens=int(self.output_tokens[i, called].sum()),
                           response=answer or None)


def choice_replay(backend: Any, dataset: str) -> ChoiceReplay:
    """The collaboration replay of a table backend's rows (replay: ``backend._rows`` with the
    recorded responses); raises :class:`~evoroute.core.errors.DatasetError` naming the dataset
    where modes are not defined."""
    from evoroute.core.errors import DatasetError

    R = backend._rows
    n = R.score.shape[0]
    texts, roles, splits = [""] * n, np.full(n, "", dtype=object), np.full(n, "", dtype=object)
    for split, tasks in backend._tasks.items():
        for t in tasks:
            for i, s in enumerate(t.steps):
                r = backend._row_of[(t.key, i)]
                texts[r], roles[r], splits[r] = s.instruction, s.role, split
    used = roles[roles != ""]
    choice = used[np.isin(used, CHOICE_TASKS)]
    # composite arms exist on the multiple-choice rows; other roles route single calls only
    why = modes_undefined(R.response, choice if choice.size else used, dataset)
    if why:
        raise DatasetError(why)
    models = tuple(m.name for m in backend.models)
    table = choice_rows(np.arange(n), texts, roles, splits, models, R.response, R.score, R.cost)
    rows = np.asarray(table.query_ids, dtype=np.int64)
    return ChoiceReplay(table, rows, R.latency[rows], R.input_tokens[rows], R.output_tokens[rows],
                        backend.latency_label)
