"""Bundled agent steps: the shipped sources are upstream's bytes, the conversion is
deterministic and reproduces the shipped long file, the rows follow the stated rules
(monotone success, cost at the pricing file's prices, one split per task), and the product's
loader, replay backend and benchmark read it."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json

import numpy as np
import pandas as pd
import pytest

from evoroute.core.errors import DatasetError
from evoroute.datasets import agent_steps as ag
from evoroute.datasets import load_dataset
from evoroute.datasets.long_schema import LONG_COLUMNS
from evoroute.datasets.longformat import read_long
from evoroute.settings import DATA_DIR, PROJECT_ROOT

SOURCE = DATA_DIR / "agent_steps" / "source"
# git blob ids of the upstream files (shared/data/PROVENANCE.md).
UPSTREAM_BLOBS = {
    "calibration.jsonl": "64537c8baf7c7ecb0337ddb1326fab3a7276fb34",
    "twinrouterbench_tier_to_model.json": "e4717bedbc6f684ac70922bd1db41a2a1ddcb581",
    "twinrouterbench_model_pool.json": "f5a906183b39b81a05aefd275aa823b35aea9fa1",
    "twinrouterbench_model_pricing.json": "652646cd7972daf09d69b2b1e844188c3f5b629a",
}
TIER_MODEL = {"low": "deepseek/deepseek-v3.2", "mid": "minimax/minimax-m2.7",
              "mid_high": "google/gemini-3-flash-preview", "high": "anthropic/claude-opus-4.6"}


def _blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _source_steps() -> list[dict]:
    with gzip.open(SOURCE / "calibration.jsonl.gz", "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture(scope="module")
def fresh() -> tuple[pd.DataFrame, dict]:
    return ag.convert()


@pytest.fixture(scope="module")
def shipped() -> pd.DataFrame:
    return ag.load_agent_steps()


def _script():
    spec = importlib.util.spec_from_file_location(
        "convert_agent_steps", PROJECT_ROOT / "scripts" / "convert_agent_steps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sources_are_upstream_bytes_and_licences_ship():
    for name, blob in UPSTREAM_BLOBS.items():
        path = SOURCE / name
        data = gzip.decompress((SOURCE / (name + ".gz")).read_bytes()) if not path.exists() \
            else path.read_bytes()
        assert _blob(data) == blob, name
    for licence in ("UncommonRoute-MIT.txt", "TwinRouterBench-Apache-2.0.txt"):
        assert (DATA_DIR / "LICENSES" / licence).stat().st_size > 1000
    provenance = (DATA_DIR / "agent_steps" / "PROVENANCE.md").read_text().lower()
    for needle in ("f6876e7477e3dc2d45e67e821bc8ca21b8e906d1", "monoton", "uncommonroute-mit.txt",
                   "twinrouterbench-apache-2.0.txt", "cl100k"):
        assert needle in provenance


def test_conversion_is_deterministic_and_reproduces_the_shipped_file(fresh, tmp_path):
    frame, meta = fresh
    shipped_bytes = ag.LONG_FILE.read_bytes()
    assert ag.to_csv_gz(frame) == shipped_bytes            # in-process conversion == shipped
    out = tmp_path / "again.csv.gz"
    script = _script()
    assert script.main(["--out", str(out)]) == 0             # a second, independent run
    assert out.read_bytes() == shipped_bytes
    record = json.loads((tmp_path / "again.json").read_text())
    assert record.pop("file") == "again.csv.gz"
    assert record == {k: v for k, v in json.loads(ag.META_FILE.read_text()).items() if k != "file"}
    assert record["csv_sha256"] == hashlib.sha256(gzip.decompress(shipped_bytes)).hexdigest()
    # --check notices a stale file.
    out.write_bytes(gzip.compress(b"query_id\n", mtime=0))
    assert script.main(["--check", "--out", str(out)]) == 1


def test_row_count_is_steps_times_tier_models(shipped):
    steps = _source_steps()
    assert len(steps) == 121
    assert len(shipped) == len(steps) * len(TIER_MODEL) == 484
    assert set(shipped["model"]) == set(TIER_MODEL.values())
    per_step = shipped.groupby("query_id")["model"].agg(lambda m: tuple(sorted(m)))
    assert (per_step == tuple(sorted(TIER_MODEL.values()))).all()
    assert list(shipped["query_id"].drop_duplicates()) == [s["id"] for s in steps]
    assert list(shipped.columns[: len(LONG_COLUMNS)]) == list(LONG_COLUMNS)


@pytest.mark.parametrize("query_id, target, passing", [
    ("qmsum_ES2004d_spec_4_step_1", "low", set(TIER_MODEL.values())),
    ("swebench_sympy__sympy-12096_step_2", "mid",
     {TIER_MODEL["mid"], TIER_MODEL["mid_high"], TIER_MODEL["high"]}),
    ("swebench_django__django-10973_step_9", "mid_high",
     {TIER_MODEL["mid_high"], TIER_MODEL["high"]}),
    ("swebench_django__django-10097_step_2", "high", {TIER_MODEL["high"]}),
])
def test_monotonicity_rule_on_hand_picked_rows(shipped, query_id, target, passing):
    rows = shipped[shipped["query_id"] == query_id].set_index("model")
    assert set(rows["target_tier"]) == {target}
    assert {m for m, s in rows["score"].items() if s == 1.0} == passing
    assert set(rows["score"]) <= {0.0, 1.0}


def test_success_rates_follow_the_label_counts(shipped):
    # Target tiers: low 67, mid 11, mid_high 8, high 35 (source README).
    rate = shipped.groupby("model")["score"].sum()
    assert rate[TIER_MODEL["low"]] == 67
    assert rate[TIER_MODEL["mid"]] == 67 + 11
    assert rate[TIER_MODEL["mid_high"]] == 67 + 11 + 8
    assert rate[TIER_MODEL["high"]] == 121


def test_costs_are_tokens_at_the_pricing_files_prices(shipped):
    prices = json.loads((SOURCE / "twinrouterbench_model_pricing.json").read_text())["pricing"]
    p_in = shipped["model"].map(lambda m: prices[m]["input_per_m"]).astype(float)
    p_out = shipped["model"].map(lambda m: prices[m]["output_per_m"]).astype(float)
    expected = (shipped["input_tokens"].astype(float) * p_in
                + shipped["output_tokens"].astype(float) * p_out) / 1e6
    np.testing.assert_allclose(shipped["cost_usd"].to_numpy(), expected.to_numpy(), rtol=1e-12)
    # Tokens are a property of the step, not of the model.
    per_step = shipped.groupby("query_id")[["input_tokens", "output_tokens"]].nunique()
    assert (per_step == 1).all().all()
    # The replay backend's price fit (what bench shows) recovers the file's prices.
    from evoroute.backends.replay import fit_prices
    for model, (fin, fout) in fit_prices(shipped).items():
        assert fin == pytest.approx(prices[model]["input_per_m"], rel=1e-9)
        assert fout == pytest.approx(prices[model]["output_per_m"], rel=1e-9)


def test_tokens_query_tools_and_role_come_from_the_messages(shipped):
    import litellm

    steps = {s["id"]: s for s in _source_steps()}
    first = shipped.drop_duplicates("query_id").set_index("query_id")
    step = steps["pinchbench_task_10_workflow_step_4"]
    row = first.loc[step["id"]]
    assert row["input_tokens"] == litellm.token_counter(model="gpt-3.5-turbo",
                                                        messages=step["messages"])
    assert row["query"] == step["messages"][-1]["content"]
    assert row["query"].startswith('{\n  "api": {')
    assert row["tools"] == "read;exec"           # the write/edit calls come later
    assert row["role"] == "general_agent:later" and row["step"] == 4
    assert row["task_id"] == "pinchbench/task_10_workflow"
    assert row["output_tokens"] == json.loads(ag.META_FILE.read_text())[
        "output_tokens_assumed"]["per_scenario"]["general_agent"]
    # A text-parts message becomes its text; no tool calls yet -> no tools.
    assert ag.message_text([{"type": "text", "text": "a", "cache_control": {}},
                            {"type": "text", "text": "b"}]) == "a\nb"
    assert ag.step_tools([{"role": "user", "content": "x"}]) == []
    roles = first.groupby("scenario")["role"].agg(set).to_dict()
    assert roles == {"code_swe": {"code_swe:first", "code_swe:later"},
                     "general_agent": {"general_agent:first", "general_agent:later"},
                     "meeting_query_summarization": {"meeting_query_summarization"},
                     "rag_multiturn": {"rag_multiturn"}}
    assert (first.loc[first["role"].str.endswith(":first"), "step"] == 1).all()
    # Text of the last message for every step, verbatim.
    for qid, s in steps.items():
        assert first.loc[qid, "query"] == ag.step_query(s["messages"])


def test_split_keeps_tasks_and_groups_together_and_is_seeded(shipped):
    assert set(shipped["split"]) == {"train", "test"}
    for key in ("task_id", "split_group"):
        assert (shipped.groupby(key)["split"].nunique() == 1).all(), key
    tasks = shipped.drop_duplicates("task_id")
    assert tasks["split"].value_counts().to_dict() == {"train": 62, "test": 29}
    # Every benchmark is on both sides (30 % of its groups, rounded half up, are test).
    groups = shipped.drop_duplicates(["benchmark", "split_group"])
    per = groups.groupby("benchmark")["split"].value_counts().unstack(fill_value=0)
    assert per["test"].to_dict() == {"mtrag": 8, "pinchbench": 2, "qmsum": 5, "swebench": 9}
    steps = _source_steps()
    assert ag.assign_splits(steps) == list(shipped.drop_duplicates("query_id")["split"])
    other = ag.assign_splits(steps, seed=ag.SPLIT_SEED + 1)
    assert other != ag.assign_splits(steps)        # the seed matters
    assert sum(s == "test" for s in other) > 0


def test_long_file_loads_with_the_products_loaders(shipped):
    direct = read_long(ag.LONG_FILE)
    pd.testing.assert_frame_equal(direct, shipped)
    pd.testing.assert_frame_equal(load_dataset("agent_steps"), shipped)
    from evoroute.backends.replay import ReplayBackend, dataset_models, load_replay_data
    pd.testing.assert_frame_equal(load_replay_data("agent_steps"), shipped)
    models = dataset_models("agent_steps")
    backend = ReplayBackend("agent_steps", models, seed=0)
    info = backend.describe()
    assert info["tasks"] == {"train": 62, "test": 29}
    assert info["dropped_incomplete_queries"] == 0
    split_of = shipped.drop_duplicates("task_id").set_index("task_id")["split"]
    n_steps = shipped.drop_duplicates("query_id").groupby("task_id").size()
    for split in ("train", "test"):
        for task in backend.tasks(split):
            qids = [s.query_id for s in task.steps]
            tid = shipped.loc[shipped["query_id"] == qids[0], "task_id"].iloc[0]
            assert split_of[tid] == split and len(qids) == n_steps[tid]
            steps = shipped[shipped["query_id"].isin(qids)].drop_duplicates("query_id")
            assert list(steps.sort_values("step")["query_id"]) == qids   # in step order


def test_bench_clamps_the_cold_start_to_half_the_train_tasks():
    from evoroute.evaluation.bench import run as bench

    state = {"cold_start_tasks": 50}
    bench._STATE.clear()
    bench._STATE.update(state)
    note = bench._clamp_cold_start(state, 62)
    assert state["cold_start_tasks"] == bench._STATE["cold_start_tasks"] == 31
    assert "50 to 31" in note
    state = {"cold_start_tasks": 50}
    assert bench._clamp_cold_start(state, 1557) is None and state["cold_start_tasks"] == 50
    bench._STATE.clear()


def test_a_tampered_source_is_refused(tmp_path):
    for name in (ag.TIER_FILE, ag.PRICING_FILE):
        (tmp_path / name).write_bytes((SOURCE / name).read_bytes())
    lines = gzip.decompress((SOURCE / ag.CALIBRATION_FILE).read_bytes()).splitlines(True)
    (tmp_path / "calibration.jsonl").write_bytes(b"".join(lines[:-1]))
    with pytest.raises(DatasetError, match="upstream"):
        ag.read_sources(tmp_path)
    steps, tiers, _, _ = ag.read_sources(tmp_path, check=False)
    assert len(steps) == 120 and tiers == TIER_MODEL
