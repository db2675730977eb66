"""Baseline routers: each one's rule, on hand-made steps and on real RouterBench outcomes."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from evoroute.backends.base import OracleEntry
from evoroute.backends.replay import ReplayBackend, dataset_models, load_replay_data
from evoroute.core.errors import EvoRouteError, UnknownModelError
from evoroute.core.types import ModelInfo, StepContext, StepOutcome
from evoroute.policy.baseline import typical_cost
from evoroute.policy.registry import make_router
from evoroute.policy.routers.oracles import OracleCascadeRouter
from evoroute.policy.routers.threshold import ThresholdRouter
from evoroute.policy.training import cost_quality_ladder, strong_weak_pair
from evoroute.runs.loop import RunLoop
from evoroute.runs.prepare import prepare_run
from evoroute.runs.spec import RunSpec

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
    plan = prepare_run(RunSpec(router="oracle-cascade", n_tasks=150), backend=rb_backend)
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
    c = OracleCascadeRouter(models, ladder=["cheap", "mid", "strong"], max_rungs=2)
    assert c.ladder == ["cheap", "mid"]
    d = c.decide(step(), rng)
    assert d.model == "cheap" and "rung 1 of 2" in d.explanation.reason
    fail = StepOutcome("cheap", 0.0, 0.001, 1.0)
    up = c.escalate(step(), d, fail, rng)
    assert up is not None and up.model == "mid"
    assert c.escalate(step(), up, StepOutcome("mid", 0.0, 0.01, 1.0), rng) is None   # top rung
    assert c.escalate(step(), d, StepOutcome("cheap", 1.0, 0.001, 1.0), rng) is None
    liar = OracleCascadeRouter(models, ladder=["cheap", "mid"], verifier_accuracy=0.0)
    assert liar.escalate(step(), d, StepOutcome("cheap", 1.0, 0.001, 1.0), rng).model == "mid"
    with pytest.raises(EvoRouteError, match="trained first"):
        OracleCascadeRouter(models).decide(step(), rng)


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


# ----------------------------------------------------------------------------- learned baselines
from evoroute.backends.base import OutcomeTable  # noqa: E402
from evoroute.policy.base import Router  # noqa: E402
from evoroute.policy.registry import ROUTERS  # noqa: E402
from evoroute.policy.routers.cascade import ConfidenceCascadeRouter  # noqa: E402
from evoroute.policy.routers.learned import KNNRouter, LogisticRouter, PerRoleRouter, _KNNModel, fit_logistic  # noqa: E402
from evoroute.policy.routers.lints import LinTSRouter  # noqa: E402
from evoroute.policy.training import TrainStats, task_folds  # noqa: E402


def table(roles, scores, costs, emb=None, keys=None, models=("cheap", "mid", "strong")):
    scores, costs = np.asarray(scores, float), np.asarray(costs, float)
    n = scores.shape[0]
    return OutcomeTable(models=list(models), task_keys=list(keys or [f"t{i}" for i in range(n)]),
                        step_index=np.zeros(n, dtype=int), roles=list(roles),
                        instructions=[f"q{i}" for i in range(n)], tools=[frozenset()] * n,
                        scores=scores, costs=costs, latencies=np.ones_like(scores),
                        embeddings=None if emb is None else np.asarray(emb, np.float32))


def clusters(n_per: int, seed: int, dim: int = 16):
    """Two tight clusters on the unit sphere: label 0 / 1."""
    g = np.random.default_rng(seed)
    centres = np.linalg.qr(g.standard_normal((dim, 2)))[0].T
    lab = np.repeat([0, 1], n_per)
    emb = centres[lab] + 0.15 * g.standard_normal((lab.size, dim))
    return emb / np.linalg.norm(emb, axis=1, keepdims=True), lab, centres


def cluster_table(n_per: int = 60, seed: int = 0):
    """Role r: cheap succeeds on cluster 0 only, strong on cluster 1 only (same cost), mid never."""
    emb, lab, centres = clusters(n_per, seed)
    sc = np.stack([lab == 0, np.zeros_like(lab, bool), lab == 1], axis=1).astype(float)
    co = np.tile([0.001, 0.001, 0.001], (lab.size, 1))
    return table(["r"] * lab.size, sc, co, emb), centres


def test_per_role_picks_the_best_model_per_role_with_its_cost_knob(models, rng):
    # role A: cheap 0.9 / mid 0.5 / strong 1.0; role B: cheap 0.2 / mid 0.6 / strong 0.9
    a = np.array([[1, 1, 1]] * 5 + [[1, 0, 1]] * 4 + [[0, 0, 1]] * 1, float)
    b = np.array([[1, 1, 1]] * 2 + [[0, 1, 1]] * 4 + [[0, 0, 1]] * 3 + [[0, 0, 0]] * 1, float)
    costs = np.tile([0.001, 0.01, 0.1], (20, 1))
    tab = table(["A"] * 10 + ["B"] * 10, np.vstack([a, b]), costs)
    r = PerRoleRouter(models, cost_weight=0.1)
    r.fit(tab)
    assert r.stats.c_ref == pytest.approx(0.1)
    assert r.stats.q_role[r.stats.role_of["A"]].tolist() == pytest.approx([0.9, 0.5, 1.0])
    ctx = lambda role: StepContext("t", 0, role, "x", phase="inference")  # noqa: E731
    # A: strong 1.0 - 0.1 * 0.1 / 0.1 = 0.900 > cheap 0.9 - 0.1 * 0.001 / 0.1 = 0.899
    d = r.decide(ctx("A"), rng)
    assert d.model == "strong" and "train means of role 'A'" in d.explanation.reason
    r.cost_weight = 0.2        # A: strong 0.8 < cheap 0.898
    assert r.decide(ctx("A"), rng).model == "cheap"
    assert r.decide(ctx("B"), rng).model == "strong"     # B: 0.9 - 0.2 = 0.7 > mid 0.58
    r.cost_weight = 0.0
    assert r.decide(ctx("A"), rng).model == "strong"
    # an unseen role uses the global means: cheap 0.55 / mid 0.55 / strong 0.95
    d = r.decide(ctx("C"), rng)
    assert d.model == "strong" and "global train means" in d.explanation.reason
    assert {c.model: c.p_hat for c in d.explanation.candidates} == pytest.approx(
        {"cheap": 0.55, "mid": 0.55, "strong": 0.95})
    with pytest.raises(EvoRouteError, match="trained first"):
        PerRoleRouter(models).decide(ctx("A"), rng)


@pytest.mark.parametrize("cls", [KNNRouter, LogisticRouter])
def test_knn_and_logistic_route_two_clusters(models, rng, cls):
    tab, centres = cluster_table()
    r = cls(models)
    r.fit(tab)
    lab = np.repeat([0, 1], 40)        # new points around the train clusters' centres
    g = np.random.default_rng(5)
    pts = centres[lab] + 0.15 * g.standard_normal((lab.size, centres.shape[1]))
    picks = [r.decide(StepContext("t", 0, "r", "x", phase="inference", embedding=e.astype(np.float32)),
                      rng).model for e in pts]
    want = np.where(lab == 0, "cheap", "strong")
    assert np.mean(np.asarray(picks) == want) >= 0.95
    assert "mid" not in picks


def test_knn_cross_validation_matches_brute_force_leave_one_task_out():
    g = np.random.default_rng(3)
    n = 40
    emb = g.standard_normal((n, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sc = (g.random((n, 3)) < np.array([0.3, 0.6, 0.8])).astype(float)
    sc[g.random((n, 3)) < 0.1] = np.nan          # some outcomes not recorded
    keys = [f"t{i // 2}" for i in range(n)]       # two rows per task: both left out together
    tab = table(["r"] * n, sc, np.full((n, 3), 0.01), emb, keys)
    st = TrainStats(tab, ["cheap", "mid", "strong"])
    m = _KNNModel(st, tab)
    k, prior = 5, 4.0
    err, cnt = 0.0, 0
    for i in range(n):
        other = np.array([j for j in range(n) if keys[j] != keys[i]])
        sims = emb[other] @ emb[i]
        top = other[np.argsort(-sims)[:k]]
        w = np.clip(emb[top] @ emb[i], 0, None)
        for j in range(3):
            if np.isnan(sc[i, j]):
                continue
            rest = np.delete(sc[:, j], i)
            base = np.nanmean(rest)
            ok = ~np.isnan(sc[top, j])
            pred = ((w * np.where(ok, sc[top, j], 0)).sum() + prior * base) / ((w * ok).sum() + prior)
            err += (pred - sc[i, j]) ** 2
            cnt += 1
    assert m.cv[f"k={k},prior={prior:g}"] == pytest.approx(err / cnt, rel=1e-5)
    assert m.cv[f"k={m.k},prior={m.prior:g}"] == min(m.cv.values())


def test_fit_logistic_matches_scikit_learn_and_handles_graded_scores():
    from sklearn.linear_model import LogisticRegression

    g = np.random.default_rng(1)
    X = g.standard_normal((300, 5))
    y = (X @ np.array([1.5, -1, 0, 0.5, 0]) + 0.3 * g.standard_normal(300) > 0).astype(float)
    W = fit_logistic(X, y[:, None], 0.7)
    ref = LogisticRegression(C=0.7, max_iter=5000, tol=1e-10).fit(X, y)
    assert W[:-1, 0] == pytest.approx(ref.coef_[0], abs=2e-3)
    assert W[-1, 0] == pytest.approx(ref.intercept_[0], abs=2e-3)
    # a graded score s = a success with weight s and a failure with weight 1 - s
    s = g.random(300)
    Wg = fit_logistic(X, s[:, None], 0.7)
    ref = LogisticRegression(C=0.7, max_iter=5000, tol=1e-10).fit(
        np.vstack([X, X]), np.r_[np.ones(300), np.zeros(300)], sample_weight=np.r_[s, 1 - s])
    assert Wg[:-1, 0] == pytest.approx(ref.coef_[0], abs=2e-3)
    # NaN = not recorded: the same as dropping those rows
    y2 = y.copy()
    y2[:50] = np.nan
    both = fit_logistic(X, np.stack([y2, y], axis=1), 0.7)
    assert both[:, 0] == pytest.approx(fit_logistic(X[50:], y[50:, None], 0.7)[:, 0], abs=1e-3)
    assert both[:, 1] == pytest.approx(W[:, 0], abs=1e-3)


def test_task_folds_ignore_row_order_and_keep_tasks_together():
    keys = [f"task-{i // 3}" for i in range(300)]
    f = task_folds(keys)
    assert set(f.tolist()) == {0, 1, 2, 3, 4}
    assert all(len({f[i] for i in range(j, j + 3)}) == 1 for j in range(0, 300, 3))
    perm = np.random.default_rng(0).permutation(300)
    assert task_folds([keys[i] for i in perm]).tolist() == f[perm].tolist()


def test_lints_converges_on_two_clusters_from_its_own_choices(models):
    _, centres = cluster_table()
    r = LinTSRouter(models, cost_weight=0.0, prior_precision=1.0)
    g, rng = np.random.default_rng(11), np.random.default_rng(12)
    p_success = {"cheap": (0.9, 0.1), "mid": (0.3, 0.3), "strong": (0.1, 0.9)}
    right = []
    for t in range(600):
        lab = int(g.integers(2))
        e = centres[lab] + 0.15 * g.standard_normal(centres.shape[1])
        ctx = StepContext(f"t{t}", 0, "r", "x", phase="optimize", embedding=e / np.linalg.norm(e))
        d = r.decide(ctx, rng)
        assert d.propensity > 0
        assert sum(c.propensity for c in d.explanation.candidates) == pytest.approx(1.0)
        y = float(g.random() < p_success[d.model][lab])
        r.observe(ctx, d, StepOutcome(d.model, y, 0.001, 1.0))
        right.append(d.model == ("cheap" if lab == 0 else "strong"))
    assert set(r.n.tolist()) != {0} and r.n.min() >= 1          # every model was tried
    assert np.mean(right[:50]) < 0.8 and np.mean(right[-200:]) > 0.85
    # at inference: the posterior mean, no sampling
    ctx = StepContext("x", 0, "r", "x", phase="inference", embedding=centres[1])
    d = r.decide(ctx, rng)
    assert d.model == "strong" and d.explanation.mode == "posterior_mean" and d.propensity == 1.0
    assert 0.2 < r.noise_sd < 0.5


def test_lints_preload_equals_observing_every_outcome(models, rng):
    emb, lab, _ = clusters(15, seed=4)
    g = np.random.default_rng(0)
    sc = (g.random((30, 3)) < 0.5).astype(float)
    co = g.random((30, 3)) * 0.01
    tab = table(["r"] * 20 + ["s"] * 10, sc, co, emb)
    a = LinTSRouter(models, dims=8)
    a.preload(tab)
    b = LinTSRouter(models, dims=8)
    for i in range(30):
        ctx = StepContext(f"t{i}", 0, tab.roles[i], "x", embedding=emb[i])
        for j, m in enumerate(("cheap", "mid", "strong")):
            b.observe(ctx, None, StepOutcome(m, sc[i, j], co[i, j], 1.0))
    assert a.theta == pytest.approx(b.theta, abs=1e-8)
    assert a.A_inv == pytest.approx(b.A_inv, abs=1e-8)
    assert a.c_sum == pytest.approx(b.c_sum) and (a.n == b.n).all()
    ctx = StepContext("q", 0, "r", "x", phase="inference", embedding=emb[0])
    assert a.decide(ctx, rng).model == b.decide(ctx, rng).model


def test_confidence_cascade_climbs_on_its_own_prediction(models, rng):
    tab, centres = cluster_table()
    c = ConfidenceCascadeRouter(models, confidence=0.5, ladder=["cheap", "strong"])
    c.fit(tab)
    assert not hasattr(c, "escalate") and not c.is_oracle
    near0 = StepContext("a", 0, "r", "x", phase="inference", embedding=centres[0].astype(np.float32))
    near1 = StepContext("b", 0, "r", "x", phase="inference", embedding=centres[1].astype(np.float32))
    d0, d1 = c.decide(near0, rng), c.decide(near1, rng)
    assert d0.model == "cheap" and d1.model == "strong"
    assert "never the recorded answer" in d0.explanation.reason
    c.confidence = 0.0
    assert c.decide(near1, rng).model == "cheap"         # 0: always the first rung
    c.confidence = 1.0
    assert c.decide(near0, rng).model == "strong"        # 1: always the top rung


@pytest.mark.parametrize("router", ["cascade", "per-role", "knn", "logistic"])
def test_learned_routers_never_read_the_recorded_test_outcomes(router):
    """Corrupt every recorded test score: the decisions on the test split do not change."""
    data = load_replay_data("routerbench-mbpp")
    bad = data.copy()
    test = bad["split"] == "test"
    bad.loc[test, "score"] = 1.0 - bad.loc[test, "score"]
    ms = dataset_models(data)
    picks = []
    for d in (data, bad):
        params = {"confidence": 0.5} if router == "cascade" else {}
        plan = prepare_run(RunSpec(router=router, dataset="routerbench-mbpp", router_params=params),
                           backend=ReplayBackend(d, ms, seed=0))
        picks.append([(r.task_key, r.outcome.model, r.attempts) for r in RunLoop(plan).steps()])
    assert picks[0] == picks[1] and len(picks[0]) == 128
    assert len({m for _, m, _ in picks[0]}) >= 2 or router == "per-role"
    assert all(len(a) == 1 for _, _, a in picks[0])     # one call per step: nothing escalates


# ----------------------------------------------------------------------------- capabilities
def test_oracle_cascade_is_the_renamed_oracle_and_cascade_is_not():
    ms = [ModelInfo("a", 1, 1), ModelInfo("b", 2, 2)]
    oc, c = make_router("oracle-cascade", ms), make_router("cascade", ms)
    assert isinstance(oc, OracleCascadeRouter) and oc.name == "oracle-cascade"
    assert oc.capabilities().is_oracle and make_router("oracle", ms).capabilities().is_oracle
    assert isinstance(c, ConfidenceCascadeRouter) and not c.capabilities().is_oracle
    assert not OracleCascadeRouter(ms, verifier_accuracy=0.9).capabilities().seed_invariant
    assert OracleCascadeRouter(ms).capabilities().seed_invariant


def test_every_cost_knob_is_swept_over_at_least_12_settings():
    ms = [ModelInfo("a", 1, 1), ModelInfo("b", 2, 2)]
    swept = {}
    for name in sorted(ROUTERS):
        r = make_router("single:a" if name == "single" else name, ms)
        caps = r.capabilities()
        if caps.cost_knob is None or name == "oracle-cascade":   # its knob is the ladder length
            continue
        values, default = r.sweep(None, (1.0, 0.1, 0.05))
        swept[name] = (len(values), caps.cost_knob.param)
        assert len(set(values)) >= 12, name
        assert default is not None and (caps.cost_knob.param == "w_c") == name.startswith("evoroute")
    assert {"evoroute", "threshold", "per-role", "knn", "logistic", "lints", "cascade"} <= set(swept)
    assert swept["evoroute"][1] == "w_c" and swept["lints"][1] == "cost_weight"
    assert make_router("evoroute", ms).sweep(None, (1.0, 0.3, 0.05))[1] == 0.3   # the run's w_c


def test_capabilities_are_declared_not_inferred_from_names():
    ms = [ModelInfo("a", 1, 1), ModelInfo("b", 2, 2)]
    caps = {n: make_router(n, ms).capabilities() for n in
            ("per-role", "knn", "logistic", "cascade", "lints", "threshold", "random", "oracle")}
    assert all(caps[n].needs_training and not caps[n].learns_online and caps[n].seed_invariant
               for n in ("per-role", "knn", "logistic", "cascade", "threshold"))
    assert caps["lints"].learns_online and not caps["lints"].seed_invariant
    assert caps["knn"].needs_embedding and not caps["per-role"].needs_embedding
    assert not caps["random"].seed_invariant and caps["oracle"].is_oracle

    class Mine(Router):
        name = "mine"
        learns_online = False
    assert Mine(ms).capabilities().cost_knob is None and not Mine(ms).capabilities().learns_online


def test_the_registry_is_the_union_of_every_router_module_and_no_router_imports_it():
    import ast
    import importlib
    import pkgutil
    from pathlib import Path

    from evoroute.policy import routers

    union: dict[str, object] = {}
    for info in pkgutil.iter_modules(routers.__path__):
        mod = importlib.import_module(f"evoroute.policy.routers.{info.name}")
        assert mod.ROUTERS and not set(mod.ROUTERS) & set(union), info.name
        union.update(mod.ROUTERS)
        tree = ast.parse(Path(mod.__file__).read_text(encoding="utf-8"))
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "evoroute.policy.registry" not in imported, info.name
    assert dict(ROUTERS) == union
    assert {"single", "cheapest", "random", "round_robin", "oracle", "oracle-cascade", "threshold",
            "per-role", "knn", "logistic", "lints", "cascade", "evoroute", "evoroute-paper",
            "evoroute-knn", "evoroute-lin", "evoroute-no-ts", "evoroute-paper-no-pareto"} <= set(union)


def test_family_ablation_and_order_are_declared_by_each_router():
    from evoroute.policy.base import ROUTER_FAMILIES

    ms = [ModelInfo("a", 1, 1), ModelInfo("b", 2, 2)]
    caps = {n: make_router("single:a" if n == "single" else n, ms).capabilities() for n in ROUTERS}
    assert all(c.family in ROUTER_FAMILIES for c in caps.values())
    assert caps["single"].family == "single" and caps["threshold"].family == "baseline"
    assert {n for n, c in caps.items() if c.family == "oracle"} == {"oracle", "oracle-cascade"}
    # a new router is one module plus its test (docs/architecture.md): these checks name the
    # routers that exist today and let a new one join without editing them
    assert {n for n, c in caps.items() if c.family == "learned"} >= {
        "per-role", "knn", "logistic", "lints", "cascade"}
    assert caps["evoroute-paper"].family == "evoroute-paper" and caps["evoroute-knn"].family == "evoroute"
    ablations = {n: c.ablation_of for n, c in caps.items() if c.ablation_of}
    assert ablations == {f"{fam}-{a}": fam for fam in ("evoroute", "evoroute-paper")
                         for a in ("no-cold-start", "no-role-tool", "no-ts", "no-pareto")}
    others = [n for n, c in caps.items() if c.family not in ("evoroute", "evoroute-paper", "single")]
    listed = sorted(others, key=lambda n: caps[n].order)
    known = ["oracle", "oracle-cascade", "threshold", "per-role", "knn", "logistic", "lints",
             "cascade", "random", "round_robin", "cheapest"]
    assert [n for n in listed if n in known] == known
