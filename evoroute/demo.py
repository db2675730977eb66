"""The bundled demo: the RouterBench models and one replay run, so the first screen shows data.

Prices are recovered from the data itself: RouterBench's recorded cost of every call is
``input_tokens·p_in + output_tokens·p_out``; a non-negative least-squares fit per model over
the bundled rows gives its list prices back (median relative error 0 on every model), so the
registry shows real prices and a user's override recomputes cost on the same token counts.
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy.engine import Engine

from evoroute import registry
from evoroute.backends.replay import fit_prices, latency_profiles
from evoroute.settings import DEFAULTS
from evoroute.storage import db, repo

DEMO_RUN_NAME = "demo: EvoRoute on RouterBench (replayed)"


@lru_cache(maxsize=4)
def fitted_prices(dataset: str = "routerbench") -> dict[str, tuple[float, float]]:
    """(input, output) USD per 1M tokens per model, fitted to the recorded costs."""
    from evoroute.datasets.routerbench import load_dataset

    return {m: (round(a, 4), round(b, 4)) for m, (a, b) in fit_prices(load_dataset(dataset)).items()}


def register_routerbench_models(engine: Engine) -> list[str]:
    """Register the bundled models that are not registered yet; returns the names added."""
    profiles = latency_profiles()
    added = []
    with db.session(engine) as s:
        known = {m.name for m in repo.list_models(session=s)}
        for name, (p_in, p_out) in fitted_prices().items():
            if name in known:
                continue
            prof = profiles.get(name, {})
            registry.add_model(session=s, name=name, litellm_id=prof.get("litellm_id", ""),
                               input_price_per_m=p_in, output_price_per_m=p_out,
                               ttft_s=prof.get("ttft_s", DEFAULTS.ttft_s),
                               tokens_per_s=prof.get("tokens_per_s", DEFAULTS.tokens_per_s),
                               price_source="recorded",
                               notes="RouterBench; prices fitted to recorded costs; "
                                     "latency profile assumed (modelled)")
            added.append(name)
    return added


def ensure_demo(engine: Engine | None = None, run: bool = True) -> str:
    """Idempotent: register the bundled models and make sure the base holds one complete demo
    run. A demo run left unfinished (killed, stopped, a write that failed) is resumed — the
    result equals an uninterrupted run — or, when it cannot be resumed exactly or it failed,
    deleted and replayed again; one still running in another process is left to finish. A
    base with other step records and no demo run gets none (a base holding only runs that
    failed before their first step still gets it)."""
    engine = engine or db.get_engine()
    added = register_routerbench_models(engine)
    lines = [f"registered {len(added)} RouterBench models" if added
             else "RouterBench models already registered"]
    if not run:
        return "\n".join(lines)
    from evoroute.core.errors import EvoRouteError
    from evoroute.runs.execute import create_run, execute_run
    from evoroute.runs.lifecycle import delete_run
    from evoroute.runs.spec import RunSpec

    with db.session(engine) as s:
        demo_runs = [r for r in repo.list_runs(session=s, limit=100_000) if r.name == DEMO_RUN_NAME]
        n_steps = repo.count_steps(session=s)
    latest = demo_runs[0] if demo_runs else None
    if latest is not None and latest.status == "finished":
        lines.append(f"the experience base already has {n_steps:,} step records; the demo run "
                     f"{latest.id} is complete")
        return "\n".join(lines)
    if latest is not None and latest.status in repo.ACTIVE_STATUSES:
        lines.append(f"the demo run {latest.id} is {latest.status} in another process (pid "
                     f"{latest.pid}); {latest.n_steps_done:,} steps so far — run `demo` again "
                     f"when it has finished")
        return "\n".join(lines)
    if latest is not None and latest.status in repo.RESUMABLE_STATUSES:
        before = latest.n_steps_done
        try:
            last = _drive(execute_run(latest.id, engine=engine, resume=True))
            lines.append(f"resumed the unfinished demo run {latest.id} from step {before:,}: "
                         + _summary(last))
            return "\n".join(lines)
        except EvoRouteError as exc:
            lines.append(f"the unfinished demo run {latest.id} could not be resumed ({exc}); "
                         f"replaying it again")
    for r in demo_runs:             # failed or not resumable: replaced by a new one
        delete_run(r.id, engine=engine)
        n_steps -= r.n_steps_done
    if demo_runs:
        lines.append("deleted the unfinished demo run" + ("s " if len(demo_runs) > 1 else " ")
                     + ", ".join(str(r.id) for r in demo_runs))
    if n_steps > 0 and not demo_runs:
        lines.append(f"the experience base already has {n_steps:,} step records; no demo run added")
        return "\n".join(lines)
    # name the bundled models: other registered models (e.g. local ones) have no replay data
    spec = RunSpec(backend="replay", dataset="routerbench", router="evoroute",
                   seed=0, name=DEMO_RUN_NAME, models=tuple(sorted(fitted_prices())))
    run_id = create_run(spec, engine=engine)
    last = _drive(execute_run(run_id, engine=engine))
    lines.append(f"replayed demo run {run_id}: " + _summary(last))
    return "\n".join(lines)


def _drive(gen) -> dict:
    """Consume a run (SIGTERM handled like Ctrl-C); the last step's dict."""
    from evoroute.runs.signals import handle_signals

    last: dict = {}
    with handle_signals():
        try:
            for step in gen:
                last = step
        finally:
            gen.close()
    return last


def _summary(last: dict) -> str:
    return (f"{last.get('step_no', 0)} steps, quality {last.get('cum_quality', float('nan')):.3f}, "
            f"cost ${last.get('cum_cost_usd', float('nan')):.4f}")


__all__ = ["ensure_demo", "fitted_prices", "register_routerbench_models"]
