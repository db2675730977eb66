"""Long replay format: reading, every validation rule with its file/line/column, splits."""

from __future__ import annotations

import gzip
import json
import time

import numpy as np
import pandas as pd
import pytest

from evoroute.core.errors import DatasetError, EmptyDatasetError, ValidationError
from evoroute.datasets.long_schema import LONG_COLUMNS, REQUIRED_COLUMNS
from evoroute.datasets.longformat import read_long, seeded_split, validate_long

HEADER = "query_id,query,model,score,cost_usd"


def write(path, text: str):
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def test_constants():
    assert REQUIRED_COLUMNS == ("query_id", "query", "model", "score", "cost_usd")
    assert LONG_COLUMNS[:5] == REQUIRED_COLUMNS
    assert {"latency_s", "input_tokens", "output_tokens", "role", "task_id", "step", "tools",
            "split", "response"} <= set(LONG_COLUMNS)


def test_read_csv_normalises(tmp_path):
    path = write(tmp_path / "coding_set.csv", (
        "query_id,query,model,score,cost_usd,latency_s,input_tokens,tools,split,extra\n"
        'q1,"Write a function\nthat adds",gpt,1,0.0015,2.5,120, python ;search;python,Train,x\n'
        'q1,"Write a function\nthat adds",llama,0.25,0,,,,train,y\n'
        "\n"
        "q2,Sum 2 and 3,gpt,0,1e-4,,7,,TEST,z\n"))
    df = read_long(path)
    assert list(df.columns) == list(LONG_COLUMNS) + ["extra"]
    assert len(df) == 3
    assert df["query"].iloc[0] == "Write a function\nthat adds"
    assert df["score"].tolist() == [1.0, 0.25, 0.0]
    assert df["cost_usd"].tolist() == [0.0015, 0.0, 0.0001]
    assert df["score"].dtype == np.float64 and df["cost_usd"].dtype == np.float64
    assert df["latency_s"].iloc[0] == 2.5 and np.isnan(df["latency_s"].iloc[1])
    assert str(df["input_tokens"].dtype) == "Int64"
    assert df["input_tokens"].iloc[0] == 120 and pd.isna(df["input_tokens"].iloc[1])
    assert df["role"].tolist() == ["coding_set"] * 3          # default: dataset name
    assert df["task_id"].tolist() == ["q1", "q1", "q2"]        # default: query_id
    assert df["step"].tolist() == [0, 0, 0]
    assert df["tools"].tolist() == ["python;search", "", ""]
    assert df["split"].tolist() == ["train", "train", "test"]
    assert df["response"].isna().all()
    assert df["extra"].tolist() == ["x", "y", "z"]


def test_steps_numbered_within_task(tmp_path):
    path = write(tmp_path / "agent.csv", (
        HEADER + ",task_id,role\n"
        "s1,plan it,m1,1,0.1,t1,planner\n"
        "s2,code it,m1,1,0.1,t1,coder\n"
        "s1,plan it,m2,0,0.2,t1,planner\n"
        "s3,check,m1,1,0.1,t2,verifier\n"))
    df = read_long(path)
    assert df["step"].tolist() == [0, 1, 0, 0]
    assert df["role"].tolist() == ["planner", "coder", "planner", "verifier"]


@pytest.mark.parametrize("name", ["runs.jsonl", "runs.jsonl.gz"])
def test_read_jsonl(tmp_path, name):
    rows = [
        {"query_id": 7, "query": "hello", "model": "a", "score": 1, "cost_usd": 0.5,
         "tools": ["python", "search"], "response": "hi", "latency_s": None},
        {"query_id": 7, "query": "hello", "model": "b", "score": "0.5", "cost_usd": 0,
         "tools": "calc"},
    ]
    text = json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n"
    df = read_long(write(tmp_path / name, text))
    assert df["query_id"].tolist() == ["7", "7"]
    assert df["score"].tolist() == [1.0, 0.5]
    assert df["tools"].tolist() == ["python;search", "calc"]
    assert df["response"].iloc[0] == "hi" and pd.isna(df["response"].iloc[1])
    assert df["role"].tolist() == ["runs", "runs"]


def test_gzip_csv(tmp_path):
    df = read_long(write(tmp_path / "x.csv.gz", HEADER + "\nq,text,m,1,0.2\n"))
    assert df["role"].iloc[0] == "x" and df["cost_usd"].iloc[0] == 0.2


# (rows after the header, expected line, expected column, words in the message)
BAD_CSV = [
    ("q1,text,m,abc,0.1", 2, "score", "not a number"),
    ("q1,text,m,1.5,0.1", 2, "score", "outside [0, 1]"),
    ("q1,text,m,-0.1,0.1", 2, "score", "outside [0, 1]"),
    ("q1,text,m,nan,0.1", 2, "score", "not a number"),
    ("q1,text,m,,0.1", 2, "score", "missing score"),
    ("q1,text,m,1,-0.01", 2, "cost_usd", "negative"),
    ("q1,text,m,1,inf", 2, "cost_usd", "not a finite number"),
    ("q1,text,m,1,", 2, "cost_usd", "missing cost_usd"),
    ("q1,text,m,1,free", 2, "cost_usd", "not a number"),
    (",text,m,1,0.1", 2, "query_id", "empty query_id"),
    ("q1,   ,m,1,0.1", 2, "query", "empty query"),
    ("q1,text,,1,0.1", 2, "model", "empty model"),
    ("q1,text,m,1,0.1\nq2,t,m,1,0.1\nq1,text,m,0,0.2", 4, "model", "first at line 2"),
    ("q1,text,a,1,0.1\nq1,other text,b,1,0.1", 3, "query", "different query"),
    ('q0,"multi\nline\n\nquery",m,1,0.1\nq1,text,m,7,0.1', 6, "score", "outside"),
    ("q1,text,m,1,0.1\nq2,text,m,2,-1", 3, "score", "outside"),  # first failing column
]


@pytest.mark.parametrize("rows,line,column,words", BAD_CSV)
def test_bad_csv_rows(tmp_path, rows, line, column, words):
    path = write(tmp_path / "bad.csv", HEADER + "\n" + rows + "\n")
    with pytest.raises(DatasetError) as info:
        read_long(path)
    err = info.value
    assert (err.file, err.line, err.column) == (str(path), line, column)
    assert words in str(err)
    assert f"line {line}" in str(err) and str(path) in str(err)


@pytest.mark.parametrize("extra,value,column,words", [
    ("latency_s", "-2", "latency_s", "negative"),
    ("latency_s", "NaN", "latency_s", "not a finite number"),
    ("input_tokens", "2.5", "input_tokens", "not a whole number"),
    ("output_tokens", "-1", "output_tokens", "negative"),
    ("step", "x", "step", "not a number"),
    ("split", "dev", "split", "not one of train, test"),
])
def test_bad_optional_values(tmp_path, extra, value, column, words):
    path = write(tmp_path / "bad.csv",
                 f"{HEADER},{extra}\nq0,ok,m,1,0.1,\nq1,text,m,1,0.1,{value}\n")
    with pytest.raises(DatasetError) as info:
        read_long(path)
    assert (info.value.line, info.value.column) == (3, column)
    assert words in str(info.value)


def test_missing_required_column(tmp_path):
    path = write(tmp_path / "bad.csv", "query_id,query,model,score\nq,t,m,1\n")
    with pytest.raises(DatasetError) as info:
        read_long(path)
    assert (info.value.line, info.value.column) == (1, "cost_usd")
    assert "missing required column 'cost_usd'" in str(info.value)


def test_short_row_is_reported(tmp_path):
    path = write(tmp_path / "bad.csv", HEADER + "\nq1,t,m,1,0.1\nq2,t,m\n")
    with pytest.raises(DatasetError) as info:
        read_long(path)
    assert (info.value.line, info.value.column) == (3, "score")


def test_too_many_fields_is_reported(tmp_path):
    path = write(tmp_path / "bad.csv", HEADER + "\nq1,t,m,1,0.1\nq2,t,m,1,0.1,9,9\n")
    with pytest.raises(DatasetError) as info:
        read_long(path)
    assert info.value.line == 3 and "malformed CSV" in str(info.value)


@pytest.mark.parametrize("text,line,words", [
    ('{"query_id":"a","query":"q","model":"m","score":1,"cost_usd":0}\n\n{oops}\n', 3,
     "invalid JSON"),
    ('{"query_id":"a","query":"q","model":"m","score":1,"cost_usd":0}\n[1,2]\n', 2,
     "JSON object"),
    ('{"query_id":"a","query":"q","model":"m","score":1,"cost_usd":0}\n\n'
     '{"query_id":"b","query":"q","model":"m","score":NaN,"cost_usd":0}\n', 3, "score"),
    ('{"query_id":"a","query":"q","model":"m","score":1,"cost_usd":0}\n'
     '{"query_id":"b","query":"q","model":"m","score":1}\n', 2, "missing cost_usd"),
])
def test_bad_jsonl(tmp_path, text, line, words):
    with pytest.raises(DatasetError) as info:
        read_long(write(tmp_path / "bad.jsonl", text))
    assert info.value.line == line and words in str(info.value)


@pytest.mark.parametrize("name,text", [
    ("empty.csv", ""), ("header.csv", HEADER + "\n"), ("empty.jsonl", "\n\n"),
])
def test_empty_files(tmp_path, name, text):
    with pytest.raises(EmptyDatasetError):
        read_long(write(tmp_path / name, text))


def test_unsupported_and_missing_files(tmp_path):
    with pytest.raises(DatasetError, match="unsupported file type"):
        read_long(write(tmp_path / "data.xlsx", "x"))
    with pytest.raises(DatasetError, match="file not found"):
        read_long(tmp_path / "nope.csv")


def test_validate_long_in_memory():
    # As pandas reads an upload by default: blanks are NaN, numbers already parsed.
    df = pd.DataFrame({"query_id": ["a", "a", "b"], "query": ["x", "x", "y"],
                       "model": ["m1", "m2", "m1"], "score": [1.0, 0.0, 1.0],
                       "cost_usd": [0.1, 0.2, np.nan], "latency_s": [np.nan, 1.0, 2.0]},
                      index=[10, 11, 12])
    with pytest.raises(DatasetError) as info:
        validate_long(df, source="upload.csv")
    assert (info.value.file, info.value.line, info.value.column) == ("upload.csv", 4, "cost_usd")
    good = validate_long(df.assign(cost_usd=[0.1, 0.2, 0.3]), source="upload.csv")
    assert good["role"].unique().tolist() == ["upload"]
    assert good.index.tolist() == [0, 1, 2]
    assert np.isnan(good["latency_s"].iloc[0]) and good["latency_s"].iloc[2] == 2.0
    with pytest.raises(EmptyDatasetError):
        validate_long(df.iloc[:0], source="upload.csv")


def _big_frame(n_queries: int, n_models: int) -> pd.DataFrame:
    q = np.repeat(np.arange(n_queries), n_models)
    m = np.tile(np.arange(n_models), n_queries)
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "query_id": [f"q{i}" for i in q], "query": [f"question number {i}" for i in q],
        "model": [f"model-{j}" for j in m], "score": rng.integers(0, 2, len(q)).astype(float),
        "cost_usd": rng.uniform(0, 0.01, len(q)), "latency_s": rng.uniform(0.1, 5, len(q)),
        "tools": np.where(q % 3 == 0, "python; search", ""),
    })


def test_validation_is_vectorised_fast(tmp_path):
    df = _big_frame(3000, 10)  # 30,000 rows
    start = time.process_time()  # CPU time: not inflated by other jobs on a shared machine
    out = validate_long(df, source="big.csv")
    elapsed = time.process_time() - start
    assert len(out) == 30_000 and out["tools"].iloc[0] == "python;search"
    assert elapsed < 1.0, f"validating 30k rows took {elapsed:.2f} s"
    # The bad row is found at the very end, with its CSV line number.
    df.loc[29_999, "score"] = 3
    with pytest.raises(DatasetError) as info:
        validate_long(df, source="big.csv")
    assert info.value.line == 30_001
    path = tmp_path / "big.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DatasetError) as info:
        read_long(path)
    assert info.value.line == 30_001


def test_seeded_split():
    df = validate_long(_big_frame(200, 3), source="s.csv")
    a = seeded_split(df, seed=7)
    b = seeded_split(df, seed=7)
    c = seeded_split(df, seed=8)
    assert a["split"].tolist() == b["split"].tolist()
    assert a["split"].tolist() != c["split"].tolist()
    per_query = a.groupby("query_id")["split"].nunique()
    assert (per_query == 1).all()  # all models of a query on the same side
    assert (a.drop_duplicates("query_id")["split"] == "test").sum() == 60  # 30% of 200
    assert set(a["split"]) == {"train", "test"}
    # Row order does not change which queries are held out.
    shuffled = seeded_split(df.sample(frac=1.0, random_state=1), seed=7)
    assert (shuffled.sort_index()["split"] == a["split"]).all()
    # Existing splits are kept; generator input works.
    given = df.assign(split="train")
    assert (seeded_split(given, seed=1)["split"] == "train").all()
    g = seeded_split(df, seed=np.random.default_rng(7))
    assert g["split"].tolist() == a["split"].tolist()
    with pytest.raises(ValidationError):
        seeded_split(df, seed=1, test_fraction=1.0)
