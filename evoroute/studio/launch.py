"""The launch form and run actions of the Runs page: router choices, ablations, the RunSpec,
start / stop / resume / delete in a background worker."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from evoroute import settings
from evoroute.core.errors import ValidationError
from evoroute.settings import DEFAULTS
from evoroute.storage import repo
from evoroute.storage.tables import Run

#: The overview's first-visit replay: EvoRoute on this bundled dataset, on this many test tasks
#: after this many online train tasks.
REPLAY_DATASET = "routerbench"
REPLAY_TEST_TASKS = 200
REPLAY_TRAIN_TASKS = 300


def bundled_datasets() -> list[str]:
    """The datasets shipped with the project (RouterBench subsets, then the agent steps)."""
    from evoroute.datasets import AGENT_STEPS_NAME, BUNDLED_DATASETS

    return [*BUNDLED_DATASETS, AGENT_STEPS_NAME]


def replay_models() -> list[str]:
    """The models whose recorded outcomes the overview's replay uses (without loading it)."""
    from evoroute.datasets import routerbench_models

    return routerbench_models()


def router_choices(*, session: Session) -> list[str]:
    """Registered routers plus one ``single:<model>`` per enabled model."""
    from evoroute.policy.registry import router_names

    names = sorted((n for n in router_names() if n != "single:<model>"),
                   key=lambda n: (not n.startswith("evoroute"), n))
    singles = [f"single:{m.name}" for m in repo.list_models(session=session, enabled_only=True)]
    return names + singles


def ablation_names() -> list[str]:
    from evoroute.policy.evoroute import ABLATIONS

    return list(ABLATIONS)


def router_with_ablations(router: str, ablations: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """(router name, router params) for EvoRoute with any set of ablations switched on.

    One ablation maps to its registered name (``evoroute-no-ts``); several are combined as
    EvoRouteConfig overrides on ``evoroute``, so every combination can be run.
    """
    from evoroute.policy.evoroute import ABLATIONS

    abls = [a for a in ablations if a]
    if not abls:
        return router, {}
    if router != "evoroute":
        raise ValidationError("ablations apply to the evoroute router only", "ablations")
    unknown = [a for a in abls if a not in ABLATIONS]
    if unknown:
        raise ValidationError(f"unknown ablation {unknown[0]!r}; known: {', '.join(ABLATIONS)}",
                              "ablations")
    if len(abls) == 1:
        return f"evoroute-{abls[0]}", {}
    params: dict[str, Any] = {}
    for a in abls:
        params.update({k: list(v) if isinstance(v, tuple) else v for k, v in ABLATIONS[a].items()})
    return "evoroute", params


def build_spec(*, backend: str, dataset: str | None, router: str, ablations: Sequence[str] = (),
               weights: tuple[float, float, float] = DEFAULTS.weights, seed: int = DEFAULTS.seed,
               n_tasks: int | None = None, n_train: int | None = None,
               budget_usd: float | None = None,
               cold_start_tasks: int = DEFAULTS.cold_start_tasks, steps_per_task: int = 1,
               models: Sequence[str] | None = None, protocol: str = DEFAULTS.protocols[0],
               name: str = ""):
    """A RunSpec from the launch form; RunSpec validates and names the offending field."""
    from evoroute.runs.spec import RunSpec

    rname, params = router_with_ablations(router, ablations)
    return RunSpec(backend=backend, dataset=(dataset or "").strip() or None, router=rname,
                   weights=tuple(float(x) for x in weights), router_params=params, seed=seed,
                   protocol=protocol, n_tasks=n_tasks, n_train=n_train,
                   cold_start_tasks=cold_start_tasks, steps_per_task=steps_per_task,
                   budget_usd=budget_usd, models=tuple(models) if models else None,
                   name=name.strip())


def replay_spec(weights: tuple[float, float, float] = DEFAULTS.weights,
                n_tasks: int | None = REPLAY_TEST_TASKS,
                n_train: int | None = REPLAY_TRAIN_TASKS,
                seed: int = DEFAULTS.seed, name: str = "") -> Any:
    """EvoRoute replayed on the bundled RouterBench data (the overview's first-visit run):
    the default cold-start tasks, ``n_train`` online train tasks, then ``n_tasks`` test tasks."""
    return build_spec(backend="replay", dataset=REPLAY_DATASET, router="evoroute",
                      weights=weights, seed=seed, n_tasks=n_tasks, n_train=n_train,
                      name=name or "EvoRoute on RouterBench (replayed, from the studio)")


def spec_dict(run: Run) -> dict[str, Any]:
    """The RunSpec fields a run was started with (without what the runner resolved)."""
    d = json.loads(run.config_json or "{}")
    d.pop("resolved", None)
    return d


def launch_run(spec: Any, *, engine_url: str | None = None) -> int:
    """Start ``spec`` in a detached worker process; returns the run id at once."""
    from evoroute.runs.worker import start_background

    return int(start_background(spec, engine_url=engine_url or settings.db_url()))


def stop_run(run_id: int, *, engine: Engine) -> str:
    """Stop a run: ``"stopped"`` (it had not started) or ``"stopping"`` (its worker stops after
    the step in progress)."""
    from evoroute.runs import lifecycle

    return lifecycle.stop_run(run_id, engine=engine)


def resume_run(run_id: int, *, engine_url: str | None = None) -> int:
    """Continue an interrupted or stopped run in a detached worker, from its last stored step
    (the result equals an uninterrupted run); returns its id at once."""
    from evoroute.runs.worker import resume_background

    return int(resume_background(run_id, engine_url=engine_url or settings.db_url()))


def delete_run(run_id: int, *, engine: Engine) -> dict[str, int]:
    """Delete a run and all its records in one transaction (refused while its process lives)."""
    from evoroute.runs import lifecycle

    return lifecycle.delete_run(run_id, engine=engine)


@dataclass(frozen=True)
class RunActions:
    """What the Runs page offers for a run, by its (reconciled) status."""

    stop: bool
    resume: bool
    delete: bool


def run_actions(status: str) -> RunActions:
    return RunActions(stop=status in repo.ACTIVE_STATUSES,
                      resume=status in repo.RESUMABLE_STATUSES,
                      delete=status != "running")
