"""The ``atropos`` router through the runner (issue 13, items 3-5) on a hand-made multi-step
replay table: corrupting the recorded correctness of the routed steps leaves every decision
unchanged, same seed same decisions, the swap happens exactly where P(fail) crosses the
threshold, its probabilities are the offline rescue replay's, and a dataset without multi-step
tasks gets a clear error."""

import numpy as np
import pandas as pd
import pytest

from evoroute.backends.replay import ReplayBackend, dataset_models
from evoroute.core.errors import DatasetError, EvoRouteError
from evoroute.core.types import Explanation
from evoroute.runs.loop import RunLoop
from evoroute.runs.prepare import prepare_run
from evoroute.runs.spec import RunSpec

ROLES = ("arc_challenge", "mbpp", "winogrande")
COST = {"cheap": 1e-4, "second": 1.5e-4, "strong": 2e-3}
ACC = {"cheap": 0.8, "second": 0.93, "strong": 0.97}
SHIFT = {"A": "B", "B": "C", "C": "D", "D": "A"}


def _frame(seed: int = 0, n_train: int = 90, n_test: int = 30, n_steps: int = 3) -> pd.DataFrame:
    """Tasks of ``n_steps`` steps (roles cycling); on the multiple-choice roles each model's
    response is its answer letter, the cheap model wrong where it fails and the second opinion
    wrong differently, so disagreement signals a failing cheap step."""
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in (("train", n_train), ("test", n_test)):
        for t in range(n):
            for s in range(n_steps):
                role = ROLES[s % len(ROLES)]
                qid = f"{split}-{t}-{s}"
                gold = "ABCD"[rng.integers(4)]
                text = (f"Question {qid}?\nA) alpha\nB) beta\nC) gamma\nD) delta"
                        if role != "mbpp" else f"Write function {qid}.")
                for m, acc in ACC.items():
                    ok = bool(rng.random() < acc)
                    wrong = SHIFT[gold] if m != "second" else SHIFT[SHIFT[gold]]
                    resp = (gold if ok else wrong) if role != "mbpp" else f"def f(): return {int(ok)}"
                    rows.append({"query_id": qid, "query": text, "model": m, "score": float(ok),
                                 "cost_usd": COST[m], "input_tokens": 10, "output_tokens": 2,
                                 "role": role, "task_id": f"{split}-{t}", "step": s,
                                 "split": split, "response": resp})
    return pd.DataFrame(rows)


def _run(df: pd.DataFrame, router: str = "atropos", seed: int = 0, **params):
    """Through the runner; ``within`` 0.3 makes the cheap model the base policy."""
    params.setdefault("within", 0.3)
    models = dataset_models(df)
    spec = RunSpec(backend="replay", dataset="hand-made", router=router, seed=seed,
                   router_params=params)
    plan = prepare_run(spec, models=models, backend=ReplayBackend(df, models, seed=seed))
    return plan, list(RunLoop(plan).steps())


def _decisions(results) -> list[tuple]:
    """Everything a decision holds: the models called, the explanation (P(fail), the swap)."""
    out = []
    for r in results:
        e = r.decision.explanation
        out.append((r.task_key, r.step_index, tuple(r.attempts), r.outcome.model, e.mode,
                    e.reason, Explanation.from_json(e.to_json()).rescue))
    return out


@pytest.fixture(scope="module")
def frame():
    return _frame()


@pytest.fixture(scope="module")
def run(frame):
    return _run(frame)


def test_corrupting_the_routed_steps_correctness_leaves_every_decision_unchanged(frame, run):
    _, results = run
    bad = frame.copy()
    test = bad["split"] == "test"
    bad.loc[test, "score"] = 1.0 - bad.loc[test, "score"]   # every test step, current and future
    _, corrupted = _run(bad)
    assert _decisions(corrupted) == _decisions(results)
    # the corruption is real: the replayed outcomes changed
    assert [r.outcome.step_success for r in corrupted] != [r.outcome.step_success for r in results]
    assert [r.task_success for r in corrupted] != [r.task_success for r in results]


def test_same_seed_same_decisions(frame, run):
    _, results = run
    assert _decisions(_run(frame)[1]) == _decisions(results)
    g1, g2 = _run(frame, "atropos-graph", seed=2)[1], _run(frame, "atropos-graph", seed=2)[1]
    assert _decisions(g1) == _decisions(g2)


def _check_swaps(results, plan, threshold):
    strong = plan.router.plan.strong
    swapped = kept = 0
    for key in dict.fromkeys(r.task_key for r in results):
        steps = [r for r in results if r.task_key == key]
        at = None
        for r in steps:
            ex = r.decision.explanation.rescue
            if at is None:
                p = ex["p_fail"]
                assert p is not None and 0.0 <= p <= 1.0
                base = plan.router.plan.base_model(r.ctx.role)
                assert r.attempts[-2 if p > threshold else -1] == base
                if p > threshold:       # the first step over the threshold: the strong model redoes it
                    assert r.decision.explanation.mode == "rescue_swap" and r.outcome.model == strong
                    assert ex["swap"] and ex["swapped_at_step"] == r.step_index
                    at = r.step_index
                else:
                    assert r.decision.explanation.mode == "rescue_base" and r.outcome.model == base
                    assert not ex["swap"] and f"<= threshold {threshold:g}" in r.decision.explanation.reason
            else:                       # after the swap: the strong model only, no prediction
                assert r.decision.explanation.mode == "rescue_strong" and r.attempts == [strong]
                assert ex["swapped"] and ex["swapped_at_step"] == at and ex["p_fail"] is None
        swapped += at is not None
        kept += at is None
    return swapped, kept


def test_the_swap_happens_where_the_predicted_failure_crosses_the_threshold(frame, run):
    plan, results = run
    assert plan.router.plan.base_model("arc_challenge") == "cheap"
    assert plan.router.plan.strong == "strong"
    swapped, kept = _check_swaps(results, plan, 0.5)
    assert swapped > 0 and kept > 0
    never = _run(frame, threshold=1.0)
    assert _check_swaps(never[1], never[0], 1.0) == (0, 30)
    always = _run(frame, threshold=0.0)
    assert _check_swaps(always[1], always[0], 0.0) == (30, 0)
    assert all(r.decision.explanation.mode == "rescue_swap" for r in always[1] if r.step_index == 0)


def test_calls_and_cost_of_a_step(run):
    plan, results = run
    first = next(r for r in results if r.ctx.role == "arc_challenge")
    # the second opinion first, then the base model; the step's outcome is the last call's
    assert first.attempts[:2] == ["second", "cheap"]
    calls = sum(COST[m] for m in first.attempts)
    assert first.outcome.cost_usd == pytest.approx(calls)
    mbpp = next(r for r in results if r.ctx.role == "mbpp" and r.decision.explanation.mode == "rescue_base")
    assert mbpp.attempts == ["cheap"] and mbpp.outcome.cost_usd == pytest.approx(COST["cheap"])


def test_probabilities_are_the_offline_rescue_replays(frame, run):
    from evoroute.rescue.replay import fit_rescue
    from evoroute.rescue.steps import step_table

    plan, results = run
    backend = plan.backend
    train, test = step_table(backend, "train", frame), step_table(backend, "test", frame)
    rescue = fit_rescue(train, plan.router.plan, "logistic", seed=0)
    obs, p = rescue.probabilities(test)
    row = {(test.task_keys[t], int(s)): i for i, (t, s) in enumerate(zip(test.task, test.position))}
    got = [(row[(r.task_key, r.step_index)], r.decision.explanation.rescue["p_fail"])
           for r in results if r.decision.explanation.rescue["p_fail"] is not None]
    assert len(got) > 30
    np.testing.assert_allclose([q for _, q in got], p[[i for i, _ in got]], rtol=1e-9, atol=1e-12)
    assert obs.has_opinion.sum() > 0


def test_a_dataset_without_multi_step_tasks_is_a_clear_error(frame):
    one = _frame(n_steps=1)
    with pytest.raises(DatasetError, match="multi-step runs"):
        _run(one)
    from evoroute.evaluation.bench.run import run_bench
    with pytest.raises(EvoRouteError, match="atropos: atropos rescues multi-step runs"):
        run_bench(one, routers=["atropos", "cheapest"], protocol="full", progress=False, sweep=False)


def test_registered_with_a_threshold_knob_of_at_least_12_settings():
    from evoroute.core.types import ModelInfo
    from evoroute.policy.registry import make_router

    r = make_router("atropos", [ModelInfo("a"), ModelInfo("b")])
    caps = r.capabilities()
    assert caps.cost_knob.param == "threshold" and len(caps.cost_knob.values) >= 12
    assert caps.needs_training and caps.escalates and not caps.is_oracle
    assert make_router("atropos-graph", [ModelInfo("a")]).kind == "graph"


def test_the_runs_page_summary_shows_p_fail_threshold_and_the_swap(run):
    from evoroute.studio.explain import rescue_summary

    _, results = run
    by_mode = {}
    for r in results:
        by_mode.setdefault(r.decision.explanation.mode, r.decision.explanation)
    base, swap, after = by_mode["rescue_base"], by_mode["rescue_swap"], by_mode["rescue_strong"]
    text = rescue_summary(Explanation.from_json(base.to_json()).rescue)
    assert f"= {base.rescue['p_fail']:.3f}, threshold 0.5" in text and "no swap" in text
    text = rescue_summary(swap.rescue)
    assert f"= {swap.rescue['p_fail']:.3f}" in text and "swapped here: strong" in text
    assert "log-odds" in text                     # the logistic predictor's contributions
    assert f"swapped to strong at step {after.rescue['swapped_at_step']}" in rescue_summary(after.rescue)
    assert rescue_summary(None) is None


def test_a_stored_run_keeps_the_rescue_in_each_steps_explanation(frame, tmp_path, engine):
    from evoroute import registry
    from evoroute.runs.execute import run_spec
    from evoroute.storage import db
    from evoroute.studio.explain import explain_step, rescue_summary

    path = tmp_path / "hand.csv"
    frame.to_csv(path, index=False)
    with db.session(engine) as s:
        for m, c in COST.items():
            registry.add_model(session=s, name=m, input_price_per_m=c, output_price_per_m=c,
                               price_source="recorded")
    spec = RunSpec(backend="replay", dataset=str(path), router="atropos",
                   router_params={"within": 0.3})
    out = list(run_spec(spec, engine=engine))
    assert len(out) == 90                        # the 30 test tasks of 3 steps
    modes = {d["explanation"]["mode"] for d in out}
    assert {"rescue_base", "rescue_swap", "rescue_strong"} <= modes
    swap = next(d for d in out if d["explanation"]["mode"] == "rescue_swap")
    with db.session(engine) as s:
        ex = explain_step(_step_id(engine, swap), session=s)
    assert ex.explanation.rescue["swap"] and ex.explanation.rescue["p_fail"] > 0.5
    assert "swapped here" in rescue_summary(ex.explanation.rescue)


def _step_id(engine, d) -> int:
    from sqlmodel import select

    from evoroute.storage import db
    from evoroute.storage.tables import StepRecord

    with db.session(engine) as s:
        return int(s.exec(select(StepRecord.id).where(StepRecord.run_id == d["run_id"])
                          .where(StepRecord.task_key == d["task_key"])
                          .where(StepRecord.step_index == d["step_index"])).first())


def _predict_in_child(predictor, obs, queue):
    queue.put(float(predictor.predict(obs)[-1]))


def test_graph_predictions_in_a_worker_forked_after_a_large_prediction():
    """The bench prefits in the parent and forks its workers: a parallel torch op in the parent
    left an OpenMP team a forked child then hung on (the routerbench 3-step bench did)."""
    import multiprocessing as mp

    from evoroute.rescue.observe import Observed
    from evoroute.rescue.predictors import GraphPredictor

    rng = np.random.default_rng(0)
    n_tasks, steps = 400, 8
    n = n_tasks * steps
    roles = np.array([ROLES[i % 3] for i in range(n)])
    obs = Observed(task=np.repeat(np.arange(n_tasks), steps), position=np.tile(np.arange(steps), n_tasks),
                   roles=roles, model=np.full(n, "cheap", dtype=object), cost=rng.random(n),
                   opinion_cost=rng.random(n), has_opinion=roles != "mbpp", agree=rng.random(n) < 0.7,
                   unparsed=rng.random(n) < 0.05, ref_cost=np.ones(n))
    fails = (rng.random(n) < 0.4).astype(int)
    g = GraphPredictor(epochs=2).fit(obs, fails)
    g.predict(obs)                                    # large: the op that used to go parallel
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    child = ctx.Process(target=_predict_in_child, args=(g, obs, q))
    child.start()
    child.join(60)
    hung = child.is_alive()
    if hung:
        child.kill()
    assert not hung and child.exitcode == 0
    assert q.get(timeout=5) == pytest.approx(float(g.predict(obs)[-1]))
