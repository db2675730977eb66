"""Hypothesis properties of the query-aware estimator (evoroute/policy/estimators/).

Documented weights: w_i = exp((s_i − s_max)/τ) · (1 or cross_role) — each in [0, 1], the most
similar neighbour of the step's role weighs exactly 1, and they are NOT normalised: Σw is the
local evidence's mass and n_eff = (Σw)²/Σw² lies in [1, number of records] for any positive
weights. Each property recomputes its expectation with plain numpy.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evoroute.core.posterior import nig_sample_effective
from evoroute.core.types import ModelInfo, StepContext
from evoroute.policy.estimators.knn import knn_estimates
from evoroute.policy.estimators.neighbours import TextRecords, effective_n, kernel_weights
from evoroute.policy.estimators.prior import combine, role_prior
from evoroute.policy.estimators.prior_strength import KAPPA_MAX, KAPPA_MIN, PriorStrength, moment_kappa
from evoroute.policy.registry import make_router
from evoroute.retrieval.index import ExperienceIndex

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DIM = 8

sims_st = st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=1, max_size=40)
taus = st.sampled_from([0.1, 0.5, 1.0, 2.0, 1e9])
perf = st.sampled_from([0.0, 0.25, 0.5, 1.0])
rec = st.tuples(st.integers(0, 2), st.integers(0, 1), perf, st.floats(0.0, 0.05), st.integers(0, 9))
bases = st.lists(rec, min_size=1, max_size=40)    # (model, role, P, cost, text cluster)


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def build(base, seed: int) -> ExperienceIndex:
    vecs = unit(np.random.default_rng(seed), 10)
    idx = ExperienceIndex(dim=DIM)
    for _i, (m, r, p, c, t) in enumerate(base):
        idx.add(role=f"r{r}", model=f"m{m}", text=f"text {t}", embedding=vecs[t], tools=(),
                cost=c, duration=1.0 + m, perf=p)
    return idx


NAMES = ["m0", "m1", "m2"]


@SETTINGS
@given(sims=sims_st, tau=taus)
def test_kernel_weights_are_in_0_1_with_the_nearest_at_1(sims, tau):
    s = np.asarray(sims)
    w = kernel_weights(s, tau)
    assert w.shape == s.shape and np.all(w >= 0) and np.all(w <= 1 + 1e-12)
    assert np.isclose(w[np.argmax(s)], 1.0)
    order = np.argsort(s)
    assert np.all(np.diff(w[order]) >= -1e-12)          # never less weight for a closer text


@SETTINGS
@given(w=st.lists(st.floats(1e-6, 1.0), min_size=1, max_size=30),
       groups=st.lists(st.integers(0, 3), min_size=30, max_size=30))
def test_effective_n_lies_between_one_and_the_count(w, groups):
    w = np.asarray(w)
    g = np.asarray(groups[: w.size])
    sw, neff = effective_n(w, g, 4)
    for j in range(4):
        mine = w[g == j]
        assert np.isclose(sw[j], mine.sum())
        if mine.size:
            assert 1 - 1e-9 <= neff[j] <= mine.size + 1e-9
            assert np.isclose(neff[j], mine.sum() ** 2 / (mine ** 2).sum())
        else:
            assert neff[j] == 0
    same = np.full(7, 0.3)
    assert np.isclose(effective_n(same, np.zeros(7, int), 1)[1][0], 7.0)


@SETTINGS
@given(base=bases, seed=st.integers(0, 10_000), role=st.integers(0, 1))
def test_no_neighbours_gives_the_role_estimate(base, seed, role):
    idx = build(base, seed)
    kw = dict(k=8, kernel_tau=1.0, prior_strength=16.0, cross_role=0.0,
              text_records=TextRecords(idx))
    est = knn_estimates(idx, NAMES, f"r{role}", None, **kw)        # no embedding: no neighbours
    prior = role_prior(idx, NAMES, f"r{role}", 16.0)
    np.testing.assert_allclose(est.p_mean, prior.p, rtol=1e-12, atol=1e-15)   # NaNs must match
    np.testing.assert_allclose(est.c_mean, prior.c, rtol=1e-12, atol=1e-15)
    assert est.neighbours == 0 and all(e["n_eff"] == 0 for e in est.evidence)
    # the role estimate is the role mean shrunk toward the global mean by κ
    recs = [(m, p) for m, r, p, _, _ in base if r == role]
    for j, name in enumerate(NAMES):
        mine = [p for m, p in recs if f"m{m}" == name]
        glob = [p for m, _, p, _, _ in base if f"m{m}" == name]
        if mine:
            g = np.mean(glob)
            assert np.isclose(est.p_mean[j], (sum(mine) + 16.0 * g) / (len(mine) + 16.0))


@SETTINGS
@given(n=st.integers(1, 400), x=perf, kappa=st.sampled_from([1.0, 4.0, 64.0]),
       other=st.sampled_from([0.0, 1.0]))
def test_many_identical_neighbours_converge_to_their_mean(n, x, kappa, other):
    """n records of one text with P = x, on top of a role prior at ``other``: the estimate is
    (κ·prior + n·x)/(κ + n) with κ = min(κ, role records), so |μ − x| shrinks like κ/(κ + n)."""
    idx = ExperienceIndex(dim=DIM)
    e = unit(np.random.default_rng(0), 2)
    for _i in range(50):       # the prior: a far text with P = other
        idx.add(role="r", model="m0", text="far", embedding=e[1] * -1, tools=(), cost=0.01,
                duration=1.0, perf=other)
    for _i in range(n):
        idx.add(role="r", model="m0", text="near", embedding=e[0], tools=(), cost=0.01,
                duration=1.0, perf=x)
    est = knn_estimates(idx, ["m0"], "r", e[0], k=1, kernel_tau=1.0, prior_strength=kappa,
                        cross_role=0.0, text_records=TextRecords(idx))
    prior = role_prior(idx, ["m0"], "r", kappa).p[0]
    kap = min(kappa, 50 + n)              # never worth more than the role's 50 + n records
    assert np.isclose(est.evidence[0]["n_eff"], n, atol=1e-3)
    assert np.isclose(est.p_mean[0], (kap * prior + n * x) / (kap + n))
    assert abs(est.p_mean[0] - x) <= kap / (kap + n) * abs(prior - x) + 1e-9
    assert np.isclose(est.lam_p[0], kap + n)


@SETTINGS
@given(m0=st.floats(0, 1), v0=st.floats(0, 0.25), kappa=st.floats(0.5, 100),
       xl=st.floats(0, 1), vl=st.floats(0, 0.25))
def test_combine_interpolates_between_prior_and_local(m0, v0, kappa, xl, vl):
    mean0, var0, lam0 = combine(np.array([m0]), np.array([v0]), kappa, np.array([0.0]),
                                np.array([xl]), np.array([vl]))
    assert np.isclose(mean0[0], m0) and np.isclose(var0[0], v0) and np.isclose(lam0[0], kappa)
    for n in (1.0, 10.0, 1e6):
        mean, var, lam = combine(np.array([m0]), np.array([v0]), kappa, np.array([n]),
                                 np.array([xl]), np.array([vl]))
        assert min(m0, xl) - 1e-12 <= mean[0] <= max(m0, xl) + 1e-12
        assert var[0] >= 0 and np.isclose(lam[0], kappa + n)
    assert abs(mean[0] - xl) < 1e-3          # n = 1e6: the local evidence wins


@settings(max_examples=25, deadline=None)
@given(mean=st.floats(0.1, 0.9), var=st.floats(0.01, 0.25), seed=st.integers(0, 2**31))
def test_less_local_evidence_gives_wider_draws(mean, var, seed):
    rng = np.random.default_rng(seed)
    floor = np.array([1e-4])
    sds = [float(np.std(nig_sample_effective(np.array([mean]), np.array([var]), np.array([lam]),
                                             floor, rng, 4000))) for lam in (4.0, 40.0, 400.0)]
    assert sds[0] > sds[1] > sds[2]


@settings(max_examples=20, deadline=None)
@given(base=bases, seed=st.integers(0, 10_000), dseed=st.integers(0, 2**31),
       name=st.sampled_from(["evoroute", "evoroute-lin"]),
       phase=st.sampled_from(["optimize", "inference"]))
def test_same_seed_same_decisions(base, seed, dseed, name, phase):
    models = [ModelInfo(n) for n in NAMES]
    q = unit(np.random.default_rng(seed + 1), 1)[0]
    s = StepContext(task_key="t", step_index=0, role="r0", instruction="q", phase=phase,
                    embedding=q)
    a = make_router(name, models, index=build(base, seed))
    b = make_router(name, models, index=build(base, seed))
    ea = a.decide(s, np.random.default_rng(dseed)).explanation.to_json()
    eb = b.decide(s, np.random.default_rng(dseed)).explanation.to_json()
    assert ea == eb
    d = a.decide(s, np.random.default_rng(dseed))
    props = [c.propensity for c in d.explanation.candidates]
    assert abs(sum(props) - 1.0) < 1e-9 and all(p >= 0 for p in props)


@SETTINGS
@given(means=st.lists(st.floats(0, 1), min_size=0, max_size=50),
       lo=st.sampled_from([0.5, 1.0, 4.0]), hi=st.sampled_from([16.0, 256.0, 1000.0]),
       seed=st.integers(0, 10_000))
def test_moment_kappa_stays_in_its_clip_bounds_and_is_sigma2_over_tau2(means, lo, hi, seed):
    rng = np.random.default_rng(seed)
    x = np.asarray(means)
    v = rng.uniform(0, 0.25, x.size)
    n = rng.uniform(2, 40, x.size)
    kap = moment_kappa(x, v, n, lo, hi)
    assert lo <= kap <= hi
    if x.size >= 2:
        tau2 = np.var(x, ddof=1) - np.mean(v / n)
        if tau2 > 0:
            assert np.isclose(kap, np.clip(np.mean(v) / tau2, lo, hi))
        else:
            assert kap == hi                  # no between variance: the strongest prior


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.lists(rec, min_size=1, max_size=120), seed=st.integers(0, 10_000),
       k=st.integers(1, 12), role=st.integers(0, 1))
def test_auto_kappa_stays_in_its_bounds_on_any_base(base, seed, k, role):
    """On any base, EB κ per model lies in [KAPPA_MIN, KAPPA_MAX] (or is the fallback constant),
    and the estimate uses it: prior_weight = min(κ, n_role)/(min(κ, n_role) + n_eff)."""
    idx = build(base, seed)
    tr = TextRecords(idx)
    eb = PriorStrength(idx, k=k, kernel_tau=1.0, text_records=tr, anchors=12)
    kp, kc = eb.for_models(NAMES, f"r{role}")
    for arr in (kp, kc):
        assert np.all((arr >= KAPPA_MIN) & (arr <= KAPPA_MAX))
    e = unit(np.random.default_rng(seed + 1), 1)[0]
    est = knn_estimates(idx, NAMES, f"r{role}", e, k=k, kernel_tau=1.0, prior_strength="auto",
                        cross_role=0.0, text_records=tr, eb=eb)
    for j, ev in enumerate(est.evidence):
        if ev["prior_weight"] is not None:
            kap = min(kp[j], max(int(est.n[j]), 1))
            assert np.isclose(ev["prior_weight"], kap / (kap + ev["n_eff"]), atol=2e-3)
