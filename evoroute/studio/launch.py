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
from evoroute.backends.names import DEFAULT_DATASET, OWN_MODELS
from evoroute.core.errors import EvoRouteError, ValidationError
from evoroute.settings import DEFAULTS
from evoroute.storage import db, repo
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


def dataset_choices(backend: str) -> list[str]:
    """What the dataset field offers for a backend: the bundled datasets (replay), the
    scenarios (simulated) or the task sets (live); the first is the backend's default."""
    if backend == "simulated":
        from evoroute.backends.simulated import SCENARIOS
        names = list(SCENARIOS)
    elif backend == "live":
        from evoroute.agent.workflow import TASK_SET_NAMES, TASK_SETS
        # the bundled task sets, once each (the default's aliases left out)
        names = [DEFAULT_DATASET["live"], *(n for n in TASK_SETS if n not in TASK_SET_NAMES)]
    else:
        names = bundled_datasets()
    first = DEFAULT_DATASET.get(backend)
    return sorted(names, key=lambda n: n != first)


def dataset_models(backend: str, dataset: str | None) -> list[str] | None:
    """The models a run of ``backend`` on ``dataset`` can route to without registering them
    (the simulated scenario's own), or the models a bundled replay dataset has outcomes for;
    None when that is only known once the data is read (a file, or the live backend)."""
    name = (dataset or "").strip() or DEFAULT_DATASET.get(backend)
    if backend == "simulated":
        from evoroute.backends.simulated import SCENARIOS
        return [m.name for m in SCENARIOS[name].models] if name in SCENARIOS else None
    if backend != "replay":
        return None
    from evoroute.datasets import AGENT_STEPS_NAME, BUNDLED_DATASETS
    if name in BUNDLED_DATASETS:
        return replay_models()
    if name == AGENT_STEPS_NAME:
        from evoroute.backends.replay import load_replay_data
        return sorted(map(str, load_replay_data(name)["model"].unique()))
    return None


@dataclass(frozen=True)
class ModelChoice:
    """The launch form's model field for a backend and dataset: what it offers, what it
    pre-selects (only models with outcomes in the dataset) and the enabled models it leaves out
    because the dataset has no outcomes for them."""

    options: list[str]
    default: list[str]
    without_outcomes: list[str]


def model_choice(backend: str, dataset: str | None, enabled: Sequence[str]) -> ModelChoice:
    have = dataset_models(backend, dataset)
    if backend in OWN_MODELS:
        return ModelChoice(options=have or [], default=[], without_outcomes=[])
    if have is None:
        return ModelChoice(options=list(enabled), default=[], without_outcomes=[])
    missing = [m for m in enabled if m not in have]
    default = [m for m in enabled if m in have] if missing else []
    return ModelChoice(options=list(enabled), default=default, without_outcomes=missing)


def check_models(backend: str, dataset: str | None, models: Sequence[str] | None,
                 enabled: Sequence[str]) -> None:
    """Refuse, before the run starts, a replay whose models the dataset has no outcomes for
    (an empty choice means every enabled model)."""
    if backend != "replay":
        return
    have = dataset_models(backend, dataset)
    if have is None:              # a file: read it now (the run would read it first thing)
        from evoroute.backends.replay import load_replay_data
        try:
            have = sorted(map(str, load_replay_data(dataset.strip())["model"].unique()))
        except EvoRouteError as exc:
            raise ValidationError(str(exc), "dataset") from None
    chosen = list(models or enabled)
    missing = [m for m in chosen if m not in have]
    if missing:
        name = (dataset or "").strip() or DEFAULT_DATASET["replay"]
        raise ValidationError(
            f"model(s) {', '.join(missing)} have no recorded outcomes in dataset {name!r}, so "
            f"the replay cannot route to them: pick only models the dataset has, or disable "
            f"these (the Runs page's launch form offers both)", "models")


def check_dataset(backend: str, dataset: str | None) -> None:
    """Refuse, before the run starts, a dataset its backend cannot read: a scenario name that
    is not one (simulated), a name that is neither bundled nor a file (replay, live)."""
    from pathlib import Path

    name = (dataset or "").strip()
    if not name or name in dataset_choices(backend) or (backend != "simulated" and Path(name).is_file()):
        return
    what = {"simulated": "scenario", "live": "task set"}.get(backend, "dataset")
    raise ValidationError(
        f"{backend} has no {what} {name!r}: pick one of {', '.join(dataset_choices(backend))}"
        + ("" if backend == "simulated" else ", or give the path of a file")
        + " (empty = the backend's default)", "dataset")


def check_launch(spec: Any, enabled: Sequence[str], *, session: Session | None = None) -> None:
    """What the studio checks before it starts a run, so a mistake leaves no failed run: the
    dataset and the models first (in the studio's words), then, with ``session``, the run's
    backend and router are built once here as the worker will build them."""
    check_dataset(spec.backend, spec.dataset)
    check_models(spec.backend, spec.dataset, spec.models, enabled)
    if session is not None:
        preflight(spec, session=session)


def preflight(spec: Any, *, session: Session) -> None:
    """Build the spec's backend and router (not the run): an error the worker would meet while
    preparing is raised here, as a ValidationError on its field (``backend`` when it has none)."""
    from evoroute import registry
    from evoroute.backends.registry import make_backend
    from evoroute.runs.prepare import build_router

    try:
        models = None if spec.backend in OWN_MODELS else registry.model_infos(
            session=session, names=list(spec.models) if spec.models else None)
        backend = make_backend(spec.backend, spec.dataset, models=models,
                               model_names=list(spec.models) if spec.models else None,
                               seed=spec.seed, steps_per_task=spec.steps_per_task,
                               **spec.backend_params)
        router = build_router(spec, backend.models)
        why = _unsupported(router, backend)
        if why:
            raise ValidationError(f"router {spec.router}: {why}", "router")
    except ValidationError as exc:
        from evoroute.backends.live.backend import CLI_MODELS_HINT, LocalServersDown

        if isinstance(exc, LocalServersDown):     # in the studio's words; the page offers Start
            raise LocalServersDown(str(exc).replace(CLI_MODELS_HINT, ""), list(exc.names)) from None
        if exc.field is None:
            raise ValidationError(str(exc), "backend") from None
        raise
    except EvoRouteError as exc:
        raise ValidationError(str(exc), "backend") from None


def _unsupported(router: Any, backend: Any) -> str | None:
    """Why the router cannot run on this backend's data (``Router.unsupported_data`` on its
    train split), checked only for routers that declare such a limit and backends with a table."""
    from evoroute.policy.base import Router

    if type(router).unsupported_data is Router.unsupported_data:
        return None
    table = backend.outcome_table("train")      # a live backend: a cached pass, if any
    if table is None:                           # else the shape of the one it would collect
        from evoroute.runs.prepare import unsupported_on_shape

        return unsupported_on_shape(router, backend)
    return None if len(table) == 0 else router.unsupported_data(table)


def disable_models(names: Sequence[str], *, session: Session) -> list[str]:
    """Disable registered models (they stay registered; the Models page enables them again)."""
    from evoroute import registry

    for name in names:
        registry.update_model(name, session=session, enabled=False)
    return list(names)


def replay_models() -> list[str]:
    """The models whose recorded outcomes the overview's replay uses (without loading it)."""
    from evoroute.datasets import routerbench_models

    return routerbench_models()


def router_choices(models: Sequence[str]) -> list[str]:
    """Registered routers plus one ``single:<model>`` per model a run can route to (the
    enabled models; a simulated scenario's own)."""
    from evoroute.policy.registry import router_names

    names = sorted((n for n in router_names() if n != "single:<model>"),
                   key=lambda n: (not n.startswith("evoroute"), n))
    return names + [f"single:{m}" for m in models]


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
    # a live run whose router learns from every model's train outcome (or the full protocol)
    # collects it first, shown as the run's "collecting" stage; other routers never do
    backend_params = {"collect": True} if backend == "live" else {}
    return RunSpec(backend=backend, dataset=(dataset or "").strip() or None, router=rname,
                   backend_params=backend_params,
                   weights=tuple(float(x) for x in weights), router_params=params, seed=seed,
                   protocol=protocol, n_tasks=n_tasks, n_train=n_train,
                   cold_start_tasks=cold_start_tasks, steps_per_task=steps_per_task,
                   budget_usd=budget_usd, models=tuple(models) if models else None,
                   name=name.strip())


def replay_spec(weights: tuple[float, float, float] = DEFAULTS.weights,
                n_tasks: int | None = REPLAY_TEST_TASKS,
                n_train: int | None = REPLAY_TRAIN_TASKS,
                seed: int = DEFAULTS.seed, name: str = "",
                models: Sequence[str] | None = None) -> Any:
    """EvoRoute replayed on the bundled RouterBench data (the overview's first-visit run):
    the default cold-start tasks, ``n_train`` online train tasks, then ``n_tasks`` test tasks,
    on ``models`` (None: every enabled one; ``model_choice("replay", None, enabled).default``
    keeps only those the data has outcomes for)."""
    return build_spec(backend="replay", dataset=REPLAY_DATASET, router="evoroute",
                      weights=weights, seed=seed, n_tasks=n_tasks, n_train=n_train,
                      models=models,
                      name=name or "EvoRoute on RouterBench (replayed, from the studio)")


def spec_dict(run: Run) -> dict[str, Any]:
    """The RunSpec fields a run was started with (without what the runner resolved)."""
    d = json.loads(run.config_json or "{}")
    d.pop("resolved", None)
    return d


def launch_run(spec: Any, *, engine_url: str | None = None) -> int:
    """Check ``spec`` (:func:`check_launch`: a launch that cannot succeed is refused before a
    run exists) and start it in a detached worker process; returns the run id at once."""
    from evoroute.runs.worker import start_background

    url = engine_url or settings.db_url()
    with db.session(db.get_engine(url)) as s:
        enabled = [m.name for m in repo.list_models(session=s, enabled_only=True)]
        check_launch(spec, enabled, session=s)
    return int(start_background(spec, engine_url=url))


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
