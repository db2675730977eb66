"""Hypothesis properties of the routing maths and the index (issue 3, item 7).

Every property recomputes what it checks independently (plain numpy / Python over the generated
records), so a wrong aggregate, filter or sampler cannot agree with itself.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from evoroute.core.posterior import nig_sample
from evoroute.core.types import ModelInfo, StepContext, Weights
from evoroute.core.utility import reference_scale, utility
from evoroute.policy.evoroute import EvoRouteConfig, EvoRouteRouter
from evoroute.retrieval.index import NP, NSTAT, SC, SC2, SD, SD2, SP, SP2, ExperienceIndex, N

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DIM = 4
QUERY_EMB = np.array([0, 0, 0, 1], np.float32)     # orthogonal to nothing stored: role channel only

perf_values = st.one_of(st.none(), st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]))
record = st.tuples(perf_values,
                   st.floats(0.0, 0.05, allow_nan=False),     # cost USD
                   st.floats(0.1, 30.0, allow_nan=False))      # duration s
model_records = st.lists(record, max_size=6)
any_bases = st.lists(model_records, min_size=2, max_size=5)
# every model explored (>= 2 records with a known P): the Pareto / Thompson path always runs
explored_record = st.tuples(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),
                            st.floats(0.0, 0.05, allow_nan=False), st.floats(0.1, 30.0, allow_nan=False))
explored_bases = st.lists(st.lists(explored_record, min_size=2, max_size=6), min_size=2, max_size=5)
bases = st.one_of(any_bases, explored_bases)
# all-zero weights are rejected by Weights (they would rank every model the same)
weights = st.tuples(st.floats(0.0, 2.0), st.floats(0.0, 2.0), st.floats(0.0, 1.0)).filter(
    lambda w: any(w)).map(lambda w: Weights(*w))
phases = st.sampled_from(["cold_start", "optimize", "inference"])
seeds = st.integers(0, 2**32 - 1)


def names_for(base) -> list[str]:
    return [f"m{i}" for i in range(len(base))]


def make_router(base, **cfg) -> EvoRouteRouter:
    idx = ExperienceIndex(dim=DIM)
    for name, recs in zip(names_for(base), base):
        for j, (p, c, d) in enumerate(recs):
            idx.add(role="r", model=name, text=f"{name}-{j}", embedding=None, tools=(), cost=c,
                    duration=d, perf=p)
    # the paper-literal union (steps 3-4) that these properties recompute by hand
    return EvoRouteRouter([ModelInfo(n) for n in names_for(base)],
                          EvoRouteConfig(**{"estimator": "paper", **cfg}), index=idx)


def step(phase: str = "optimize") -> StepContext:
    return StepContext(task_key="t", step_index=0, role="r", instruction="q", phase=phase,
                       embedding=QUERY_EMB)


def means(base) -> dict[str, tuple[int, float, float, float]]:
    """n with known P, P̂, Ĉ, D̂ per model, straight from the generated records."""
    out = {}
    for name, recs in zip(names_for(base), base):
        ps = [p for p, _, _ in recs if p is not None]
        out[name] = (len(ps), float(np.mean(ps)) if ps else np.nan,
                     float(np.mean([c for _, c, _ in recs])) if recs else np.nan,
                     float(np.mean([d for _, _, d in recs])) if recs else np.nan)
    return out


# ------------------------------------------------------------------ policy properties
@SETTINGS
@given(base=bases, w=weights, phase=st.sampled_from(["optimize", "inference"]), seed=seeds,
       thompson=st.booleans())
# a model cheaper by 7e-17 is not dominated by a faster one, however small the difference
@example(base=[[(None, 0.0, 2.0), (0.0, 0.0, 1.0), (0.0, 0.0, 1.0)],
               [(None, 2.220446049250313e-16, 1.0), (0.0, 0.0, 1.0), (0.0, 0.0, 1.0)]],
         w=Weights(0.0, 1.0, 0.0), phase="optimize", seed=0, thompson=False)
def test_chosen_model_is_never_dominated_among_explored(base, w, phase, seed, thompson):
    r = make_router(base, weights=w, thompson=thompson, propensity_draws=8)
    m = means(base)
    explored = {k: v for k, v in m.items() if v[0] >= 2}
    rng = np.random.default_rng(seed)
    for _ in range(15):          # several Thompson draws per base: a dominated model's wide
        d = r.decide(step(phase), rng)   # posterior would win some of them without the filter
        if d.model not in explored:
            continue    # exploring an unexplored model, or no statistics at all: nothing to compare
        _, p, c, dd = explored[d.model]
        eps = 1e-12
        # dominance is claimed only where eps cannot blur it: each metric equal or better by
        # more than eps, one better by more than eps. The old test's slack ("no worse" = within
        # eps) called a model dominated by one 7e-17 dearer, which the router's exact filter
        # rightly keeps (the pinned @example); differences <= eps are left to that filter
        for other, (_, p2, c2, d2) in explored.items():
            no_worse = all(a == b or a > b + eps for a, b in ((p2, p), (-c2, -c), (-d2, -dd)))
            dominated = no_worse and (p2 > p + eps or c2 < c - eps or d2 < dd - eps)
            assert not dominated, (d.model, other, explored)


@SETTINGS
@given(base=bases, w=weights, phase=phases, seed=seeds, thompson=st.booleans(),
       pareto=st.booleans(), n_min=st.integers(1, 3))
def test_propensities_sum_to_one(base, w, phase, seed, thompson, pareto, n_min):
    r = make_router(base, weights=w, thompson=thompson, pareto=pareto, n_min=n_min,
                    propensity_draws=64)
    d = r.decide(step(phase), np.random.default_rng(seed))
    props = {c.model: c.propensity for c in d.explanation.candidates}
    assert set(props) == set(names_for(base))
    assert sum(props.values()) == pytest.approx(1.0, abs=1e-9)
    assert all(0.0 <= v <= 1.0 for v in props.values())
    assert d.propensity == pytest.approx(props[d.model]) and d.propensity > 0


@SETTINGS
@given(base=bases, w=weights, phase=phases, seed=seeds)
def test_same_seed_same_decision(base, w, phase, seed):
    a, b = make_router(base, weights=w), make_router(base, weights=w)
    ra, rb = np.random.default_rng(seed), np.random.default_rng(seed)
    for _ in range(3):
        da, db = a.decide(step(phase), ra), b.decide(step(phase), rb)
        assert da.model == db.model and da.propensity == db.propensity
        assert da.explanation.to_json() == db.explanation.to_json()


@SETTINGS
@given(base=explored_bases, w=weights, extra=st.floats(0.01, 5.0))
def test_raising_cost_weight_never_picks_a_dearer_model_posterior_mean(base, w, extra):
    lo = make_router(base, weights=w)
    hi = make_router(base, weights=Weights(w.w_p, w.w_c + extra, w.w_d))
    d_lo = lo.decide(step("inference"), np.random.default_rng(0))
    d_hi = hi.decide(step("inference"), np.random.default_rng(0))
    if d_lo.explanation.mode != "posterior_mean" or d_hi.explanation.mode != "posterior_mean":
        return
    c_lo = next(c for c in d_lo.explanation.candidates if c.model == d_lo.model).c_hat
    cands_hi = {c.model: c for c in d_hi.explanation.candidates}
    c_hi = cands_hi[d_hi.model].c_hat
    near_tie = abs(cands_hi[d_hi.model].utility - cands_hi[d_lo.model].utility) < 1e-9
    assert c_hi <= c_lo + 1e-15 or near_tie, (c_lo, c_hi)


@SETTINGS
@given(base=explored_bases, w=weights, extra=st.floats(0.01, 5.0), seed=seeds)
# found by hypothesis: a subnormal C_ref (5e-324) overflowed C̃ and a zero weight made 0·inf nan
@example(base=[[(0.0, 0.0, 1.0), (0.0, 0.0, 1.0)], [(0.0, 5e-324, 1.0), (0.0, 5e-324, 1.0)]],
         w=Weights(0.0, 0.0, 1.0), extra=1.0, seed=0)
def test_raising_cost_weight_never_picks_a_dearer_draw_thompson(base, w, extra, seed):
    """With the same seed both routers draw the same θ; per draw the chosen θ_C cannot rise."""
    lo = make_router(base, weights=w)
    hi = make_router(base, weights=Weights(w.w_p, w.w_c + extra, w.w_d))
    d_lo = lo.decide(step(), np.random.default_rng(seed))
    d_hi = hi.decide(step(), np.random.default_rng(seed))
    if d_lo.explanation.mode != "thompson":
        return
    assert d_hi.explanation.mode == "thompson"
    th_lo = {c.model: c for c in d_lo.explanation.candidates}
    th_hi = {c.model: c for c in d_hi.explanation.candidates}
    assert all(th_lo[k].theta_c == th_hi[k].theta_c for k in th_lo)     # same draws
    near_tie = abs(th_hi[d_hi.model].utility - th_hi[d_lo.model].utility) < 1e-9
    assert th_hi[d_hi.model].theta_c <= th_lo[d_lo.model].theta_c + 1e-15 or near_tie


@settings(max_examples=15, deadline=None)
@given(base=explored_bases, w=weights)
def test_expected_cost_falls_with_cost_weight_under_thompson(base, w):
    """Average over 100 seeded decisions: E[Ĉ of the chosen model] does not rise with w_c."""
    def expected_cost(wc):
        r = make_router(base, weights=Weights(w.w_p, wc, w.w_d), propensity_draws=1)
        m = means(base)
        costs = []
        for s in range(100):
            d = r.decide(step(), np.random.default_rng(s))
            if d.explanation.mode != "thompson":
                return None
            costs.append(m[d.model][2])
        return float(np.mean(costs))
    lo, hi = expected_cost(w.w_c), expected_cost(w.w_c + 3.0)
    if lo is None:
        return
    # per-draw monotone in θ_C; in Ĉ it holds up to sampling noise of 100 coupled draws
    spread = max(v[2] for v in means(base).values() if not np.isnan(v[2]))
    assert hi <= lo + 0.1 * spread + 1e-15


@SETTINGS
@given(n=st.integers(2, 50), mean=st.floats(-10, 10), var=st.floats(0, 4), seed=seeds)
def test_posterior_draws_concentrate_on_sample_mean(n, mean, var, seed):
    rng = np.random.default_rng(seed)
    floor = np.array([1e-4])
    spread = {}
    for k in (1, 100, 10_000):
        draws = nig_sample(np.array([mean]), np.array([var]), np.array([n * k]), floor, rng, size=4000)
        err = np.abs(draws[:, 0] - mean)
        spread[k] = float(np.quantile(err, 0.9))
    s2 = max(var, 1e-4)
    # θ − x̄ ~ sqrt(β/(α λ)) · t_{2α}; at λ = 100n, 10000n the 90 % quantile is ≈ 1.64·s/√λ
    for k in (100, 10_000):
        assert spread[k] <= 2.5 * np.sqrt(s2 / (n * k))
    assert spread[10_000] < spread[100] < spread[1]


# ------------------------------------------------------------------ index properties
rec_st = st.tuples(
    st.integers(0, 3),                                   # role
    st.integers(0, 4),                                   # model
    st.integers(0, 19),                                  # text id (duplicates on purpose)
    st.frozensets(st.sampled_from(["python", "search", "calculator", "file"]), max_size=2),
    st.floats(0, 1, allow_nan=False),                    # cost
    st.floats(0, 10, allow_nan=False),                   # duration
    st.one_of(st.none(), st.floats(0, 1, allow_nan=False)),   # perf
    st.booleans(),                                       # has an embedding
)


IDX_DIM = 3      # low dimension, 20 texts: cosines are dense in [-1, 1], thresholds matter


def _texts_embeddings(seed: int, n_texts: int = 20) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n_texts, IDX_DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _build(recs, text_emb):
    idx = ExperienceIndex(dim=IDX_DIM)
    idx.add_batch(roles=[f"r{r[0]}" for r in recs], models=[f"m{r[1]}" for r in recs],
                  texts=[f"t{r[2]}" for r in recs],
                  embeddings=[text_emb[r[2]] if r[7] else None for r in recs],
                  tools=[r[3] for r in recs], costs=[r[4] for r in recs],
                  durations=[r[5] for r in recs], perf=[r[6] for r in recs],
                  task_refs=[i % 3 for i in range(len(recs))])
    return idx


def _text_vectors(recs):
    """Texts with an embedding, in insertion order, and the record index that registered each.

    A text's first embedding is stored once (dedup); a record has a vector if its text was
    registered by it or by an earlier record (not retroactively by a later one).
    """
    registered_at: dict[int, int] = {}
    order: list[int] = []
    for i, r in enumerate(recs):
        if r[7] and r[2] not in registered_at:
            registered_at[r[2]] = i
            order.append(r[2])
    return registered_at, order


def _brute_stats(recs, rows, models, perf):
    out = np.zeros((len(models), NSTAT))
    for i in rows:
        r = recs[i]
        m = models.index(f"m{r[1]}")
        c, d, p = r[4], r[5], perf[i]
        out[m, [N, SC, SC2, SD, SD2]] += [1, c, c * c, d, d * d]
        if p is not None:
            out[m, [NP, SP, SP2]] += [1, p, p * p]
    return out


@settings(max_examples=120, deadline=None)
@given(recs=st.lists(rec_st, min_size=1, max_size=40), emb_seed=st.integers(0, 10_000),
       q_role=st.integers(0, 4),
       q_tools=st.frozensets(st.sampled_from(["python", "search", "calculator", "file"]), max_size=2),
       theta=st.floats(-0.9, 0.99), finished=st.sets(st.integers(0, 2)),
       cap=st.one_of(st.none(), st.integers(1, 8)), scan=st.one_of(st.none(), st.integers(1, 10)),
       channels=st.sampled_from([("role", "semantic", "tool"), ("semantic",), ("role",), ("tool",),
                                 ("role", "tool")]))
def test_union_statistics_equal_brute_force(recs, emb_seed, q_role, q_tools, theta, finished,
                                            cap, scan, channels):
    text_emb = _texts_embeddings(emb_seed)
    q = _texts_embeddings(emb_seed + 1, 1)[0]
    idx = _build(recs, text_emb)
    perf = [r[6] for r in recs]
    for t in finished:                                 # finish some tasks: P fills unknown records
        idx.set_task_perf(t, 0.6)
        perf = [0.6 if (i % 3 == t and p is None) else p for i, p in enumerate(perf)]

    registered_at, order = _text_vectors(recs)
    sims = {t: float(text_emb[t] @ q) for t in registered_at}
    assume(all(abs(s - theta) > 1e-4 for s in sims.values()))     # no float32 threshold edge
    scanned = set(order if scan is None else order[max(0, len(order) - scan):])
    n = len(recs)
    role = [i for i in range(n) if recs[i][0] == q_role]
    tool = [i for i in range(n) if recs[i][3] & q_tools]
    sem = [i for i in range(n) if recs[i][2] in scanned and registered_at[recs[i][2]] <= i
           and sims[recs[i][2]] >= theta]
    if cap is not None:
        role, tool = role[-cap:], tool[-cap:]
        if len(sem) > cap:
            s_sorted = sorted(sims[recs[i][2]] for i in sem)
            cut = s_sorted[-cap]
            assume(sum(sims[recs[i][2]] == cut for i in sem) == 1 or
                   sum(sims[recs[i][2]] >= cut for i in sem) == cap)   # no tie at the cut
            sem = [i for i in sem if sims[recs[i][2]] >= cut]
    chosen = set()
    if "role" in channels:
        chosen |= set(role)
    if "tool" in channels and q_tools:
        chosen |= set(tool)
    if "semantic" in channels:
        chosen |= set(sem)

    ret = idx.retrieve(f"r{q_role}", q, q_tools, theta=theta, channels=channels,
                       max_per_channel=cap, sem_scan_limit=scan)
    models = ret.models
    np.testing.assert_allclose(ret.stats, _brute_stats(recs, sorted(chosen), models, perf),
                               rtol=1e-9, atol=1e-9)
    want_counts = {"role": role if "role" in channels else [],
                   "tool": tool if ("tool" in channels and q_tools) else [],
                   "semantic": sem if "semantic" in channels else []}
    for ch, rows in want_counts.items():
        expected = np.bincount([models.index(f"m{recs[i][1]}") for i in rows],
                               minlength=len(models)) if rows else np.zeros(len(models))
        np.testing.assert_array_equal(np.asarray(ret.channel_counts[ch]), expected)
    # fallbacks: per-role and global aggregates
    np.testing.assert_allclose(idx.group_stats(None), _brute_stats(recs, range(n), models, perf),
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(idx.group_stats(f"r{q_role}"),
                               _brute_stats(recs, [i for i in range(n) if recs[i][0] == q_role],
                                            models, perf), rtol=1e-9, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(recs=st.lists(rec_st, min_size=1, max_size=30), split=st.integers(0, 30),
       emb_seed=st.integers(0, 1000))
def test_incremental_batches_equal_one_batch(recs, split, emb_seed):
    text_emb = _texts_embeddings(emb_seed)
    whole = _build(recs, text_emb)
    parts = ExperienceIndex(dim=IDX_DIM)
    for chunk in (recs[:split], recs[split:]):
        if chunk:
            parts.add_batch(roles=[f"r{r[0]}" for r in chunk], models=[f"m{r[1]}" for r in chunk],
                            texts=[f"t{r[2]}" for r in chunk],
                            embeddings=[text_emb[r[2]] if r[7] else None for r in chunk],
                            tools=[r[3] for r in chunk], costs=[r[4] for r in chunk],
                            durations=[r[5] for r in chunk], perf=[r[6] for r in chunk])
    q = _texts_embeddings(emb_seed + 1, 1)[0]
    a = whole.retrieve("r0", q, {"python"}, theta=0.2)
    b = parts.retrieve("r0", q, {"python"}, theta=0.2)
    order = {m: i for i, m in enumerate(b.models)}
    np.testing.assert_allclose(a.stats, b.stats[[order[m] for m in a.models]], rtol=1e-9, atol=1e-9)


@SETTINGS
@given(base=bases, seed=seeds)
def test_decision_utilities_match_recomputation(base, seed):
    """The explanation's utilities are U recomputed from its own θ with the step's C_ref, D_ref,
    the largest estimated means among all explored candidates (Pareto-pruned ones included)."""
    r = make_router(base)
    d = r.decide(step("optimize"), np.random.default_rng(seed))
    if d.explanation.mode not in ("thompson", "posterior_mean"):
        return
    kept = [c for c in d.explanation.candidates if c.utility is not None]
    explored = [c for c in d.explanation.candidates if not c.unexplored]
    c_ref = reference_scale(np.array([c.c_hat for c in explored]))
    d_ref = reference_scale(np.array([c.d_hat for c in explored]))
    assert (d.explanation.c_ref, d.explanation.d_ref) == (c_ref, d_ref)
    u = utility(np.array([c.theta_p for c in kept]), np.array([c.theta_c for c in kept]),
                np.array([c.theta_d for c in kept]), r.config.weights, c_ref, d_ref)
    np.testing.assert_allclose([c.utility for c in kept], u, rtol=1e-12, atol=1e-12)
    assert d.model == kept[int(np.argmax(u))].model
