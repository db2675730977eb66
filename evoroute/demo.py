"""The bundled demo: the RouterBench models and one replay run, so the first screen shows data.

Prices are recovered from the data itself: RouterBench's recorded cost of every call is
``input_tokens·p_in + output_tokens·p_out``; a non-negative least-squares fit per model over
the bundled rows gives its list prices back (median relative error 0 on every model), so the
registry shows real prices and a user's override recomputes cost on the same token counts.
"""

from __future__ import annotations

import json
from functools import lru_cache

from sqlalchemy.engine import Engine

from evoroute import registry
from evoroute.config import DATA_DIR
from evoroute.storage import db, repo

PROFILES_FILE = DATA_DIR / "model_profiles.json"
DEMO_RUN_NAME = "demo: EvoRoute on RouterBench (replayed)"


@lru_cache(maxsize=4)
def fitted_prices(dataset: str = "routerbench") -> dict[str, tuple[float, float]]:
    """(input, output) USD per 1M tokens per model, fitted to the recorded costs."""
    from evoroute.backends.replay import fit_prices
    from evoroute.datasets.routerbench import load_dataset

    return {m: (round(a, 4), round(b, 4)) for m, (a, b) in fit_prices(load_dataset(dataset)).items()}


def latency_profiles() -> dict[str, dict]:
    return json.loads(PROFILES_FILE.read_text())["profiles"]


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
                               ttft_s=prof.get("ttft_s", 0.5),
                               tokens_per_s=prof.get("tokens_per_s", 50.0),
                               price_source="recorded",
                               notes="RouterBench; prices fitted to recorded costs; "
                                     "latency profile assumed (modelled)")
            added.append(name)
    return added


def ensure_demo(engine: Engine | None = None, run: bool = True) -> str:
    """Idempotent: register the bundled models and, if the base has no step records yet, replay
    one run (a base holding only runs that failed before their first step still gets it)."""
    engine = engine or db.get_engine()
    added = register_routerbench_models(engine)
    lines = [f"registered {len(added)} RouterBench models" if added
             else "RouterBench models already registered"]
    with db.session(engine) as s:
        n_steps = repo.count_steps(session=s)
    has_run = n_steps > 0
    if run and not has_run:
        from evoroute.evaluation import runner

        # name the bundled models: other registered models (e.g. local ones) have no replay data
        spec = runner.RunSpec(backend="replay", dataset="routerbench", router="evoroute",
                              seed=0, name=DEMO_RUN_NAME, models=tuple(sorted(fitted_prices())))
        run_id = runner.create_run(spec, engine=engine)
        last = {}
        for last in runner.execute_run(run_id, engine=engine):
            pass
        lines.append(f"replayed demo run {run_id}: {last.get('step_no', 0)} steps, "
                     f"quality {last.get('cum_quality', float('nan')):.3f}, "
                     f"cost ${last.get('cum_cost_usd', float('nan')):.4f}")
    elif has_run:
        lines.append(f"the experience base already has {n_steps:,} step records; no demo run added")
    return "\n".join(lines)


__all__ = ["ensure_demo", "fitted_prices", "register_routerbench_models"]
