"""The command line: user errors print one line and exit 2; nothing is stored on bad input."""

from __future__ import annotations

import json

import pytest

from evoroute.cli.main import main
from evoroute.storage import db, repo
from evoroute.storage.db import make_engine


@pytest.fixture
def url(tmp_path) -> str:
    u = f"sqlite:///{tmp_path / 'cli.db'}"
    make_engine(u).dispose()
    return u


def run(url: str, *argv: str) -> int:
    return main(["--db", url, *argv])


def stored_models(url: str) -> list[str]:
    with db.session(db.get_engine(url)) as s:
        return [m.name for m in repo.list_models(session=s, enabled_only=False)]


def test_models_add_list_update_remove(url, capsys):
    assert run(url, "models", "add", "mini", "--litellm-id", "gpt-4o-mini") == 0
    out = capsys.readouterr().out
    assert "registered mini" in out and "(litellm)" in out
    assert run(url, "models", "add", "local", "--input-price", "0", "--output-price", "0",
               "--notional") == 0
    assert run(url, "models", "update", "mini", "--input-price", "0.2", "--disable") == 0
    capsys.readouterr()
    assert run(url, "models", "list", "--all", "--json") == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["mini"]["input_price_per_m"] == pytest.approx(0.2)
    assert rows["mini"]["price_source"] == "override"      # a typed price wins from now on
    assert rows["mini"]["enabled"] is False
    assert rows["local"]["price_source"] == "notional"
    assert run(url, "models", "remove", "local") == 0
    assert stored_models(url) == ["mini"]


@pytest.mark.parametrize("argv, message", [
    (["models", "add", "bad", "--input-price", "-1", "--output-price", "2"],
     "input price (USD per 1M tokens) must be >= 0, got -1"),
    (["models", "add", "bad", "--input-price", "nan", "--output-price", "2"],
     "input price (USD per 1M tokens) must be a finite number"),
    (["models", "add", "bad", "--litellm-id", "no-such-model-xyz"],
     "is missing and litellm's cost map has no price for 'no-such-model-xyz'"),
    (["models", "add", "bad", "--input-price", "1", "--output-price", "1", "--tps", "0"],
     "output tokens per second must be >= 0.01, got 0"),
    (["models", "add", "  ", "--input-price", "1", "--output-price", "1"], "model name is empty"),
])
def test_bad_model_input_prints_one_line_and_stores_nothing(url, capsys, argv, message):
    assert run(url, *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1          # one line, no traceback
    assert stored_models(url) == []


def test_unknown_model_and_duplicate(url, capsys):
    assert run(url, "models", "add", "a", "--input-price", "1", "--output-price", "1") == 0
    assert run(url, "models", "add", "a", "--input-price", "2", "--output-price", "2") == 2
    assert "already registered" in capsys.readouterr().err
    assert run(url, "models", "remove", "zzz") == 2
    assert "unknown model 'zzz' (registered: a)" in capsys.readouterr().err
    assert run(url, "decide", "hello", "--role", "r", "--models", "a,zzz") == 2
    assert "unknown model 'zzz'" in capsys.readouterr().err


def test_bad_weights_and_unknown_router(url, capsys):
    assert run(url, "models", "add", "a", "--input-price", "1", "--output-price", "1") == 0
    assert run(url, "decide", "x", "--role", "r", "--weights", "1,0.1") == 2
    assert "weights must be three numbers" in capsys.readouterr().err
    assert run(url, "decide", "x", "--role", "r", "--weights", "1,-1,0") == 2
    assert "weight w_c must be a finite number >= 0" in capsys.readouterr().err


def test_decide_on_an_empty_base_uses_the_fallback_chain(url, capsys):
    assert run(url, "models", "add", "a", "--input-price", "1", "--output-price", "1") == 0
    assert run(url, "models", "add", "b", "--input-price", "2", "--output-price", "2") == 0
    capsys.readouterr()
    assert run(url, "decide", "Write a python function that adds two numbers", "--role", "coder",
               "--json") == 0
    expl = json.loads(capsys.readouterr().out)
    assert expl["mode"] == "default_model" and expl["fallback"] == "default_model"
    assert expl["chosen"] in {"a", "b"}
    assert "python" in expl["predicted_tools"]
    assert sum(c["propensity"] for c in expl["candidates"]) == pytest.approx(1.0)


def test_demo_replays_even_after_a_run_that_failed_before_its_first_step(url, capsys):
    # no model registered yet: the run fails with one clear line and leaves a failed run row
    assert run(url, "run", "--backend", "replay", "--data", "routerbench", "--quiet") == 2
    assert "no candidate models" in capsys.readouterr().err
    assert run(url, "demo") == 0                   # the first screen must not stay empty
    assert "replayed demo run" in capsys.readouterr().out
    with db.session(db.get_engine(url)) as s:
        assert repo.count_steps(session=s) == 3150
    assert run(url, "demo") == 0                   # idempotent
    assert "already has 3,150 step records" in capsys.readouterr().out


def test_replay_run_then_decide_from_the_stored_experience(url, capsys, tmp_path):
    assert run(url, "demo", "--no-run") == 0
    out_json = tmp_path / "run.json"
    assert run(url, "run", "--backend", "replay", "--data", "routerbench-mbpp", "--tasks", "10",
               "--train", "20", "--cold-start", "10", "--seed", "3", "--quiet",
               "--json", str(out_json)) == 0
    report = json.loads(out_json.read_text())
    assert report["status"] == "finished"
    assert report["config"]["seed"] == 3
    steps = report["steps"]
    assert len(steps) == 40                        # 10 cold start + 20 train + 10 test
    assert {s["phase"] for s in steps} == {"cold_start", "optimize", "inference"}
    assert all(s["latency_label"] == "modelled" for s in steps)
    with db.session(db.get_engine(url)) as s:
        assert repo.count_steps(session=s) == 40
    capsys.readouterr()
    assert run(url, "decide", "Write a python function to reverse a string", "--role", "mbpp",
               "--phase", "inference", "--json") == 0
    expl = json.loads(capsys.readouterr().out)
    assert expl["channels"]["role"] == 40 - sum(1 for s in steps if s["role"] != "mbpp")
    assert expl["mode"] == "posterior_mean"
    chosen = next(c for c in expl["candidates"] if c["model"] == expl["chosen"])
    assert chosen["pareto"] and chosen["n"] >= 2


def test_bad_database_url_is_one_line(capsys):
    assert main(["--db", "bogus://nowhere", "models", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot use the experience base") and err.count("\n") == 1
