"""The agent's tools (calculator, sandboxed Python), how model output is read, the workflow's
step checks and the bundled task set. Real subprocesses and real limits; no model calls."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from bounded import ends_within

from evoroute.agent import taskgen
from evoroute.agent import tools as T
from evoroute.agent import workflow as W
from evoroute.agent.results import ToolError
from evoroute.agent.sandbox import launcher as S
from evoroute.core.errors import DatasetError


# ------------------------------------------------------------------------------ calculator
@pytest.mark.parametrize("expr, value", [
    ("100 - (9*3.75 + 13*2.45)", 34.4),
    ("2 + 3 * 4", 14),
    ("(2 + 3) * 4", 20),
    ("2^10", 1024),                      # calculator spelling of a power
    ("7 × 6 ÷ 3", 14),
    ("$12.50 * 4", 50),
    ("-3 ** 2", -9),
    ("17 // 5 + 17 % 5", 5),
    ("round(12500 / (58 * 60), 2)", 3.59),
    ("max(3, 9, 4) - min(3, 9, 4)", 6),
    ("sqrt(144) + abs(-2)", 14),
])
def test_calculator_computes_arithmetic(expr, value):
    assert T.calculate(expr) == pytest.approx(value, abs=1e-9)


@pytest.mark.parametrize("expr, why", [
    ("__import__('os')", "function call __import__"),
    ("__import__('os').system('true')", "function call"),
    ("open('/etc/passwd')", "function call open"),
    ("x + 1", "name 'x'"),
    ("(1).__class__", "Attribute"),
    ("9**9**9", "power too large"),
    ("10**400", "power too large"),
    ("1/0", "division by zero"),
    ("[1, 2]", "a list is not a number"),
    ("'a' * 3", "not a number"),
    ("lambda: 1", "Lambda"),
    ("1 +", "not an arithmetic expression"),
    ("", "empty"),
    ("1+" * 400 + "1", "longer than"),
])
def test_calculator_refuses_what_is_not_arithmetic(expr, why):
    with pytest.raises(ToolError, match=why):
        T.calculate(expr)
    res = T.run_calculator(expr)
    assert not res.ok and why in res.error


def test_calculator_result_is_a_tool_result_with_a_number():
    r = T.run_calculator("0.1 + 0.2")
    assert r.ok and r.tool == "calculator"
    assert r.number() == pytest.approx(0.3)
    assert r.display() == "0.3"           # no float noise shown to the next model


# ------------------------------------------------------------------------------ python sandbox
@pytest.mark.parametrize("expr, value", [
    ("sum(x for x in [41, 9, 62, 4, 38] if x % 2 == 0)", 104),
    ("sorted([90, 92, 73, 99, 28])[-2]", 92),
    ("median([95, 52, 10, 49])", 50.5),
    ("sum(sorted([5, 1, 9, 7])[-3:])", 21),
    ("len([x for x in [40, 65, 82, 32] if x > 61])", 2),
    ("sorted([3, 1, 2], key=lambda v: -v)", [3, 2, 1]),
])
def test_python_sandbox_evaluates_expressions(expr, value):
    r = T.run_python(expr)
    assert r.ok, r.error
    assert r.value == value


def test_python_sandbox_time_limit():
    t0 = time.perf_counter()
    r = T.run_python("sum(range(10**13))", time_limit_s=1.0)
    took = time.perf_counter() - t0
    assert not r.ok and "time limit of 1 s exceeded" in r.error
    assert took < 4.0


def test_python_sandbox_memory_limit():
    r = T.run_python("len([0] * 10**9)", memory_mb=128)      # ~8 GB of pointers
    assert not r.ok and "memory limit of 128 MB" in r.error
    ok = T.run_python("len([0] * 10**6)", memory_mb=128)      # ~8 MB fits
    assert ok.ok and ok.value == 10**6


@pytest.mark.parametrize("expr, why", [
    ("open('/etc/passwd').read()", "name 'open' is not defined"),
    ("__import__('socket')", "names starting with '_'"),
    ("().__class__.__bases__[0].__subclasses__()", "names starting with '_'"),
    ("getattr((), 'x')", "name 'getattr' is not defined"),
    ("eval('1')", "name 'eval' is not defined"),
    ("import os", "statements and imports are not allowed"),
    ("x = 1", "statements and imports are not allowed"),
])
def test_python_sandbox_rejects_files_imports_and_escapes(expr, why):
    r = T.run_python(expr)
    assert not r.ok
    assert why in r.error


def test_sandbox_child_gets_no_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-should-never-reach-the-sandbox")
    # no builtin reaches os.environ; the child is started with an empty environment anyway
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", "import os; print(sorted(os.environ))"],
                          env={"LANG": "C.UTF-8"}, capture_output=True, text=True)
    assert "OPENAI_API_KEY" not in proc.stdout
    r = T.run_python("str(vars())")
    assert not r.ok and "vars" in r.error


@pytest.mark.parametrize("probe", [
    "open('/tmp/evoroute-sandbox-probe.txt', 'w').write('x')",
    "open('/etc/hostname').read()",
    "__import__('socket').socket()",
])
def test_os_limits_block_files_and_sockets_even_without_the_name_checks(probe, tmp_path):
    """Layer 3 on its own: after apply_limits, no file or socket can be opened."""
    child = tmp_path / "child.py"
    child.write_text(S.child_source())
    code = ("import runpy, sys\n"
            f"m = runpy.run_path({str(child)!r})\n"
            "m['apply_limits'](256 << 20, 2)\n"
            f"{probe}\n"
            "print('OPENED')")
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True,
                          env={"LANG": "C.UTF-8"}, timeout=20)
    assert "OPENED" not in proc.stdout
    assert proc.returncode != 0
    assert "Too many open files" in proc.stderr or "File size limit" in proc.stderr, proc.stderr


def test_the_child_program_is_its_modules_joined(tmp_path):
    """The sandbox holds no copy of the project: the child runs the sandbox modules joined
    into one source. Joining refuses what would change its meaning or reach the project."""
    src = S.child_source()
    assert "import evoroute" not in src and "from evoroute" not in src
    compile(src, "<child>", "exec")          # trusted: our own modules, compiled, not run
    (tmp_path / "a.py").write_text("import math\nX = 1\n\ndef f():\n    return X\n")
    (tmp_path / "b.py").write_text("import math\nfrom pkg.a import f\nY = f() + 1\n")
    joined = S.join_modules(tmp_path, "pkg", ("a", "b"))
    assert "from pkg" not in joined
    scope: dict = {}
    exec(joined, scope)                       # trusted: the two lines written above
    assert scope["Y"] == 2
    (tmp_path / "c.py").write_text("X = 2\n")
    with pytest.raises(RuntimeError, match="redefines 'X'"):
        S.join_modules(tmp_path, "pkg", ("a", "c"))
    (tmp_path / "d.py").write_text("from evoroute.settings import DEFAULTS\n")
    with pytest.raises(RuntimeError, match="only import"):
        S.join_modules(tmp_path, "pkg", ("a", "d"))
    (tmp_path / "e.py").write_text("from pkg.b import Y\n")       # not joined before it
    with pytest.raises(RuntimeError, match="only import"):
        S.join_modules(tmp_path, "pkg", ("a", "e"))


def test_run_tool_dispatch():
    assert T.run_tool("calculator", "6*7").value == 42
    assert T.run_tool("python", "max([1, 5, 2])").value == 5
    r = T.run_tool("search", "who")
    assert not r.ok and "unknown tool" in r.error


# ------------------------------------------------------------------------------ reading output
def test_extract_tool_calls_tagged_and_untagged():
    assert T.extract_tool_calls("Sure.\nCALC: 100 - 4*2.5\n") == [("calculator", "100 - 4*2.5")]
    assert T.extract_tool_calls("PYTHON: `sum([1, 2])`") == [("python", "sum([1, 2])")]
    assert T.extract_tool_calls("**Calc**: 3+4") == [("calculator", "3+4")]
    # untagged arithmetic goes to the calculator (the longest span with an operator)
    assert T.extract_tool_calls("The total is 7 * 3.75 + 12 * 1.20 = 40.65") == \
        [("calculator", "7 * 3.75 + 12 * 1.20")]
    assert T.extract_tool_calls("The total is 7 * 3.75", allow_untagged=False) == []
    assert T.extract_tool_calls("no numbers here") == []


@pytest.mark.parametrize("text, value", [
    ("ANSWER: 34.40", 34.4),
    ("answer = $1,234.50", 1234.5),
    ("The change is 9.35 dollars.", 9.35),
    ("ANSWER: -3", -3.0),
    ("I do not know", None),
    ("**ANSWER**: 42, not 7", 42.0),     # markdown around the tag: the tagged number wins
    ("Answer - .5 then 9", -0.5),
    ("the answer is 12 and 9", 9.0),     # no tag, so the last number
    ("ANSWER (2 decimals): 3.59", 3.59),  # not a tagged number: the last number
    ("**ANSWER** [1]: 17", 17.0),
])
def test_extract_answer(text, value):
    assert T.extract_answer(text) == value


def test_tool_lines_may_break_after_the_tag():
    assert T.extract_tool_calls("CALC:\n  2+3  \n") == [("calculator", "2+3")]
    assert T.extract_tool_calls("CALC:   ") == []
    assert T.extract_tool_calls("((1+2)*3) x ((") == [("calculator", "((1+2)*3)")]


@pytest.mark.parametrize("reply", [
    '"CALC" + " " * 1_000_000 + "x"',
    '"CALC: a" + " " * 1_000_000 + "b"',
    '"!" * 500_000 + "CALC" + " " * 500_000',
    '"(" * 1_000_000 + "x"',
    '"ANSWER" + " " * 1_000_000 + "-x"',
    '"ANSWER" + " *" * 500_000 + ":x"',
])
def test_a_hostile_reply_is_read_in_linear_time(reply):
    """A reply is untrusted: each of these once backtracked quadratically (16,000 characters
    took 3 s, a million would take hours); now each is read in about a second."""
    ends_within(f"""
from evoroute.agent import tools as T
reply = {reply}
calls = T.extract_tool_calls(reply)
want = [("calculator", "a" + " " * 1_000_000 + "b")] if reply.startswith("CALC: a") else []
assert calls == want, [(t, e[:40]) for t, e in calls]
assert T.extract_answer(reply) is None
""")


def test_answer_matches_at_the_stated_precision():
    assert T.answer_matches(3.5919540, 3.59, 2)
    assert T.answer_matches(34.400000000000006, 34.4, 2)
    assert not T.answer_matches(3.60, 3.59, 2)
    assert T.answer_matches(1492.2, 1492, 0)
    assert not T.answer_matches(1493, 1492, 0)
    assert not T.answer_matches(None, 1.0, 0)


# ------------------------------------------------------------------------------ the bundled tasks
def test_shipped_tasks_are_what_the_seeded_generator_writes(tmp_path):
    out = tmp_path / "tasks.jsonl"
    taskgen.write_jsonl(taskgen.generate(taskgen.DEFAULT_SEED, taskgen.DEFAULT_N,
                                         taskgen.DEFAULT_TEST), out)
    assert out.read_bytes() == W.BUNDLED_TASKS.read_bytes()


def test_shipped_tasks_split_kinds_and_reference_solutions():
    tasks = W.load_tasks("default")
    assert len(tasks) == 60
    assert sum(t.split == "test" for t in tasks) == 20
    assert len({t.kind for t in tasks}) == len(taskgen.KINDS)
    assert {t.tool for t in tasks} == {"calculator", "python"}
    # the tools, run on each reference expression, give the generator's exact answer
    for t in tasks:
        r = T.run_tool(t.tool, t.reference)
        assert r.ok, (t.id, r.error)
        assert T.answer_matches(r.number(), t.answer, t.decimals), (t.id, r.value, t.answer)


def test_generator_is_seeded():
    a, b = taskgen.generate(7, 20, 5), taskgen.generate(7, 20, 5)
    assert a == b
    assert a != taskgen.generate(8, 20, 5)


def test_load_tasks_reports_file_line_and_field(tmp_path):
    p = tmp_path / "bad.jsonl"
    good = {"id": "a", "split": "train", "question": "q?", "answer": 1, "decimals": 0}
    p.write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": "b", "split": "dev"}) + "\n")
    with pytest.raises(DatasetError, match=r"line 2, column 'split'"):
        W.load_tasks(str(p))
    p.write_text(json.dumps({k: v for k, v in good.items() if k != "answer"}) + "\n")
    with pytest.raises(DatasetError, match=r"line 1, column 'answer'"):
        W.load_tasks(str(p))
    with pytest.raises(DatasetError, match="no agent task set"):
        W.load_tasks(str(tmp_path / "missing.jsonl"))


# ------------------------------------------------------------------------------ workflow steps
def _task(**kw) -> W.AgentTask:
    base = dict(id="t1", split="test", kind="change",
                question="Pens cost $2.45 each. Maya buys 13 pens and pays with a $50 note. "
                         "How much change does she get? Round to 2 decimal places.",
                answer=18.15, decimals=2, tool="calculator", reference="50 - 13*2.45")
    return W.AgentTask(**{**base, **kw})


def test_a_correct_run_of_the_four_roles():
    st = W.TaskState(_task())
    assert W.apply_output("planner", st, "1. Multiply 13 by 2.45\n2. Subtract from 50") == 1.0
    msgs = W.build_messages("solver", st)
    assert "Multiply 13 by 2.45" in msgs[0]["content"]          # the solver reads the plan
    assert W.apply_output("solver", st, "CALC: 50 - 13*2.45") == 1.0
    assert st.candidate.value == pytest.approx(18.15)
    assert "Tool result: 18.15" in W.build_messages("verifier", st)[0]["content"]
    assert W.apply_output("verifier", st, "VERDICT: CORRECT") == 1.0
    answer_prompt = W.build_messages("answerer", st)[0]["content"]
    assert answer_prompt.endswith("the verifier says it is correct): 18.15\n")   # the value last
    assert W.apply_output("answerer", st, "ANSWER: 18.15") == 1.0
    assert st.correct


def test_step_checks_fail_honestly():
    st = W.TaskState(_task())
    assert W.apply_output("planner", st, "I will think about it.") == 0.0     # no task number
    assert W.apply_output("solver", st, "CALC: 50 - 13*2.54") == 0.0           # wrong expression
    assert st.candidate.value == pytest.approx(16.98)
    # a verifier that accepts a wrong result fails its step
    assert W.apply_output("verifier", st, "VERDICT: CORRECT") == 0.0
    assert W.apply_output("answerer", st, "ANSWER: 16.98") == 0.0
    assert not st.correct


def test_verifier_fix_runs_the_tool_and_replaces_the_result():
    st = W.TaskState(_task())
    W.apply_output("solver", st, "CALC: 50 + 13*2.45")
    assert W.apply_output("verifier", st, "VERDICT: WRONG\nCALC: 50 - 13*2.45") == 1.0
    assert st.candidate.value == pytest.approx(18.15)
    assert [c.expression for c in st.calls] == ["50 + 13*2.45", "50 - 13*2.45"]
    # a quoted (untagged) expression after WRONG is not taken as a fix
    st2 = W.TaskState(_task())
    W.apply_output("solver", st2, "CALC: 50 + 13*2.45")
    W.apply_output("verifier", st2, "VERDICT: WRONG, it should be 50 - 13*2.45")
    assert st2.candidate.value == pytest.approx(81.85)


def test_verifier_stands_in_when_the_solver_gave_nothing():
    st = W.TaskState(_task())
    assert W.apply_output("solver", st, "The answer is easy.") == 0.0
    assert st.candidate is None
    assert "gave no usable result" in W.build_messages("verifier", st)[0]["content"]
    assert W.apply_output("verifier", st, "50 - 13 * 2.45") == 1.0
    assert st.candidate.value == pytest.approx(18.15)


def test_python_tool_through_the_solver():
    t = _task(question="What is the sum of the even numbers in the list [4, 7, 10]?", answer=14,
              decimals=0, tool="python", reference="sum(x for x in [4, 7, 10] if x % 2 == 0)")
    st = W.TaskState(t)
    assert W.apply_output("solver", st, "PYTHON: sum(x for x in [4, 7, 10] if x % 2 == 0)") == 1.0
    assert st.calls[0].tool == "python" and st.calls[0].value == 14


def test_a_refused_tool_call_is_recorded_with_its_step():
    st = W.TaskState(_task())
    assert W.apply_output("solver", st, "CALC: __import__('os')") == 0.0
    note = W.step_tool_error(st, "solver")
    assert note == "calculator tool call \"__import__('os')\" failed: not allowed in a " \
        "calculator expression: function call __import__()"
    assert st.transcript()["tool_errors"] == {"solver": note}
    # the python tool says which OS isolation refused or ran it
    W.apply_output("verifier", st, "VERDICT: WRONG\nPYTHON: (x for x in ()).gi_frame")
    assert "python tool call" in W.step_tool_error(st, "verifier")
    assert f"[isolation: {S.sandbox_isolation().label()}]" in W.step_tool_error(st, "verifier")
    # a step whose calls all work records nothing, and re-running a step replaces its note
    assert W.apply_output("solver", st, "CALC: 50 - 13*2.45") == 1.0
    assert W.step_tool_error(st, "solver") is None


def test_routing_instructions_are_fixed_and_predict_tools():
    from evoroute.retrieval.tools import ToolPredictor

    t = _task()
    texts = {r: W.routing_instruction(r, t) for r in W.ROLES}
    assert len(set(texts.values())) == 4 and all(t.question in v for v in texts.values())
    pred = ToolPredictor().predict(texts["solver"])
    assert {"calculator", "python"} <= pred
