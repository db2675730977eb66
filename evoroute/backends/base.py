"""The backend interface: where step outcomes come from (spec §4).

Three backends implement it: ``replay`` (recorded outcomes of real models on real queries),
``simulated`` (seeded parametric models) and ``live`` (real calls); :mod:`evoroute.backends.registry`
builds them by name. The runner only talks to this interface, so a run, its records and its
report look the same whichever backend produced them; the backend's ``label`` says which it was.

Task success is the *minimum* of the step successes: for 0/1 scores that is "all steps
succeeded", which is how composed multi-step tasks are scored; for a one-step task it is the
step's own (possibly graded) score.

:class:`TableBackend` is the shared machinery of backends whose every (step, model) outcome is
known before the run (replay and simulated): outcomes are dense ``(rows, models)`` arrays, so
executing a step is an index lookup, and the oracle, the ``full`` protocol and the training of
threshold / cascade baselines read the same arrays.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evoroute.core.errors import BackendError, UnknownModelError, ValidationError
from evoroute.core.types import Decision, ModelInfo, StepContext, StepOutcome
from evoroute.settings import DEFAULTS


@dataclass(frozen=True)
class StepSpec:
    """One step of a task as the backend defines it (before any routing)."""

    role: str
    instruction: str
    query_id: str | None = None
    tools: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TaskSpec:
    """A unit of work with a success signal: an ordered list of steps."""

    key: str
    split: str
    steps: tuple[StepSpec, ...]

    @property
    def n_steps(self) -> int:
        return len(self.steps)


@dataclass(frozen=True)
class OracleEntry:
    """What one model would have given on one step (replay / simulated only)."""

    score: float
    cost_usd: float
    latency_s: float


@dataclass
class OutcomeTable:
    """Every routable model's outcome on every step of a split (NaN = not recorded).

    Used by the ``full`` protocol (bulk-loaded into the experience base) and to train the
    baselines that need training (threshold, cascade). ``embeddings`` is filled by the runner
    from its one up-front embedding batch.
    """

    models: list[str]
    task_keys: list[str]          # per row: the task it belongs to
    step_index: np.ndarray        # (n,) int
    roles: list[str]
    instructions: list[str]
    tools: list[frozenset[str]]
    scores: np.ndarray            # (n, m) float, NaN where not recorded
    costs: np.ndarray             # (n, m)
    latencies: np.ndarray         # (n, m)
    embeddings: np.ndarray | None = None   # (n, d) float32
    responses: np.ndarray | None = None    # (n, m) object: recorded response text, None unknown
    #: (n, m) the task's own recorded success had every step gone to that model, where the
    #: source records it apart from the steps (a live pass: the final answer is right); None:
    #: task success = every step succeeded
    task_scores: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.roles)

    def task_success(self) -> np.ndarray:
        """(n, m): per row, the success of its task had every step gone to that model."""
        if self.task_scores is not None:
            return self.task_scores
        keys = np.unique(np.asarray(self.task_keys, dtype=object), return_inverse=True)[1]
        s = np.where(np.isnan(self.scores), np.inf, self.scores)
        worst = np.full((int(keys.max()) + 1 if keys.size else 0, s.shape[1]), np.inf)
        np.minimum.at(worst, keys, s)
        out = worst[keys]
        return np.where(np.isinf(out), np.nan, out)


class Backend(ABC):
    """Executes steps on models. One instance serves one run (it holds the run's seed)."""

    label: str = ""               # replayed | live | simulated
    latency_label: str = "modelled"

    def __init__(self, models: list[ModelInfo]) -> None:
        if not models:
            raise ValidationError("no candidate models for this backend", "models")
        self.models = list(models)
        self.by_name = {m.name: m for m in self.models}

    @abstractmethod
    def tasks(self, split: str) -> list[TaskSpec]:
        """The tasks of a split, in the (seeded) order the run will see them."""

    @abstractmethod
    def execute(self, step: StepContext, model: ModelInfo) -> StepOutcome:
        """Run one step on one model."""

    def check_task(self, task: TaskSpec, outcomes: list[StepOutcome]) -> float:
        """Task success = min over steps (all steps must succeed; a failed call counts as 0)."""
        if not outcomes:
            return 0.0
        vals = [0.0 if (o.error or o.step_success is None) else float(o.step_success)
                for o in outcomes]
        return float(min(vals))

    def candidates(self, step: StepContext) -> tuple[str, ...] | None:
        """Models that can run this step (None = every routable model)."""
        return None

    def oracle_scores(self, step: StepContext) -> dict[str, OracleEntry] | None:
        """Every model's outcome on this step, where the backend knows it (else None)."""
        return None

    def outcome_table(self, split: str) -> OutcomeTable | None:
        """Every model's outcome on every step of a split, where known (else None)."""
        return None

    def collect_table(self, split: str, progress: Callable[[int, int, str], None] | None = None,
                      budget_usd: float | None = None) -> OutcomeTable | None:
        """Make :meth:`outcome_table` by running every model on the split, where the backend
        can and was asked to (the live backend's ``collect``); None otherwise. Called only by
        a run's preparation (it may take long), never by a page's check. ``budget_usd``: the
        run's cap, which the pass must fit in (refused before any call otherwise)."""
        return None

    def table_shape(self, split: str) -> OutcomeTable | None:
        """The split's table with nothing recorded (its tasks, steps and roles), where the
        backend could collect one: a router's data check runs on it before a pass is paid."""
        return None

    def missing_table_hint(self) -> str:
        """What to do when :meth:`outcome_table` has none (appended to the run's error)."""
        return ""

    def best_score(self, step: StepContext) -> float | None:
        """The best score any routable model has on this step, where known (the regret
        reference of the run's feed; else None)."""
        return None

    def estimate_cost(self, step: StepContext, model: ModelInfo) -> float | None:
        """What the step should cost on ``model`` before calling it, where the backend can tell
        (the budget check); None: the runner estimates it from the router and the run so far."""
        return None

    def execute_with_fallback(self, step: StepContext, decision: Decision, *,
                              budget_left: float | None = None
                              ) -> list[tuple[Decision, StepOutcome]] | None:
        """Execute the decision, retrying failed calls on its next-best candidates; every
        attempt in order. None: this backend has no fallback (the runner calls :meth:`execute`)."""
        return None

    def describe(self) -> dict[str, Any]:
        """What the run config records about the backend (data, split, labels...)."""
        return {"label": self.label, "latency_label": self.latency_label,
                "models": [m.name for m in self.models]}

    def model(self, name: str) -> ModelInfo:
        try:
            return self.by_name[name]
        except KeyError:
            raise UnknownModelError(name, list(self.by_name)) from None


@dataclass
class _Rows:
    """Dense outcome arrays: one row per (task, step), one column per routable model."""

    score: np.ndarray
    cost: np.ndarray
    latency: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    measured: np.ndarray = field(default=None)  # type: ignore[assignment]  # (n, m) bool
    response: np.ndarray | None = None   # (n, m) object: the recorded response text (replay)


class TableBackend(Backend):
    """A backend whose every (step, model) outcome is known in advance as dense arrays.

    Subclasses build ``self._tasks`` (split -> list of TaskSpec), ``self._row_of``
    ((task_key, step_index) -> row) and ``self._rows`` (:class:`_Rows`).
    """

    def __init__(self, models: list[ModelInfo]) -> None:
        super().__init__(models)
        self._col = {m.name: j for j, m in enumerate(self.models)}
        self._tasks: dict[str, list[TaskSpec]] = {}
        self._row_of: dict[tuple[str, int], int] = {}
        self._rows: _Rows | None = None
        self._cand_cache: dict[int, tuple[str, ...] | None] = {}

    # ------------------------------------------------------------ interface
    def tasks(self, split: str) -> list[TaskSpec]:
        if split not in DEFAULTS.splits:
            raise ValidationError(f"split must be one of {', '.join(DEFAULTS.splits)}, got "
                                  f"{split!r}", "split")
        return list(self._tasks.get(split, []))

    def row(self, step: StepContext) -> int:
        try:
            return self._row_of[(step.task_key, step.step_index)]
        except KeyError:
            raise BackendError(f"{self.label} backend has no step {step.step_index} of task "
                               f"{step.task_key!r}") from None

    def candidates(self, step: StepContext) -> tuple[str, ...] | None:
        r = self.row(step)
        if r not in self._cand_cache:
            ok = ~np.isnan(self._rows.score[r])
            self._cand_cache[r] = None if ok.all() else tuple(
                m.name for m, k in zip(self.models, ok) if k)
        return self._cand_cache[r]

    def execute(self, step: StepContext, model: ModelInfo) -> StepOutcome:
        r, j = self.row(step), self._col.get(model.name)
        if j is None:
            raise UnknownModelError(model.name, list(self._col))
        rows = self._rows
        score = rows.score[r, j]
        if np.isnan(score):
            raise BackendError(f"no recorded outcome of {model.name} for step {step.step_index} "
                               f"of task {step.task_key!r}")
        label = "measured" if rows.measured is not None and rows.measured[r, j] else self.latency_label
        return StepOutcome(model=model.name, step_success=float(score),
                           cost_usd=float(rows.cost[r, j]), duration_s=float(rows.latency[r, j]),
                           latency_label=label, input_tokens=int(rows.input_tokens[r, j]),
                           output_tokens=int(rows.output_tokens[r, j]),
                           response=None if rows.response is None else rows.response[r, j])

    def oracle_scores(self, step: StepContext) -> dict[str, OracleEntry]:
        r = self.row(step)
        rows = self._rows
        return {m.name: OracleEntry(float(rows.score[r, j]), float(rows.cost[r, j]),
                                    float(rows.latency[r, j]))
                for j, m in enumerate(self.models) if not np.isnan(rows.score[r, j])}

    def best_score(self, step: StepContext) -> float:
        """The best score any routable model has on this step (the regret reference)."""
        return float(np.nanmax(self._rows.score[self.row(step)]))

    def outcome_table(self, split: str) -> OutcomeTable:
        keys, idx, roles, texts, tools, rows = [], [], [], [], [], []
        for t in self.tasks(split):
            for i, s in enumerate(t.steps):
                keys.append(t.key)
                idx.append(i)
                roles.append(s.role)
                texts.append(s.instruction)
                tools.append(s.tools)
                rows.append(self._row_of[(t.key, i)])
        r = np.asarray(rows, dtype=np.int64)
        R = self._rows
        return OutcomeTable(models=[m.name for m in self.models], task_keys=keys,
                            step_index=np.asarray(idx, dtype=np.int64), roles=roles,
                            instructions=texts, tools=tools, scores=R.score[r], costs=R.cost[r],
                            latencies=R.latency[r],
                            responses=None if R.response is None else R.response[r])


def compose_tasks(units: list[list[StepSpec]], unit_keys: list[str], split: str,
                  steps_per_task: int, rng: np.random.Generator
                  ) -> tuple[list[TaskSpec], list[list[tuple[str, int]]]]:
    """Seeded order of a split's native tasks, optionally composed ``steps_per_task`` at a time.

    Returns the tasks and, per task, the (unit key, step within unit) of each of its steps so
    the caller can map steps to outcome rows. With ``steps_per_task`` > 1, consecutive units
    of the shuffled order are concatenated (a trailing group shorter than that is dropped so
    every composed task has the same length); task success is then "all steps succeed".
    """
    if steps_per_task < 1:
        raise ValidationError("steps_per_task must be >= 1", "steps_per_task")
    order = rng.permutation(len(units))
    tasks, sources = [], []
    if steps_per_task == 1:
        for u in order:
            tasks.append(TaskSpec(key=f"{split}:{unit_keys[u]}", split=split, steps=tuple(units[u])))
            sources.append([(unit_keys[u], i) for i in range(len(units[u]))])
        return tasks, sources
    n_groups = len(order) // steps_per_task
    for g in range(n_groups):
        grp = order[g * steps_per_task:(g + 1) * steps_per_task]
        steps = [s for u in grp for s in units[u]]
        src = [(unit_keys[u], i) for u in grp for i in range(len(units[u]))]
        tasks.append(TaskSpec(key=f"{split}:composed-{g}", split=split, steps=tuple(steps)))
        sources.append(src)
    return tasks, sources


def split_rng(seed: int, split: str) -> np.random.Generator:
    """An independent, reproducible stream per (seed, split) for task order and composition."""
    splits = DEFAULTS.splits
    return np.random.default_rng([int(seed), 7919, splits.index(split) if split in splits else 99])
