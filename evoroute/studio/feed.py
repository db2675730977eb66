"""The live view of a run: a snapshot per poll, read incrementally (new step ids only)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Row
from sqlmodel import Session

from evoroute.core import labels
from evoroute.core.errors import EvoRouteError
from evoroute.runs import stages
from evoroute.settings import DEFAULTS
from evoroute.storage import repo, views

#: Statuses with no process working on the run (an interrupted run's process is gone; it can be
#: resumed or deleted): the studio stops polling it.
TERMINAL_STATUSES = ("finished", "stopped", "failed", "interrupted")

FEED_COLUMNS = ["step", "task", "role", "phase", "instruction", "pareto kept",
                "sampled utilities", "chosen", "outcome", "cost (USD)", "latency (s)",
                "latency label", "mode"]


@dataclass(frozen=True)
class Preparation:
    """What a run does before its first task: its worker starting (pending), then the stage of
    the preparation its worker stored (``stored``: loading, embedding..., ``fraction`` its
    stored progress, None when it cannot be measured). A worker that stores no stage (an older
    EvoRoute) gets an estimate instead: ``estimate_s`` is how long the latest finished run of
    the same backend and dataset took to prepare (None: no such run)."""

    stage: str
    elapsed_s: float
    estimate_s: float | None
    fraction: float | None = None
    detail: str | None = None
    stored: bool = False

    @property
    def progress(self) -> float:
        """The stored stage's progress; else elapsed over the estimate, kept below 1 until the
        run's tasks are known."""
        if self.stored:
            return float(min(1.0, max(0.0, self.fraction or 0.0)))
        if not self.estimate_s:
            return 0.0
        return float(min(0.95, self.elapsed_s / self.estimate_s))

    @property
    def text(self) -> str:
        if self.stored:
            return (f"{self.stage}" + (f" · {self.detail}" if self.detail else "")
                    + f" · {seconds(self.elapsed_s)} since the run started")
        est = (f" of about {seconds(self.estimate_s)} (what the latest finished run of this "
               f"backend and dataset took to prepare)" if self.estimate_s else " so far")
        return f"{self.stage} · {seconds(self.elapsed_s)}{est}"


def seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"


PENDING_STAGE = "starting the background worker"
PREPARE_STAGE = ("preparing the run: reading the data, building the router, training it if it "
                 "needs to, embedding the instructions")


def preparation_estimate(run: Any, earlier: list[Any]) -> float | None:
    """Seconds the latest finished run of the same backend and dataset took to prepare."""
    for r in earlier:
        if r.id != run.id and r.status == "finished" and (r.backend, r.dataset) == (
                run.backend, run.dataset):
            try:
                s = json.loads(r.config_json or "{}").get("resolved", {}).get("prepare_s")
            except ValueError:
                continue
            if s:
                return float(s)
    return None


@dataclass
class LiveSnapshot:
    run_id: int
    status: str
    label: str
    error: str | None
    n_steps: int
    n_steps_done: int
    n_tasks_total: int
    n_tasks_finished: int
    quality: float | None
    cost_usd: float
    budget_usd: float | None
    mean_latency_s: float | None
    latency_label: str
    new_steps: int
    feed: pd.DataFrame
    last_step_id: int
    poll_ms: float
    preparation: Preparation | None = None
    stage: str | None = None             # the stored stage (evoroute.runs.stages)
    stage_detail: str | None = None

    @property
    def progress(self) -> float:
        if self.status == "finished":
            return 1.0
        if self.n_tasks_total <= 0:
            return 0.0
        return float(min(1.0, self.n_tasks_finished / self.n_tasks_total))

    @property
    def active(self) -> bool:
        return self.status not in TERMINAL_STATUSES

    @property
    def stage_text(self) -> str:
        """The task phase a running run is in, for the tasks bar ("online training (train
        split) · 120 of 300 steps · "); "" otherwise."""
        if self.status != "running" or not self.stage or self.stage in stages.PREPARING:
            return ""
        return stages.title(self.stage) + (f" · {self.stage_detail}" if self.stage_detail
                                           else "") + " · "


@dataclass
class LiveFeed:
    """Incremental state of one run's live view: each poll reads only new steps (by id).

    The first poll of a run reads the light columns of all its steps (one indexed range
    scan); later polls read ``id > last_id`` only, plus the few task rows not yet resolved,
    so a poll costs a few milliseconds whatever the size of the base.
    """

    run_id: int
    feed_size: int = DEFAULTS.feed_size
    last_id: int = 0
    task_cursor: int = 0                 # every task of the run with id <= cursor is resolved
    n_steps: int = 0
    cost_sum: float = 0.0
    dur_sum: float = 0.0
    latency_labels: set[str] = field(default_factory=set)
    tasks_finished: int = 0
    success_sum: float = 0.0
    model_names: list[str] = field(default_factory=list)
    _model_ids: dict[str, int] = field(default_factory=dict)
    _step_models: list[np.ndarray] = field(default_factory=list)
    _feed_rows: list[dict] = field(default_factory=list)
    _prepare_estimate: list[float | None] = field(default_factory=list)

    def poll(self, *, session: Session) -> LiveSnapshot:
        t0 = time.perf_counter()
        # the worker process writes the run row: always read its current state
        run = repo.get_run(self.run_id, session=session)    # a dead worker reads interrupted
        if run is None:
            raise EvoRouteError(f"no run with id {self.run_id}")
        light = views.steps_after(self.run_id, self.last_id, session=session)
        new = len(light)
        if new:
            ids = [r.id for r in light]
            models = np.fromiter((self._model_id(r.model) for r in light), np.int32, new)
            self._step_models.append(models)
            self.cost_sum += float(sum(r.cost_usd or 0.0 for r in light))
            self.dur_sum += float(sum(r.duration_s or 0.0 for r in light))
            self.latency_labels.update(r.latency_label for r in light if r.latency_label)
            self.n_steps += new
            heavy = views.feed_steps(ids[-self.feed_size:], session=session)
            self._feed_rows = ([feed_row(h) for h in reversed(heavy)] + self._feed_rows)[: self.feed_size]
            self.last_id = ids[-1]
        self._poll_tasks(session)
        prep = None
        if run.status == "running" and run.stage in stages.PREPARING:
            prep = Preparation(stages.title(run.stage), self._elapsed(run), None,
                               fraction=run.stage_progress, detail=run.stage_detail, stored=True)
        elif run.status in repo.ACTIVE_STATUSES and not run.n_tasks_total and not self.n_steps:
            prep = self._preparation(run, session)
        feed = pd.DataFrame(self._feed_rows, columns=["id", *FEED_COLUMNS])
        return LiveSnapshot(
            run_id=self.run_id, status=run.status, label=labels.label_of(run), error=run.error,
            n_steps=self.n_steps, n_steps_done=run.n_steps_done, n_tasks_total=run.n_tasks_total,
            n_tasks_finished=self.tasks_finished,
            quality=self.success_sum / self.tasks_finished if self.tasks_finished else None,
            cost_usd=max(run.cost_usd or 0.0, self.cost_sum), budget_usd=run.budget_usd,
            mean_latency_s=self.dur_sum / self.n_steps if self.n_steps else None,
            latency_label="/".join(sorted(self.latency_labels)) or "modelled",
            new_steps=new, feed=feed, last_step_id=self.last_id,
            poll_ms=(time.perf_counter() - t0) * 1000, preparation=prep, stage=run.stage,
            stage_detail=run.stage_detail)

    @staticmethod
    def _elapsed(run: Any) -> float:
        since = repo.as_utc(run.started_at if run.status == "running" else run.created_at)
        return max(0.0, (repo.now() - since).total_seconds()) if since else 0.0

    def _preparation(self, run: Any, session: Session) -> Preparation:
        if not self._prepare_estimate:        # read once per run
            self._prepare_estimate.append(
                preparation_estimate(run, repo.list_runs(session=session, limit=50)))
        elapsed = self._elapsed(run)
        if run.status == "running":
            return Preparation(PREPARE_STAGE, elapsed, self._prepare_estimate[0])
        return Preparation(PENDING_STAGE, elapsed, None)

    def _model_id(self, name: str) -> int:
        if name not in self._model_ids:
            self._model_ids[name] = len(self.model_names)
            self.model_names.append(name)
        return self._model_ids[name]

    def _poll_tasks(self, session: Session) -> None:
        for task in views.tasks_after(self.run_id, self.task_cursor, session=session):
            if task.success is None:
                break           # the contiguous finished prefix ends here; resume from it next poll
            self.tasks_finished += 1
            self.success_sum += float(task.success)
            self.task_cursor = int(task.id)

    def model_share(self, n_buckets: int = 40) -> pd.DataFrame:
        """Share of steps per model in consecutive windows of the run (for a stacked area)."""
        if not self._step_models:
            return pd.DataFrame(columns=["step", "model", "share"])
        if len(self._step_models) > 1:
            self._step_models = [np.concatenate(self._step_models)]
        m = self._step_models[0]
        n, k = m.size, len(self.model_names)
        size = max(1, math.ceil(n / n_buckets))
        bucket = np.arange(n) // size
        counts = np.bincount(bucket * k + m, minlength=(bucket[-1] + 1) * k).reshape(-1, k)
        share = counts / counts.sum(axis=1, keepdims=True)
        ends = np.minimum((np.arange(share.shape[0]) + 1) * size, n)
        return pd.DataFrame({"step": np.repeat(ends, k),
                             "model": np.tile(self.model_names, share.shape[0]),
                             "share": share.ravel()})


def _excerpt(text: str | None, n: int = 90) -> str:
    t = " ".join((text or "").split())
    return t if len(t) <= n else t[: n - 1] + "…"


def feed_row(step: Row) -> dict:
    """One line of the decision feed from a row of :func:`evoroute.storage.views.feed_steps`."""
    kept, utils, mode = "", "", ""
    if step.explanation:
        try:
            e = json.loads(step.explanation)
        except ValueError:
            e = {}
        mode = e.get("mode", "")
        cands = e.get("candidates", [])
        kept = ", ".join(c["model"] for c in cands if c.get("pareto"))
        us = sorted(((c["utility"], c["model"]) for c in cands if c.get("utility") is not None),
                    reverse=True)
        utils = "; ".join(f"{m} {u:+.3f}" for u, m in us[:4])
    succ = step.step_success
    outcome = "error" if step.error else ("n/a" if succ is None else f"{succ:g}")
    return {"id": int(step.id), "step": int(step.id), "task": step.task_key, "role": step.role,
            "phase": step.phase, "instruction": _excerpt(step.instruction), "pareto kept": kept,
            "sampled utilities": utils, "chosen": step.model, "outcome": outcome,
            "cost (USD)": step.cost_usd, "latency (s)": step.duration_s,
            "latency label": step.latency_label, "mode": mode}
