"""Atropos' live step signal (issue 13, item 3): the verifier's verdict read from its reply.

A real run sees the verifier's ``VERDICT: CORRECT`` / ``WRONG`` (the model's own judgement,
no ground truth). The predictor uses it only where the train split has verifier steps; on data
without them its features are exactly those it had before."""

import numpy as np
import pytest
from bounded import ends_within

from evoroute.backends.base import OutcomeTable
from evoroute.rescue.observe import node_names, observe, prefix_names
from evoroute.rescue.plan import fit_plan
from evoroute.rescue.predictors import GraphPredictor, LogisticPredictor
from evoroute.rescue.replay import base_failures
from evoroute.rescue.steps import StepTable, from_outcome_table, step_verdict

MODELS = ("cheap", "strong")
AGENT_ROLES = ("planner", "solver", "verifier", "answerer")


def test_the_verdict_is_read_by_the_agents_rule_and_only_on_the_verifier_step():
    assert step_verdict("verifier", "VERDICT: CORRECT\n") == 1.0
    assert step_verdict("verifier", "VERDICT: WRONG\nCALC: 2+2\n") == -1.0
    assert step_verdict("verifier", "verdict = incorrect") == -1.0
    assert step_verdict("verifier", "looks fine") == 0.0
    assert step_verdict("verifier", None) == 0.0
    assert step_verdict("answerer", "VERDICT: WRONG") == 0.0       # another role: no verdict


def _agent_runs(seed: int, n_tasks: int) -> tuple[StepTable, np.ndarray]:
    """Live-agent-shaped runs: the cheap model fails 40 % of tasks; its verifier says WRONG on
    70 % of the tasks it fails and on 5 % of those it solves. Returns the table and which
    tasks fail on the cheap model."""
    rng = np.random.default_rng(seed)
    fails = rng.random(n_tasks) < 0.4
    wrong = np.where(fails, rng.random(n_tasks) < 0.7, rng.random(n_tasks) < 0.05)
    n = 4 * n_tasks
    roles = np.tile(np.array(AGENT_ROLES, dtype=object), n_tasks).astype(str)
    score = np.ones((n, 2))
    score[np.flatnonzero(roles == "answerer")[fails], 0] = 0.0
    verdict = np.zeros((n, 2))
    judged = np.flatnonzero(roles == "verifier")
    verdict[judged, 0] = np.where(wrong, -1.0, 1.0)
    verdict[judged, 1] = 1.0
    table = StepTable(task_keys=tuple(f"t{i}" for i in range(n_tasks)),
                      task=np.repeat(np.arange(n_tasks), 4), position=np.tile(np.arange(4), n_tasks),
                      roles=roles, query_ids=np.array([f"q{i}" for i in range(n)]), models=MODELS,
                      score=score, cost=np.tile([1.0, 10.0], (n, 1)),
                      answer=np.full((n, 2), "", dtype=object).astype(str),
                      choice=np.zeros(n, dtype=bool), verdict=verdict)
    return table, fails


@pytest.mark.parametrize("predictor", [LogisticPredictor, GraphPredictor])
def test_a_wrong_verdict_raises_the_predicted_failure_after_the_verifier_step(predictor):
    train, _ = _agent_runs(0, 120)
    test, fails = _agent_runs(1, 60)
    plan = fit_plan(train, within=1.0)
    assert all(plan.base_model(r) == "cheap" for r in AGENT_ROLES)
    p = predictor(seed=0).fit(observe(train, plan), base_failures(train, plan)[train.task])
    assert p.verdicts
    obs = observe(test, plan)
    prob = p.predict(obs)
    after = np.flatnonzero(test.roles == "verifier")
    said_wrong = test.verdict[after, 0] < 0
    assert prob[after][said_wrong].min() > prob[after][~said_wrong].max()
    # before the verdict every run of the test split looks the same to the predictor
    before = np.flatnonzero(test.roles == "solver")
    assert np.ptp(prob[before]) < 1e-6
    # the verdict's feature is in the explanation of a row after a WRONG verdict
    row = int(after[said_wrong][0])
    assert "now: verifier says wrong" in p.features(obs, row) or \
        "verifier says wrong" in p.features(obs, row)
    assert fails[said_wrong].mean() > fails[~said_wrong].mean()    # the signal is informative


def test_without_verifier_steps_the_features_are_the_ones_it_had():
    roles = ("arc_challenge", "mbpp")
    assert node_names(roles) == node_names(roles, verdicts=False)
    assert "verifier says wrong" not in node_names(roles)
    assert len(prefix_names(roles, verdicts=True)) == len(prefix_names(roles)) + 3


def test_an_outcome_table_with_verifier_replies_gives_their_verdicts():
    roles = list(AGENT_ROLES)
    responses = np.array([["plan", "plan"], ["CALC: 1", "CALC: 1"],
                          ["VERDICT: WRONG\nCALC: 2", "VERDICT: CORRECT"], ["ANSWER: 2", None]],
                         dtype=object)
    tab = OutcomeTable(models=list(MODELS), roles=roles, instructions=["x"] * 4,
                       tools=[frozenset()] * 4, task_keys=["t0"] * 4, step_index=np.arange(4),
                       scores=np.ones((4, 2)), costs=np.ones((4, 2)), latencies=np.ones((4, 2)),
                       responses=responses)
    steps = from_outcome_table(tab)
    assert steps.verdict is not None
    assert steps.verdict.tolist() == [[0, 0], [0, 0], [-1, 1], [0, 0]]
    no_verifier = from_outcome_table(OutcomeTable(
        models=list(MODELS), roles=["mbpp"] * 2, instructions=["x"] * 2,
        tools=[frozenset()] * 2, task_keys=["t0"] * 2,
        step_index=np.arange(2), scores=np.ones((2, 2)), costs=np.ones((2, 2)),
        latencies=np.ones((2, 2)), responses=np.array([["a", "b"], ["c", "d"]], dtype=object)))
    assert no_verifier.verdict is None


def test_the_training_label_is_the_tasks_own_success_where_the_source_records_it():
    """On the live pass a task can succeed while a step scores 0 (a plan without the problem's
    numbers): with one base model the label is the task's recorded success."""
    train, fails = _agent_runs(0, 40)
    plan = fit_plan(train, within=1.0)
    score = train.score.copy()
    score[train.roles == "planner", 0] = 0.0            # every plan of the cheap model scores 0
    task_score = np.repeat(1.0 - fails, 4)[:, None] * np.ones((1, 2))
    from dataclasses import replace
    steps_only = replace(train, score=score)
    assert base_failures(steps_only, plan).all()        # min over steps: every run fails
    own = replace(steps_only, task_score=task_score)
    assert np.array_equal(base_failures(own, plan), fails.astype(int))


def test_a_hostile_reply_is_read_in_linear_time():
    """A reply of a million spaces after the tag: the agent's verdict rule once backtracked
    cubically on it (1,000 spaces took 10 s, a million would not end); now it answers at once."""
    ends_within("""
from evoroute.rescue.steps import step_verdict
assert step_verdict("verifier", "VERDICT" + " " * 1_000_000 + "x") == 0.0
""")
    assert step_verdict("verifier", "VERDICT" + " := " * 1000 + "WRONG") == -1.0
