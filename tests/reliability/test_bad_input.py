"""The bad-input corpus: every case is a clear one-line error naming the field (exit status 2
for the CLI), never a traceback or a hang, and the experience base is byte-for-byte unchanged.

CLI cases run in-process through ``cli.main`` (a stray exception fails the test; a thread with
a deadline catches a hang); a sample also runs as real ``python -m evoroute`` processes.
Library cases are what the studio's forms and uploads call.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from evoroute import registry
from evoroute.cli import main as cli
from evoroute.core.errors import EvoRouteError
from evoroute.core.types import ModelInfo, Weights, validate_theta
from evoroute.csvio import importer as xio
from evoroute.policy.evoroute import EvoRouteConfig
from evoroute.storage import db

HANG_S = 120.0
HEADER = "role,model,instruction,cost_usd,duration_s,step_success,task_success,task_key,tools\n"


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A real SQLite base with two models and one imported run; shared by every case (each
    case checks that it left the base exactly as it found it)."""
    d = tmp_path_factory.mktemp("bad_input")
    url = f"sqlite:///{d / 'base.db'}"
    engine = db.get_engine(url)
    with db.session(engine) as s:
        registry.add_model(session=s, name="m1", input_price_per_m=1, output_price_per_m=2)
        registry.add_model(session=s, name="m2", input_price_per_m=3, output_price_per_m=4)
    xio.import_csv((HEADER + "coder,m1,hello,0.1,1,1,1,t1,\ncoder,m2,bye,0.2,1,0,0,t2,\n").encode(),
                   engine=engine, name="seed.csv")
    files = _files(d)
    return {"url": url, "path": d / "base.db", "dir": d, "files": files, "engine": engine}


def _files(d: Path) -> dict[str, str]:
    """Bad files of every kind the CLI and the studio read."""
    f: dict[str, str] = {}

    def put(name: str, data: str | bytes) -> None:
        p = d / name
        p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        f[name] = str(p)

    rnd = bytes((i * 97 + 13) % 256 for i in range(4000))      # deterministic "binary"
    put("binary.csv", b"\xff\xfe" + rnd)
    put("binary.jsonl", b"\x89PNG\r\n" + rnd)
    put("nul.csv", HEADER.encode() + b"coder,m1,he\x00llo,0.1,1,1,1,t1,\n")
    put("empty.csv", "")
    put("header_only.csv", HEADER)
    put("bad_cost.csv", HEADER + "coder,m1,ok,0.1,1,1,1,t1,\ncoder,m1,x,abc,1,1,1,t2,\n")
    put("huge_cost.csv", HEADER + "coder,m1,x,1e308,1,1,1,t1,\n")
    put("tokens.csv", "role,model,instruction,cost_usd,duration_s,input_tokens\ncoder,m1,x,0.1,1,1e30\n")
    put("role_comma.csv", HEADER + 'coder,m1,x,0.1,1,1,1,t1,\n"a,b",m1,y,0.1,1,1,1,t2,\n')
    put("model_control.csv", HEADER + "coder,\"m\x07\",x,0.1,1,1,1,t1,\n")
    put("model_long.csv", HEADER + "coder," + "m" * 5000 + ",x,0.1,1,1,1,t1,\n")
    put("ragged.csv", HEADER + "coder,m1,x,0.1\n")
    put("bad_success.csv", HEADER + "coder,m1,x,0.1,1,1.5,,t1,\n")
    put("bad_label.csv", "role,model,instruction,cost_usd,duration_s,latency_label\n"
                         "coder,m1,x,0.1,1,guessed\n")
    put("long_format.csv", "query_id,query,model,score,cost_usd\nq1,hi,m1,1,0.1\n")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["role", "model", "instruction", "cost_usd", "duration_s", "explanation"])
    w.writerow(["coder", "m1", "x", 0.1, 1, json.dumps({"router": "r", "phase": "p",
                                                         "mode": "m", "candidates": [{"n": 2}]})])
    put("bad_explanation.csv", buf.getvalue())
    put("explanation_nan.csv", "role,model,instruction,cost_usd,duration_s,explanation\n"
                               'coder,m1,x,0.1,1,"{""router"": ""r"", ""phase"": ""p"", '
                               '""mode"": ""m"", ""c_ref"": NaN}"\n')
    # long-format replay files
    lf = "query_id,query,model,score,cost_usd"
    put("lf_tokens.csv", lf + ",input_tokens\nq1,hi,m1,1,0.1,1e30\nq1,hi,m2,0,0.2,5\n")
    put("lf_cost.csv", lf + "\nq1,hi,m1,1,1e300\nq1,hi,m2,0,0.2\n")
    put("lf_latency.csv", lf + ",latency_s\nq1,hi,m1,1,0.1,1e12\n")
    put("lf_score.csv", lf + "\nq1,hi,m1,7,0.1\n")
    put("lf_nan.csv", lf + "\nq1,hi,m1,nan,0.1\n")
    put("lf_model_comma.csv", lf + '\nq1,hi,"a,b",1,0.1\n')
    put("lf_model_control.csv", lf + "\nq1,hi,\"m\x1b[31m\",1,0.1\n")
    put("lf_model_long.csv", lf + "\nq1,hi," + "m" * 300 + ",1,0.1\n")
    put("lf_split.csv", lf + ",split\nq1,hi,m1,1,0.1,validation\n")
    put("lf_dup.csv", lf + "\nq1,hi,m1,1,0.1\nq1,hi,m1,0,0.1\n")
    put("lf_ragged_first.csv", lf + "\nq1,hi,m1,1,0.1,5,6\nq2,a,m1,1,0.1\n")  # shifted columns
    put("lf_missing.csv", "query_id,query,model,score\nq1,hi,m1,1\n")
    put("lf_nested.jsonl", json.dumps({"query_id": "q1", "query": ["a"], "model": "m1",
                                       "score": 1, "cost_usd": 0.1}) + "\n")
    put("lf_notobject.jsonl", "[1, 2, 3]\n")
    put("lf_badjson.jsonl", '{"query_id": "q1",\n')
    put("lf_bool.jsonl", json.dumps({"query_id": "q1", "query": "a", "model": "m1",
                                     "score": True, "cost_usd": 0.1}) + "\n")
    put("lf_fake.csv.gz", b"not gzip at all")
    put("lf_trunc.csv.gz", gzip.compress((lf + "\nq1,hi,m1,1,0.1\n").encode())[:20])
    put("lf_binary.csv", b"\xff\xfe" + rnd)
    put("lf.txt", "query_id\n")
    put("lf_alltest.csv", lf + ",split\n" + "".join(f"q{i},question {i},m1,1,0.1,test\n"
                                                   f"q{i},question {i},m2,0,0.2,test\n"
                                                   for i in range(6)))
    # agent task files
    put("tasks_binary.jsonl", b"\x00\xff" + rnd)
    put("tasks_list.jsonl", "[1, 2]\n")
    put("tasks_nan.jsonl", '{"id": 1, "split": "test", "question": "q", "answer": NaN, "decimals": 2}\n')
    put("tasks_bool.jsonl", '{"id": 1, "split": "test", "question": "q", "answer": true, "decimals": 2}\n')
    put("tasks_decimals.jsonl",
        '{"id": 1, "split": "test", "question": "q", "answer": 1, "decimals": 1e30}\n')
    put("tasks_question.jsonl", '{"id": 1, "split": "test", "question": "", "answer": 1, "decimals": 0}\n')
    put("tasks_split.jsonl", '{"id": 1, "split": "dev", "question": "q", "answer": 1, "decimals": 0}\n')
    put("tasks_missing.jsonl", '{"id": 1, "split": "test", "question": "q"}\n')
    put("tasks_dup.jsonl", '{"id": 1, "split": "test", "question": "q", "answer": 1, "decimals": 0}\n' * 2)
    put("tasks_deep.jsonl", "[" * 100_000 + "\n")
    put("tasks_1mb_question.jsonl", json.dumps({"id": 1, "split": "test", "question": "q" * 2**20,
                                                "answer": 1, "decimals": 0}) + "\n")
    return f


def digest(path: Path) -> str:
    """Every row of every table, in order: a case that stored anything changes it."""
    con = sqlite3.connect(path)
    try:
        h = hashlib.sha256()
        for line in con.iterdump():
            h.update(line.encode())
        return h.hexdigest()
    finally:
        con.close()


def _in_thread(fn):
    """Run fn with a deadline: a hang fails the case instead of blocking the suite."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:   # noqa: BLE001 - reported below
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(HANG_S)
    assert not t.is_alive(), f"hang: no answer within {HANG_S:.0f} s"
    return box


# ----------------------------------------------------------------------------- CLI cases
N5000 = "n" * 5000
F = "{files}"        # placeholder: a file of the corpus
D = "{dir}"          # placeholder: the corpus directory
CLI_CASES: list[tuple[str, list[str], str]] = [
    ("price 1e308", ["models", "add", "x", "--input-price", "1e308", "--output-price", "1"],
     "input price (USD per 1M tokens) must be <= 10000"),
    ("price nan", ["models", "add", "x", "--input-price", "1", "--output-price", "nan"],
     "output price (USD per 1M tokens) must be a finite number"),
    ("price inf", ["models", "add", "x", "--input-price", "inf", "--output-price", "1"], "finite"),
    ("price text", ["models", "add", "x", "--input-price", "cheap", "--output-price", "1"],
     "input price (USD per 1M tokens) must be a number"),
    ("price negative", ["models", "add", "x", "--input-price", "-1", "--output-price", "1"],
     "must be >= 0"),
    ("ttft huge", ["models", "add", "x", "--input-price", "1", "--output-price", "1", "--ttft", "1e9"],
     "time to first token (s) must be <= 600"),
    ("ttft negative", ["models", "add", "x", "--input-price", "1", "--output-price", "1", "--ttft", "-1"],
     "time to first token (s) must be >= 0"),
    ("tps zero", ["models", "add", "x", "--input-price", "1", "--output-price", "1", "--tps", "0"],
     "output tokens per second must be >= 0.01"),
    ("tps tiny", ["models", "add", "x", "--input-price", "1", "--output-price", "1", "--tps", "1e-300"],
     "output tokens per second must be >= 0.01"),
    ("tps huge", ["models", "add", "x", "--input-price", "1", "--output-price", "1", "--tps", "1e12"],
     "output tokens per second must be <= 1e+06"),
    ("name 5000 chars", ["models", "add", N5000, "--input-price", "1", "--output-price", "1"],
     "model name is 5000 characters long; at most 128"),
    ("name control char", ["models", "add", "a\x01b", "--input-price", "1", "--output-price", "1"],
     "model name contains a control character"),
    ("name newline", ["models", "add", "a\nb", "--input-price", "1", "--output-price", "1"],
     "model name contains a control character"),
    ("name escape sequence", ["models", "add", "m\x1b[31m", "--input-price", "1", "--output-price", "1"],
     "control character"),
    ("name comma", ["models", "add", "a,b", "--input-price", "1", "--output-price", "1"],
     "model name must not contain a comma"),
    ("name blank", ["models", "add", "   ", "--input-price", "1", "--output-price", "1"],
     "model name is empty"),
    ("name duplicate", ["models", "add", "m1", "--input-price", "1", "--output-price", "1"],
     "already registered"),
    ("litellm id control", ["models", "add", "x", "--litellm-id", "gpt\x07", "--input-price", "1",
                            "--output-price", "1"], "litellm id contains a control character"),
    ("no price, unknown id", ["models", "add", "x", "--litellm-id", "no-such-model-xyz"],
     "is missing and litellm's cost map has no price"),
    ("update unknown", ["models", "update", "nosuch", "--input-price", "1"], "unknown model 'nosuch'"),
    ("update price inf", ["models", "update", "m1", "--input-price", "inf"], "finite"),
    ("update price huge", ["models", "update", "m1", "--output-price", "20000"], "must be <= 10000"),
    ("update tps zero", ["models", "update", "m1", "--tps", "0"], "output tokens per second"),
    ("update nothing", ["models", "update", "m1"], "nothing to update"),
    ("remove unknown", ["models", "remove", "nosuch"], "unknown model 'nosuch'"),
    ("models bad action", ["models", "frobnicate"], "argument action"),
    ("theta nan", ["decide", "hi", "--role", "coder", "--theta", "nan"], "theta"),
    ("theta zero", ["decide", "hi", "--role", "coder", "--theta", "0"], "theta"),
    ("theta above 1", ["decide", "hi", "--role", "coder", "--theta", "1.5"], "must be <= 1"),
    ("theta negative", ["decide", "hi", "--role", "coder", "--theta", "-0.2"], "theta"),
    ("theta text", ["decide", "hi", "--role", "coder", "--theta", "high"], "argument --theta"),
    ("weights all zero", ["decide", "hi", "--role", "coder", "--weights", "0,0,0"],
     "weights must not all be zero"),
    ("weights text", ["decide", "hi", "--role", "coder", "--weights", "a,b,c"], "weights must be numbers"),
    ("weights two", ["decide", "hi", "--role", "coder", "--weights", "1,2"], "three numbers"),
    ("weight nan", ["decide", "hi", "--role", "coder", "--weights", "1,nan,0"], "weight w_c"),
    ("weight inf", ["decide", "hi", "--role", "coder", "--weights", "inf,0,0"], "weight w_p"),
    ("weight negative", ["decide", "hi", "--role", "coder", "--weights", "1,0,-1"], "weight w_d"),
    ("runs text", ["decide", "hi", "--role", "coder", "--runs", "abc"], "--runs takes"),
    ("runs mixed", ["decide", "hi", "--role", "coder", "--runs", "1,x"], "--runs takes"),
    ("runs negative", ["decide", "hi", "--role", "coder", "--runs", "-1"], "--runs takes"),
    ("role blank", ["decide", "hi", "--role", " "], "--role is empty"),
    ("role comma", ["decide", "hi", "--role", "a,b"], "--role must not contain a comma"),
    ("role control", ["decide", "hi", "--role", "a\x00b"], "--role contains a control character"),
    ("instruction blank", ["decide", "  ", "--role", "coder"], "the instruction is empty"),
    ("decide unknown model", ["decide", "hi", "--role", "coder", "--models", "nosuch"],
     "unknown model 'nosuch'"),
    ("decide seed text", ["decide", "hi", "--role", "coder", "--seed", "x"], "argument --seed"),
    ("decide phase", ["decide", "hi", "--role", "coder", "--phase", "warp"], "argument --phase"),
    ("backend param unknown", ["run", "--backend-param", "unknown=1"],
     "unknown backend setting 'unknown'"),
    ("backend param type", ["run", "--backend-param", "test_fraction=abc"],
     "backend setting test_fraction must be a number"),
    ("backend param form", ["run", "--backend-param", "novalue"], "--backend-param takes key=value"),
    ("backend param simulated", ["run", "--backend", "simulated", "--backend-param", "timeout_s=1"],
     "unknown backend setting 'timeout_s'"),
    ("run weights zero", ["run", "--weights", "0,0,0"], "weights must not all be zero"),
    ("run tasks zero", ["run", "--tasks", "0"], "n_tasks must be >= 1"),
    ("run tasks text", ["run", "--tasks", "many"], "argument --tasks"),
    ("run train negative", ["run", "--train", "-5"], "n_train must be >= 0"),
    ("run cold start negative", ["run", "--cold-start", "-1"], "cold_start_tasks"),
    ("run steps zero", ["run", "--steps-per-task", "0"], "steps_per_task"),
    ("run budget nan", ["run", "--budget", "nan"], "budget"),
    ("run budget negative", ["run", "--budget", "-1"], "budget"),
    ("run unknown model", ["run", "--models", "nosuch"], "unknown model 'nosuch'"),
    ("run unknown backend", ["run", "--backend", "quantum"], "argument --backend"),
    ("run unknown protocol", ["run", "--protocol", "x"], "argument --protocol"),
    ("runs stop text", ["runs", "stop", "abc"], "argument run_id"),
    ("runs stop unknown", ["runs", "stop", "99999"], "no run with id 99999"),
    ("runs stop no id", ["runs", "stop"], "needs a run id"),
    ("runs bad action", ["runs", "explode"], "argument action"),
    ("export to a directory", ["export", D], "is a directory"),
    ("export to a missing folder", ["export", D + "/no/such/out.csv"], "does not exist"),
    ("export runs text", ["export", D + "/x.csv", "--runs", "abc"], "--runs takes"),
    ("import a directory", ["import", D], "is a directory"),
    ("import a missing file", ["import", D + "/missing.csv"], "no such file"),
    ("import binary", ["import", F + "binary.csv"], "not UTF-8"),
    ("import NUL byte", ["import", F + "nul.csv"], "line 2"),
    ("import empty", ["import", F + "empty.csv"], "the file is empty"),
    ("import header only", ["import", F + "header_only.csv"], "no rows"),
    ("import bad cost", ["import", F + "bad_cost.csv"], "line 3, column 'cost_usd'"),
    ("import cost 1e308", ["import", F + "huge_cost.csv"], "cost_usd must be <= 100000"),
    ("import tokens 1e30", ["import", F + "tokens.csv"], "input_tokens must be <= 1e+07"),
    ("import role comma", ["import", F + "role_comma.csv"], "line 3, column 'role'"),
    ("import model control", ["import", F + "model_control.csv"], "column 'model'"),
    ("import model 5000", ["import", F + "model_long.csv"], "at most 128"),
    ("import ragged", ["import", F + "ragged.csv"], "has 4 cells, the header has 9"),
    ("import success 1.5", ["import", F + "bad_success.csv"], "step_success must be <= 1"),
    ("import latency label", ["import", F + "bad_label.csv"], "latency_label must be one of"),
    ("import long format", ["import", F + "long_format.csv"], "looks like a long-format"),
    ("import bad explanation", ["import", F + "bad_explanation.csv"],
     "column 'explanation': explanation key candidates.0.model"),
    ("import explanation NaN", ["import", F + "explanation_nan.csv"], "not finite JSON"),
    ("bench seeds zero", ["bench", "--seeds", "0"], "seed"),
    ("bench unknown router", ["bench", "--routers", "nosuch"], "unknown router 'nosuch'"),
    ("bench missing data", ["bench", "--data", D + "/missing.csv"], "unknown dataset"),
    ("bench weights zero", ["bench", "--weights", "0,0,0"], "weights must not all be zero"),
    ("bad database URL", ["@db=foo://", "models", "list"], "check --db / EVOROUTE_DB_URL"),
    ("database is a CSV file", ["@db=sqlite:///" + F + "header_only.csv", "models", "list"],
     "file is not a database"),
    ("database driver missing", ["@db=mysql://127.0.0.1:1/x", "models", "list"],
     "database driver 'MySQLdb' is not installed"),
    ("decide seed negative", ["decide", "hi", "--role", "coder", "--seed", "-1"],
     "seed must be >= 0, got -1"),
    ("bench all-test file", ["bench", "--data", F + "lf_alltest.csv", "--quiet"],
     "has no train tasks"),
    ("unknown command", ["frobnicate"], "invalid choice"),
    ("unknown flag", ["models", "list", "--colour"], "unrecognized arguments"),
]


def _argv(base, args: list[str]) -> list[str]:
    db_url = base["url"]
    out = []
    for a in args:
        if a.startswith("@db="):
            db_url = a[4:].replace(F, base["dir"].as_posix() + "/")
            continue
        out.append(a.replace(F, base["dir"].as_posix() + "/").replace(D, base["dir"].as_posix()))
    return ["--db", db_url, *out]


@pytest.mark.parametrize("name,args,message", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_is_one_clear_line(base, capsys, name, args, message):
    before = digest(base["path"])
    box = _in_thread(lambda: cli.main(_argv(base, args)))
    if isinstance(box.get("error"), SystemExit):          # argparse usage errors
        box["value"] = box.pop("error").code
    assert "error" not in box, f"uncaught {type(box.get('error')).__name__}: {box.get('error')}"
    out = capsys.readouterr()
    err = out.err.strip()
    assert box["value"] == 2, (box["value"], err)
    assert "Traceback" not in out.err + out.out
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert message in err, err
    assert digest(base["path"]) == before


SUBPROCESS_SAMPLE = ["runs text", "backend param unknown", "export to a directory",
                     "import tokens 1e30", "price 1e308", "theta nan", "import binary",
                     "runs stop text"]


@pytest.mark.parametrize("name", SUBPROCESS_SAMPLE)
def test_cli_process_prints_no_traceback(base, name):
    _, args, message = next(c for c in CLI_CASES if c[0] == name)
    before = digest(base["path"])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    p = subprocess.run([sys.executable, "-m", "evoroute", *_argv(base, args)], capture_output=True,
                       text=True, timeout=HANG_S, env=env, cwd=base["dir"])
    assert p.returncode == 2 and "Traceback" not in p.stderr + p.stdout
    assert p.stderr.strip().count("\n") == 0 and message in p.stderr
    assert digest(base["path"]) == before


# ----------------------------------------------------------------------------- library cases
def _registry_call(fn):
    def call(base):
        with db.session(base["engine"]) as s:
            return fn(s)
    return call


def _read_long(name):
    def call(base):
        from evoroute.datasets.longformat import read_long
        return read_long(base["files"].get(name, base["dir"] / name))
    return call


def _tasks(name):
    def call(base):
        from evoroute.agent.workflow import load_tasks
        return load_tasks(base["files"].get(name, str(base["dir"] / name)))
    return call


def _import_bytes(data: bytes):
    def call(base):
        return xio.import_csv(data, engine=base["engine"], name="upload.csv")
    return call


LIBRARY_CASES = [
    ("form: add price 1e308", _registry_call(lambda s: registry.add_model(
        session=s, name="x", input_price_per_m=1e308, output_price_per_m=1)), "input_price_per_m"),
    ("form: add tps nan", _registry_call(lambda s: registry.add_model(
        session=s, name="x", input_price_per_m=1, output_price_per_m=1, tokens_per_s=float("nan"))),
     "tokens_per_s"),
    ("form: add name None", _registry_call(lambda s: registry.add_model(
        session=s, name=None, input_price_per_m=1, output_price_per_m=1)), "name"),
    ("form: add name tab", _registry_call(lambda s: registry.add_model(
        session=s, name="a\tb", input_price_per_m=1, output_price_per_m=1)), "name"),
    ("form: add price bool", _registry_call(lambda s: registry.add_model(
        session=s, name="x", input_price_per_m=True, output_price_per_m=1)), "input_price_per_m"),
    ("form: add notes huge", _registry_call(lambda s: registry.add_model(
        session=s, name="x", input_price_per_m=1, output_price_per_m=1, notes="n" * 20_000)), "notes"),
    ("form: update ttft 1e308", _registry_call(lambda s: registry.update_model(
        "m1", session=s, ttft_s=1e308)), "ttft_s"),
    ("form: update unknown field", _registry_call(lambda s: registry.update_model(
        "m1", session=s, id=7)), "id"),
    ("form: update price text", _registry_call(lambda s: registry.update_model(
        "m1", session=s, input_price_per_m="ten")), "input_price_per_m"),
    ("form: weights 0,0,0", lambda b: Weights(0, 0, 0), "weights"),
    ("form: weight nan", lambda b: Weights(1, float("nan"), 0), "w_c"),
    ("form: weight text", lambda b: Weights("1", 0, 0), "w_p"),
    ("form: theta nan", lambda b: validate_theta(float("nan")), "theta"),
    ("form: theta 0", lambda b: validate_theta(0), "theta"),
    ("form: theta text", lambda b: validate_theta("x"), "theta"),
    ("config: theta nan", lambda b: EvoRouteConfig(theta=float("nan")), "theta"),
    ("config: theta 0", lambda b: EvoRouteConfig(theta=0.0), "theta"),
    ("config: theta 1.5", lambda b: EvoRouteConfig(theta=1.5), "theta"),
    ("model info price nan", lambda b: ModelInfo("m", input_price_per_m=float("nan")),
     "input_price_per_m"),
    ("model info tps 0", lambda b: ModelInfo("m", tokens_per_s=0), "tokens_per_s"),
    ("upload: binary", _import_bytes(b"\xff\xfe\x00\x01garbage"), None),
    ("upload: explanation list", _import_bytes(
        b"role,model,instruction,cost_usd,duration_s,explanation\ncoder,m1,x,0.1,1,[1]\n"),
     "explanation"),
    ("upload: duration 1e9", _import_bytes((HEADER + "coder,m1,x,0.1,1e9,1,1,t1,\n").encode()),
     "duration_s"),
    ("upload: tool with comma", _import_bytes(b'role,model,instruction,cost_usd,duration_s,tools\n'
                                              b'coder,m1,x,0.1,1,"py,thon"\n'), "tools"),
    ("upload: task success disagrees", _import_bytes(
        (HEADER + "coder,m1,x,0.1,1,1,1,t1,\ncoder,m1,y,0.1,1,1,0,t1,\n").encode()), "task_success"),
    ("upload: duplicate column", _import_bytes(
        b"role,model,instruction,cost_usd,duration_s,role\ncoder,m1,x,0.1,1,coder\n"), "role"),
    ("upload: task key too long", _import_bytes(
        (HEADER + "coder,m1,x,0.1,1,1,1," + "k" * 300 + ",\n").encode()), "task_key"),
]
for _name in ("lf_tokens.csv", "lf_cost.csv", "lf_latency.csv", "lf_score.csv", "lf_nan.csv",
              "lf_model_comma.csv", "lf_model_control.csv", "lf_model_long.csv", "lf_split.csv",
              "lf_dup.csv", "lf_ragged_first.csv", "lf_missing.csv", "lf_nested.jsonl", "lf_notobject.jsonl",
              "lf_badjson.jsonl", "lf_bool.jsonl", "lf_fake.csv.gz", "lf_trunc.csv.gz",
              "lf_binary.csv", "lf.txt", "no_such_file.csv"):
    LIBRARY_CASES.append((f"long format: {_name}", _read_long(_name), _name))
for _name in ("tasks_binary.jsonl", "tasks_list.jsonl", "tasks_nan.jsonl", "tasks_bool.jsonl",
              "tasks_decimals.jsonl", "tasks_question.jsonl", "tasks_split.jsonl",
              "tasks_missing.jsonl", "tasks_dup.jsonl", "tasks_deep.jsonl", "tasks_1mb_question.jsonl",
              "no_such_tasks.jsonl"):
    LIBRARY_CASES.append((f"task file: {_name}", _tasks(_name), None))


@pytest.mark.parametrize("name,call,field", LIBRARY_CASES, ids=[c[0] for c in LIBRARY_CASES])
def test_library_bad_input_is_a_typed_error(base, name, call, field):
    before = digest(base["path"])
    box = _in_thread(lambda: call(base))
    exc = box.get("error")
    assert isinstance(exc, EvoRouteError), f"expected a typed error, got {exc!r} / {box.get('value')!r}"
    msg = str(exc)
    assert msg and "\n" not in msg and "Traceback" not in msg
    if field is not None:        # the message (or the error's field) names what is wrong
        assert field in msg or getattr(exc, "field", None) == field or \
            getattr(exc, "column", None) == field, msg
    assert digest(base["path"]) == before


def test_corpus_size():
    """The numbers quoted in docs/reliability.md come from these lists."""
    assert len(CLI_CASES) == 98 and len(LIBRARY_CASES) == 60 and len(SUBPROCESS_SAMPLE) == 8


def test_run_on_an_all_test_file_is_one_line(base, capsys, tmp_path):
    """A router that learns from the train split, on a long file with no train rows: one clear
    line (np.stack on the empty training set was a traceback), and nothing stored."""
    url = f"sqlite:///{tmp_path / 'b.db'}"
    engine = db.get_engine(url)
    with db.session(engine) as s:
        registry.add_model(session=s, name="m1", input_price_per_m=1, output_price_per_m=2)
        registry.add_model(session=s, name="m2", input_price_per_m=3, output_price_per_m=4)
    for router in ("knn", "threshold"):
        box = _in_thread(lambda router=router: cli.main([
            "--db", url, "run", "--data", base["files"]["lf_alltest.csv"], "--router", router,
            "--quiet"]))
        assert "error" not in box, box.get("error")
        err = capsys.readouterr().err.strip()
        assert box["value"] == 2 and len(err.splitlines()) == 1, err
        assert f"router {router} learns from the train split" in err and "no train tasks" in err
    from evoroute.storage import repo
    with db.session(engine) as s:
        runs = repo.list_runs(session=s)
    assert runs == []
