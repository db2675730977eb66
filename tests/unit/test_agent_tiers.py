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

LOCAL = ModelInfo("smollm2-135m", 0.0, 0.0, litellm_id="openai/smollm2-135m",
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


def _language(g: str) -> re.Pattern:
    """A regular expression for the solver grammar's language (the grammar is regular up to
    the parentheses of ``calc``, which the test expressions below do not nest)."""
    rules = dict(line.split(" ::= ", 1) for line in g.strip().splitlines())
    alts = lambda rule: "|".join(re.escape(t) for t in re.findall(r'"((?:[^"\\]|\\.)*)"',  # noqa: E731
                                                                     rules[rule]))
    # the translation below is of exactly these rules: a change to them must change it too
    assert (rules["py"], rules["word"], rules["ident"], rules["ops"]) == (
        "ops? word (ops word){0,40} ops?", "ident | num", "[a-zA-Z_]{1,16}",
        "[ ,+*/%<>=!:()\\[\\]-]{1,10}")
    assert rules["atom"] == '"-"? num | "(" " "? sum " "? ")"'
    num, op = f"(?:{alts('num')})", r"[ ,+*/%<>=!:()\[\]-]"
    word, ops = f"(?:[a-zA-Z_]{{1,16}}|{num})", f"{op}{{1,10}}"
    py = f"(?:{ops})?{word}(?:{ops}{word}){{0,40}}(?:{ops})?"
    atom = rf"-?{num}"
    calc = rf"\(?\s?{atom}(?:\s?(?:[-+*/]|\*\*)\s?\(?\s?{atom}\s?\)?)*\s?\)?"
    return re.compile(rf"(?:CALC: {calc}|PYTHON: (?:{py}))\n")


def test_grammar_language_holds_the_references_and_rejects_numbers_from_elsewhere():
    """What the grammar *accepts* (not only the text of its number rule): every train
    reference is a sentence of its solver grammar; a number the question lacks is not, in a
    CALC line or built from digits in a PYTHON line."""
    tasks = W.load_tasks("tiered")
    for t in tasks + W.load_tasks("default"):
        if t.split != "train":
            continue
        lang = _language(W.grammar("solver", t))
        assert lang.fullmatch(W.tool_line(t) + "\n"), (t.id, W.tool_line(t))
    add = next(t for t in tasks if t.kind == "add" and t.split == "test")
    lang = _language(W.grammar("solver", add))
    a, b = re.findall(r"\d+", add.question)[:2]
    assert lang.fullmatch(f"CALC: {a} + {b}\n")
    assert not lang.fullmatch("CALC: 4711 + 1\n")                 # not in the question
    assert "13" not in add.question
    assert not lang.fullmatch("PYTHON: 13 + 2\n")                 # "13" from 1 and 3
    assert not lang.fullmatch("PYTHON: 1.5 + 2\n")                # no "." in python lines
    assert lang.fullmatch(f"PYTHON: {a} + {b}\n")


def test_a_leading_zero_never_enters_the_grammar_and_every_number_runs_in_the_tools():
    for t in W.load_tasks("tiered") + W.load_tasks("default"):
        for n in _allowed_numbers(W.grammar("solver", t)):
            assert n == "0" or not n.startswith("0") or n.startswith("0."), (t.id, n)
            assert T.run_tool("calculator", f"{n} + 0").ok, (t.id, n)
    duration = next(t for t in W.load_tasks("default") if ":0" in t.question)
    assert all(not n.startswith("0") or n == "0"
               for n in _allowed_numbers(W.grammar("solver", duration)))


def test_demos_are_similar_train_solutions_and_never_the_task_itself():
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
    tasks = [t for t in W.load_tasks("tiered") + W.load_tasks("default") if t.split == "train"]
    for t in tasks:
        for role in ("solver", "verifier"):
            g = W.grammar(role, t)
            llama_cpp.LlamaGrammar.from_string(g, verbose=False)
            nums = _allowed_numbers(g)
            for n in re.findall(r"\d+(?:\.\d+)?", t.reference):   # a list's numbers too
                assert n in nums, (t.id, role, n, t.reference)
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
    # a loopback endpoint that is not one of the packaged llama.cpp models (a local proxy
    # to a provider, say) never gets a grammar either
    proxy = ModelInfo("proxy", 0.0, 0.0, litellm_id="openai/gpt-4o-mini",
                      api_base="http://127.0.0.1:4000/v1")
    assert b.grammar_for(proxy, "solver", task) is None
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


def test_the_request_a_hosted_model_gets_has_no_grammar_and_a_local_one_does(monkeypatch):
    """Through the real execute -> litellm.completion path (litellm's own mock_response, no
    network): the body of a hosted call carries no grammar; a local llama.cpp one does."""
    from evoroute.backends.live.sdk import load_litellm
    from evoroute.core.types import StepContext

    litellm = load_litellm()
    real, seen = litellm.completion, []

    def completion(**kw):
        seen.append((kw["model"], kw.get("extra_body")))
        return real(mock_response="CALC: 31 + 44", **kw)
    monkeypatch.setattr(litellm, "completion", completion)
    b = LiveBackend("tiered", [LOCAL, HOSTED], check_models=False)
    spec = next(t for t in b.tasks("test") if t.key.endswith("tier-000"))
    step = StepContext(task_key=spec.key, step_index=1, role="solver",
                       instruction=spec.steps[1].instruction)
    for m in (HOSTED, LOCAL):
        assert b.execute(step, m).error is None
    assert seen[0] == ("gpt-4o-mini", None)
    assert seen[1][0] == "openai/smollm2-135m"
    assert seen[1][1] == {"grammar": W.grammar("solver", b._by_id["tier-000"])}
