"""The Overview page: the experience base at a glance, the latest runs, and the one-click
replay on the models the bundled data has outcomes for."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import pandas as pd
from sqlalchemy.engine import Engine
from sqlmodel import Session

from evoroute.core import labels
from evoroute.storage import repo, views
from evoroute.storage.tables import Run
from evoroute.studio import launch

if TYPE_CHECKING:
    from evoroute.runs.spec import RunSpec


@dataclass(frozen=True)
class ReplayPlan:
    """What the overview's one-click replay routes to: the enabled models the bundled data has
    recorded outcomes for, and the enabled ones it leaves out (a replay cannot route to a model
    without outcomes)."""

    models: list[str]
    left_out: list[str]
    dataset: str
    dataset_models: list[str]

    @property
    def runnable(self) -> bool:
        return bool(self.models)


def replay_plan(*, session: Session) -> ReplayPlan:
    have = launch.replay_models()
    enabled = [m.name for m in repo.list_models(session=session, enabled_only=True)]
    return ReplayPlan(models=[m for m in enabled if m in have],
                      left_out=[m for m in enabled if m not in have],
                      dataset=launch.REPLAY_DATASET, dataset_models=list(have))


def replay_spec(plan: ReplayPlan, *, n_tasks: int) -> RunSpec:
    """The overview's replay on the plan's models (every enabled model when none is left out,
    as a launch without a model choice does)."""
    spec = launch.replay_spec(n_tasks=n_tasks)
    return replace(spec, models=tuple(plan.models)) if plan.left_out else spec


def register_dataset_models(engine: Engine) -> list[str]:
    """Register the bundled RouterBench models the replay has outcomes for (prices fitted to
    the recorded costs); returns the names added."""
    from evoroute import demo

    return demo.register_routerbench_models(engine)


@dataclass(frozen=True)
class BaseCounts:
    n_records: int
    n_models: int
    n_models_enabled: int
    n_runs: int
    n_runs_active: int
    tasks_by_role: dict[str, int]
    records_by_role: dict[str, int]


def base_counts(*, session: Session) -> BaseCounts:
    """The experience base at a glance, from a handful of SQL aggregates."""
    n_runs = views.count_runs(session=session)
    repo.reconcile_runs(session=session)     # a run whose process is gone is not active
    by_role = views.counts_by_role(session=session)
    return BaseCounts(n_records=views.count_records(session=session),
                      n_models=views.count_models(session=session),
                      n_models_enabled=views.count_models(session=session, enabled_only=True),
                      n_runs=n_runs,
                      n_runs_active=views.count_runs(session=session,
                                                     statuses=repo.ACTIVE_STATUSES),
                      tasks_by_role={r.role: int(r.tasks) for r in by_role},
                      records_by_role={r.role: int(r.records) for r in by_role})


def run_title(run: Run, *, with_name: bool = False) -> str:
    """How a run is named in a picker: ``#id · router · dataset · label`` (and its name)."""
    title = f"#{run.id} · {run.router} · {run.dataset} · {labels.label_of(run)}"
    return title + (f" · {run.name}" if with_name and run.name else "")


RUNS_COLUMNS = ["run", "status", "router", "label", "quality", "cost (USD)",
                "latency per task (s)", "tasks done", "tasks", "steps", "dataset", "weights",
                "seed", "name", "backend", "created"]


def runs_frame(*, session: Session, limit: int = 20) -> pd.DataFrame:
    """The latest runs with their quality / cost / latency and the label of their numbers."""
    runs = repo.list_runs(session=session, limit=limit)
    stats = views.run_task_stats([r.id for r in runs], session=session)
    out = []
    for r in runs:
        st = stats.get(r.id, {})
        out.append({
            "run": r.id, "name": r.name, "status": r.status, "router": r.router,
            "backend": r.backend, "dataset": r.dataset, "label": labels.label_of(r),
            "weights": f"{r.w_p:g}, {r.w_c:g}, {r.w_d:g}", "seed": r.seed,
            "tasks done": st.get("tasks_done", 0), "tasks": r.n_tasks_total,
            "steps": r.n_steps_done, "quality": st.get("quality"),
            "cost (USD)": r.cost_usd, "latency per task (s)": st.get("latency_s"),
            "created": r.created_at,
        })
    return pd.DataFrame(out, columns=RUNS_COLUMNS)
