"""Runs page: an ``atropos`` run's decisions show the predicted failure probability, the
threshold and the swap; Compare lists the run beside a single model's run."""

from __future__ import annotations

import numpy as np
import pandas as pd

from evoroute import registry
from evoroute.runs.execute import run_spec
from evoroute.runs.spec import RunSpec
from evoroute.storage import db

from studio_helpers import errors, open_app

COST = {"cheap": 1.0, "second": 1.5, "strong": 20.0}
ACC = {"cheap": 0.75, "second": 0.93, "strong": 0.97}


def _frame(n_train: int = 60, n_test: int = 6) -> pd.DataFrame:
    """Two-step tasks (ARC-style, then code); the cheap model wrong where it fails, the second
    opinion wrong differently, so their disagreement flags a failing step."""
    rng = np.random.default_rng(0)
    rows = []
    for split, n in (("train", n_train), ("test", n_test)):
        for t in range(n):
            for s, role in enumerate(("arc_challenge", "mbpp")):
                q = f"{split}-{t}-{s}"
                gold = "ABCD"[rng.integers(4)]
                for m, acc in ACC.items():
                    ok = bool(rng.random() < acc)
                    wrong = {"A": "B", "B": "C", "C": "D", "D": "A"}[gold]
                    if m == "second":
                        wrong = {"A": "C", "B": "D", "C": "A", "D": "B"}[gold]
                    rows.append({"query_id": q, "model": m, "score": float(ok),
                                 "query": (f"Question {q}?\nA) one\nB) two\nC) three\nD) four"
                                           if role == "arc_challenge" else f"Write {q}."),
                                 "response": (gold if ok else wrong) if role == "arc_challenge"
                                 else "def f(): pass", "cost_usd": COST[m], "input_tokens": 10,
                                 "output_tokens": 2, "role": role, "task_id": f"{split}-{t}",
                                 "step": s, "split": split})
    return pd.DataFrame(rows)


def test_an_atropos_step_explains_p_fail_threshold_and_swap(empty_db, tmp_path):
    _, engine = empty_db
    path = tmp_path / "steps.csv"
    _frame().to_csv(path, index=False)
    with db.session(engine) as s:
        for name, price in COST.items():
            registry.add_model(session=s, name=name, input_price_per_m=price,
                               output_price_per_m=price, price_source="recorded")
    spec = RunSpec(backend="replay", dataset=str(path), router="atropos", protocol="full",
                   router_params={"within": 0.3, "threshold": 0.3})
    steps = list(run_spec(spec, engine=engine))
    assert len(steps) == 12
    assert {d["explanation"]["mode"] for d in steps} <= {"rescue_base", "rescue_swap", "rescue_strong"}
    run_id = steps[0]["run_id"]

    at = open_app("runs", query={"run": run_id})
    assert errors(at) == [] and not at.exception
    at.session_state[f"rn_feed_table_{run_id}_0"] = {"selection": {"rows": [0], "columns": [],
                                                                  "cells": []}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    detail = [m.value for m in at.markdown if m.value.startswith("**rescue_")]
    assert detail and "atropos: " in detail[0]
    cap = [c.value for c in at.caption if c.value.startswith("mid-run rescue (logistic")]
    assert cap and "threshold 0.3" in cap[0]
    assert any(w in cap[0] for w in ("no swap", "swapped here", "swapped to strong at step"))

    single = RunSpec(backend="replay", dataset=str(path), router="single:strong", protocol="full")
    list(run_spec(single, engine=engine))
    at = open_app("compare")
    at.multiselect(key="cmp_runs").set_value([run_id, run_id + 1]).run()
    assert errors(at) == [] and not at.exception
    table = at.dataframe[0].value.set_index("run")
    assert table.loc[run_id, "router"] == "atropos" and table.loc[run_id, "tasks"] == 6
    tasks = [d["task_success"] for d in steps if d["task_success"] is not None]
    assert table.loc[run_id, "quality"] == sum(tasks) / 6
