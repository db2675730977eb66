"""Bundled RouterBench subset: files as shipped, the long-format loader against the README's
own numbers, the few-shot stripping, and the token-count sidecar against the sources."""

from __future__ import annotations

import hashlib
import json
import re
import time

import pandas as pd
import pytest

from evoroute.core.errors import DatasetError
from evoroute.datasets import routerbench as rb
from evoroute.datasets.long_schema import LONG_COLUMNS
from evoroute.datasets.longformat import read_long
from evoroute.settings import DATA_DIR

# sha256 of each .gz as recorded in shared/data/PROVENANCE.md (upstream bytes, gzip -9 -n).
SHIPPED_SHA256 = {
    "arc_challenge_train.csv.gz": "3f008b66bc311ef461018bd1c810da562187f9f24bd461727640930b59aa769f",
    "arc_challenge_test.csv.gz": "371c8d804e655eeee5b720701fc90612b8bbba3ead277525c82ac898e2e91f9f",
    "mbpp_train.csv.gz": "bf48735829654a9d268a8c80291c1302b1f050a7d6f6673a5157265b8a3f571b",
    "mbpp_test.csv.gz": "00e14e4fbdf0f327bfb25a7491f88d5b5d24caf73ca21d6a3401eb54af4fec74",
    "winograde_train.csv.gz": "ab72c15cef4416359b3d9b546fc407cbda808050a25ef924f128ccae267555ce",
    "winograde_test.csv.gz": "62631cfce9f3eb95c72f93a6b28a1f64f69b34f779d16ee6f2dfe4a4aaab39c4",
}


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return rb.load_routerbench()


def test_shipped_files_are_upstream_bytes():
    for name, digest in SHIPPED_SHA256.items():
        assert hashlib.sha256((DATA_DIR / "routerbench" / name).read_bytes()).hexdigest() == digest
    assert (DATA_DIR / "PROVENANCE.md").is_file()
    assert (DATA_DIR / "LICENSES" / "withmartian-routerbench-code-MIT.txt").is_file()


def test_shape_and_schema(df):
    assert list(df.columns) == list(LONG_COLUMNS) + ["prompt_full", "sample_id"]
    # 3,178 rows x 11 models, minus the 28 ARC rows scored by one model only (see README).
    assert len(df) == 3178 * 11 - 14 * 10 - 14 * 1 == 34_804
    assert df["query_id"].nunique() == 3178
    assert df.groupby("role")["query_id"].nunique().to_dict() == {
        "arc_challenge": 1484, "mbpp": 427, "winogrande": 1267}
    per_split = df.drop_duplicates("query_id")["split"].value_counts().to_dict()
    assert per_split == {"train": 2225, "test": 953}
    assert df["query_id"].str.fullmatch(r"rb-\d+").all()
    assert not df.duplicated(["query_id", "model"]).any()
    assert set(df["score"].unique()) == {0.0, 1.0}
    assert (df["cost_usd"] > 0).all()
    assert df["latency_s"].isna().all()  # not in the data: modelled downstream
    assert (df["task_id"] == df["query_id"]).all() and (df["step"] == 0).all()
    assert (df["tools"] == "").all()
    assert df["response"].notna().all()
    assert sorted(df["model"].unique()) == sorted(rb.routerbench_models())
    assert len(rb.routerbench_models()) == 11


def test_unscored_cells_are_absent(df):
    arc = df[df["role"] == "arc_challenge"]
    counts = arc.groupby("model").size()
    assert (counts == 1470).all()  # 1,484 rows, 14 unscored for every model
    split_rows = arc.groupby("query_id").size()
    assert (split_rows == 1).sum() == 14  # only gpt-3.5-turbo-1106 scored
    assert (split_rows == 10).sum() == 14  # gpt-3.5-turbo-1106 missing
    # Those duplicated prompts were sent twice upstream: cost and input tokens ~ double.
    single = arc[arc["query_id"].isin(split_rows[split_rows == 1].index)]
    partner = arc[(arc["sample_id"].isin(single["sample_id"]))
                  & ~arc["query_id"].isin(single["query_id"])].drop_duplicates("sample_id")
    ratio = (single.set_index("sample_id")["input_tokens"]
             / partner.set_index("sample_id")["input_tokens"]).astype(float)
    assert ratio.between(1.9, 2.1).all()


def _readme_table() -> dict[tuple[str, str], tuple[float, float]]:
    """(task, model) -> (acc all, cost all) from the README tables written by stats.py."""
    text = (DATA_DIR / "routerbench" / "README.md").read_text()
    table, task = {}, None
    for line in text.splitlines():
        head = re.match(r"### (\w+) \(", line)
        if head:
            task = head.group(1)
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if task and len(cells) == 8 and cells[0] in rb.MODELS:
            table[(task, cells[0])] = (float(cells[1].split()[0]), float(cells[4]))
    return table


def test_reproduces_readme_numbers(df):
    table = _readme_table()
    assert len(table) == 33
    acc = df.groupby(["role", "model"])["score"].mean()
    cost = df.groupby(["role", "model"])["cost_usd"].mean()
    for (task, model), (readme_acc, readme_cost) in table.items():
        assert round(acc[(task, model)], 4) == pytest.approx(readme_acc, abs=1e-12)
        if task != "arc_challenge":  # ARC means differ by the 14 unscored rows left out
            assert cost[(task, model)] == pytest.approx(readme_cost, abs=5e-8)


def test_gpt4_on_test_split(df):
    test = df[(df["split"] == "test") & (df["model"] == "gpt-4-1106-preview")]
    assert len(test) == 947  # 953 test queries, 6 of them not scored for gpt-4
    assert test["score"].mean() == pytest.approx(0.8796, abs=5e-5)
    assert test["cost_usd"].sum() == pytest.approx(4.73781, abs=1e-6)
    # The upstream cost column over all 953 test rows, scored or not, is $4.80.
    wide = sum(pd.read_csv(p)["gpt-4-1106-preview|total_cost"].sum()
               for t in rb.TASKS for p in rb.source_files(t)[1:])
    assert wide == pytest.approx(4.79645, abs=1e-6)


def test_queries_are_target_questions_only(df):
    q = df.drop_duplicates("query_id")
    mcq = q[q["role"] != "mbpp"]
    assert (mcq["query"].str.count("Answer:") == 1).all()
    assert mcq["query"].str.endswith("Answer:").all()
    markers = q["prompt_full"].str.count("Answer:")
    assert (markers[q["role"] == "mbpp"] == 0).all()
    # 6 per ARC / Winogrande prompt; 12 on the 14 rows whose prompt was sent twice.
    assert markers[q["role"] != "mbpp"].value_counts().to_dict() == {6: 1470 + 1267, 12: 14}
    single = mcq[mcq["prompt_full"].str.count("Answer:") == 6]
    assert single.apply(lambda r: r["prompt_full"].endswith(r["query"]), axis=1).all()
    for task in ("arc_challenge", "winogrande"):
        rows = single[single["role"] == task]
        prefixes = rows.apply(lambda r: r["prompt_full"][: -len(r["query"])], axis=1)
        assert prefixes.nunique() == 1  # one shared few-shot prefix per task, all removed
        assert prefixes.iloc[0].count("Answer:") == 5
    mbpp = q[q["role"] == "mbpp"]
    assert (mbpp["query"] == mbpp["prompt_full"]).all()
    first = q[q["query_id"] == "rb-385"]["query"].iloc[0]  # first ARC test row
    assert first.startswith("A group of engineers wanted to know how different building")
    # The stripped texts are much shorter than the prompts the models saw.
    assert mcq["query"].str.len().mean() < 0.3 * mcq["prompt_full"].str.len().mean()


def test_target_question_rejects_unexpected_prompts():
    with pytest.raises(DatasetError, match="expected 5 solved examples"):
        rb.target_question("Q?\nAnswer:\nA\n\nQ2?\nAnswer:", "arc_challenge")
    assert rb.target_question("Write a function.", "mbpp") == "Write a function."


def test_token_sidecar_matches_sources(df):
    meta = json.loads(rb.TOKEN_COUNTS_META.read_text())
    assert meta["sources_sha256"] == SHIPPED_SHA256
    assert meta["rows"] == 3178
    # Recount a sample with litellm itself (offline: it ships cl100k).
    sample = df.drop_duplicates("query_id").sample(12, random_state=3)
    assert rb.count_tokens(sample["prompt_full"].tolist()).tolist() == \
        sample["input_tokens"].astype(int).tolist()
    long_answers = df[df["output_tokens"] > 100].sample(8, random_state=4)
    assert rb.count_tokens(long_answers["response"].tolist()).tolist() == \
        long_answers["output_tokens"].astype(int).tolist()
    assert df.loc[df["response"] == "A", "output_tokens"].eq(1).all()


def test_disk_memo_equals_fresh_build():
    fresh = rb._build_task_frame("winogrande")
    pd.testing.assert_frame_equal(rb._task_frame("winogrande"), fresh)


def test_bundled_names_and_files(df, tmp_path):
    assert set(rb.BUNDLED_DATASETS) == {"routerbench", "routerbench-arc", "routerbench-mbpp",
                                        "routerbench-winogrande", "routerbench-choice"}
    assert rb.BUNDLED_DATASETS["routerbench-choice"] == ("arc_challenge", "winogrande")
    mbpp = rb.load_dataset("routerbench-mbpp")
    assert mbpp["role"].unique().tolist() == ["mbpp"] and len(mbpp) == 427 * 11
    assert len(rb.load_dataset("routerbench")) == len(df)
    two = rb.load_routerbench(["winogrande", "mbpp"])
    assert two["role"].unique().tolist() == ["winogrande", "mbpp"]
    # Loaded frames are copies: callers cannot corrupt the memo.
    mbpp.loc[0, "score"] = 0.5
    assert rb.load_dataset("routerbench-mbpp")["score"].iloc[0] in (0.0, 1.0)
    # A long-format file round-trips through load_dataset.
    path = tmp_path / "export.csv"
    mbpp.head(22).drop(columns=["prompt_full"]).to_csv(path, index=False)
    back = rb.load_dataset(str(path))
    assert back["query_id"].tolist() == mbpp.head(22)["query_id"].tolist()
    assert back["input_tokens"].tolist() == mbpp.head(22)["input_tokens"].tolist()
    with pytest.raises(DatasetError, match="unknown dataset"):
        rb.load_dataset("routerbench-gsm8k")
    with pytest.raises(DatasetError, match="unknown RouterBench task"):
        rb.load_routerbench(["gsm8k"])
    with pytest.raises(DatasetError, match="no RouterBench task"):
        rb.load_routerbench([])
    assert read_long(path)["role"].iloc[0] == "mbpp"


def test_warm_load_is_fast():
    rb._task_frame.cache_clear()  # leave only the disk memo
    start = time.process_time()  # CPU time: not inflated by other jobs on a shared machine
    frame = rb.load_routerbench()
    assert time.process_time() - start < 3.0
    assert len(frame) == 34_804
