"""Runs page: a ``masrouter`` run's decisions show the collaboration mode chosen and why;
Compare lists it beside a single model's run."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from evoroute import registry
from evoroute.runs.execute import run_spec
from evoroute.runs.spec import RunSpec
from evoroute.storage import db

from studio_helpers import errors, open_app


class TopicEmbedder:
    def encode(self, texts):
        out = []
        for t in texts:
            v = np.random.default_rng(zlib.crc32(t.encode())).normal(0, 0.05, 384)
            v[0 if "alpha" in t else 1] += 1.0
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32)


def _frame() -> pd.DataFrame:
    """Alpha: every model right. Beta: the cheap pair right together on even queries, wrong
    with different answers on odd ones; strong always right."""
    rows = []
    for split, n in (("train", 16), ("test", 4)):
        for topic in ("alpha", "beta"):
            for i in range(n):
                q = f"{split}-{topic}-{i}"
                odd = topic == "beta" and i % 2 == 1
                gold = "C"
                answers = {"c1": "A" if odd else gold, "c2": "D" if odd else gold, "strong": gold}
                for m, a in answers.items():
                    rows.append({"query_id": q, "query": f"Question {topic} {i} {split}?\nA) one\n"
                                 f"B) two\nC) three\nD) four\nAnswer:", "model": m,
                                 "response": a, "score": float(a == gold),
                                 "cost_usd": 1.0 if m != "strong" else 10.0,
                                 "role": "arc_challenge", "split": split})
    return pd.DataFrame(rows)


def test_a_masrouter_step_explains_its_mode(empty_db, tmp_path):
    _, engine = empty_db
    path = tmp_path / "choice.csv"
    _frame().to_csv(path, index=False)
    with db.session(engine) as s:
        for name, price in (("c1", 1.0), ("c2", 1.0), ("strong", 10.0)):
            registry.add_model(session=s, name=name, input_price_per_m=price,
                               output_price_per_m=price)
    spec = RunSpec(backend="replay", dataset=str(path), router="masrouter", protocol="full",
                   router_params={"cost_weight": 1.0, "k": 16, "kappa": 1.0})
    steps = list(run_spec(spec, engine=engine, embedder=TopicEmbedder()))
    assert len(steps) == 8
    kinds = {d["explanation"]["mode"] for d in steps}
    assert kinds <= {"collaboration: single", "collaboration: vote", "collaboration: escalate"}
    run_id = steps[0]["run_id"]

    at = open_app("runs", query={"run": run_id})
    assert errors(at) == [] and not at.exception
    at.session_state[f"rn_feed_table_{run_id}_0"] = {"selection": {"rows": [0], "columns": [],
                                                                  "cells": []}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    detail = [m.value for m in at.markdown if m.value.startswith("**collaboration: ")]
    assert detail and "effective neighbours" in detail[0] and "masrouter: " in detail[0]
    cand = next(d.value for d in at.dataframe if "θ_P" in d.value.columns)
    assert "escalate:c1+c2+strong" in cand["model"].tolist() and cand["chosen"].sum() == 1
    assert cand["P̂"].notna().all() and cand["Ĉ (USD)"].notna().all()

    single = RunSpec(backend="replay", dataset=str(path), router="single:strong", protocol="full")
    list(run_spec(single, engine=engine))
    at = open_app("compare")
    at.multiselect(key="cmp_runs").set_value([run_id, run_id + 1]).run()
    assert errors(at) == [] and not at.exception
    table = at.dataframe[0].value.set_index("run")
    assert table.loc[run_id, "router"] == "masrouter" and table.loc[run_id, "tasks"] == 8
    assert table.loc[run_id, "quality"] == sum(d["score"] for d in steps) / 8


def test_a_learned_baseline_step_opens_without_a_latency_scale(empty_db, tmp_path):
    """per-role / knn / logistic explanations carry C_ref but no D_ref (their utility has no
    latency term): the Runs page names their utility instead of formatting a missing D_ref."""
    _, engine = empty_db
    path = tmp_path / "choice.csv"
    _frame().to_csv(path, index=False)
    with db.session(engine) as s:
        for name, price in (("c1", 1.0), ("c2", 1.0), ("strong", 10.0)):
            registry.add_model(session=s, name=name, input_price_per_m=price,
                               output_price_per_m=price)
    spec = RunSpec(backend="replay", dataset=str(path), router="per-role", protocol="full")
    steps = list(run_spec(spec, engine=engine))
    assert steps[0]["explanation"]["c_ref"] is not None and steps[0]["explanation"]["d_ref"] is None
    run_id = steps[0]["run_id"]
    at = open_app("runs", query={"run": run_id})
    at.session_state[f"rn_feed_table_{run_id}_0"] = {"selection": {"rows": [0], "columns": [],
                                                                  "cells": []}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("utility q̂ − λ·ĉ/C_ref" in c.value for c in at.caption)
