"""The runner contract: records per step, task success, status transitions, reproducibility,
stop requests, budget caps, protocols and the background worker."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from sqlmodel import select

from evoroute.core.errors import EvoRouteError, ValidationError
from evoroute.core.types import Explanation
from evoroute.runs import writer
from evoroute.runs.execute import create_run, execute_run, run_spec
from evoroute.runs.lifecycle import stop_run
from evoroute.runs.spec import RunSpec
from evoroute.runs.worker import start_background
from evoroute.storage import db, repo
from evoroute.storage.tables import Run, StepRecord, Task

# A small simulated run: 10 cold-start + 40 optimisation + 30 test tasks.
SMALL = dict(backend="simulated", dataset="default", cold_start_tasks=10, n_train=40, n_tasks=30)


def steps_of(engine, run_id):
    with db.session(engine) as s:
        return list(s.exec(select(StepRecord).where(StepRecord.run_id == run_id)
                           .order_by(StepRecord.id)))


def tasks_of(engine, run_id):
    with db.session(engine) as s:
        return list(s.exec(select(Task).where(Task.run_id == run_id).order_by(Task.id)))


def run_row(engine, run_id) -> Run:
    with db.session(engine) as s:
        return repo.get_run(run_id, session=s)


# ----------------------------------------------------------------------------- the spec
def test_runspec_round_trip_and_validation():
    spec = RunSpec(backend="simulated", router="single:sim-small", weights=(1, 0.5, 0),
                   router_params={"x": [1, 2]}, models=["sim-small"], budget_usd=2)
    d = json.loads(json.dumps(spec.to_dict()))
    assert RunSpec.from_dict(d) == spec
    assert spec.dataset == "default" and RunSpec().dataset == "routerbench"
    assert spec.weights == (1.0, 0.5, 0.0) and spec.models == ("sim-small",)
    for bad in (dict(protocol="greedy"), dict(backend="x"), dict(weights=(1, -1, 0)),
                dict(steps_per_task=0), dict(n_tasks=0), dict(budget_usd=0),
                dict(seed=1.5), dict(router_params={"f": object()})):
        with pytest.raises(ValidationError):
            RunSpec(**bad)


# ----------------------------------------------------------------------------- records
def test_one_record_per_step_with_explanation_propensity_and_task_success(engine):
    spec = RunSpec(router="evoroute", seed=3, **SMALL)
    run_id = create_run(spec, engine=engine)
    assert run_row(engine, run_id).status == "pending"
    out = list(execute_run(run_id, engine=engine))
    assert [d["step_no"] for d in out] == list(range(1, 81))
    assert out[0]["n_steps_total"] == 80
    assert [d["phase"] for d in out] == ["cold_start"] * 10 + ["optimize"] * 40 + ["inference"] * 30
    recs = steps_of(engine, run_id)
    assert len(recs) == 80
    for d, r in zip(out, recs):
        assert (r.model, r.task_key, r.phase) == (d["model"], d["task_key"], d["phase"])
        e = Explanation.from_json(r.explanation)
        assert e.chosen == r.model and e.router == "evoroute"
        assert 0 < r.propensity <= 1 and r.propensity == d["propensity"]
        assert r.task_success == r.step_success          # one-step tasks
        assert r.latency_label == "simulated" and r.embedding is not None
        assert len(np.frombuffer(r.embedding, np.float32)) == 384
    assert {e for e in (Explanation.from_json(r.explanation).mode for r in recs[:10])} == {"cold_start"}
    assert all(r.propensity == pytest.approx(0.25) for r in recs[:10])
    tasks = tasks_of(engine, run_id)
    assert len(tasks) == 80 and all(t.success is not None and t.n_steps == 1 for t in tasks)
    assert [t.success for t in tasks] == [r.step_success for r in recs]
    run = run_row(engine, run_id)
    assert run.status == "finished" and run.error is None and run.n_steps_done == 80
    assert run.cost_usd == pytest.approx(sum(r.cost_usd for r in recs))
    assert run.cost_usd == pytest.approx(out[-1]["cum_cost_usd"])
    assert out[-1]["cum_quality"] == pytest.approx(np.mean([r.step_success for r in recs]))
    assert run.label == "simulated" and run.n_tasks_total == 80
    cfg = json.loads(run.config_json)
    assert cfg["seed"] == 3 and cfg["resolved"]["phases"] == {"cold_start": 10, "optimize": 40,
                                                             "inference": 30}
    assert cfg["resolved"]["router"]["config"]["weights"] == [1.0, 0.1, 0.05]
    d = out[-1]
    for key in ("run_id", "step_no", "n_steps_total", "task_key", "split", "phase", "role",
                "instruction", "model", "propensity", "score", "cost_usd", "latency_s",
                "latency_label", "cum_quality", "cum_cost_usd", "explanation"):
        assert key in d
    assert isinstance(d["explanation"], dict) and d["explanation"]["chosen"] == d["model"]


def test_multi_step_tasks_fill_task_success_into_every_step(engine, monkeypatch):
    # tiny batches so that tasks span commits and go through repo.finish_task too
    monkeypatch.setattr(writer, "COMMIT_EVERY_STEPS", 2)
    spec = RunSpec(backend="simulated", dataset="agent", router="random", seed=1, n_tasks=12)
    run_id = create_run(spec, engine=engine)
    out = list(execute_run(run_id, engine=engine))
    assert len(out) == 36
    recs, tasks = steps_of(engine, run_id), tasks_of(engine, run_id)
    assert len(tasks) == 12 and len(recs) == 36
    for t in tasks:
        mine = [r for r in recs if r.task_id == t.id]
        assert [r.role for r in mine] == ["planner", "coder", "verifier"]
        assert t.success == min(r.step_success for r in mine)          # all steps must succeed
        assert all(r.task_success == t.success for r in mine)
        assert t.n_steps == 3 and t.cost_usd == pytest.approx(sum(r.cost_usd for r in mine))
    assert {d["task_success"] is not None for d in out[2::3]} == {True}
    assert {d["task_success"] for d in out[0::3]} == {None}


def test_same_seed_same_decisions(engine):
    def models(seed, backend_kw):
        return [d["model"] for d in run_spec(RunSpec(router="evoroute", seed=seed, **backend_kw),
                                             engine=engine)]

    a, b, c = models(11, SMALL), models(11, SMALL), models(12, SMALL)
    assert a == b and a != c
    replay = dict(backend="replay", dataset="routerbench", cold_start_tasks=20, n_train=60,
                  n_tasks=40)
    from evoroute.demo import register_routerbench_models
    register_routerbench_models(engine)
    ra, rb = models(5, replay), models(5, replay)
    assert ra == rb and len(ra) == 120


# ----------------------------------------------------------------------------- stopping
def test_stop_request_stops_cleanly(engine):
    run_id = create_run(RunSpec(router="random", seed=0, backend="simulated", n_tasks=200),
                        engine=engine)
    gen = execute_run(run_id, engine=engine)
    first = [next(gen) for _ in range(5)]
    assert run_row(engine, run_id).status == "running"
    stop_run(run_id, engine=engine)
    rest = list(gen)
    n = len(first) + len(rest)
    assert n < 200
    run = run_row(engine, run_id)
    assert run.status == "stopped" and "stopped on request" in run.error
    assert run.n_steps_done == n == len(steps_of(engine, run_id))
    with pytest.raises(EvoRouteError, match="no run"):
        stop_run(9999, engine=engine)


def test_budget_cap_stops_before_overspending(engine):
    spec = RunSpec(router="single:sim-large", seed=0, backend="simulated", n_tasks=200,
                   budget_usd=0.1)
    out = list(run_spec(spec, engine=engine))
    run = run_row(engine, out[-1]["run_id"])
    assert run.status == "stopped" and "budget cap" in run.error
    assert len(out) < 200
    costs = [d["cost_usd"] for d in out]
    assert sum(costs) <= 0.1 < sum(costs) + 2 * max(costs)   # stopped at the cap, not long before
    assert run.cost_usd == pytest.approx(sum(costs))


def test_closing_the_stream_marks_the_run_stopped(engine):
    gen = run_spec(RunSpec(router="cheapest", backend="simulated", n_tasks=100), engine=engine)
    rid = next(gen)["run_id"]
    next(gen)
    gen.close()
    run = run_row(engine, rid)
    assert run.status == "stopped" and "stopped reading" in run.error
    assert len(steps_of(engine, rid)) == 2


def test_watcher_sees_steps_before_the_run_ends(engine):
    gen = run_spec(RunSpec(router="random", backend="simulated", n_tasks=200), engine=engine)
    got = [next(gen) for _ in range(60)]
    visible = len(steps_of(engine, got[0]["run_id"]))    # another session, mid-run
    assert 50 <= visible <= 60
    gen.close()


def test_failures_are_stored_and_raised(engine):
    rid = create_run(RunSpec(router="no-such-router", backend="simulated"), engine=engine)
    with pytest.raises(ValidationError, match="unknown router"):
        list(execute_run(rid, engine=engine))
    run = run_row(engine, rid)
    assert run.status == "failed" and "unknown router" in run.error
    with pytest.raises(EvoRouteError, match="only a pending run"):
        list(execute_run(rid, engine=engine))
    rid = create_run(RunSpec(router="evoroute"), engine=engine)      # replay, nothing registered
    with pytest.raises(ValidationError, match="no candidate models"):
        list(execute_run(rid, engine=engine))


# ----------------------------------------------------------------------------- protocols
def test_baselines_route_the_test_split_only(engine):
    out = list(run_spec(RunSpec(router="oracle", **SMALL), engine=engine))
    assert {d["phase"] for d in out} == {"inference"} and len(out) == 30
    assert all(d["score"] == d["oracle_score"] for d in out)


def test_no_cold_start_ablation_skips_the_cold_start(engine):
    out = list(run_spec(RunSpec(router="evoroute-no-cold-start", **SMALL), engine=engine))
    assert [d["phase"] for d in out][:1] == ["optimize"] and len(out) == 70


def test_full_protocol_preloads_every_models_train_outcomes(engine):
    spec = RunSpec(router="evoroute", protocol="full", backend="simulated", n_train=100, n_tasks=50,
                   seed=2)
    run_id = create_run(spec, engine=engine)
    out = list(execute_run(run_id, engine=engine))
    assert len(out) == 50 and {d["phase"] for d in out} == {"inference"}
    assert len(steps_of(engine, run_id)) == 50            # the preload writes no step records
    cfg = json.loads(run_row(engine, run_id).config_json)["resolved"]
    assert cfg["preloaded_records"] == 100 * 4
    e = out[0]["explanation"]
    assert sum(c["n"] for c in e["candidates"]) >= 100    # it starts with experience
    assert e["mode"] == "posterior_mean"


# ----------------------------------------------------------------------------- background
def test_start_background_runs_a_detached_worker(tmp_path):
    url = f"sqlite:///{tmp_path / 'bg.db'}"
    spec = RunSpec(router="random", backend="simulated", n_tasks=40, seed=4)
    run_id = start_background(spec, engine_url=url)
    engine = db.get_engine(url)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        run = run_row(engine, run_id)
        if run.status in ("finished", "failed", "stopped"):
            break
        time.sleep(0.2)
    assert run.status == "finished", run.error
    assert run.n_steps_done == 40 == len(steps_of(engine, run_id))
    assert (tmp_path / "logs" / f"run-{run_id}.log").is_file()
    with pytest.raises(ValidationError, match="in-memory"):
        start_background(spec, engine_url="sqlite://")


# ----------------------------------------------------------------------------- benchmark
def test_bench_reports_real_numbers_and_writes_json(tmp_path):
    from evoroute.evaluation.bench.report import format_table
    from evoroute.evaluation.bench.run import run_bench

    path = tmp_path / "bench.json"
    res = run_bench("routerbench", routers=["single:gpt-4-1106-preview", "cheapest", "oracle",
                                            "oracle-cascade"],
                    seeds=2, json_path=path, progress=False, workers=1)
    assert json.loads(path.read_text()) == json.loads(json.dumps(res))
    assert res["dataset"] == "routerbench" and res["n_test"] == 945
    r = res["routers"]
    gpt4 = r["single:gpt-4-1106-preview"]
    assert gpt4["quality"] == pytest.approx(0.879365, abs=1e-6)         # 831 / 945
    assert gpt4["cost_usd"] == pytest.approx(4.72818, abs=1e-5)
    assert gpt4["quality_sd"] == 0.0 and gpt4["n_seeds"] == 2
    assert r["cheapest"]["quality"] == pytest.approx(0.592593, abs=1e-6)  # mistral-7b
    assert r["oracle"]["quality"] == pytest.approx(0.975661, abs=1e-6)
    assert r["oracle"]["gap_to_oracle"] == 0.0
    assert gpt4["gap_to_oracle"] == pytest.approx(0.975661 - 0.879365, abs=1e-6)
    # AIQ on one axis ending at gpt-4's cost: the single point at the axis end encloses nothing
    assert res["aiq_max_cost_usd"] == pytest.approx(4.72818, abs=1e-5)
    assert gpt4["aiq"] == 0.0
    oc, oq = r["oracle"]["cost_usd"], r["oracle"]["quality"]
    assert r["oracle"]["aiq"] == pytest.approx(oq * (4.72818 - oc) / 4.72818, rel=1e-4)
    assert r["oracle-cascade"]["sweep_points"] == 4
    assert r["oracle-cascade"]["quality"] > gpt4["quality"]
    assert res["reference"]["strong"] == "gpt-4-1106-preview"
    assert gpt4["apgr"] == pytest.approx(1.0) and gpt4["cpt50"] == pytest.approx(1.0)
    table = format_table(res)
    assert "single:gpt-4-1106-preview" in table and "0.879" in table and "945 test queries" in table


def test_bench_validation_mode_never_reads_the_test_split():
    from evoroute.backends.replay import load_replay_data
    from evoroute.evaluation.bench.run import run_bench, validation_split

    data = load_replay_data("routerbench")
    val = validation_split(data, 0.3)
    train_ids = set(data.loc[data.split == "train", "query_id"])
    assert set(val.query_id) == train_ids
    assert val.groupby("split").query_id.nunique().to_dict() == {"test": 668, "train": 1557}
    res = run_bench("routerbench", routers=["single:gpt-4-1106-preview"], seeds=1, progress=False,
                    workers=1, validation=0.3, sweep=False)
    # 2225 train queries, 20 of them without every model's record are dropped
    assert res["n_test"] + res["n_train"] == 2205 and res["n_test"] == 664
    assert "validation" in res["dataset"]


def _no_token_file(tmp_path, split: bool = True):
    """40 queries, two models, no token counts; "a" costs 10× "b" and sorts first by name."""
    rows = [{"query_id": f"q{i}", "query": f"question {i}", "model": m, "score": float((i * 7) % 3 == 0),
             "cost_usd": c, **({"split": "train" if i < 30 else "test"} if split else {})}
            for i in range(40) for m, c in (("a", 0.01), ("b", 0.001))]
    path = tmp_path / ("no_tokens.csv" if split else "unsplit.csv")
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_cheapest_ranks_by_recorded_cost_when_no_price_is_known(tmp_path):
    """A long-format file without token counts: no price can be fitted (all 0), so `cheapest`
    ranks by the mean recorded cost on the train split instead of by name ("a" costs 10×)."""
    from evoroute.evaluation.bench.run import run_bench

    path = _no_token_file(tmp_path)
    res = run_bench(str(path), routers=["cheapest", "single:b"], seeds=1, progress=False,
                    workers=1, sweep=False)
    r = res["routers"]
    assert r["cheapest"]["model_share"] == {"b": 1.0}
    assert r["cheapest"]["cost_usd"] == pytest.approx(r["single:b"]["cost_usd"]) == pytest.approx(0.01)



def test_zero_prices_that_are_real_keep_the_registered_order(engine):
    """Notional prices of 0 (free local models): replay recomputes every cost as 0, so recorded
    costs cannot rank the models either; nothing is claimed about them."""
    from evoroute.core.types import ModelInfo, StepContext
    from evoroute.policy.registry import make_router

    models = [ModelInfo(m, 0.0, 0.0, price_source="notional") for m in ("a", "b")]
    r = make_router("cheapest", models)
    assert r.prices_unknown()
    table = type("T", (), {"models": ["a", "b"], "costs": np.zeros((3, 2))})()   # replayed at $0
    r.fit_costs(table)
    assert r.recorded_cost is None
    assert "lowest registered price" in r.decide(
        StepContext(task_key="t", step_index=0, role="r", instruction="x"),
        np.random.default_rng(0)).explanation.reason


def test_bench_workers_fork_with_file_and_in_memory_databases(tmp_path):
    """Forked bench workers read the registered models from the parent's database: a file (the
    child opens its own connection) or an in-memory one (the child's copy of it)."""
    from evoroute import registry
    from evoroute.evaluation.bench.run import run_bench

    path = _no_token_file(tmp_path)
    for url in (f"sqlite:///{tmp_path / 'bench.db'}", "sqlite://"):
        eng = db.get_engine(url)
        with db.session(eng) as s:
            for m, p in (("a", 10.0), ("b", 1.0)):
                registry.add_model(session=s, name=m, input_price_per_m=p, output_price_per_m=p,
                                   price_source="recorded")
        res = run_bench(str(path), routers=["cheapest", "single:a", "random"], seeds=2,
                        progress=False, workers=2, sweep=False, db=url)
        assert res["routers"]["cheapest"]["model_share"] == {"b": 1.0}, url


def test_unsplit_data_is_not_replicated_across_seeds(tmp_path):
    """Without a split column every seed draws its own test set, so even a single model is run
    per seed, not copied from the first one."""
    from evoroute.evaluation.bench.run import run_bench

    path = _no_token_file(tmp_path, split=False)
    one = [run_bench(str(path), routers=["single:a"], seeds=[s], progress=False, workers=1,
                     sweep=False)["routers"]["single:a"]["quality"] for s in (0, 1)]
    both = run_bench(str(path), routers=["single:a"], seeds=[0, 1], progress=False, workers=1,
                     sweep=False)["routers"]["single:a"]
    assert one[0] != one[1]                                   # the seeded splits differ
    assert both["quality"] == pytest.approx(sum(one) / 2)
    assert both["quality_sd"] > 0


def test_a_refused_tool_call_is_stored_with_its_step(engine, monkeypatch):
    """A backend's ``tool_error`` (the live agent's refused or failed tool call) reaches the
    step record, so the refusal is visible after the run, not just a σ of 0."""
    import dataclasses

    from evoroute.backends.simulated import SimulatedBackend

    plain = SimulatedBackend.execute

    def refusing(self, step, model):
        out = plain(self, step, model)
        if step.role == "coder":
            return dataclasses.replace(out, tool_error="python tool call 'x' failed: refused: no")
        return out

    monkeypatch.setattr(SimulatedBackend, "execute", refusing)
    spec = RunSpec(backend="simulated", dataset="agent", router="random", seed=1, n_tasks=4)
    run_id = create_run(spec, engine=engine)
    list(execute_run(run_id, engine=engine))
    recs = steps_of(engine, run_id)
    assert {r.role: r.tool_error for r in recs} == {
        "planner": None, "coder": "python tool call 'x' failed: refused: no", "verifier": None}


def test_build_router_gives_a_router_the_run_settings_its_capabilities_declare(monkeypatch):
    """The runner reads ``run_params`` from the router's capabilities, not from its name: a
    router declaring them gets the run's weights and cold start, one that does not gets only
    its own parameters."""
    from evoroute.core.types import ModelInfo, Weights
    from evoroute.policy.base import Router
    from evoroute.runs import prepare

    class Plain(Router):
        def __init__(self, models, **params):
            super().__init__(models)
            self.params = params

    class TakesRunSettings(Plain):
        run_params = ("weights", "cold_start_tasks")

    models = [ModelInfo("a"), ModelInfo("b")]
    spec = RunSpec(router="any-name", weights=(1.0, 0.3, 0.0), cold_start_tasks=7,
                   router_params={"k": 3})
    monkeypatch.setattr(prepare, "make_router", lambda name, ms, **p: Plain(ms, **p))
    assert prepare.build_router(spec, models).params == {"k": 3}
    monkeypatch.setattr(prepare, "make_router", lambda name, ms, **p: TakesRunSettings(ms, **p))
    assert prepare.build_router(spec, models).params == {
        "k": 3, "weights": Weights(1.0, 0.3, 0.0), "cold_start_tasks": 7}
