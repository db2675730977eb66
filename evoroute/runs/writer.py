"""The run's writer: the loop's steps, their tasks and the run's progress, in small fenced
transactions (SQL in :mod:`evoroute.storage.run_store`)."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy.engine import Engine

from evoroute.core.types import Decision, StepOutcome, json_default
from evoroute.runs.feed import explanation_dict
from evoroute.runs.lifecycle import Heartbeat, RunTakenOver
from evoroute.runs.loop import StepResult
from evoroute.runs.signals import signals_deferred
from evoroute.storage import db, repo, run_store
from evoroute.storage.tables import step_row

# Every step is committed on its own: a kill loses at most the step in progress.
# benchmarks/commit_cost.py measured the price (see its numbers in docs/decisions.md).
COMMIT_EVERY_STEPS = 1
COMMIT_EVERY_S = 0.25


class Writer:
    """Writes steps, tasks and run progress in small transactions: every
    :data:`COMMIT_EVERY_STEPS` steps (1: at most one step is lost when the process is killed;
    benchmarks/commit_cost.py measured the cost) or :data:`COMMIT_EVERY_S`.

    Each commit is one transaction holding the steps, their tasks and the run's progress and
    heartbeat, fenced on the run still being this process's (else :class:`RunTakenOver`); it
    answers the run's stop flag. A task that starts and ends inside one batch is inserted
    with its success, step count, cost and duration already filled and its steps carry P(τ) —
    what :func:`repo.finish_task` would write; a task that spans batches is finished with
    :func:`repo.finish_task` itself.
    """

    def __init__(self, engine: Engine, run_id: int, router_name: str,
                 owner: repo.ProcessIdentity, heartbeat: Heartbeat | None = None, *,
                 n_steps: int = 0, cost: float = 0.0,
                 open_tasks: dict[str, int] | None = None) -> None:
        self.session = db.session(engine)
        self.run_id, self.router_name, self.owner, self.heartbeat = run_id, router_name, owner, heartbeat
        self.buffer: list[StepResult] = []
        self.open_tasks: dict[str, int] = dict(open_tasks or {})   # key -> id of an unfinished task
        self.last_commit = time.monotonic()
        self.n_steps, self.cost = n_steps, cost
        self.committed = n_steps

    def add(self, r: StepResult) -> None:
        self.buffer.append(r)
        self.n_steps += 1
        self.cost += r.outcome.cost_usd + sum(o.cost_usd for _, o in r.failed)

    def due(self) -> bool:
        return len(self.buffer) >= COMMIT_EVERY_STEPS or \
            (bool(self.buffer) and time.monotonic() - self.last_commit >= COMMIT_EVERY_S)

    def _flush_buffer(self) -> None:
        s, buf = self.session, self.buffer
        if not buf:
            return
        # tasks first (their ids are the steps' foreign keys)
        groups: dict[str, list[StepResult]] = {}
        for r in buf:
            groups.setdefault(r.task_key, []).append(r)
        new_rows: list[dict[str, Any]] = []
        new_keys: list[tuple[str, bool]] = []
        task_id: dict[str, int] = {}
        spanning: list[tuple[int, float]] = []
        now = repo.now()
        for key, rs in groups.items():
            if key in self.open_tasks:
                task_id[key] = self.open_tasks[key]
                if rs[-1].task_success is not None:
                    spanning.append((self.open_tasks.pop(key), rs[-1].task_success))
                continue
            done = rs[-1].task_success is not None
            row = dict(run_id=self.run_id, task_key=key, split=rs[0].split, phase=rs[0].phase,
                       success=None, n_steps=0, cost_usd=0.0, duration_s=0.0, created_at=now,
                       finished_at=None)
            if done:
                outs = [o for r in rs for o in [*(f for _, f in r.failed), r.outcome]]
                row.update(success=rs[-1].task_success, n_steps=len(outs), finished_at=now,
                           cost_usd=float(sum(o.cost_usd for o in outs)),
                           duration_s=float(sum(o.duration_s for o in outs)))
            new_rows.append(row)
            new_keys.append((key, done))
        done_here = set()
        if new_rows:
            for (key, done), tid in zip(new_keys, run_store.insert_tasks(s, new_rows)):
                task_id[key] = tid
                if done:
                    done_here.add(key)
                else:
                    self.open_tasks[key] = tid
        rows = []
        for key, rs in groups.items():
            succ = rs[-1].task_success if key in done_here else None
            for r in rs:
                for d, o in r.failed:
                    rows.append(self._row(r, task_id[key], succ, d, o))
                rows.append(self._row(r, task_id[key], succ, r.decision, r.outcome))
        run_store.insert_steps(s, rows)
        for tid, success in spanning:
            repo.finish_task(tid, success, session=s, commit=False)

    def _row(self, r: StepResult, task_id: int, task_success: float | None, decision: Decision,
             o: StepOutcome) -> dict[str, Any]:
        ctx = r.ctx
        return step_row(
            o, run_id=self.run_id, task_id=task_id, task_key=r.task_key, step_index=r.step_index,
            step_no=r.step_no, phase=r.phase, role=ctx.role, query_id=ctx.query_id,
            instruction=ctx.instruction, embedding=repo.embedding_to_bytes(ctx.embedding),
            tools=";".join(sorted(r.tools)), task_success=task_success,
            explanation=json.dumps(explanation_dict(decision.explanation),
                                   default=json_default, allow_nan=False),
            propensity=r.propensity, router=self.router_name, created_at=repo.now())

    def commit(self, **run_fields: Any) -> bool:
        """Commit the buffered steps with the run's progress; returns the run's stop flag."""
        s = self.session
        with signals_deferred():
            try:
                self._flush_buffer()
                stop = run_store.record_progress(s, self.run_id, self.owner,
                                                 n_steps_done=self.n_steps, cost_usd=self.cost,
                                                 **run_fields)
                if stop is None:
                    raise RunTakenOver(
                        f"run {self.run_id} is no longer this worker's (pid {self.owner.pid}): it "
                        f"was marked interrupted, resumed elsewhere or deleted; stopping without "
                        f"writing")
                s.commit()
            except BaseException:
                s.rollback()
                raise
            # still inside: a signal deferred during the commit is raised only after this
            self.buffer = []
            self.committed = self.n_steps
            self.last_commit = time.monotonic()
            if self.heartbeat is not None:
                self.heartbeat.touch()
        return stop

    def close(self) -> None:
        self.session.close()
