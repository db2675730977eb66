"""SQLModel tables of the experience base: models, runs, tasks and step records (spec §2).

Create / Read / table classes follow the full-stack-fastapi-template shape: the ``*Base``
classes carry the user-facing fields and their validation, the ``table=True`` classes add
ids and bookkeeping.

:class:`StepRecord` is the one definition of the step record. Its columns give the insert row
(:func:`step_row`, built from the runner's :class:`~evoroute.core.types.StepOutcome`), the CSV
export columns (:data:`EXPORT_COLUMNS`: every column not marked ``NOT_IN_CSV``) and the CSV
import row (``evoroute.csvio.rows``). A new column is a field here plus one migration
(``evoroute/storage/migrations/versions``) and its test.
"""

from __future__ import annotations

from dataclasses import fields as dataclass_fields
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Column, Index, LargeBinary, Text
from sqlmodel import Field, SQLModel

from evoroute.core.types import StepOutcome
from evoroute.settings import DEFAULTS

#: column info of a step column that is not a CSV cell (export and import skip it)
NOT_IN_CSV = {"info": {"csv": False}}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ModelBase(SQLModel):
    name: str = Field(index=True, unique=True, max_length=200)
    litellm_id: str = Field(default="", max_length=300)
    api_base: str | None = None
    input_price_per_m: float = 0.0   # USD per 1M input tokens
    output_price_per_m: float = 0.0  # USD per 1M output tokens
    price_source: str = "override"   # litellm | override | notional
    ttft_s: float = DEFAULTS.ttft_s              # time to first token, seconds
    tokens_per_s: float = DEFAULTS.tokens_per_s  # output tokens per second
    enabled: bool = True
    notes: str = ""


class ModelEntry(ModelBase, table=True):
    __tablename__ = "model"
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Run(SQLModel, table=True):
    __tablename__ = "run"
    id: int | None = Field(default=None, primary_key=True)
    name: str = ""
    # pending | running | finished | stopped | failed | interrupted (its process is gone, or it
    # was stopped by a signal or a write failure; resumable like stopped)
    status: str = Field(default="pending", index=True)
    backend: str = "replay"          # replay | live | simulated
    dataset: str = ""
    router: str = "evoroute"
    protocol: str = DEFAULTS.protocols[0]
    seed: int = DEFAULTS.seed
    w_p: float = DEFAULTS.weights[0]
    w_c: float = DEFAULTS.weights[1]
    w_d: float = DEFAULTS.weights[2]
    budget_usd: float | None = None
    config_json: str = Field(default="{}", sa_column=Column(Text))
    label: str = ""                  # replayed | live | simulated (+ modelled latency)
    n_tasks_total: int = 0
    n_steps_done: int = 0
    cost_usd: float = 0.0
    stop_requested: bool = False
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # the process that owns the run (its creator, then its worker): pid + start time + host, so
    # a recycled pid is not mistaken for it; heartbeat_at is refreshed at every commit and at
    # least every few seconds while the run works (repo.reconcile_runs reads them)
    pid: int | None = None
    proc_started: float | None = None    # the process's start time, epoch seconds (psutil)
    host: str | None = None
    heartbeat_at: datetime | None = None
    # what the run is doing now (evoroute.runs.stages: loading, embedding, ..., cold_start,
    # optimize, inference, finished), how far into it (0..1; None: not measurable) and a line
    # saying so ("1,200 of 3,000 instructions"); the worker commits each one as it happens
    stage: str | None = None
    stage_progress: float | None = None
    stage_detail: str | None = None


class Task(SQLModel, table=True):
    __tablename__ = "task"
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    task_key: str = ""
    split: str = ""
    phase: str = ""
    n_steps: int = 0
    success: float | None = None
    cost_usd: float = 0.0
    duration_s: float = 0.0
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class StepRecord(SQLModel, table=True):
    """One executed step: the paper's experience record plus our bookkeeping (spec §2)."""

    __tablename__ = "step"
    __table_args__ = (
        Index("ix_step_run_role", "run_id", "role"),
        Index("ix_step_run_model", "run_id", "model"),
    )
    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, foreign_key="run.id", index=True)
    task_id: int | None = Field(default=None, foreign_key="task.id", index=True,
                                sa_column_kwargs=NOT_IN_CSV)
    task_key: str = ""
    step_index: int = 0
    # the run's step number (1-based; failed attempts share it)
    step_no: int | None = Field(default=None, sa_column_kwargs=NOT_IN_CSV)
    phase: str = ""                   # cold_start | optimize | inference | import
    role: str = Field(default="", index=True)
    model: str = Field(default="", index=True)
    query_id: str | None = None
    instruction: str = Field(default="", sa_column=Column(Text))
    embedding: bytes | None = Field(default=None, sa_column=Column(LargeBinary, **NOT_IN_CSV))
    tools: str = ""                   # ';'-separated tool names
    cost_usd: float = 0.0
    duration_s: float = 0.0
    latency_label: str = "modelled"   # modelled | measured | simulated
    ttft_s: float | None = None
    step_success: float | None = None
    task_success: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None
    # a refused or failed tool call of the step
    tool_error: str | None = Field(default=None, sa_column=Column(Text, **NOT_IN_CSV))
    propensity: float | None = None
    router: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    explanation: str | None = Field(default=None, sa_column=Column(Text))


#: every column of the step table, in table order
STEP_COLUMNS: tuple[str, ...] = tuple(StepRecord.__table__.columns.keys())  # type: ignore[attr-defined]
#: the CSV export's columns (header order): every step column not marked NOT_IN_CSV
EXPORT_COLUMNS: tuple[str, ...] = tuple(
    c.name for c in StepRecord.__table__.columns  # type: ignore[attr-defined]
    if c.info.get("csv", True))
#: the fields of an executed step's outcome that are stored as they are
OUTCOME_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclass_fields(StepOutcome)
                                         if f.name in STEP_COLUMNS)


def step_row(outcome: StepOutcome | None = None, **fields: Any) -> dict[str, Any]:
    """The insert row of one step: the outcome's stored fields, then ``fields`` (the decision,
    the task, the run...); every column gets a value (its default when not given), so rows of
    one ``insert`` share their keys. An unknown key raises ``KeyError``."""
    unknown = set(fields) - set(STEP_COLUMNS)
    if unknown:
        raise KeyError(f"not columns of the step table: {', '.join(sorted(unknown))}")
    given = {} if outcome is None else {c: getattr(outcome, c) for c in OUTCOME_COLUMNS}
    given.update(fields)
    row: dict[str, Any] = {}
    for name in STEP_COLUMNS:
        if name in given:
            row[name] = given[name]
        elif name != "id":
            row[name] = _column_default(name)
    return row


def _column_default(name: str) -> Any:
    info = StepRecord.model_fields[name]
    return info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
