"""Multiple-choice answers read from the recorded responses (MasRouter-style collaboration replay).

The bundled RouterBench files hold, per query and model, one recorded response and its 0/1
correctness. For the multiple-choice tasks (ARC-Challenge: A-D, Winogrande: A-B) a response is
read as a choice by a fixed rule, and the gold answer is recovered from any model marked
correct. Nothing is invented: a response that does not name one option is *unparseable* (it
abstains in a vote), and a query that no model answered correctly has no gold answer (every
collaboration mode counts it wrong).

Parsing rule (:func:`parse_choice`), on the response stripped of surrounding whitespace:

1. a single option letter alone or followed by ``)``, ``.``, ``:`` or `` (`` — ``"B"``,
   ``"A)"``, ``"D (..."``; an article such as ``"A chart"`` is not a letter;
2. else the text of exactly one option, or a prefix of it of at least 3 characters
   (Winogrande responses such as ``"Rachel"`` or the truncated ``"Natal"``), case-insensitive;
3. else None. A letter that is not one of the question's options (``"E"`` on a 4-option
   question) is None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: The RouterBench roles whose queries are multiple choice.
CHOICE_TASKS: tuple[str, ...] = ("arc_challenge", "winogrande")

# linear on any text (an instruction is untrusted): the old ``^\s*…\)\s*(.*?)\s*$`` retried
# every remaining newline from every line start (200,000 newlines: minutes); same matches
_OPTION = re.compile(r"^[^\S\n]*+([A-Z])\)\s*+(.*\S)?", re.MULTILINE)
_LETTER = re.compile(r"^([A-Z])(?:$|[).:]|\s*\()")
MIN_PREFIX = 3


def options(question: str) -> dict[str, str]:
    """The options ``{"A": "dry palms", ...}`` of a question (its lines ``X) text``)."""
    found: dict[str, str] = {}
    for letter, text in _OPTION.findall(question):
        found.setdefault(letter, text)
    return found


def parse_choice(response: str | None, opts: dict[str, str]) -> str | None:
    """The option a response names, by the rule in the module docstring, else None."""
    if response is None or not opts:
        return None
    text = str(response).strip()
    if not text:
        return None
    m = _LETTER.match(text)
    if m:
        return m.group(1) if m.group(1) in opts else None
    low = text.lower().rstrip(".")
    hits = [k for k, v in opts.items()
            if v and (low == v.lower() or (len(low) >= MIN_PREFIX and v.lower().startswith(low)))]
    return hits[0] if len(hits) == 1 else None


@dataclass(frozen=True)
class ChoiceTable:
    """Every model's parsed answer, recorded score and cost on a set of multiple-choice queries.

    ``answers[i, j]`` is model j's choice on query i ('' when unparseable); ``gold[i]`` is ''
    when no model is marked correct; ``score`` and ``cost`` are the recorded values.
    """

    query_ids: np.ndarray
    roles: np.ndarray
    splits: np.ndarray
    models: tuple[str, ...]
    answers: np.ndarray
    score: np.ndarray
    cost: np.ndarray
    gold: np.ndarray
    conflicts: int           # queries whose correct models parse to different letters
    disagreements: int       # (query, model) cells whose parse contradicts the recorded score

    def rows(self, keep: np.ndarray) -> ChoiceTable:
        """The queries where the boolean mask ``keep`` is True (the counts are the table's)."""
        return ChoiceTable(self.query_ids[keep], self.roles[keep], self.splits[keep], self.models,
                           self.answers[keep], self.score[keep], self.cost[keep], self.gold[keep],
                           self.conflicts, self.disagreements)

    def subset(self, split: str) -> ChoiceTable:
        return self.rows(self.splits == split)

    @property
    def parse_rate(self) -> float:
        return float((self.answers != "").mean()) if self.answers.size else float("nan")


def choice_table(long: pd.DataFrame, tasks: tuple[str, ...] = CHOICE_TASKS) -> ChoiceTable:
    """Build the table from a long frame with ``response`` and ``query`` columns (RouterBench).

    Only queries every model scored are kept, so each mode is scored on the same queries.
    """
    need = {"query_id", "model", "score", "cost_usd", "role", "split", "query", "response"}
    missing = need - set(long.columns)
    if missing:
        raise ValueError(f"the frame has no {', '.join(sorted(missing))} column(s)")
    df = long[long["role"].isin(tasks)]
    models = tuple(dict.fromkeys(df["model"]))
    per_q = df.groupby("query_id", sort=False)["model"].nunique()
    full = per_q.index[per_q.to_numpy() == len(models)]
    df = df[df["query_id"].isin(full)]
    first = df.drop_duplicates("query_id").set_index("query_id")
    qids = first.index.to_numpy()
    opts = {q: options(text) for q, text in first["query"].items()}
    parsed = [parse_choice(r, opts[q]) or "" for q, r in zip(df["query_id"], df["response"])]
    df = df.assign(_answer=parsed)
    answers = df.pivot(index="query_id", columns="model", values="_answer").loc[qids, list(models)]
    score = df.pivot(index="query_id", columns="model", values="score").loc[qids, list(models)]
    cost = df.pivot(index="query_id", columns="model", values="cost_usd").loc[qids, list(models)]
    return _assemble(qids, first["role"].to_numpy(), first["split"].to_numpy(), models,
                     answers.to_numpy(dtype=object).astype(str), score.to_numpy(dtype=float),
                     cost.to_numpy(dtype=float))


def choice_rows(query_ids: np.ndarray, questions: list[str], roles: np.ndarray, splits: np.ndarray,
                models: tuple[str, ...], responses: np.ndarray | None, score: np.ndarray,
                cost: np.ndarray, tasks: tuple[str, ...] = CHOICE_TASKS,
                every_role: bool = False) -> ChoiceTable:
    """The same table from dense (row, model) arrays, as a backend or an outcome table holds
    them (``responses``: the recorded response texts, None or NaN where unknown): the rows whose
    role is one of ``tasks`` and that every model scored, in their given order.

    ``every_role``: keep the rows of every role that every model scored; answers are parsed on
    the rows of ``tasks`` only (``''`` elsewhere, and everywhere without ``responses``), so only
    single-model modes are defined on the other rows (masrouter's role allocation)."""
    roles = np.asarray(roles, dtype=object).astype(str)
    score = np.asarray(score, dtype=float)
    choice = np.isin(roles, tasks)
    keep = ~np.isnan(score).any(axis=1) & (True if every_role else choice)
    if responses is None and not every_role:
        keep[:] = False
    idx = np.flatnonzero(keep)
    a = np.full((idx.size, len(models)), "", dtype=object)
    for n, r in enumerate(idx):
        if responses is None or not choice[r]:
            continue
        opts = options(questions[r])
        a[n] = [parse_choice(None if _missing(x) else x, opts) or "" for x in responses[r]]
    return _assemble(np.asarray(query_ids, dtype=object)[idx], roles[idx],
                     np.asarray(splits, dtype=object)[idx], tuple(models), a.astype(str),
                     score[idx], np.asarray(cost, dtype=float)[idx])


def _missing(x: object) -> bool:
    return x is None or (isinstance(x, float) and np.isnan(x))


def _assemble(qids: np.ndarray, roles: np.ndarray, splits: np.ndarray, models: tuple[str, ...],
              a: np.ndarray, s: np.ndarray, cost: np.ndarray) -> ChoiceTable:
    """Gold answers (the parse of the models marked correct) and the counts of contradictions."""
    gold = np.full(len(qids), "", dtype=object)
    conflicts = 0
    for i in range(len(qids)):
        letters = {x for x, ok in zip(a[i], s[i]) if ok >= 0.5 and x}
        if len(letters) == 1:
            gold[i] = letters.pop()
        elif len(letters) > 1:
            conflicts += 1          # recorded scores disagree with the parse: no gold, scored wrong
    has_gold = gold != ""
    said_gold = (a == gold[:, None]) & has_gold[:, None] & (a != "")
    disagreements = int(((s >= 0.5) & (a != "") & ~said_gold & has_gold[:, None]).sum()
                        + ((s < 0.5) & said_gold).sum())
    return ChoiceTable(qids, roles, splits, models, a, s, cost, gold.astype(str), conflicts,
                       disagreements)
