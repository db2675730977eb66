"""Baseline routers: each one's rule, on hand-made steps and on real RouterBench outcomes."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from evoroute.backends.base import OracleEntry
from evoroute.backends.replay import ReplayBackend, dataset_models, load_replay_data
from evoroute.core.types import ModelInfo, StepContext, StepOutcome
from evoroute.errors import EvoRouteError, UnknownModelError
from evoroute.evaluation.runner import RunLoop, RunSpec, prepare_run
from evoroute.policy.base import make_router
from evoroute.policy.baselines import (CascadeRouter, ThresholdRouter, cost_quality_ladder,
                                       strong_weak_pair, typical_cost)

GPT4 = "gpt-4-1106-preview"
YI = "zero-one-ai/Yi-34B-Chat"


def step(i: int = 0, candidates=None, phase: str = "inference") -> StepContext:
    return StepContext(task_key=f"t{i}", step_index=0, role="r", instruction=f"question {i}",
                       phase=phase, candidates=candidates)


@pytest.fixture(scope="module")
def rb():
    return load_replay_data("routerbench")


@pytest.fixture(scope="module")
def rb_models(rb):
    return dataset_models(rb)


@pytest.fixture(scope="module")
def rb_backend(rb, rb_models):
    return ReplayBackend(rb, rb_models, seed=0)


# ----------------------------------------------------------------------------- simple ones
def test_single_routes_everything_to_its_model(models, rng):
    r = make_router("single:mid", models)
    assert r.name == "single:mid"
    d = [r.decide(step(i), rng) for i in range(5)]
    assert {x.model for x in d} == {"mid"} and all(x.propensity == 1.0 for x in d)
    assert "every step goes to mid" in d[0].explanation.reason
    # a step the model cannot run: the cheapest available stands in, and says so
    d = r.decide(step(candidates=("strong", "cheap")), rng)
    assert d.model == "cheap" and "stands in" in d.explanation.reason
    with pytest.raises(UnknownModelError):
        make_router("single:nope", models)


def test_cheapest_picks_the_lowest_price(models, rng):
    r = make_router("cheapest", models)
    assert r.decide(step(), rng).model == "cheap"
    # by the price of a typical 1000-in / 200-out call: output-heavy prices can lose
    odd = [ModelInfo("in-cheap", 0.01, 50.0), ModelInfo("balanced", 1.0, 1.0)]
    assert typical_cost(odd[0]) == pytest.approx((1000 * 0.01 + 200 * 50) / 1e6)
    d = make_router("cheapest", odd).decide(step(), rng)
    assert d.model == "balanced" and "lowest registered price" in d.explanation.reason
    assert make_router("cheapest", models).decide(step(candidates=("mid", "strong")), rng).model == "mid"


def test_random_is_uniform_and_seeded(models):
    r = make_router("random", models)
    picks = [r.decide(step(i), np.random.default_rng([7, i])).model for i in range(600)]
    again = [r.decide(step(i), np.random.default_rng([7, i])).model for i in range(600)]
    assert picks == again
    counts = Counter(picks)
    assert set(counts) == {"cheap", "mid", "strong"} and min(counts.values()) > 150
    d = r.decide(step(), np.random.default_rng(0))
    assert d.propensity == pytest.approx(1 / 3)
    assert [c.propensity for c in d.explanation.candidates] == pytest.approx([1 / 3] * 3)


def test_round_robin_cycles(models, rng):
    r = make_router("round_robin", models)
    assert [r.decide(step(i), rng).model for i in range(7)] == \
        ["cheap", "mid", "strong", "cheap", "mid", "strong", "cheap"]
    # an unavailable model is skipped, the cycle continues after the one used
    assert r.decide(step(candidates=("cheap", "strong")), rng).model == "strong"
    assert r.decide(step(), rng).model == "cheap"
    d = r.decide(step(), rng)
    assert d.model == "mid" and "position 2 of 3" in d.explanation.reason and d.propensity == 1.0


# ----------------------------------------------------------------------------- oracle
def test_oracle_picks_the_cheapest_correct_model(models, rng):
    table = {
        "t0": {"cheap": OracleEntry(0.0, 0.001, 1), "mid": OracleEntry(1.0, 0.01, 1),
               "strong": OracleEntry(1.0, 0.05, 1)},
        "t1": {"cheap": OracleEntry(0.0, 0.001, 1), "mid": OracleEntry(0.0, 0.01, 1),
               "strong": OracleEntry(0.0, 0.05, 1)},
        "t2": {"cheap": OracleEntry(0.5, 0.001, 1), "mid": OracleEntry(0.9, 0.01, 1),
               "strong": OracleEntry(0.9, 0.05, 1)},
    }
    r = make_router("oracle", models)
    with pytest.raises(EvoRouteError, match="replay or simulated"):
        r.decide(step(0), rng)
    r.attach_oracle(lambda s: table[s.task_key])
    assert [r.decide(step(i), rng).model for i in range(3)] == ["mid", "cheap", "mid"]
    assert "no model succeeds" in r.decide(step(1), rng).explanation.reason


def test_oracle_on_replay_is_cheapest_correct_per_query(rb_backend):
    plan = prepare_run(RunSpec(router="oracle", n_tasks=200), backend=rb_backend)
    n_correct = 0
    for res in RunLoop(plan).steps():
        entries = rb_backend.oracle_scores(res.ctx)
        correct = {m: e.cost_usd for m, e in entries.items() if e.score == 1.0}
        if correct:
            n_correct += 1
            assert res.outcome.step_success == 1.0
            assert res.outcome.cost_usd == pytest.approx(min(correct.values()))
        else:
            assert res.outcome.cost_usd == pytest.approx(min(e.cost_usd for e in entries.values()))
    assert n_correct >= 190


# ----------------------------------------------------------------------------- cascade
def test_cascade_ladder_is_the_train_frontier(rb_backend, rb_models):
    tab = rb_backend.outcome_table("train")
    ladder = cost_quality_ladder([m.name for m in rb_models], tab)
    assert ladder == ["mistralai/mistral-7b-chat", "mistralai/mixtral-8x7b-chat", YI, GPT4]


def test_cascade_escalates_and_pays_for_every_attempt(rb_backend):
    plan = prepare_run(RunSpec(router="cascade", n_tasks=150), backend=rb_backend)
    ladder = plan.router.ladder
    escalated = 0
    for res in RunLoop(plan).steps():
        entries = rb_backend.oracle_scores(res.ctx)
        # expected: climb until the first rung whose recorded outcome is correct
        expect = []
        for m in ladder:
            expect.append(m)
            if entries[m].score == 1.0:
                break
        assert res.attempts == expect
        assert res.outcome.model == expect[-1]
        assert res.outcome.step_success == entries[expect[-1]].score
        assert res.outcome.cost_usd == pytest.approx(sum(entries[m].cost_usd for m in expect))
        assert res.outcome.duration_s == pytest.approx(sum(entries[m].latency_s for m in expect))
        escalated += len(expect) > 1
        if len(expect) > 1:
            assert "attempts:" in res.decision.explanation.reason
    assert escalated > 20


def test_cascade_max_rungs_and_noisy_verifier(models, rng):
    c = CascadeRouter(models, ladder=["cheap", "mid", "strong"], max_rungs=2)
    assert c.ladder == ["cheap", "mid"]
    d = c.decide(step(), rng)
    assert d.model == "cheap" and "rung 1 of 2" in d.explanation.reason
    fail = StepOutcome("cheap", 0.0, 0.001, 1.0)
    up = c.escalate(step(), d, fail, rng)
    assert up is not None and up.model == "mid"
    assert c.escalate(step(), up, StepOutcome("mid", 0.0, 0.01, 1.0), rng) is None   # top rung
    assert c.escalate(step(), d, StepOutcome("cheap", 1.0, 0.001, 1.0), rng) is None
    liar = CascadeRouter(models, ladder=["cheap", "mid"], verifier_accuracy=0.0)
    assert liar.escalate(step(), d, StepOutcome("cheap", 1.0, 0.001, 1.0), rng).model == "mid"
    with pytest.raises(EvoRouteError, match="trained first"):
        CascadeRouter(models).decide(step(), rng)


# ----------------------------------------------------------------------------- threshold
def test_threshold_pair_and_strong_share_knob(rb_backend, rb_models):
    tab = rb_backend.outcome_table("train")
    assert strong_weak_pair([m.name for m in rb_models], tab) == (GPT4, YI)
    shares = []
    for share in (0.0, 0.3, 0.7, 1.0):
        plan = prepare_run(RunSpec(router="threshold", router_params={"strong_share": share},
                                   n_tasks=300), backend=rb_backend)
        r = plan.router
        assert (r.strong, r.weak) == (GPT4, YI)
        picks = [res.outcome.model for res in RunLoop(plan).steps()]
        assert set(picks) <= {GPT4, YI}
        shares.append(np.mean([p == GPT4 for p in picks]))
    assert shares[0] == 0.0 and shares[-1] == 1.0
    assert 0.0 < shares[1] < shares[2] < 1.0
    # calibrated on train: the share of strong calls on test is near the asked share
    assert shares[1] == pytest.approx(0.3, abs=0.12) and shares[2] == pytest.approx(0.7, abs=0.12)


def test_threshold_win_probability_uses_neighbours(rb_backend, rb_models):
    plan = prepare_run(RunSpec(router="threshold", n_tasks=50), backend=rb_backend)
    r: ThresholdRouter = plan.router
    loo = r.loo_predictions()
    assert loo.shape == (2205,) and (loo > 0).all() and (loo < 1).all()
    # per role, the predictions vary around the role's base win rate (not a constant)
    roles = r._roles
    for role in ("arc_challenge", "winogrande", "mbpp"):
        sel = loo[roles == role]
        assert sel.std() > 0.01
        assert sel.mean() == pytest.approx(r._base[role], abs=0.05)
    res = next(iter(RunLoop(plan).steps()))
    assert "predicted probability that gpt-4-1106-preview beats" in res.decision.explanation.reason
    with pytest.raises(EvoRouteError, match="trained first"):
        ThresholdRouter(rb_models).decide(step(), np.random.default_rng(0))
