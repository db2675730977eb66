"""``masrouter`` and ``best-vote`` as Routers through the runner (issue 13): collaboration
modes routed as composite arms of the replay backend, on a hand-made choice table whose right
mode per query is known."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest

from evoroute.backends.replay import ReplayBackend
from evoroute.collab.answers import choice_table
from evoroute.collab.modes import Mode, replay
from evoroute.core.errors import EvoRouteError, UnknownModelError
from evoroute.core.types import ModelInfo, StepContext
from evoroute.policy.registry import make_router
from evoroute.runs.loop import RunLoop
from evoroute.runs.prepare import prepare_run
from evoroute.runs.spec import RunSpec

MODELS = [ModelInfo(n, price_source="recorded") for n in ("c1", "c2", "strong")]   # recorded costs
COST = {"c1": 1.0, "c2": 1.0, "strong": 10.0}
ESCALATE = "escalate:c1+c2+strong"


def _question(topic: str, i: int) -> str:
    return f"Question {topic} number {i}?\nA) one\nB) two\nC) three\nD) four\nAnswer:"


def _rows(split: str, topic: str, i: int, answers: dict[str, str], gold: str) -> list[dict]:
    q = f"{split}-{topic}-{i}"
    return [{"query_id": q, "query": _question(topic, i) + f" ({split})", "model": m,
             "response": a, "score": float(a == gold), "cost_usd": COST[m],
             "role": "arc_challenge", "split": split, "task_id": q, "step": 0}
            for m, a in answers.items()]


def choice_frame(n_train: int = 20, n_test: int = 6) -> pd.DataFrame:
    """"alpha" queries: both cheap models answer right (one cheap call is enough). "beta"
    queries: the cheap models are right together on half and wrong with different answers on
    the other half, where the strong model (always right) settles it: escalation on
    disagreement gets every beta query right at a mean cost of 7, the strong model alone at 10."""
    rows: list[dict] = []
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            rows += _rows(split, "alpha", i, {"c1": "B", "c2": "B", "strong": "B"}, "B")
            wrong = i % 2 == 1
            rows += _rows(split, "beta", i, {"c1": "A" if wrong else "C", "c2": "D" if wrong else "C",
                                             "strong": "C"}, "C")
    return pd.DataFrame(rows)


class TopicEmbedder:
    """Alpha texts near one axis, beta texts near another (deterministic small noise)."""

    def encode(self, texts):
        out = []
        for t in texts:
            v = np.random.default_rng(zlib.crc32(t.encode())).normal(0, 0.05, 384)
            v[0 if "alpha" in t else 1] += 1.0
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32)


PARAMS = {"cost_weight": 1.0, "k": 20, "kappa": 1.0, "tau": 0.2}


def run(router: str = "masrouter", frame: pd.DataFrame | None = None, seed: int = 0,
        params: dict | None = None, dataset: str = "hand-made-choice"):
    frame = choice_frame() if frame is None else frame
    spec = RunSpec(router=router, dataset=dataset, seed=seed, protocol="full",
                   router_params=PARAMS if params is None else params)
    plan = prepare_run(spec, models=MODELS, backend=ReplayBackend(frame, MODELS, seed=seed),
                       embedder=TopicEmbedder())
    return list(RunLoop(plan).steps())


def test_masrouter_chooses_one_cheap_call_on_easy_queries_and_escalation_on_hard_ones():
    steps = run()
    assert len(steps) == 12 and {s.phase for s in steps} == {"inference"}
    for s in steps:
        e = s.decision.explanation
        hard = "beta" in s.ctx.instruction
        assert s.decision.model == s.outcome.model == e.chosen
        if not hard:
            assert s.outcome.model in ("c1", "c2") and e.mode == "collaboration: single"
            assert s.outcome.cost_usd == 1.0 and s.outcome.step_success == 1.0
        else:
            assert s.outcome.model == ESCALATE and e.mode == "collaboration: escalate"
            disagree = s.ctx.query_id.endswith(("1", "3", "5"))
            # the calls made: the pair, and the strong model only when the pair disagrees
            assert s.outcome.cost_usd == (12.0 if disagree else 2.0)
            assert s.outcome.step_success == 1.0
            assert "called only when their parsed answers differ" in e.reason
        assert "effective neighbours" in e.reason and "nearest train queries" in e.reason
        arms = {c.model: c for c in e.candidates}
        assert ESCALATE in arms and arms[e.chosen].propensity == 1.0
        assert all(c.p_hat is not None and c.c_hat is not None for c in e.candidates)
        assert arms[e.chosen].utility == max(c.utility for c in e.candidates)
        assert arms[ESCALATE].c_hat == pytest.approx(4.5)       # (2 on alpha + 7 on beta) / 2


def test_the_cost_knob_moves_it_between_modes():
    cheap = run(params={**PARAMS, "cost_weight": 100.0})
    assert {s.outcome.model for s in cheap} <= {"c1", "c2"}            # cost dominates
    best = run(params={**PARAMS, "cost_weight": 0.0})
    assert all(s.outcome.step_success == 1.0 for s in best)
    knob = make_router("masrouter", MODELS).capabilities().cost_knob
    assert knob.param == "cost_weight" and len(set(knob.values)) >= 12


def test_same_seed_same_decisions_and_seed_invariant():
    def decisions(seed):
        return [(s.task_key, s.outcome.model, s.outcome.cost_usd, s.decision.explanation.reason)
                for s in run(seed=seed)]
    assert decisions(3) == decisions(3)
    # declared seed-invariant: another seed makes the same decision on every query
    assert sorted(decisions(3)) == sorted(decisions(4))
    caps = make_router("masrouter", MODELS).capabilities()
    assert caps.seed_invariant and caps.needs_training and caps.needs_embedding
    assert not caps.learns_online and caps.run_params == ("dataset",)


def test_composite_arms_replay_the_modes_scoring():
    """Every composite arm the backend executes gives what modes.replay scores on that query."""
    frame = choice_frame()
    backend = ReplayBackend(frame, MODELS)
    table = choice_table(frame)
    for mode in (Mode("vote", ("strong", "c1", "c2")), Mode("vote", ("c1", "c2", "strong")),
                 Mode("escalate", ("c1", "c2", "strong")), Mode("escalate", ("strong", "c1", "c2"))):
        want = replay(mode, table)
        arm = backend.model(mode.name)
        assert arm.name == mode.name
        for t in backend.tasks("train") + backend.tasks("test"):
            ctx = StepContext(t.key, 0, t.steps[0].role, t.steps[0].instruction,
                              query_id=t.steps[0].query_id)
            got = backend.execute(ctx, arm)
            i = list(table.query_ids).index(t.steps[0].query_id)
            assert (got.step_success, got.cost_usd) == (want.correct[i], want.cost[i]), mode
    with pytest.raises(UnknownModelError):
        backend.model("vote:c1+nobody+strong")


def test_best_vote_routes_every_query_to_the_best_train_vote():
    steps = run("best-vote", params={})
    # one vote of the 3 models exists; voters strongest first, so a 1-1-1 tie goes to strong
    assert {s.outcome.model for s in steps} == {"vote:strong+c1+c2"}
    assert all(s.outcome.step_success == 1.0 and s.outcome.cost_usd == 12.0 for s in steps)
    e = steps[0].decision.explanation
    assert e.mode == "collaboration: vote" and "best train accuracy (1.000" in e.reason


def test_best_vote_refuses_datasets_without_modes_naming_the_dataset():
    code = choice_frame(4, 2).assign(role="mbpp")
    with pytest.raises(EvoRouteError, match=r"not defined on dataset 'my-code\.csv'.*'mbpp'"):
        run("best-vote", frame=code, dataset="my-code.csv", params={})
    silent = choice_frame(4, 2).drop(columns=["response"])
    with pytest.raises(EvoRouteError, match=r"dataset 'flat\.csv'.*no recorded responses"):
        run("best-vote", frame=silent, dataset="flat.csv", params={})


@pytest.mark.parametrize("drop", ["role", "response"])
def test_without_modes_masrouter_allocates_a_model_per_query(drop):
    """Where votes are undefined (a role that is not multiple choice, or no recorded responses)
    masrouter keeps the single-model modes and still routes by the query: the cheap models on
    alpha queries, the strong one on beta queries (the cheap ones fail half of them)."""
    frame = choice_frame()
    frame = frame.assign(role="mbpp") if drop == "role" else frame.drop(columns=["response"])
    steps = run(frame=frame, dataset="no-modes.csv", params={**PARAMS, "cost_weight": 0.2})
    assert len(steps) == 12
    for s in steps:
        e = s.decision.explanation
        assert e.mode == "collaboration: single" and ":" not in s.outcome.model
        assert "only single-model modes are defined" in e.reason
        assert {c.model for c in e.candidates} <= {"c1", "c2", "strong"}
        want = "strong" if "beta" in s.ctx.instruction else ("c1", "c2")
        assert s.outcome.model in want, (s.ctx.instruction, e.reason)


def test_a_dataset_mixing_choice_and_other_roles_gets_modes_only_on_the_choice_role():
    """RouterBench mixes multiple-choice roles with others: composite arms are routed and
    replayed on the former, single calls on the latter."""
    other = choice_frame().assign(role="mbpp")
    other["query_id"] = "m-" + other["query_id"]
    other["task_id"] = other["query_id"]
    other["query"] = other["query"].str.replace("Question", "Task")
    steps = run(frame=pd.concat([choice_frame(), other], ignore_index=True),
                dataset="mixed.csv", params={**PARAMS, "cost_weight": 0.2})
    by_role = {}
    for s in steps:
        by_role.setdefault(s.ctx.role, set()).add(s.outcome.model)
    assert ESCALATE in by_role["arc_challenge"]
    assert all(":" not in m for m in by_role["mbpp"]) and "strong" in by_role["mbpp"]


