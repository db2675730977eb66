"""The experience base as a router sees it: an ExperienceIndex kept in sync with the database.

Loading streams rows in batches (no ORM objects); ``sync`` appends only records with a larger id
than the last one seen and fills the success of tasks that finished since, so a decision never
reloads the whole base.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine, Row

from evoroute.retrieval.index import ExperienceIndex
from evoroute.retrieval.tools import parse_tools
from evoroute.storage import db, repo


@dataclass
class SyncedIndex:
    """An index over the step records of ``run_ids`` (None = the whole base)."""

    engine: Engine
    run_ids: Sequence[int] | None = None
    perf_signal: str = "task"
    index: ExperienceIndex = field(init=False)

    def __post_init__(self) -> None:
        self.index = ExperienceIndex(perf_signal=self.perf_signal)
        self.sync()

    def sync(self) -> int:
        """Append new records and fill newly finished tasks; returns the records added."""
        added = 0
        with db.session(self.engine) as s:
            for rows in repo.load_experience(session=s, run_ids=self.run_ids,
                                             since_id=self.index.last_db_id):
                added += len(rows)
                self._append(rows)
            pending = [ref[1] for ref in self.index.pending_tasks() if ref[0] == "task"]
            for task_id, success in repo.finished_task_successes(pending, session=s):
                self.index.set_task_perf(("task", task_id), success)
        return added

    def _append(self, rows: list[Row]) -> None:
        # rows carry repo.EXPERIENCE_COLUMNS as attributes
        step_signal = self.perf_signal == "step"
        perf = [r.step_success if step_signal else r.task_success for r in rows]
        tools: dict[str | None, frozenset[str]] = {}   # a base holds few distinct tool strings
        self.index.add_batch(
            roles=[r.role for r in rows], models=[r.model for r in rows],
            texts=[r.instruction for r in rows],
            embeddings=_Embeddings(rows),
            tools=[tools[t] if t in tools else tools.setdefault(t, parse_tools(t))
                   for t in (r.tools for r in rows)],
            costs=[r.cost_usd for r in rows], durations=[r.duration_s for r in rows],
            perf=perf,
            # only records still waiting for their task's success need to be found again
            task_refs=[("task", r.task_id) if (p is None and r.task_id is not None) else None
                       for r, p in zip(rows, perf)],
            db_ids=[r.id for r in rows])


class _Embeddings:
    """The rows' embeddings, decoded only where the index asks: it keeps one vector per text,
    so a record whose text it has seen before never needs its blob decoded."""

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        return repo.embedding_from_bytes(self.rows[i].embedding)
