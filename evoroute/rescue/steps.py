"""The multi-step tasks a rescue works on, as dense per-step arrays (replayed).

Both sources go through :class:`~evoroute.backends.replay.ReplayBackend`, so the tasks are the
ones every router is benched on:

- **composed RouterBench tasks**: ``steps_per_task`` = n real queries of one split per task, in
  the backend's seeded order (:func:`~evoroute.backends.base.compose_tasks`); task success = all
  steps succeed;
- **agent-step trajectories**: the bundled ``agent_steps`` dataset's own tasks (``task_id`` +
  ``step``), keeping those with at least ``min_steps`` steps.

Beside each model's recorded score and cost, a step of a multiple-choice role
(:data:`evoroute.collab.answers.CHOICE_TASKS`) carries each model's answer parsed from its
recorded response (:func:`evoroute.collab.answers.parse_choice`; '' when unparseable or when the
role is not multiple choice). The answer is what a real system sees after a call; the score is
ground truth it does not see (:mod:`.observe` is the only reader of a step for decisions and
never reads ``score``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from evoroute.backends.base import OutcomeTable, TableBackend
from evoroute.collab.answers import CHOICE_TASKS, options, parse_choice
from evoroute.settings import DEFAULTS


@dataclass(frozen=True)
class StepTable:
    """One row per step of a set of tasks, rows of a task consecutive and in step order."""

    task_keys: tuple[str, ...]       # per task
    task: np.ndarray                 # (n,) task index of each row
    position: np.ndarray             # (n,) 0-based step index within its task
    roles: np.ndarray                # (n,) str
    query_ids: np.ndarray            # (n,) str
    models: tuple[str, ...]
    score: np.ndarray                # (n, m) recorded 0/1 correctness: ground truth
    cost: np.ndarray                 # (n, m) recorded USD
    answer: np.ndarray               # (n, m) parsed choice, '' when none
    choice: np.ndarray               # (n,) bool: the role is multiple choice
    # (n, m) the verifier's verdict read from the response: +1 CORRECT, -1 WRONG, 0 none or
    # not a verifier step (None: no verifier steps at all)
    verdict: np.ndarray | None = None
    # (n, m) the task's own success had every step gone to that model, where the source records
    # it apart from the steps (the live pass: the final answer); None: all steps succeed
    task_score: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.roles)

    @property
    def n_tasks(self) -> int:
        return len(self.task_keys)

    def col(self, model: str) -> int:
        return self.models.index(model)

    def with_scores(self, score: np.ndarray) -> StepTable:
        """The same steps with other recorded scores (the tests corrupt the ground truth)."""
        return StepTable(self.task_keys, self.task, self.position, self.roles, self.query_ids,
                         self.models, np.asarray(score, dtype=float), self.cost, self.answer,
                         self.choice, self.verdict, self.task_score)

    def single_model(self, model: str) -> tuple[np.ndarray, float]:
        """(task success per task, total cost) had every step gone to ``model``."""
        j = self.col(model)
        return task_min(self.score[:, j], self.task, self.n_tasks), float(self.cost[:, j].sum())


def task_min(values: np.ndarray, task: np.ndarray, n_tasks: int) -> np.ndarray:
    """Per task, the minimum of its rows' values (task success = all steps succeed)."""
    out = np.full(n_tasks, np.inf)
    np.minimum.at(out, task, values)
    return out


def parsed_answers(long: pd.DataFrame, tasks: tuple[str, ...] = CHOICE_TASKS) -> pd.DataFrame:
    """(query_id x model) parsed choices of the multiple-choice roles of a long frame."""
    df = long[long["role"].isin(tasks)]
    if df.empty:
        return pd.DataFrame()
    first = df.drop_duplicates("query_id").set_index("query_id")["query"]
    opts = {q: options(text) for q, text in first.items()}
    parsed = [parse_choice(r, opts[q]) or "" for q, r in zip(df["query_id"], df["response"])]
    return df.assign(_answer=parsed).pivot(index="query_id", columns="model", values="_answer")


def step_table(backend: TableBackend, split: str, long: pd.DataFrame,
               min_steps: int = 1) -> StepTable:
    """The tasks of ``split`` with at least ``min_steps`` steps, in the backend's task order."""
    out = backend.outcome_table(split)
    steps = [(t, s) for t in backend.tasks(split) for s in t.steps]
    keys = np.asarray(out.task_keys, dtype=object)
    order = list(dict.fromkeys(keys))
    sizes = pd.Series(keys).value_counts()
    kept = [k for k in order if sizes[k] >= min_steps]
    index = {k: i for i, k in enumerate(kept)}
    rows = np.array([i for i, k in enumerate(keys) if k in index], dtype=np.int64)
    qids = np.array([str(steps[r][1].query_id) for r in rows], dtype=object)
    roles = np.asarray(out.roles, dtype=object)[rows]
    models = tuple(out.models)
    ans = parsed_answers(long)
    answer = np.full((len(rows), len(models)), "", dtype=object)
    choice = np.isin(roles, CHOICE_TASKS)
    if not ans.empty:
        sub = ans.reindex(index=qids[choice], columns=list(models)).fillna("")
        answer[choice] = sub.to_numpy(dtype=object)
    return StepTable(task_keys=tuple(kept), task=np.array([index[k] for k in keys[rows]]),
                     position=out.step_index[rows].astype(np.int64), roles=roles.astype(str),
                     query_ids=qids.astype(str), models=models, score=out.scores[rows],
                     cost=out.costs[rows], answer=answer.astype(str), choice=choice)


#: the live agent's role that judges the computed result (:mod:`evoroute.agent.workflow`)
VERIFIER_ROLE = "verifier"


def step_verdict(role: str, response: object) -> float:
    """The verifier's verdict a (recorded or live) response gives: +1 ``VERDICT: CORRECT``,
    -1 ``VERDICT: WRONG``, 0 none (no response, an unknown one such as NaN) or another role.
    It is the model's own judgement, read by the agent's own rule: what a real run sees of the
    call, no ground truth."""
    # the agent's pattern (private there: its module's source is part of the live table's key)
    from evoroute.agent.workflow import _VERDICT

    if role != VERIFIER_ROLE or not response:
        return 0.0
    m = _VERDICT.search(str(response))
    return 0.0 if m is None else (1.0 if m.group(1).upper() == "CORRECT" else -1.0)


def step_answer(role: str, instruction: str, response: str | None) -> str:
    """The option a recorded (or live) response names on a multiple-choice step, '' when it
    names none or the role is not multiple choice: what a run sees of a call, no ground truth."""
    if role not in CHOICE_TASKS:
        return ""
    return parse_choice(response, options(instruction)) or ""


def from_outcome_table(out: OutcomeTable) -> StepTable:
    """The steps of an outcome table (rows of a task consecutive, as the backend gives them),
    answers parsed from its recorded responses (none without them): the router's train split."""
    keys = np.asarray(out.task_keys, dtype=object)
    order = list(dict.fromkeys(keys.tolist()))
    index = {k: i for i, k in enumerate(order)}
    roles = np.asarray(out.roles, dtype=object).astype(str)
    models = tuple(out.models)
    answer = np.full((len(roles), len(models)), "", dtype=object)
    choice = np.isin(roles, CHOICE_TASKS)
    verdict = None
    if out.responses is not None:
        for r in np.flatnonzero(choice):
            opts = options(out.instructions[r])
            answer[r] = [parse_choice(x, opts) or "" for x in out.responses[r]]
        judged = np.flatnonzero(roles == VERIFIER_ROLE)
        if judged.size:
            verdict = np.zeros((len(roles), len(models)))
            for r in judged:
                verdict[r] = [step_verdict(VERIFIER_ROLE, x) for x in out.responses[r]]
    return StepTable(task_keys=tuple(order), task=np.array([index[k] for k in keys], dtype=np.int64),
                     position=np.asarray(out.step_index, dtype=np.int64), roles=roles,
                     query_ids=np.array([f"row{i}" for i in range(len(roles))]), models=models,
                     score=np.asarray(out.scores, dtype=float), cost=np.asarray(out.costs, dtype=float),
                     answer=answer.astype(str), choice=choice, verdict=verdict,
                     task_score=None if out.task_scores is None
                     else np.asarray(out.task_scores, dtype=float))


def routerbench_tasks(n_steps: int, seed: int = 0) -> tuple[dict[str, StepTable], pd.DataFrame]:
    """Composed RouterBench tasks of ``n_steps`` real queries, both splits, composition ``seed``."""
    from evoroute.backends.replay import ReplayBackend, dataset_models
    from evoroute.datasets.routerbench import load_routerbench

    long = load_routerbench()
    backend = ReplayBackend(long, dataset_models(long), seed=seed, steps_per_task=n_steps)
    return {split: step_table(backend, split, long) for split in DEFAULTS.splits}, long


def agent_step_tasks(min_steps: int = 2, seed: int = 0) -> tuple[dict[str, StepTable],
                                                                 dict[str, StepTable]]:
    """The agent-step trajectories with at least ``min_steps`` steps, both splits, and every
    step of both splits (the base policy is fitted on all train steps)."""
    from evoroute.backends.replay import ReplayBackend, dataset_models
    from evoroute.datasets.agent_steps import load_agent_steps

    long = load_agent_steps()
    backend = ReplayBackend(long, dataset_models(long), seed=seed)
    multi = {split: step_table(backend, split, long, min_steps) for split in DEFAULTS.splits}
    every = {split: step_table(backend, split, long) for split in DEFAULTS.splits}
    return multi, every
