"""Query-aware EvoRoute (policy/estimators/): it finds a per-query best model that the paper's union
cannot, explains its evidence, and keeps old explanations and run configurations loadable.

The simulated dataset: queries in two clusters of random unit embeddings (dim 16); model A
succeeds with probability 0.9 on cluster 0 and 0.1 on cluster 1, model B the reverse; equal
cost and duration, one role. Every role-level estimate of A and B is ≈ 0.5, so the paper's
union (which holds every record of the role) routes every query to the same model: right on
half of them. The best model per query is known, so "right" is exact.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from evoroute.core.errors import ValidationError
from evoroute.core.types import CandidateStat, Explanation, ModelInfo, StepContext, StepOutcome
from evoroute.policy.estimators.linear import LinearEstimator
from evoroute.policy.estimators.neighbours import TextRecords
from evoroute.policy.estimators.prior_strength import KAPPA_FALLBACK, PriorStrength
from evoroute.policy.evoroute import EvoRouteConfig
from evoroute.policy.registry import make_router
from evoroute.retrieval.index import ExperienceIndex

DIM = 16
MODELS = [ModelInfo("A"), ModelInfo("B")]


def clusters(n: int, rng: np.random.Generator, spread: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    centres = np.linalg.qr(np.random.default_rng(99).standard_normal((DIM, 2)))[0].T   # orthonormal
    z = rng.integers(0, 2, n)
    x = centres[z] + spread * rng.standard_normal((n, DIM)) / np.sqrt(DIM)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), z


def success(model: str, z: int, rng: np.random.Generator) -> float:
    p = 0.9 if (model == "A") == (z == 0) else 0.1
    return float(rng.random() < p)


def clustered_index(n: int, seed: int, outcome) -> ExperienceIndex:
    """Every model's outcome on ``n`` clustered train queries (the full protocol);
    ``outcome(model, cluster, rng)`` gives a record's (cost, perf)."""
    rng = np.random.default_rng(seed)
    emb, z = clusters(n, rng)
    idx = ExperienceIndex(dim=DIM)
    for i in range(n):
        for m in ("A", "B"):
            cost, perf = outcome(m, z[i], rng)
            idx.add(role="qa", model=m, text=f"train {i}", embedding=emb[i], tools=(), cost=cost,
                    duration=1.0, perf=perf)
    return idx


def full_index(n: int, seed: int) -> ExperienceIndex:
    """A is right on cluster 0, B on cluster 1 (P 0.9 / 0.1), equal cost."""
    return clustered_index(n, seed, lambda m, z, rng: (0.01, success(m, z, rng)))


def test_cases(n: int = 200, seed: int = 7) -> list[tuple[StepContext, str]]:
    emb, z = clusters(n, np.random.default_rng(seed))
    return [(StepContext(task_key=f"test{i}", step_index=0, role="qa", instruction=f"test {i}",
                         phase="inference", embedding=emb[i]), "A" if z[i] == 0 else "B")
            for i in range(n)]


test_cases.__test__ = False


def share_right(router, cases) -> float:
    rng = np.random.default_rng(0)
    return float(np.mean([router.decide(s, rng).model == best for s, best in cases]))


@pytest.mark.parametrize("name", ["evoroute", "evoroute-knn", "evoroute-lin"])
def test_query_aware_finds_the_per_query_best_model_full(name):
    r = make_router(name, MODELS, index=full_index(300, seed=1))
    assert share_right(r, test_cases()) >= 0.9


def test_paper_union_cannot_find_it():
    right = share_right(make_router("evoroute-paper", MODELS, index=full_index(300, seed=1)),
                        test_cases())
    assert 0.35 <= right <= 0.65          # one model for every query: the cluster shares


@pytest.mark.parametrize("name, lo, hi", [("evoroute", 0.9, 1.0), ("evoroute-lin", 0.9, 1.0),
                                          ("evoroute-paper", 0.35, 0.65)])
def test_bandit_protocol_learns_it_from_its_own_choices(name, lo, hi):
    """Cold start, then online learning seeing only the chosen model's outcome (the paper's
    protocol), then the test queries in inference."""
    r = make_router(name, MODELS, index=ExperienceIndex(dim=DIM))
    rng = np.random.default_rng(3)
    emb, z = clusters(400, np.random.default_rng(11))
    for i in range(400):
        phase = "cold_start" if i < 20 else "optimize"
        s = StepContext(task_key=f"t{i}", step_index=0, role="qa", instruction=f"online {i}",
                        phase=phase, embedding=emb[i])
        d = r.decide(s, rng)
        r.observe(s, d, StepOutcome(model=d.model, step_success=None, cost_usd=0.01,
                                    duration_s=1.0))
        r.finish_task(s.task_key, success(d.model, z[i], rng))
    right = share_right(r, test_cases())
    assert lo <= right <= hi, right


def test_explanation_shows_the_evidence_per_model():
    r = make_router("evoroute", MODELS, index=full_index(300, seed=1))
    s, best = test_cases(5)[0]
    e = r.decide(s, np.random.default_rng(0)).explanation
    assert e.estimator == "knn" and e.chosen == best
    k = r.config.k
    assert e.channels["neighbours"] == 2 * k          # k texts, each with both models' records
    assert r.config.prior_strength == "auto"
    kappas, _ = r._eb.for_models(["A", "B"], "qa")     # the EB κ the default router used
    for c, kappa in zip(e.candidates, kappas):
        assert c.neighbours == k
        assert 1.0 <= c.n_eff <= k
        assert c.prior_weight == pytest.approx(kappa / (kappa + c.n_eff), abs=1e-3)
        assert 0.4 < c.p_prior < 0.6                    # the role prior: both clusters mixed
        assert len(c.top_neighbours) == 3
        sims = [sim for _, sim in c.top_neighbours]
        assert sims == sorted(sims, reverse=True) and all(-1 <= x <= 1.0001 for x in sims)
        assert c.top_neighbours[0][0].startswith("train ")
    text = e.to_json()
    assert Explanation.from_json(text) == e


def test_old_explanations_still_load():
    old = {"router": "evoroute", "phase": "inference", "mode": "posterior_mean", "chosen": "A",
           "candidates": [{"model": "A", "n": 4, "p_hat": 0.5, "unexplored": False}]}
    e = Explanation.from_json(json.dumps(old))
    assert e.estimator is None and e.candidates[0] == CandidateStat("A", n=4, p_hat=0.5,
                                                                     unexplored=False)
    assert e.candidates[0].n_eff is None and e.candidates[0].top_neighbours is None


def test_stored_config_without_estimator_is_the_paper_union():
    cfg = EvoRouteConfig.from_dict({"weights": [1, 0.1, 0.05], "theta": 0.85})
    assert cfg.estimator == "paper"
    assert EvoRouteConfig.from_dict(EvoRouteConfig().to_dict()).estimator == EvoRouteConfig().estimator


@pytest.mark.parametrize("kwargs, field", [(dict(estimator="magic"), "estimator"), (dict(k=0), "k"),
                                           (dict(kernel_tau=0), "kernel_tau"),
                                           (dict(prior_strength=-1), "prior_strength"),
                                           (dict(cross_role=1.5), "cross_role"),
                                           (dict(ridge=float("nan")), "ridge")])
def test_config_rejects_bad_estimator_values(kwargs, field):
    with pytest.raises(ValidationError) as e:
        EvoRouteConfig(**kwargs)
    assert e.value.field == field


def test_no_record_of_the_role_uses_the_global_prior_and_says_so():
    r = make_router("evoroute", MODELS, index=full_index(100, seed=2))
    s = StepContext(task_key="x", step_index=0, role="unseen-role", instruction="q",
                    phase="inference", embedding=test_cases(1)[0][0].embedding)
    e = r.decide(s, np.random.default_rng(0)).explanation
    assert e.fallback == "global" and "global fallback" in e.reason
    # neighbours of another role are weighted by cross_role (default 0): no local evidence
    assert all(c.n_eff == 0 and c.prior_weight == 1.0 for c in e.candidates)


def test_linear_incremental_updates_equal_one_batch_fit():
    """Woodbury updates of A⁻¹ (small batches) give the same posterior as one inversion."""
    rng = np.random.default_rng(5)
    emb, z = clusters(60, rng)
    a, b = ExperienceIndex(dim=DIM), ExperienceIndex(dim=DIM)
    la, lb = LinearEstimator(a, ridge=2.0), LinearEstimator(b, ridge=2.0)
    for i in range(60):
        kw = dict(role="qa" if i % 3 else "other", model="A", text=f"q{i}", embedding=emb[i],
                  tools=("python",) if i % 4 == 0 else (), cost=0.01 * (1 + z[i]), duration=1.0 + i % 5,
                  perf=float(z[i]))
        a.add(**kw)
        b.add(**kw)
        la.sync()                 # one record at a time
    lb.sync()                     # all at once
    x = la.features(emb[0], a.role_ids["qa"], a.tool_mask(["python"]), create=False)
    ma, va, na = la.predict(["A"], x)
    mb, vb, nb = lb.predict(["A"], x)
    np.testing.assert_allclose(ma, mb, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(va, vb, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(na, nb, rtol=1e-6)
    # and the batch fit is ridge regression: (Λ + XᵀX)⁻¹ Xᵀy
    X = np.stack([lb.features(emb[i], b.role_ids["qa" if i % 3 else "other"],
                              b.tool_mask(["python"] if i % 4 == 0 else []), create=False)
                  for i in range(60)])
    beta = np.linalg.solve(np.diag(lb.prec) + X.T @ X, X.T @ z.astype(float))
    assert mb[0, 0] == pytest.approx(float(x @ beta), abs=1e-8)


def test_records_waiting_for_their_task_teach_the_linear_model_later():
    idx = ExperienceIndex(dim=DIM)
    lin = LinearEstimator(idx, ridge=1.0)
    e = clusters(1, np.random.default_rng(0))[0][0]
    idx.add(role="qa", model="A", text="q", embedding=e, tools=(), cost=0.01, duration=1.0,
            perf=None, task_ref="open")
    lin.sync()
    assert lin.count.sum() == 0 and lin.pending == [0]
    idx.set_task_perf("open", 1.0)
    lin.sync()
    assert lin.count.tolist() == [1.0] and lin.pending == []


# ------------------------------------------------------------ empirical-Bayes κ ("auto")
def coin_index(n: int, seed: int) -> ExperienceIndex:
    """The same clustered embeddings, but P is a fair coin for both models: no per-query signal."""
    return clustered_index(n, seed, lambda m, z, rng: (0.01 * (1 + rng.random()),
                                                       float(rng.random() < 0.5)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auto_kappa_is_large_without_per_query_signal(seed):
    idx = coin_index(300, seed)
    kp, kc = PriorStrength(idx, k=32, kernel_tau=1.0, text_records=TextRecords(idx)) \
        .for_models(["A", "B"], "qa")
    assert np.all(kp >= KAPPA_FALLBACK)        # at least the CV constant's order (64)
    assert np.all(kc >= KAPPA_FALLBACK)        # cost is noise around one mean too


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auto_kappa_is_small_with_a_strong_per_query_signal(seed):
    idx = full_index(300, seed)                # P(A) 0.9 / 0.1 by cluster: τ² ≈ 0.16, σ² ≈ 0.09
    kp, _ = PriorStrength(idx, k=32, kernel_tau=1.0, text_records=TextRecords(idx)) \
        .for_models(["A", "B"], "qa")
    assert np.all(kp <= 4.0)


def test_auto_kappa_falls_back_to_the_constant_on_a_small_base_and_is_cached():
    idx = full_index(8, seed=3)                # 8 texts: fewer neighbourhoods than EB_MIN_ANCHORS
    eb = PriorStrength(idx, k=32, kernel_tau=1.0, text_records=TextRecords(idx))
    kp, kc = eb.for_models(["A", "B", "unknown"], "qa")
    assert kp.tolist() == [KAPPA_FALLBACK] * 3 and kc.tolist() == [KAPPA_FALLBACK] * 3
    big = full_index(300, seed=3)
    eb = PriorStrength(big, k=32, kernel_tau=1.0, text_records=TextRecords(big), refresh_min=50)
    first = eb.for_models(["A"], "qa")[0][0]
    stamp = eb._cache["qa"][0]
    rng = np.random.default_rng(0)
    emb, _ = clusters(20, rng)
    for i in range(20):                        # below the refresh threshold: the cache stays
        big.add(role="qa", model="A", text=f"new {i}", embedding=emb[i], tools=(), cost=0.01,
                duration=1.0, perf=0.5)
    assert eb.for_models(["A"], "qa")[0][0] == first and eb._cache["qa"][0] == stamp
    for i in range(200):                       # above 25 % of 600: recomputed on the grown base
        big.add(role="qa", model="A", text=f"more {i}", embedding=emb[i % 20], tools=(),
                cost=0.01, duration=1.0, perf=0.5)
    eb.for_models(["A"], "qa")
    assert eb._cache["qa"][0] == len(big)


def test_auto_router_adapts_and_explains_its_shrinkage():
    """With prior_strength="auto" the router routes the strong-signal data better than any
    over-shrunk fixed prior, and prior_weight is still κ_m / (κ_m + n_eff) with κ_m its EB κ."""
    idx = full_index(300, seed=1)
    r = make_router("evoroute", MODELS, index=idx, prior_strength="auto")
    cases = test_cases(200)
    right = 0
    for s, best in cases:
        right += r.decide(s, np.random.default_rng(0)).model == best
    assert right / len(cases) >= 0.9
    e = r.decide(cases[0][0], np.random.default_rng(0)).explanation
    kp, _ = r._eb.for_models(["A", "B"], "qa")
    for c, kap in zip(e.candidates, kp):
        assert c.prior_weight == pytest.approx(kap / (kap + c.n_eff), abs=1e-3)
        assert c.prior_weight < 0.2                # a strong local signal: little shrinkage
    assert EvoRouteConfig.from_dict(EvoRouteConfig(prior_strength="auto").to_dict()) \
        .prior_strength == "auto"
    with pytest.raises(ValidationError) as err:
        EvoRouteConfig(prior_strength="automatic")
    assert err.value.field == "prior_strength"


def test_role_prior_is_cached_per_revision_and_never_stale():
    """The role prior is computed once per revision of the base: a write (a new record, a task's
    success arriving) must change what the next decision sees."""
    from evoroute.policy.estimators.prior import role_prior

    idx = ExperienceIndex(dim=DIM)
    add = dict(texts=["t1", "t2"], embeddings=None, tools=[(), ()], costs=[1.0, 1.0],
               durations=[1.0, 1.0])
    idx.add_batch(roles=["r", "r"], models=["A", "B"], perf=[1.0, 0.0], **add)
    first = role_prior(idx, ["A", "B"], "r", 4.0)
    assert role_prior(idx, ["A", "B"], "r", 4.0) is first          # same revision: shared
    idx.add_batch(roles=["r"], models=["A"], texts=["t3"], embeddings=None, tools=[()],
                  costs=[3.0], durations=[1.0], perf=[None], task_refs=["task"])
    second = role_prior(idx, ["A", "B"], "r", 4.0)
    assert second is not first and second.n_records[0] == 2 and second.n[0] == 1
    assert second.c[0] > first.c[0]
    idx.set_task_perf("task", 0.0)                                   # the task's success arrives
    third = role_prior(idx, ["A", "B"], "r", 4.0)
    assert third.n[0] == 2 and third.p[0] < second.p[0]


@pytest.mark.parametrize("r_true", [1.0, 10.0, 100.0])
def test_evidence_ridge_recovers_the_prior_precision_that_generated_the_data(r_true):
    from evoroute.policy.estimators.linear import evidence_ridge

    rng = np.random.default_rng(int(r_true))
    n, d = 3000, 30
    X = rng.standard_normal((n, d))
    y = X @ (rng.standard_normal(d) / np.sqrt(r_true)) + rng.standard_normal(n)
    r, logev = evidence_ridge(X.T @ X, X.T @ y, float(y @ y), n, np.ones(d))
    assert r_true / 2 <= r <= r_true * 2
    assert logev.shape == (31,) and np.all(np.isfinite(logev))


def test_auto_ridge_adapts_per_model_to_its_signal():
    """Model A's success follows the cluster (a strong per-query signal), model B's is a coin:
    empirical Bayes gives A a small ridge (trust the embedding) and B the largest (its role mean)."""
    from evoroute.policy.estimators.linear import RIDGE_GRID

    rng = np.random.default_rng(3)
    x, z = clusters(600, rng)
    idx = ExperienceIndex(dim=DIM)
    perf_a = [float(rng.random() < (0.95 if zi == 0 else 0.05)) for zi in z]
    perf_b = [float(rng.random() < 0.5) for _ in z]
    n = len(z)
    idx.add_batch(roles=["r"] * 2 * n, models=["A"] * n + ["B"] * n,
                  texts=[f"q{i}" for i in range(n)] * 2, embeddings=np.vstack([x, x]),
                  tools=[()] * 2 * n, costs=[1.0] * 2 * n, durations=[1.0] * 2 * n,
                  perf=perf_a + perf_b)
    lin = LinearEstimator(idx, ridge="auto")
    assert lin.ridge_of("A") is None
    lin.sync()
    ra, rb = lin.ridge_of("A"), lin.ridge_of("B")
    assert ra < 10 and rb >= 100 and rb > 10 * ra and rb <= RIDGE_GRID[-1]
    router = make_router("evoroute-lin", MODELS, index=idx)
    assert router.config.ridge == "auto"
