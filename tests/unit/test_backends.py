"""Replay and simulated backends: recorded values, price overrides, modelled latency, splits,
composed tasks, and the simulated ground truth EvoRoute must converge to."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evoroute.backends.base import OutcomeTable
from evoroute.backends.registry import make_backend
from evoroute.backends.replay import ReplayBackend, dataset_models, load_replay_data
from evoroute.backends.simulated import SimulatedBackend
from evoroute.core.errors import DatasetError, ValidationError
from evoroute.core.types import ModelInfo, StepContext, Weights
from evoroute.datasets.longformat import validate_long

GPT4 = "gpt-4-1106-preview"
YI = "zero-one-ai/Yi-34B-Chat"
GPT35 = "gpt-3.5-turbo-1106"


@pytest.fixture(scope="module")
def rb() -> pd.DataFrame:
    return load_replay_data("routerbench")


@pytest.fixture(scope="module")
def rb_models(rb) -> list[ModelInfo]:
    return dataset_models(rb)


def ctx_of(task, i=0, **kw) -> StepContext:
    s = task.steps[i]
    return StepContext(task_key=task.key, step_index=i, role=s.role, instruction=s.instruction,
                       query_id=s.query_id, **kw)


_BY_KEY: dict = {}


def row(rb, qid, model):
    """The recorded (query, model) row, looked up in an index built once."""
    if id(rb) not in _BY_KEY:
        _BY_KEY[id(rb)] = rb.set_index(["query_id", "model"]).sort_index()
    r = _BY_KEY[id(rb)].loc[(qid, model)]
    return r


# ----------------------------------------------------------------------------- replay
def test_replay_returns_recorded_score_cost_and_tokens(rb, rb_models):
    b = ReplayBackend(rb, rb_models, seed=0)
    task = b.tasks("test")[0]
    ctx = ctx_of(task)
    for m in rb_models:
        rec = row(rb, ctx.query_id, m.name)
        out = b.execute(ctx, m)
        assert out.step_success == rec.score
        assert out.cost_usd == pytest.approx(rec.cost_usd, rel=0, abs=0)   # recorded, unchanged
        assert (out.input_tokens, out.output_tokens) == (rec.input_tokens, rec.output_tokens)
        # MODELLED latency = ttft + output tokens / tokens per second, labelled as such
        assert out.duration_s == pytest.approx(m.ttft_s + rec.output_tokens / m.tokens_per_s)
        assert out.latency_label == "modelled"
    assert b.label == "replayed"


def test_modelled_latency_formula_on_a_long_mbpp_answer(rb, rb_models):
    b = ReplayBackend(rb, rb_models, seed=0)
    task = next(t for t in b.tasks("test") if t.steps[0].role == "mbpp")
    gpt4 = next(m for m in rb_models if m.name == GPT4)
    slow = ModelInfo(GPT4, gpt4.input_price_per_m, gpt4.output_price_per_m, ttft_s=1.5,
                     tokens_per_s=10.0, price_source="recorded")
    b2 = ReplayBackend(rb, [slow], seed=0)
    rec = row(rb, task.steps[0].query_id, GPT4)
    out = b2.execute(ctx_of(task), slow)
    assert rec.output_tokens > 50
    assert out.duration_s == pytest.approx(1.5 + rec.output_tokens / 10.0)


def test_price_override_and_notional_recompute_cost_from_tokens(rb):
    over = ModelInfo(GPT4, input_price_per_m=1.0, output_price_per_m=100.0, price_source="override")
    free = ModelInfo(YI, input_price_per_m=0.0, output_price_per_m=0.0, price_source="notional")
    rec35 = ModelInfo(GPT35, input_price_per_m=99.0, output_price_per_m=99.0, price_source="litellm")
    b = ReplayBackend(rb, [over, free, rec35], seed=0)
    ctx = ctx_of(b.tasks("test")[3])
    r4, r35 = row(rb, ctx.query_id, GPT4), row(rb, ctx.query_id, GPT35)
    assert b.execute(ctx, over).cost_usd == pytest.approx(
        (r4.input_tokens * 1.0 + r4.output_tokens * 100.0) / 1e6)
    assert b.execute(ctx, over).cost_usd != pytest.approx(r4.cost_usd)
    assert b.execute(ctx, free).cost_usd == 0.0
    assert b.execute(ctx, rec35).cost_usd == pytest.approx(r35.cost_usd)   # not an override
    assert b.describe()["cost"] == {GPT4: "recomputed at the registered prices",
                                    YI: "recomputed at the registered prices", GPT35: "recorded"}


def test_registered_model_missing_from_data_is_named(rb, rb_models):
    ghost = ModelInfo("my-local-llama", price_source="notional")
    with pytest.raises(DatasetError, match="my-local-llama"):
        ReplayBackend(rb, rb_models[:2] + [ghost], seed=0)


def test_unregistered_data_models_are_not_routable(rb):
    two = [ModelInfo(GPT4, price_source="recorded"), ModelInfo(YI, price_source="recorded")]
    b = ReplayBackend(rb, two, seed=0)
    ctx = ctx_of(b.tasks("test")[0])
    assert set(b.oracle_scores(ctx)) == {GPT4, YI}
    assert len(b.describe()["unrouted_models"]) == 9
    with pytest.raises(Exception, match="claude-v1"):
        b.execute(ctx, ModelInfo("claude-v1"))


def test_incomplete_queries_dropped_or_restricted(rb, rb_models):
    dropped = ReplayBackend(rb, rb_models, seed=0)
    assert dropped.describe()["dropped_incomplete_queries"] == 28      # RouterBench's split ARC rows
    assert len(dropped.tasks("test")) == 945 and len(dropped.tasks("train")) == 2205
    kept = ReplayBackend(rb, rb_models, seed=0, incomplete="restrict")
    assert len(kept.tasks("test")) == 953
    partial = [t for t in kept.tasks("test") if kept.candidates(ctx_of(t)) is not None]
    assert len(partial) == 8
    # the half-rows scored only gpt-3.5 or every model but gpt-3.5
    assert {len(kept.candidates(ctx_of(t))) for t in partial} == {1, 10}


def test_replay_without_split_column_gets_a_seeded_split():
    rows = [{"query_id": f"q{i}", "query": f"question {i}", "model": m, "score": float((i + j) % 2),
             "cost_usd": 0.001 * (j + 1), "output_tokens": 10 + j}
            for i in range(40) for j, m in enumerate(("a", "b"))]
    df = validate_long(pd.DataFrame(rows), source="tiny.csv")
    models = [ModelInfo("a", price_source="recorded"), ModelInfo("b", price_source="recorded")]
    b1, b2 = ReplayBackend(df, models, seed=3), ReplayBackend(df, models, seed=3)
    b3 = ReplayBackend(df, models, seed=4)
    keys = lambda b: sorted(t.key for t in b.tasks("test"))  # noqa: E731
    assert len(b1.tasks("test")) == 12 and len(b1.tasks("train")) == 28   # 30 % of 40
    assert keys(b1) == keys(b2) and keys(b1) != keys(b3)
    assert "seeded split" in b1.describe()["split"] and "seed 3" in b1.describe()["split"]
    assert ReplayBackend(df, models, seed=0).tasks("test")[0].steps[0].role == "tiny"


def test_composed_tasks_take_real_queries_of_one_split_and_need_all_steps(rb, rb_models):
    b = ReplayBackend(rb, rb_models, seed=1, steps_per_task=3)
    tasks = b.tasks("test")
    assert len(tasks) == 945 // 3 and all(t.n_steps == 3 for t in tasks)
    test_ids = set(rb.loc[rb.split == "test", "query_id"])
    gpt4 = next(m for m in rb_models if m.name == GPT4)
    all_ok = some_fail = 0
    for t in tasks[:60]:
        assert all(s.query_id in test_ids for s in t.steps)
        outs = [b.execute(ctx_of(t, i), gpt4) for i in range(3)]
        assert [o.step_success for o in outs] == [row(rb, s.query_id, GPT4).score for s in t.steps]
        success = b.check_task(t, outs)
        assert success == min(o.step_success for o in outs)
        all_ok += success == 1.0
        some_fail += success == 0.0
    assert all_ok > 0 and some_fail > 0
    assert "all steps correct" in b.describe()["composition"]
    # the same seed composes the same tasks
    assert [s.query_id for s in ReplayBackend(rb, rb_models, seed=1, steps_per_task=3)
            .tasks("test")[0].steps] == [s.query_id for s in tasks[0].steps]


def test_outcome_table_is_every_model_on_every_train_step(rb, rb_models):
    b = ReplayBackend(rb, rb_models, seed=0)
    tab = b.outcome_table("train")
    assert isinstance(tab, OutcomeTable)
    assert tab.scores.shape == (2205, 11) and not np.isnan(tab.scores).any()
    j = tab.models.index(GPT4)
    assert tab.scores[:, j].mean() == pytest.approx(0.879365, abs=1e-6)
    assert tab.costs[:, j].sum() == pytest.approx(11.07, abs=1e-6)


def test_outcome_table_task_success_is_all_steps_correct():
    tab = OutcomeTable(models=["a", "b"], task_keys=["t1", "t1", "t2"],
                       step_index=np.array([0, 1, 0]), roles=["r"] * 3, instructions=["x", "y", "z"],
                       tools=[frozenset()] * 3,
                       scores=np.array([[1.0, 1.0], [0.0, 1.0], [1.0, np.nan]]),
                       costs=np.zeros((3, 2)), latencies=np.zeros((3, 2)))
    assert np.array_equal(tab.task_success(), np.array([[0.0, 1.0], [0.0, 1.0], [1.0, np.nan]]),
                          equal_nan=True)


def test_make_backend_errors_are_typed(rb_models):
    with pytest.raises(ValidationError, match="unknown backend"):
        make_backend("carrier-pigeon", "x", models=rb_models)
    with pytest.raises(ValidationError, match="no candidate models"):
        make_backend("replay", "routerbench", models=[])
    with pytest.raises(ValidationError, match="unknown simulated scenario"):
        make_backend("simulated", "nope")


def test_the_registry_names_every_backend_and_checks_its_settings():
    from evoroute.backends.base import Backend
    from evoroute.backends.registry import BACKEND_NAMES, backend_class, check_params

    assert all(issubclass(backend_class(n), Backend) for n in BACKEND_NAMES)
    check_params("replay", {"incomplete": "restrict"})
    check_params("carrier-pigeon", {"x": 1})        # an unknown backend is the run spec's error
    with pytest.raises(ValidationError, match="unknown backend setting 'bogus'"):
        check_params("simulated", {"bogus": 1})
    with pytest.raises(ValidationError, match="must be a number"):
        check_params("replay", {"test_fraction": "a lot"})


# ----------------------------------------------------------------------------- simulated
def test_simulated_is_labelled_seeded_and_order_independent():
    a, b, c = (SimulatedBackend("default", seed=s) for s in (5, 5, 6))
    assert a.label == "simulated" and a.latency_label == "simulated"
    ta = a.tasks("test")
    assert [t.key for t in ta] == [t.key for t in b.tasks("test")]
    assert [t.key for t in ta] != [t.key for t in c.tasks("test")]
    m = a.models[2]
    first = [a.execute(ctx_of(t), m) for t in ta[:30]]
    again = [b.execute(ctx_of(t), m) for t in reversed(ta[:30])][::-1]   # asked in another order
    assert first == again
    assert all(o.latency_label == "simulated" for o in first)
    assert a.models[0].price_source == "notional"


def test_simulated_outcomes_follow_the_scenario_parameters():
    b = SimulatedBackend("default", seed=0, n_train=3000, n_test=0)
    tab = b.outcome_table("train")
    roles = np.array(tab.roles)
    exp = b.expected()
    for role in b.scenario.roles:
        sel = roles == role
        for j, name in enumerate(tab.models):
            p, c, d = exp[role][name]
            assert tab.scores[sel, j].mean() == pytest.approx(p, abs=0.06)
            assert tab.costs[sel, j].mean() == pytest.approx(c, rel=0.1)
            assert tab.latencies[sel, j].mean() == pytest.approx(d, rel=0.1)


def test_simulated_ground_truth_by_hand():
    b = SimulatedBackend("default", seed=0)
    # performance only: the most accurate model per role
    assert b.ground_truth((1, 0, 0)) == {"planner": "sim-large", "coder": "sim-coder",
                                         "searcher": "sim-small", "verifier": "sim-large"}
    # default weights: the medium model's 0.85 beats the large model's 0.88 once the large
    # model pays its full normalised cost and latency (0.1 + 0.05)
    exp = b.expected()["planner"]
    (pm, cm, dm), (pl, cl, dl) = exp["sim-medium"], exp["sim-large"]
    u_medium = pm - 0.1 * cm / cl - 0.05 * dm / dl
    u_large = pl - 0.1 - 0.05
    assert u_medium - u_large > 0.05
    assert b.ground_truth(Weights()) == {"planner": "sim-medium", "coder": "sim-coder",
                                         "searcher": "sim-small", "verifier": "sim-large"}
    assert b.best_model((1, 5, 0), "verifier") == "sim-small"


def test_evoroute_converges_to_the_simulated_ground_truth():
    """After cold start and online optimisation on the train tasks, EvoRoute routes the test
    tasks to the known-best model of each role (default weights)."""
    from evoroute.runs.loop import RunLoop
    from evoroute.runs.prepare import prepare_run
    from evoroute.runs.spec import RunSpec

    hits = []
    for seed in (0, 1, 2):
        plan = prepare_run(RunSpec(backend="simulated", dataset="default", router="evoroute",
                                   seed=seed))
        truth = plan.backend.ground_truth(Weights())
        res = [r for r in RunLoop(plan).steps() if r.phase == "inference"]
        assert len(res) == 200
        hits.append(np.mean([r.outcome.model == truth[r.ctx.role] for r in res]))
    assert min(hits) >= 0.7 and np.mean(hits) >= 0.85, hits
