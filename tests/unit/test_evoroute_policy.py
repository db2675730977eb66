"""EvoRouteRouter decisions: phases, unexplored models, fallbacks, Pareto filter, explanation.

These tests pin the paper-literal pipeline (``estimator="paper"``, the router
``evoroute-paper``); the query-aware default has its own in tests/unit/test_query_aware.py.

The base used by most tests (role "r", no tools, no embeddings; 4 records per model):

    model   P records      C records (USD)          D records (s)   P̂     Ĉ       D̂
    cheap   1, 0, 1, 0     .001, .003, .001, .003    1, 3, 1, 3      0.50  0.002   2
    mid     1, 1, 1, 0     .008, .012, .008, .012    3, 5, 3, 5      0.75  0.010   4
    strong  1, 1, 1, 1     .03,  .05,  .03,  .05     7, 9, 7, 9      1.00  0.040   8

No model dominates another, so all three are on the front; C_ref = 0.04, D_ref = 8.
Posterior-mean utilities U = w_p·P̂ − w_c·Ĉ/0.04 − w_d·D̂/8:
    w = (1, 0.1, 0.05): cheap 0.5 − .005 − .0125 = 0.4825; mid 0.75 − .025 − .025 = 0.70;
                        strong 1 − 0.1 − 0.05 = 0.85                       -> strong
    w = (1, 1, 0):      cheap 0.45; mid 0.50; strong 0.00                  -> mid
    w = (1, 2, 0):      cheap 0.40; mid 0.25; strong −1.00                 -> cheap
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from evoroute.core.types import Explanation, ModelInfo, StepContext, StepOutcome, Weights
from evoroute.policy.evoroute import EvoRouteConfig, EvoRouteRouter
from evoroute.policy.registry import make_router
from evoroute.retrieval.index import ExperienceIndex

DIM = 4
E1 = np.array([1, 0, 0, 0], np.float32)
E2 = np.array([0, 1, 0, 0], np.float32)

BASE = {
    "cheap": ([1, 0, 1, 0], [.001, .003, .001, .003], [1, 3, 1, 3]),
    "mid": ([1, 1, 1, 0], [.008, .012, .008, .012], [3, 5, 3, 5]),
    "strong": ([1, 1, 1, 1], [.03, .05, .03, .05], [7, 9, 7, 9]),
}


def fill(idx: ExperienceIndex, base: dict, role: str = "r", emb: np.ndarray | None = None) -> None:
    for model, (ps, cs, ds) in base.items():
        for i, (p, c, d) in enumerate(zip(ps, cs, ds)):
            idx.add(role=role, model=model, text=f"{model}-{role}-{i}", embedding=emb, tools=(),
                    cost=c, duration=d, perf=p)


def router(models, base=BASE, **cfg) -> EvoRouteRouter:
    idx = ExperienceIndex(dim=DIM)
    if base:
        fill(idx, base)
    return EvoRouteRouter(models, EvoRouteConfig(estimator="paper", **cfg), index=idx)


def step(phase="optimize", role="r", emb=E2, **kw) -> StepContext:
    return StepContext(task_key="t", step_index=0, role=role, instruction="do the thing",
                       phase=phase, embedding=emb, **kw)


def test_given_empty_index_is_used(models):
    idx = ExperienceIndex(dim=DIM)              # empty, hence falsy: must still be adopted
    r = EvoRouteRouter(models, EvoRouteConfig(estimator="paper"), index=idx)
    assert r.index is idx


def test_cold_start_is_uniform(models):
    r = router(models)
    picks = []
    for seed in range(3000):
        d = r.decide(step("cold_start"), np.random.default_rng(seed))
        assert d.propensity == pytest.approx(1 / 3)
        assert d.explanation.mode == "cold_start"
        assert [c.propensity for c in d.explanation.candidates] == [pytest.approx(1 / 3)] * 3
        picks.append(d.model)
    freq = {m: picks.count(m) / len(picks) for m in ("cheap", "mid", "strong")}
    # binomial sd = sqrt(1/3 · 2/3 / 3000) ≈ 0.0086: 4 sd
    assert all(abs(f - 1 / 3) < 0.035 for f in freq.values()), freq


def test_inference_uses_posterior_mean_by_hand(models):
    r = router(models)
    d = r.decide(step("inference"), np.random.default_rng(0))
    e = d.explanation
    assert (d.model, d.propensity, e.mode, e.fallback) == ("strong", 1.0, "posterior_mean", None)
    u = {c.model: c.utility for c in e.candidates}
    assert u == {"cheap": pytest.approx(0.4825), "mid": pytest.approx(0.70), "strong": pytest.approx(0.85)}
    c = {c.model: c for c in e.candidates}
    assert (c["mid"].n, c["mid"].p_hat, c["mid"].c_hat, c["mid"].d_hat) == \
        (4, pytest.approx(0.75), pytest.approx(0.01), pytest.approx(4.0))
    assert all(x.pareto for x in e.candidates)
    assert c["mid"].theta_p == pytest.approx(0.75)       # θ is the posterior mean, not a draw
    assert e.channels == {"role": 12, "semantic": 0, "tool": 0, "union": 12}


@pytest.mark.parametrize("weights, expected", [((1, 0.1, 0.05), "strong"), ((1, 1, 0), "mid"),
                                               ((1, 2, 0), "cheap")])
def test_inference_choice_follows_weights(models, weights, expected):
    r = router(models, weights=Weights(*weights))
    assert r.decide(step("inference"), np.random.default_rng(0)).model == expected


def test_inference_is_deterministic_whatever_the_rng(models):
    r = router(models, weights=Weights(1, 1, 0))
    picks = {r.decide(step("inference"), np.random.default_rng(s)).model for s in range(50)}
    assert picks == {"mid"}


def test_optimize_samples_and_varies(models):
    # Under Thompson sampling the near-tied mid / strong at w = (1, 0.6, 0) both get chosen:
    # posterior-mean utilities cheap 0.47, mid 0.60, strong 0.40.
    r = router(models, weights=Weights(1, 0.6, 0))
    ds = [r.decide(step(), np.random.default_rng(s)) for s in range(300)]
    assert {d.explanation.mode for d in ds} == {"thompson"}
    assert len({d.model for d in ds}) >= 2
    for d in ds:
        assert sum(c.propensity for c in d.explanation.candidates) == pytest.approx(1.0)
        chosen = next(c for c in d.explanation.candidates if c.model == d.model)
        assert chosen.utility == max(c.utility for c in d.explanation.candidates)


def test_propensity_matches_choice_frequency(models):
    r = router(models, weights=Weights(1, 0.6, 0))
    ds = [r.decide(step(), np.random.default_rng(s)) for s in range(1500)]
    for m in ("cheap", "mid", "strong"):
        freq = np.mean([d.model == m for d in ds])
        mean_prop = np.mean([next(c.propensity for c in d.explanation.candidates if c.model == m)
                             for d in ds])
        assert abs(freq - mean_prop) < 0.04, (m, freq, mean_prop)


def test_unexplored_models_first_in_optimize(models):
    base = dict(BASE, cheap=([1], [.001], [1]))              # cheap: n = 1 < n_min = 2
    r = router(models, base=base)
    for s in range(20):
        d = r.decide(step(), np.random.default_rng(s))
        assert (d.model, d.propensity, d.explanation.mode) == ("cheap", 1.0, "explore_unexplored")
    # two unexplored: each with propensity 1/2, both tried
    base = dict(BASE, cheap=([1], [.001], [1]), mid=([], [], []))
    r = router(models, base=base)
    picks = {r.decide(step(), np.random.default_rng(s)).model for s in range(40)}
    assert picks == {"cheap", "mid"}
    d = r.decide(step(), np.random.default_rng(0))
    assert {c.model: c.propensity for c in d.explanation.candidates} == {"cheap": 0.5, "mid": 0.5,
                                                                          "strong": 0.0}


def test_records_without_known_performance_count_as_unexplored(models):
    idx = ExperienceIndex(dim=DIM)
    fill(idx, {k: v for k, v in BASE.items() if k != "cheap"})
    for i in range(5):   # cheap has cost/duration but its tasks have not finished yet
        idx.add(role="r", model="cheap", text=f"c{i}", embedding=None, tools=(), cost=.001,
                duration=1, perf=None, task_ref="open-task")
    r = EvoRouteRouter(models, EvoRouteConfig(estimator="paper"), index=idx)
    assert r.decide(step(), np.random.default_rng(0)).model == "cheap"
    idx.set_task_perf("open-task", 1.0)           # now cheap is explored with P̂ = 1
    d = r.decide(step("inference"), np.random.default_rng(0))
    assert d.model == "cheap"                    # P 1 at the lowest cost and duration dominates
    assert [c.pareto for c in d.explanation.candidates] == [True, False, False]


def test_inference_ignores_unexplored_models(models):
    base = dict(BASE, strong=([1], [.03], [7]))           # strong: n = 1
    r = router(models, base=base)
    d = r.decide(step("inference"), np.random.default_rng(0))
    # among cheap (0.4825 − ...) and mid: C_ref = 0.01, D_ref = 4
    # cheap 0.5 − 0.1·0.2 − 0.05·0.5 = 0.455; mid 0.75 − 0.1 − 0.05 = 0.60
    assert d.model == "mid"
    u = {c.model: c.utility for c in d.explanation.candidates}
    assert u == {"cheap": pytest.approx(0.455), "mid": pytest.approx(0.60), "strong": None}


def test_fallback_role_then_global_then_default(models):
    idx = ExperienceIndex(dim=DIM)
    fill(idx, BASE, role="coder", emb=E1)
    r = EvoRouteRouter(models, EvoRouteConfig(estimator="paper", channels=("semantic",),
                                              default_model="mid"), index=idx)
    # semantic-only retrieval with an orthogonal query finds nothing -> per-role statistics
    d = r.decide(step("inference", role="coder", emb=E2), np.random.default_rng(0))
    assert d.explanation.channels["union"] == 0
    assert (d.explanation.fallback, d.model) == ("role", "strong")
    assert "role fallback" in d.explanation.reason
    # a role with no records -> global statistics
    d = r.decide(step("inference", role="planner", emb=E2), np.random.default_rng(0))
    assert (d.explanation.fallback, d.model) == ("global", "strong")
    assert "global fallback" in d.explanation.reason
    # the same query finds the records semantically -> no fallback
    d = r.decide(step("inference", role="planner", emb=E1), np.random.default_rng(0))
    assert d.explanation.fallback is None and d.explanation.channels["semantic"] == 12
    # an empty base -> the default model
    empty = EvoRouteRouter(models, EvoRouteConfig(estimator="paper", default_model="mid"),
                           index=ExperienceIndex(dim=DIM))
    d = empty.decide(step(), np.random.default_rng(0))
    assert (d.model, d.propensity, d.explanation.fallback, d.explanation.mode) == \
        ("mid", 1.0, "default_model", "default_model")
    assert "default model" in d.explanation.reason


def test_no_default_model_picks_uniformly(models):
    r = EvoRouteRouter(models, EvoRouteConfig(estimator="paper"), index=ExperienceIndex(dim=DIM))
    ds = [r.decide(step(), np.random.default_rng(s)) for s in range(60)]
    assert {d.model for d in ds} == {"cheap", "mid", "strong"}
    assert all(d.propensity == pytest.approx(1 / 3) and d.explanation.fallback == "default_model"
               for d in ds)


def test_fallback_counts_only_candidate_models(models):
    idx = ExperienceIndex(dim=DIM)
    fill(idx, {"retired": ([1, 1], [1, 1], [1, 1])})       # records of an unregistered model
    r = EvoRouteRouter(models, EvoRouteConfig(estimator="paper", default_model="cheap"), index=idx)
    d = r.decide(step(), np.random.default_rng(0))
    assert (d.model, d.explanation.fallback) == ("cheap", "default_model")


def test_candidates_restrict_the_choice(models):
    r = router(models)
    d = r.decide(step("inference", candidates=("cheap", "mid")), np.random.default_rng(0))
    assert d.model == "mid" and [c.model for c in d.explanation.candidates] == ["cheap", "mid"]


DOMINATED = {
    # A: P̂ 0.8, Ĉ 1, D̂ 1 — B: P̂ 0.7, Ĉ 2, D̂ 2 (dominated) but with a wide posterior on P
    "A": ([.8, .8, .8], [1, 1, 1], [1, 1, 1]),
    "B": ([0, 1, 1, .8], [1, 3, 1, 3], [1, 3, 1, 3]),
}


def test_pareto_dominated_model_is_never_chosen():
    ms = [ModelInfo("A"), ModelInfo("B")]
    on = router(ms, base=DOMINATED)
    for s in range(300):
        d = on.decide(step(), np.random.default_rng(s))
        assert d.model == "A"
        b = d.explanation.candidates[1]
        assert (b.pareto, b.propensity, b.utility) == (False, 0.0, None)
    # the same base without the filter does pick B sometimes: the test above can fail
    off = router(ms, base=DOMINATED, pareto=False)
    picks = [off.decide(step(), np.random.default_rng(s)).model for s in range(300)]
    assert 0 < picks.count("B") < 300


# "pricey" is dominated by mid (P̂ 0.5 < 0.75, Ĉ 0.04 > 0.01, D̂ 8 > 4) and is the most expensive.
PRUNED_TOP = dict(cheap=BASE["cheap"], mid=BASE["mid"],
                  pricey=([1, 0, 1, 0], [.03, .05, .03, .05], [7, 9, 7, 9]))


def test_reference_scale_keeps_the_pruned_most_expensive_model():
    """C_ref = 0.04 and D_ref = 8 come from pricey although the Pareto filter drops it.

    w = (1, 1, 0): cheap 0.5 − 0.002/0.04 = 0.45; mid 0.75 − 0.01/0.04 = 0.50 -> mid.
    Normalising by the survivors only (C_ref = 0.01) would give cheap 0.30, mid −0.25 -> cheap:
    a model's utility would jump because an unrelated, dominated model was pruned.
    """
    ms = [ModelInfo("cheap"), ModelInfo("mid"), ModelInfo("pricey")]
    for pareto in (True, False):
        r = router(ms, base=PRUNED_TOP, weights=Weights(1, 1, 0), pareto=pareto)
        d = r.decide(step("inference"), np.random.default_rng(0))
        u = {c.model: c.utility for c in d.explanation.candidates}
        assert d.model == "mid"
        assert u["cheap"] == pytest.approx(0.45) and u["mid"] == pytest.approx(0.50)
        # the filter changes who competes, never the utility of those who do
        assert u["pricey"] == (None if pareto else pytest.approx(0.5 - 1.0))
        assert (d.explanation.c_ref, d.explanation.d_ref) == (pytest.approx(0.04), pytest.approx(8.0))
    # raw units (USD and seconds) use no scales, and the explanation says so
    raw = router(ms, base=PRUNED_TOP, weights=Weights(1, 1, 0), raw_units=True)
    d = raw.decide(step("inference"), np.random.default_rng(0))
    e = d.explanation
    assert (e.mode, d.model) == ("posterior_mean", "mid")
    u = {c.model: c.utility for c in e.candidates}       # USD as is: cheap 0.5 − 0.002, mid 0.75 − 0.01
    assert u["cheap"] == pytest.approx(0.498) and u["mid"] == pytest.approx(0.74)
    assert (e.c_ref, e.d_ref) == (None, None)


def test_same_seed_same_decisions(models):
    r = router(models, weights=Weights(1, 0.6, 0))
    a = [r.decide(step(), np.random.default_rng(9)).explanation.to_json() for _ in range(5)]
    rng1, rng2 = np.random.default_rng(123), np.random.default_rng(123)
    seq1 = [r.decide(step(), rng1).model for _ in range(30)]
    seq2 = [r.decide(step(), rng2).model for _ in range(30)]
    assert len(set(a)) == 1 and seq1 == seq2


@pytest.mark.parametrize("phase", ["cold_start", "optimize", "inference"])
def test_explanation_json_round_trip(models, phase):
    r = router(models, weights=Weights(1, 0.6, 0))
    e = r.decide(step(phase), np.random.default_rng(1)).explanation
    text = e.to_json()
    json.loads(text)                                  # strict JSON (no NaN)
    assert Explanation.from_json(text) == e


def test_observe_and_finish_task_feed_the_next_decision(models):
    r = EvoRouteRouter(models, EvoRouteConfig(estimator="paper"), index=ExperienceIndex(dim=DIM))
    rng = np.random.default_rng(0)
    for t, (model, success) in enumerate([("cheap", 0), ("cheap", 0), ("mid", 1), ("mid", 1),
                                          ("strong", 1), ("strong", 1)]):
        s = StepContext(task_key=f"task{t}", step_index=0, role="r", instruction="x", embedding=E2)
        dec = r.decide(s, rng)
        r.observe(s, dec, StepOutcome(model=model, step_success=None, cost_usd=0.01, duration_s=1.0))
        r.finish_task(f"task{t}", success)
    # all explored now; equal cost and duration: mid and strong (P 1) tie, cheap is dominated
    d = r.decide(step("inference"), rng)
    assert d.model in ("mid", "strong")
    assert {c.model: c.pareto for c in d.explanation.candidates} == {"cheap": False, "mid": True,
                                                                      "strong": True}
    # a failed call teaches nothing
    r.observe(step(), d, StepOutcome(model="cheap", step_success=None, cost_usd=9, duration_s=9,
                                     error="timeout"))
    assert len(r.index) == 6


def test_step_success_signal(models):
    r = EvoRouteRouter(models, EvoRouteConfig(estimator="paper", perf_signal="step"),
                       index=ExperienceIndex(dim=DIM, perf_signal="step"))
    s = step()
    for ok in (1.0, 0.0):
        r.observe(s, None, StepOutcome(model="mid", step_success=ok, cost_usd=0.01, duration_s=1.0))
    est = r.retrieve(s).for_models(["mid"])
    assert est.n.tolist() == [2] and est.p_mean.tolist() == [0.5]


def test_registry_builds_ablations(models):
    for fam, est in (("evoroute", "knn"), ("evoroute-paper", "paper")):
        for abl, field, value in (("no-ts", "thompson", False), ("no-pareto", "pareto", False),
                                  ("no-cold-start", "cold_start", False),
                                  ("no-role-tool", "channels", ("semantic",))):
            r = make_router(f"{fam}-{abl}", models)
            assert (getattr(r.config, field), r.config.estimator, r.name) == (value, est, f"{fam}-{abl}")
    assert make_router("evoroute-lin", models).config.estimator == "linear"
    assert make_router("evoroute-knn", models).config.estimator == "knn"
    assert make_router("evoroute-no-ts", models).config.thompson is False
    assert make_router("evoroute-no-pareto", models).config.pareto is False
    assert make_router("evoroute-no-cold-start", models).config.cold_start is False
    semantic_only = make_router("evoroute-no-role-tool", models)
    assert semantic_only.config.channels == ("semantic",) and semantic_only.name == "evoroute-no-role-tool"
    r = make_router("evoroute", models, weights=[1, 0.5, 0])
    assert r.config.weights == Weights(1, 0.5, 0)


def test_no_ts_ablation_uses_posterior_mean_in_optimize(models):
    r = router(models, thompson=False)
    ds = {r.decide(step(), np.random.default_rng(s)).model for s in range(20)}
    assert ds == {"strong"}


def test_config_round_trips_through_dict():
    cfg = EvoRouteConfig(estimator="paper", weights=Weights(1, 0.3, 0.1), channels=("semantic",),
                         max_per_channel=50,
                         tool_keywords={"python": ["code"]})
    d = json.loads(json.dumps(cfg.to_dict()))
    back = EvoRouteConfig.from_dict(d)
    assert back.weights == cfg.weights and back.channels == cfg.channels
    assert back.max_per_channel == 50 and dict(back.tool_keywords) == {"python": ["code"]}


@pytest.mark.parametrize("kwargs, field", [
    (dict(max_per_channel=0), "max_per_channel"),     # x[-0:] would have taken every record
    (dict(sem_scan_limit=0), "sem_scan_limit"),
    (dict(channels=("semantics",)), "channels"),      # a typo would have turned retrieval off
    (dict(channels=()), "channels"),
    (dict(n_min=0), "n_min"),
    (dict(perf_signal="reward"), "perf_signal"),
    (dict(propensity_draws=-1), "propensity_draws"),
])
def test_config_rejects_bad_values(kwargs, field):
    from evoroute.core.errors import ValidationError
    with pytest.raises(ValidationError) as e:
        EvoRouteConfig(**kwargs)
    assert e.value.field == field


def test_step_signal_records_are_not_left_pending(models):
    r = EvoRouteRouter(models, EvoRouteConfig(estimator="paper", perf_signal="step"),
                       index=ExperienceIndex(dim=DIM, perf_signal="step"))
    known = StepContext(task_key="a", step_index=0, role="r", instruction="x", embedding=E2)
    unknown = StepContext(task_key="b", step_index=0, role="r", instruction="y", embedding=E2)
    r.observe(known, None, StepOutcome(model="mid", step_success=1.0, cost_usd=0.01, duration_s=1.0))
    r.observe(unknown, None, StepOutcome(model="mid", step_success=None, cost_usd=0.01, duration_s=1.0))
    assert r.index.pending_tasks() == ["b"]          # only the record without a known σ waits
    r2 = EvoRouteRouter(models, EvoRouteConfig(estimator="paper"), index=ExperienceIndex(dim=DIM))
    r2.observe(step(), None, StepOutcome(model="mid", step_success=1.0, cost_usd=0.01, duration_s=1.0))
    assert r2.index.pending_tasks() == ["t"]         # task signal: waits for finish_task
    r2.finish_task("t", 1.0)
    assert r2.index.pending_tasks() == []
