"""The tiered task set and what makes the local models able to work on it: solved train
examples in the solver prompt (never a test task's solution) and per-role GBNF grammars sent to
local llama.cpp servers only."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from evoroute.agent import taskgen
from evoroute.agent import tools as T
from evoroute.agent import workflow as W
from evoroute.backends.live.backend import LiveBackend
from evoroute.core.errors import ValidationError
from evoroute.core.types import ModelInfo

LOCAL = ModelInfo("local-a", 0.0, 0.0, litellm_id="openai/local-a",
                  api_base="http://127.0.0.1:18999/v1")
HOSTED = ModelInfo("hosted-b", 0.15, 0.60, litellm_id="gpt-4o-mini")


def test_shipped_tiered_tasks_are_what_the_seeded_generator_writes(tmp_path):
    out = tmp_path / "tiered.jsonl"
    taskgen.write_jsonl(taskgen.generate_tiered(), out)
    assert out.read_bytes() == W.TIERED_TASKS.read_bytes()
    assert W.resolve_task_file("tiered") == W.TIERED_TASKS


def test_tiered_tasks_balance_tiers_across_splits_and_their_references_are_right():
    tasks = W.load_tasks("tiered")
    per = Counter((t.tier, t.split) for t in tasks)
    assert per == {(tier, s): n for tier in ("easy", "medium", "hard")
                   for s, n in (("train", 12), ("test", 8))}
    kinds = {t.tier: set() for t in tasks}
    for t in tasks:
        kinds[t.tier].add(t.kind)
        r = T.run_tool(t.tool, t.reference)
        assert r.ok, (t.id, r.error)
        assert T.answer_matches(r.number(), t.answer, t.decimals), (t.id, r.value, t.answer)
    assert kinds["easy"] == set(taskgen.TIERS["easy"])
    assert kinds["medium"] == set(taskgen.TIERS["medium"])
    assert kinds["hard"] <= set(taskgen.KINDS)
    # the easy tier is one operation on two numbers of the question (or one list function)
    for t in tasks:
        if t.tier == "easy" and t.tool == "calculator":
            assert re.fullmatch(r"\d+ [-+*/] \d+", t.reference), t.reference


def test_demos_are_train_solutions_of_the_same_kind_and_never_the_task_itself():
    tasks = W.load_tasks("tiered")
    by_id = {t.id: t for t in tasks}
    train_q = {t.question: t for t in tasks if t.split == "train"}
    for t in tasks:
        demos = W.select_demos(t, tasks, 2)
        assert len(demos) == 2
        same = [x for x in tasks if x.split == "train" and x.kind == t.kind and x.id != t.id]
        for q, line in demos:
            src = train_q[q]                       # a train task, shown with its own solution
            assert src.id != t.id and line == W.tool_line(src)
        # tasks of the same kind come first, as many as there are (the last shown is one)
        assert sum(train_q[q].kind == t.kind for q, _ in demos) == min(2, len(same))
        if same:
            assert train_q[demos[-1][0]].kind == t.kind
        assert W.select_demos(t, tasks, 2) == demos  # deterministic
    assert W.select_demos(by_id["tier-000"], tasks, 0) == ()
    # a test task's reference never reaches any prompt
    test_refs = {t.reference for t in tasks if t.split == "test"}
    for t in tasks:
        st = W.TaskState(t, demos=W.select_demos(t, tasks, 2))
        text = W.build_messages("solver", st)[0]["content"]
        assert all(("CALC: " + r) not in text and ("PYTHON: " + r) not in text
                   for r in test_refs - {x.reference for x in tasks if x.split == "train"})


def test_solver_prompt_shows_the_demos_last_most_similar_and_falls_back_to_generic_examples():
    tasks = W.load_tasks("tiered")
    t = next(x for x in tasks if x.split == "test" and x.kind == "add")
    demos = W.select_demos(t, tasks, 2)
    text = W.build_messages("solver", W.TaskState(t, demos=demos))[0]["content"]
    assert text.index(demos[0][1]) < text.index(demos[1][1]) < text.index("Problem: " + t.question)
    assert W.SOLVER_EXAMPLES not in text
    plain = W.build_messages("solver", W.TaskState(t))[0]["content"]
    assert W.SOLVER_EXAMPLES in plain


def test_grammars_are_valid_gbnf_and_admit_the_lines_the_parser_reads():
    llama_cpp = pytest.importorskip("llama_cpp")
    for g in W.GRAMMARS.values():
        llama_cpp.LlamaGrammar.from_string(g, verbose=False)   # raises on a syntax error
    # the lines the grammars allow are read by the same parser as free text
    st = W.TaskState(W.load_tasks("tiered")[0])             # "31 + 44" = 75
    assert W.apply_output("solver", st, "CALC: 31 + 44\n") == 1.0
    assert W.apply_output("verifier", st, "VERDICT: CORRECT\n") == 1.0
    assert W.apply_output("answerer", st, "ANSWER: 75\n") == 1.0
    st2 = W.TaskState(W.load_tasks("tiered")[0])
    W.apply_output("solver", st2, "CALC: 31 - 44\n")
    assert W.apply_output("verifier", st2, "VERDICT: WRONG\nCALC: 31 + 44\n") == 1.0


def _allowed_numbers(g: str) -> set[str]:
    line = next(x for x in g.splitlines() if x.startswith("num ::= "))
    return set(re.findall(r'"([0-9.]+)"', line))


def test_task_grammars_admit_the_reference_solution_and_no_number_the_question_lacks():
    """The numbers an expression may use are the question's (and a few constants): every
    reference solution stays writable, a solved example's numbers do not."""
    llama_cpp = pytest.importorskip("llama_cpp")
    tasks = W.load_tasks("tiered") + W.load_tasks("default")
    for t in tasks:
        for role in ("solver", "verifier"):
            g = W.grammar(role, t)
            llama_cpp.LlamaGrammar.from_string(g, verbose=False)
            nums = _allowed_numbers(g)
            lists = set(re.findall(r'"(\[[0-9, ]+\])"', g))
            ref = t.reference
            for lst in re.findall(r"\[\d+(?:, \d+)*\]", ref):
                assert lst in lists, (t.id, lst)
                ref = ref.replace(lst, " ")
            for n in re.findall(r"\d+(?:\.\d+)?", ref):
                assert n in nums, (t.id, role, n, ref)
        assert W.grammar("planner", t) is None
        assert W.grammar("answerer", t) == W.GRAMMARS["answerer"]
    add = next(t for t in W.load_tasks("tiered") if t.kind == "add" and t.split == "test")
    demo_numbers = {n for q, _ in W.select_demos(add, W.load_tasks("tiered"), 2)
                    for n in re.findall(r"\d+", q)}
    question_numbers = set(re.findall(r"\d+", add.question)) | set(W.GRAMMAR_CONSTANTS)
    assert _allowed_numbers(W.grammar("solver", add)) == question_numbers
    assert demo_numbers - question_numbers          # the examples' numbers are not writable


def test_grammar_goes_to_local_servers_only(tmp_path):
    b = LiveBackend("tiered", [LOCAL, HOSTED], check_models=False)
    assert b.grammar_for(LOCAL, "solver") == W.GRAMMARS["solver"]
    task = W.load_tasks("tiered")[0]
    assert b.grammar_for(LOCAL, "solver", task) == W.grammar("solver", task)
    assert b.grammar_for(HOSTED, "solver", task) is None
    assert b.grammar_for(LOCAL, "planner") is None                  # free text
    assert b.grammar_for(HOSTED, "solver") is None                  # never to a provider
    kw = b.client.request_kwargs(LOCAL, [{"role": "user", "content": "x"}], 8,
                                 grammar=W.GRAMMARS["solver"])
    assert kw["extra_body"] == {"grammar": W.GRAMMARS["solver"]}
    with pytest.raises(ValueError, match="local llama.cpp servers only"):
        b.client.request_kwargs(HOSTED, [{"role": "user", "content": "x"}], 8, grammar="root ::= x")
    off = LiveBackend("tiered", [LOCAL], check_models=False, grammar=False)
    assert off.grammar_for(LOCAL, "solver") is None
    d = b.describe()
    assert d["few_shot"] == 2 and d["grammar"].startswith("GBNF")


@pytest.mark.parametrize("bad", [{"few_shot": -1}, {"few_shot": 9}, {"few_shot": True},
                                 {"grammar": "yes"}])
def test_live_prompt_settings_are_checked(bad):
    with pytest.raises(ValidationError):
        LiveBackend("tiered", [LOCAL], check_models=False, **bad)


def test_the_backend_gives_each_task_its_demos():
    b = LiveBackend("tiered", [LOCAL], check_models=False, few_shot=1)
    spec = b.tasks("test")[0]
    from evoroute.core.types import StepContext

    step = StepContext(task_key=spec.key, step_index=1, role="solver",
                       instruction=spec.steps[1].instruction)
    st = b.state(step)
    assert len(st.demos) == 1 and st.demos[0][0] in b.messages(step)[0]["content"]
