"""The experience base as a router sees it: an ExperienceIndex kept in sync with the database.

Loading streams rows in batches (no ORM objects); ``sync`` appends only records with a larger id
than the last one seen and fills the success of tasks that finished since, so a decision never
reloads the whole base.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    #: records read and appended at a time
    batch: int = 50_000
    #: called after each batch (the studio's background load yields to page runs there)
    between_batches: Callable[[], None] | None = None
    index: ExperienceIndex = field(init=False)

    def __post_init__(self) -> None:
        self.index = ExperienceIndex(perf_signal=self.perf_signal)
        self.sync()

    def sync(self) -> int:
        """Append new records and fill newly finished tasks; returns the records added."""
        added = 0
        with db.session(self.engine) as s:
            for rows in repo.load_experience(session=s, run_ids=self.run_ids,
                                             since_id=self.index.last_db_id, batch=self.batch,
                                             embeddings=False):
                added += len(rows)
                self._append(rows, s)
                if self.between_batches is not None:
                    self.between_batches()
            pending = [ref[1] for ref in self.index.pending_tasks() if ref[0] == "task"]
            for task_id, success in repo.finished_task_successes(pending, session=s):
                self.index.set_task_perf(("task", task_id), success)
        return added

    def _append(self, rows: list[Row], session) -> None:
        # rows carry repo.EXPERIENCE_COLUMNS (``has_embedding`` for ``embedding``) as attributes
        step_signal = self.perf_signal == "step"
        perf = [r.step_success if step_signal else r.task_success for r in rows]
        texts = [r.instruction for r in rows]
        tools: dict[str | None, frozenset[str]] = {}   # a base holds few distinct tool strings
        self.index.add_batch(
            roles=[r.role for r in rows], models=[r.model for r in rows], texts=texts,
            embeddings=self._new_text_embeddings(rows, texts, session),
            tools=[tools[t] if t in tools else tools.setdefault(t, parse_tools(t))
                   for t in (r.tools for r in rows)],
            costs=[r.cost_usd for r in rows], durations=[r.duration_s for r in rows],
            perf=perf,
            # only records still waiting for their task's success need to be found again
            task_refs=[("task", r.task_id) if (p is None and r.task_id is not None) else None
                       for r, p in zip(rows, perf)],
            db_ids=[r.id for r in rows])

    def _new_text_embeddings(self, rows: list[Row], texts: list[str], session) -> list:
        """Per row the decoded embedding where the index will keep it, else None.

        The index keeps one vector per text, from the first record of that text that has one;
        every later record of a text it has reuses that vector and its blob is never read. So
        only the first embedded record of each text the index does not know is fetched."""
        embedded: dict[str, list[int]] = {}      # per text, its embedded rows in order
        for i, (text, has) in enumerate(zip(texts, (r.has_embedding for r in rows))):
            if has:
                embedded.setdefault(text, []).append(i)
        embedded = {t: i for t, i in embedded.items() if not self.index.has_text(t)}
        out: list = [None] * len(rows)
        # the flag and the blobs are two reads: a row deleted in between (its run deleted) has
        # no blob any more, so the text's next embedded row is tried, as one read would have
        pending = {text: iter(rows_of) for text, rows_of in embedded.items()}
        while pending:
            wanted = {text: next(it, None) for text, it in pending.items()}
            wanted = {t: i for t, i in wanted.items() if i is not None}
            if not wanted:
                break
            blobs = repo.embeddings_by_id([rows[i].id for i in wanted.values()], session=session)
            for text, i in wanted.items():
                blob = blobs.get(rows[i].id)
                if blob is not None:
                    out[i] = repo.embedding_from_bytes(blob)
                    del pending[text]
            pending = {t: it for t, it in pending.items() if t in wanted}
        return out
