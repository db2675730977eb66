"""Atropos-style rescue (issue 13, items 3 and 5): the predictor never reads ground truth, same
seed same decisions, and the replayed outcomes and metrics on hand-made runs."""

import numpy as np
import pytest

from evoroute.rescue.metrics import atropos_metrics
from evoroute.rescue.observe import observe, prefix_features
from evoroute.rescue.plan import fit_plan
from evoroute.rescue.predictors import GraphPredictor, LogisticPredictor, cross_val_predict
from evoroute.rescue.replay import (
    base_failures,
    decide,
    explain,
    fit_rescue,
    outcomes,
    reference_points,
)
from evoroute.rescue.steps import StepTable

MODELS = ("cheap", "second", "strong")
ROLES = ("arc_challenge", "mbpp", "winogrande")


def _table(score, cost, answer, roles, sizes):
    """A StepTable from per-row lists; ``sizes``: the number of steps of each run."""
    task = np.repeat(np.arange(len(sizes)), sizes)
    position = np.concatenate([np.arange(n) for n in sizes])
    roles = np.asarray(roles, dtype=object).astype(str)
    return StepTable(task_keys=tuple(f"t{i}" for i in range(len(sizes))), task=task,
                     position=position, roles=roles,
                     query_ids=np.array([f"q{i}" for i in range(len(task))]), models=MODELS,
                     score=np.asarray(score, dtype=float), cost=np.asarray(cost, dtype=float),
                     answer=np.asarray(answer, dtype=object).astype(str),
                     choice=np.isin(roles, ("arc_challenge", "winogrande")))


def _synthetic(seed, n_tasks=80, n_steps=3):
    """Random runs where the cheap model fails more often when the second opinion disagrees."""
    rng = np.random.default_rng(seed)
    n = n_tasks * n_steps
    roles = [ROLES[i % 3] for i in range(n)]
    gold = rng.choice(list("ABCD"), size=n)
    cheap_ok = rng.random(n) < 0.75
    second_ok = rng.random(n) < 0.9
    shift = {"A": "B", "B": "C", "C": "D", "D": "A"}
    wrong = np.array([shift[g] for g in gold])
    other = np.array([shift[w] for w in wrong])      # the second opinion errs differently
    ans = np.column_stack([np.where(cheap_ok, gold, wrong), np.where(second_ok, gold, other), gold])
    ans[np.array(roles) == "mbpp"] = ""
    score = np.column_stack([cheap_ok, second_ok, rng.random(n) < 0.95]).astype(float)
    cost = np.tile([1.0, 1.5, 20.0], (n, 1)) * (1 + 0.1 * rng.random((n, 1)))
    return _table(score, cost, ans, roles, [n_steps] * n_tasks)


@pytest.fixture(scope="module")
def data():
    train, test = _synthetic(0), _synthetic(1, n_tasks=40)
    plan = fit_plan(train, within=0.3)
    return train, test, plan


def test_plan_is_fitted_on_train(data):
    train, _, plan = data
    assert plan.strong == "strong"
    assert plan.base == {r: "cheap" for r in ROLES}
    # base: the cheapest non-strong model within 0.3 of the best; the second opinion: the
    # most accurate non-base model costing <= 2x the base
    assert plan.second == {"arc_challenge": "second", "winogrande": "second"}
    assert "mbpp" not in plan.second


def test_observe_reads_answers_and_pays_the_second_opinion():
    t = _table(score=[[1, 0, 1], [0, 1, 1]], cost=[[1, 2, 10], [1, 2, 10]],
               answer=[["A", "A", "A"], ["B", "C", "C"]], roles=["arc_challenge"] * 2, sizes=[2])
    plan = fit_plan(t)
    assert plan.base_model("arc_challenge") == "cheap" and plan.opinion_model("arc_challenge") == "second"
    obs = observe(t, plan)
    assert obs.agree.tolist() == [True, False]
    assert obs.opinion_cost.tolist() == [2.0, 2.0] and obs.cost.tolist() == [1.0, 1.0]
    assert obs.unparsed.tolist() == [False, False]


@pytest.mark.parametrize("kind", ["logistic", "graph"])
def test_decisions_never_read_ground_truth(data, kind):
    """Corrupting the recorded correctness of the current and future steps (of every step of
    the split, in fact) changes no probability and no swap decision; it does change the
    replayed outcomes, so the scores are really in the table the decisions read."""
    train, test, plan = data
    rescue = fit_rescue(train, plan, kind, seed=0)
    rng = np.random.default_rng(7)
    corrupt = test.with_scores(rng.integers(0, 2, size=test.score.shape))
    _, p = rescue.probabilities(test)
    _, p_bad = rescue.probabilities(corrupt)
    assert np.array_equal(p, p_bad)
    for th in (0.2, 0.4, 0.5, 0.6, 0.8):
        assert np.array_equal(rescue.decisions(test, th), rescue.decisions(corrupt, th))
    # per decision point: only the steps at and after it corrupted
    obs = observe(test, plan)
    for t in range(3):
        later = test.score.copy()
        later[test.position >= t] = 1 - later[test.position >= t]
        _, p_t = rescue.probabilities(test.with_scores(later))
        assert np.array_equal(p_t[test.position == t], p[test.position == t])
    swaps = decide(p, obs, 0.5, test.n_tasks)
    assert not np.array_equal(outcomes(test, plan, obs, swaps).success,
                              outcomes(corrupt, plan, obs, swaps).success)


def test_prefix_features_read_no_later_step(data):
    _, test, plan = data
    obs = observe(test, plan)
    x = prefix_features(obs, ROLES)
    cut = test.position < 2             # drop every run's last step
    sub = StepTable(test.task_keys, test.task[cut], test.position[cut], test.roles[cut],
                    test.query_ids[cut], MODELS, test.score[cut], test.cost[cut],
                    test.answer[cut], test.choice[cut])
    assert np.array_equal(prefix_features(observe(sub, plan), ROLES), x[cut])


@pytest.mark.parametrize("kind", ["logistic", "graph"])
def test_same_seed_same_decisions(data, kind):
    train, test, plan = data
    a, b = fit_rescue(train, plan, kind, seed=3), fit_rescue(train, plan, kind, seed=3)
    assert np.array_equal(a.probabilities(test)[1], b.probabilities(test)[1])
    assert np.array_equal(a.decisions(test, 0.5), b.decisions(test, 0.5))
    obs = observe(train, plan)
    y = base_failures(train, plan)[obs.task]
    assert np.array_equal(cross_val_predict(kind, obs, y, seed=1),
                          cross_val_predict(kind, obs, y, seed=1))


def test_graph_seed_is_used(data):
    train, test, plan = data
    a, b = fit_rescue(train, plan, "graph", seed=0), fit_rescue(train, plan, "graph", seed=1)
    assert not np.array_equal(a.probabilities(test)[1], b.probabilities(test)[1])


def test_predictors_learn_the_disagreement_signal(data):
    train, test, plan = data
    from sklearn.metrics import roc_auc_score

    obs = observe(test, plan)
    y = base_failures(test, plan)[obs.task]
    for kind in ("logistic", "graph"):
        p = fit_rescue(train, plan, kind).probabilities(test)[1]
        assert roc_auc_score(y, p) > 0.65, kind


def test_single_class_training_gives_a_constant():
    t = _synthetic(0, n_tasks=5)
    obs = observe(t, fit_plan(t))
    for p in (LogisticPredictor(), GraphPredictor(epochs=5)):
        assert np.array_equal(p.fit(obs, np.zeros(len(obs))).predict(obs), np.zeros(len(obs)))


def _three_runs():
    """Run 0: cheap fails step 1 (strong succeeds every step); run 1: cheap succeeds, strong
    fails step 2; run 2: cheap fails step 0, never swapped. Costs per step: cheap 1, second 2,
    strong 10; every step is a multiple-choice step (the second opinion is called)."""
    score = [[1, 1, 1], [0, 1, 1], [1, 1, 1],
             [1, 1, 1], [1, 1, 1], [1, 1, 0],
             [0, 0, 1], [1, 0, 1], [1, 0, 1]]
    cost = [[1, 2, 10]] * 9
    answer = [["A", "A", "A"], ["B", "C", "C"], ["A", "A", "A"]] * 3
    return _table(score, cost, answer, ["arc_challenge"] * 9, [3, 3, 3])


def test_outcomes_of_a_hand_made_swap():
    t = _three_runs()
    plan = fit_plan(t)
    assert (plan.base_model("arc_challenge"), plan.strong) == ("cheap", "strong")
    obs = observe(t, plan)
    p = np.array([0.1, 0.9, 0.2, 0.1, 0.7, 0.95, 0.1, 0.2, 0.3])
    swap = decide(p, obs, 0.5, t.n_tasks)
    assert swap.tolist() == [1, 4, -1]            # the first step above the threshold
    o = outcomes(t, plan, obs, swap, redo=True)
    # step 0 cheap (+2 second opinion); step 1 cheap + opinion paid, then redone on strong;
    # step 2 strong. Run 2: three cheap steps with their opinions.
    assert o.cost.tolist() == [3 + 3 + 10 + 10, 3 + 3 + 10 + 10, 9]
    assert o.success.tolist() == [1.0, 0.0, 0.0]  # run 0 rescued; run 1 broken by strong's step 2
    assert o.swap_step.tolist() == [1, 1, -1] and o.swapped.tolist() == [True, True, False]
    keep = outcomes(t, plan, obs, swap, redo=False)
    assert keep.success.tolist() == [0.0, 0.0, 0.0]   # step 1's failure stays without a redo
    assert keep.cost.tolist() == [3 + 3 + 10, 3 + 3 + 10, 9]
    last = outcomes(t, plan, obs, np.array([2, -1, 8]), redo=False)
    assert last.swapped.tolist() == [False, False, False]   # nothing left after the last step
    none = outcomes(t, plan, obs, np.array([-1, -1, -1]))
    assert none.success.tolist() == [0.0, 1.0, 0.0] and none.cost.tolist() == [9.0] * 3
    assert base_failures(t, plan).tolist() == [1, 0, 1]
    refs = reference_points(t, plan)
    assert refs["strong model"] == (90.0, pytest.approx(2 / 3))
    assert refs["base policy"] == (9.0, pytest.approx(1 / 3))


def test_atropos_metrics_count_rescues_and_false_swaps():
    base = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    swapped = np.array([1, 1, 1, 0, 1, 1, 0, 0], dtype=bool)
    success = np.array([1, 1, 0, 0, 1, 0, 1, 1])
    cost = np.array([5, 5, 5, 1, 5, 5, 1, 1], dtype=float)
    m = atropos_metrics(base, success, swapped, cost, strong_quality=0.8, strong_cost=40.0)
    assert m["base_failures"] == 4 and m["rescued"] == 2
    assert m["rescue_rate"] == 0.5                  # 2 of the 4 base failures completed
    assert m["swap_precision_rescued"] == pytest.approx(2 / 3)   # 2 of 3 swapped failures saved
    assert m["false_swaps"] == 2 and m["false_swap_rate"] == 0.4  # 2 of 5 swaps were not needed
    assert m["broken"] == 1 and m["swap_rate"] == 5 / 8
    assert m["quality"] == 0.625 and m["quality_kept"] == pytest.approx(0.625 / 0.8)
    assert m["cost_share"] == 28 / 40
    empty = atropos_metrics(np.ones(3), np.ones(3), np.zeros(3, bool), np.ones(3), 1.0, 3.0)
    assert empty["rescue_rate"] is None and empty["false_swap_rate"] is None


def test_explain_gives_probability_features_threshold_and_stops_at_the_swap(data):
    train, test, plan = data
    rescue = fit_rescue(train, plan, "logistic")
    obs, p = rescue.probabilities(test)
    task = next(t for t in range(test.n_tasks) if p[(obs.task == t) & (obs.position == 1)] > 0.5
                and p[(obs.task == t) & (obs.position == 0)] <= 0.5)
    e = explain(rescue.predictor, obs, p, 0.5, task)
    assert e["label"] == "replayed" and e["threshold"] == 0.5 and e["swapped_at_step"] == 1
    assert [d["swap"] for d in e["decisions"]] == [False, True]
    d = e["decisions"][1]
    assert d["p_fail"] == pytest.approx(float(p[(obs.task == task) & (obs.position == 1)][0]))
    assert d["model"] == "cheap" and "log_odds" in next(iter(d["features"].values()))
    g = fit_rescue(train, plan, "graph")
    assert explain(g.predictor, obs, g.probabilities(test)[1], 0.5, task)["predictor"] == "graph"
