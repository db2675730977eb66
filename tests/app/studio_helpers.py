"""Helpers of the studio tests: a temporary SQLite base per test, set through EVOROUTE_DB_URL
before the app script runs, and AppTest handles on app.py.

Two bases:

* ``fixed_db`` — a small base written with the repository functions, with round numbers that
  make the expected answer of a test obvious (three models with known quality / cost /
  latency; instructions that start with ``= + - @``).
* ``replay_db`` — real replay records: the RouterBench models registered by the demo code
  and short EvoRoute / baseline runs replayed by the runner on the bundled data. Built once
  per test session and copied per test.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Engine
from streamlit.testing.v1 import AppTest

from evoroute import registry
from evoroute.core.types import CandidateStat, Explanation
from evoroute.storage import db, repo
from evoroute.storage.tables import StepRecord

import db_helpers

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"

# quality, cost per step (USD), latency per step (s): the fixed base's ground truth
FIXED_MODELS = {
    "cheap": dict(quality=0.5, cost=0.0001, latency=0.5, prices=(0.1, 0.4), ttft=0.2, tps=120.0),
    "mid": dict(quality=0.75, cost=0.001, latency=1.0, prices=(1.0, 4.0), ttft=0.4, tps=80.0),
    "strong": dict(quality=0.9, cost=0.01, latency=2.0, prices=(5.0, 15.0), ttft=0.8, tps=40.0),
}
FIXED_STEPS_PER_MODEL_ROLE = 20
FIXED_ROLES = ("coder", "answerer")
FORMULA_INSTRUCTIONS = ["=SUM(A1:A9) add the column", "+1 to the counter and print it",
                        "-5 degrees: is it freezing?", "@admin please look up the owner"]


REPLAY_RUNS = [
    dict(router="evoroute", weights=(1.0, 0.1, 0.05), seed=0),
    dict(router="evoroute", weights=(1.0, 1.0, 0.05), seed=0),
    dict(router="single:gpt-4-1106-preview", seed=0),
    dict(router="single:mistralai/mistral-7b-chat", seed=0),
]



def seed_fixed(engine: Engine) -> int:
    """Write the fixed base: 3 models × 2 roles × 20 one-step tasks; returns the run id."""
    with db.session(engine) as s:
        for name, m in FIXED_MODELS.items():
            registry.add_model(session=s, name=name, litellm_id="", input_price_per_m=m["prices"][0],
                               output_price_per_m=m["prices"][1], ttft_s=m["ttft"],
                               tokens_per_s=m["tps"])
        run = repo.create_run(session=s, config={"backend": "simulated", "dataset": "fixed",
                                                 "router": "evoroute", "weights": [1.0, 0.1, 0.05],
                                                 "seed": 0},
                              name="fixed base", status="finished", backend="simulated",
                              dataset="fixed", router="evoroute", label="simulated · latency simulated")
        k = 0
        for role in FIXED_ROLES:
            for i in range(FIXED_STEPS_PER_MODEL_ROLE):
                for name, m in FIXED_MODELS.items():
                    # the first quality·20 steps of each (model, role) succeed: exact means
                    success = 1.0 if i < round(m["quality"] * FIXED_STEPS_PER_MODEL_ROLE) else 0.0
                    instr = (FORMULA_INSTRUCTIONS[k % 4] if k < 8
                             else f"{role} step {i}: solve problem number {k} with care")
                    task = db_helpers.create_task(session=s, run_id=run.id, task_key=f"t{k}",
                                            split="test", phase="inference", commit=False)
                    candidates = [CandidateStat(n2, n=20, p_hat=m2["quality"], c_hat=m2["cost"],
                                                d_hat=m2["latency"], unexplored=False, pareto=True,
                                                utility=round(m2["quality"] - 0.1 * m2["cost"] / 0.01, 4),
                                                propensity=float(n2 == name))
                                  for n2, m2 in FIXED_MODELS.items()]
                    expl = Explanation(router="evoroute", phase="inference", mode="posterior_mean",
                                       chosen=name, reason="fixed base", weights=(1.0, 0.1, 0.05),
                                       channels={"role": 40, "semantic": 0, "tool": 0, "union": 40},
                                       candidates=candidates)
                    db_helpers.add_steps([StepRecord(run_id=run.id, task_id=task.id, task_key=f"t{k}",
                                               step_index=0, phase="inference", role=role, model=name,
                                               query_id=f"q{k}", instruction=instr, tools="",
                                               cost_usd=m["cost"], duration_s=m["latency"],
                                               latency_label="simulated", step_success=success,
                                               input_tokens=100, output_tokens=20,
                                               explanation=expl.to_json(), propensity=1.0,
                                               router="evoroute")], session=s, commit=False)
                    s.flush()
                    repo.finish_task(task.id, success, session=s, commit=False)
                    k += 1
        repo.update_run(run.id, session=s, n_steps_done=k, n_tasks_total=k,
                        cost_usd=sum(m["cost"] for m in FIXED_MODELS.values()) * FIXED_STEPS_PER_MODEL_ROLE
                        * len(FIXED_ROLES))
        return int(run.id)


def open_app(page: str | None = None, *, query: dict | None = None, timeout: float = 120) -> AppTest:
    """AppTest on app.py, switched to ``pages/<page>.py`` (None: the default page)."""
    at = AppTest.from_file(str(APP), default_timeout=timeout)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    if page is not None:
        if query:
            at.query_params.update({k: str(v) for k, v in query.items()})
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, [e.value for e in at.exception]
    return at


def by_key(elements, key: str):
    found = [e for e in elements if getattr(e, "key", None) == key]
    assert found, f"no element with key {key!r}"
    return found[0]


def wait_until(cond: Callable[[], bool], timeout: float = 60.0, every: float = 0.2) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(every)
    return cond()


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def metric(at: AppTest, label: str) -> str:
    for m in at.metric:
        if m.label == label:
            return m.value
    raise AssertionError(f"no metric {label!r}; have {[m.label for m in at.metric]}")


def captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]
