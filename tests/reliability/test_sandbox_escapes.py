"""Known Python-sandbox escapes against the agent's python tool (issue 10, item 1).

Every entry of the corpus must come back as a failed tool call with a clear message, through
the tool (``run_python``) and straight to the child process (the child's own checks, without
the parent's). A canary secret sits in this process's environment and a canary file in a
temporary directory; no escape may read the one or touch the other. The OS layer is also
tested on its own: real Python code (as if the interpreter had been broken) runs inside the
isolation and must not read the parent's environment, write a file, reach the network or
see the host's processes. Real processes, real limits; no mocks.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evoroute.agent import tools as T
from evoroute.agent import workflow as W
from evoroute.agent.sandbox import launcher as S
from evoroute.agent.sandbox import protocol as P
from evoroute.agent.sandbox.interpreter import evaluate
from evoroute.agent.sandbox.values import Refused

SECRET = "sk-canary-" + secrets.token_hex(12)

# The chain of the issue: a running generator reaches its own frame, then the frames that
# called it, up to the evaluator's module globals (os, sys). No name starts with "_".
FRAME_WALK = ("[[*g] for l in [[]] for g in [(x.gi_frame.f_back.f_back.f_back.f_globals "
              "for x in l)] if not l.append(g)][0][0]")

ESCAPES: list[tuple[str, str]] = [
    # -- frames and generators
    ("genexp-frame-walk-os", FRAME_WALK + "['os'].system('id')"),
    ("genexp-frame-walk-environ", FRAME_WALK + "['os'].environ"),
    ("genexp-frame-walk-sys-modules", FRAME_WALK + "['sys'].modules['os'].getpid()"),
    ("genexp-gi_frame", "(x for x in ()).gi_frame"),
    ("genexp-f_back-f_globals", "(x for x in ()).gi_frame.f_back.f_globals"),
    ("genexp-f_builtins", "(x for x in ()).gi_frame.f_builtins['open']('/etc/passwd').read()"),
    ("genexp-gi_code", "(x for x in [1]).gi_code.co_consts"),
    ("listcomp-holding-genexp", "[g.gi_frame.f_globals for g in [(y for y in [1])]]"),
    ("coroutine-cr_frame", "(lambda: (yield)).cr_frame"),
    ("async-genexp-ag_frame", "(x async for x in y).ag_frame"),
    ("await", "(await x)"),
    ("yield-from", "(lambda: (yield from [1]))()"),
    ("traceback-tb_frame", "min([]).tb_frame"),
    ("exception-traceback", "[].index(1).__traceback__.tb_frame.f_globals"),
    ("fullwidth-gi_frame", "(x for x in ()).\uff47i_frame.f_back"),
    ("nfkc-f_globals", "(x for x in ()).gi_frame.\uff46_globals"),
    ("getattr-gi_frame", "getattr((x for x in ()), 'gi_frame')"),
    ("getattr-built-name", "getattr(getattr((x for x in ()), 'gi_' + 'fr' + 'ame'), 'f_back')"),
    ("vars-genexp", "vars((x for x in ()))"),
    ("dir", "dir(())"),
    ("globals", "globals()"),
    ("locals", "locals()"),
    # -- dunder chains, by any spelling
    ("class-bases-subclasses", "().__class__.__bases__[0].__subclasses__()"),
    ("class-mro-subclasses", "''.__class__.__mro__[1].__subclasses__()"),
    ("class-base", "[].__class__.__base__.__subclasses__()"),
    ("lambda-globals", "(lambda: 0).__globals__"),
    ("lambda-code", "(lambda: 0).__code__.co_consts"),
    ("builtin-self", "print.__self__"),
    ("sum-self-import", "sum.__self__.__import__('os')"),
    ("len-self-open", "len.__self__.open('/etc/passwd')"),
    ("builtins-name", "__builtins__"),
    ("builtins-open", "__builtins__['open']('/etc/passwd').read()"),
    ("dunder-import", "__import__('os').system('id')"),
    ("loader", "__loader__"),
    ("spec", "__spec__"),
    ("fullwidth-underscores", "().\uff3f\uff3fclass\uff3f\uff3f"),
    ("fullwidth-dunder-name", "\uff3f\uff3fimport\uff3f\uff3f('os')"),
    ("chr-built-dunder", "getattr((), chr(95) * 2 + 'class' + chr(95) * 2)"),
    ("reduce-ex", "().__reduce_ex__(2)"),
    ("str-mro", "str.mro()"),
    ("int-from-bytes", "int.from_bytes([1], 'big')"),
    ("function-as-object", "str.join(',', ['a', 'b'])"),
    ("method-of-function", "sorted.upper()"),
    ("bound-method-value", "{}.get"),
    ("dict-keys-mapping", "{}.keys().mapping"),
    ("type-call", "type(1)"),
    ("type-three-args", "type('X', (), {})"),
    ("object-subclasses", "object.__subclasses__()"),
    ("super", "super()"),
    # -- format strings
    ("format-class", "'{0.__class__}'.format(1)"),
    ("format-mro", "'{0.__class__.__mro__}'.format(())"),
    ("format-gi_frame", "'{.gi_frame}'.format(x for x in ())"),
    ("format-map", "'{a.gi_frame}'.format_map({'a': (x for x in ())})"),
    ("str-format-unbound", "str.format('{0.__class__}', 1)"),
    ("format-builtin", "format(1, '>1000000000')"),
    ("percent-format", "'%s' % ((x for x in ()),)"),
    ("percent-width", "'%*d' % (10**9, 1)"),
    ("fstring-class", "f'{().__class__}'"),
    ("fstring-r", "f'{(x for x in ())!r}'"),
    ("fstring-nested", "f'{f\"{1}\"}'"),
    ("fstring-width", "f'{1:>{10**9}}'"),
    ("fstring-gi_frame", "f'{(x for x in ()).gi_frame}'"),
    # -- decorators, lambdas, walrus, comprehensions
    ("decorator", "@print\ndef f(): pass"),
    ("class-statement", "class A: pass"),
    ("def-statement", "def f(): return 1"),
    ("lambda-recursion", "(lambda f: f(f))(lambda f: f(f))"),
    ("lambda-varargs", "(lambda *a: a)(1)"),
    ("lambda-default-builtin", "(lambda x=print: x)()"),
    ("lambda-kwargs", "(lambda **k: k)()"),
    ("walrus-genexp", "(y := (x for x in ()))"),
    ("walrus-list", "[y := 1, y]"),
    ("walrus-in-comprehension", "[(z := x) for x in [1]] and z"),
    ("comprehension-leak", "[[x for x in [1]], x]"),
    ("kwargs-unpack", "dict(**{'a': 1})"),
    ("dict-unpack", "{**{}}"),
    # -- the host
    ("breakpoint", "breakpoint()"),
    ("help", "help()"),
    ("open", "open('/etc/passwd').read()"),
    ("open-write", "open('/tmp/evoroute-escape', 'w').write('x')"),
    ("proc-self-environ", "open('/proc/self/environ').read()"),
    ("proc-1-environ", "open('/proc/1/environ').read()"),
    ("input", "input()"),
    ("exit", "exit(1)"),
    ("exec", "exec('import os')"),
    ("eval", "eval('1')"),
    ("compile", "compile('1', '', 'eval')"),
    ("import-statement", "import os"),
    ("from-import", "from os import system"),
    ("sys-modules", "sys.modules['os']"),
    ("os-system", "os.system('id')"),
    ("memoryview", "memoryview(b'x')"),
    ("bytes-constant", "b'x'"),
    # -- sizes, recursion, loops
    ("str-repeat", "'a' * 10**10"),
    ("str-repeat-chained", "'a' * 10**6 * 10**6"),
    ("power-tower", "10**10**10"),
    ("pow-function", "pow(10, 10**9)"),
    ("left-shift", "1 << 10**9"),
    ("list-repeat", "[0] * 10**10"),
    ("list-of-range", "list(range(10**10))"),
    ("sorted-range", "sorted(range(10**9))"),
    ("set-range", "set(range(10**9))"),
    ("join-huge", "'x'.join(['a' * 10**6] * 10**3)"),
    ("replace-grow", "('a' * 10**6).replace('a', 'aa')"),
    ("int-digits", "int('9' * 10**6)"),
    ("prod-factorial", "prod(range(1, 10**6))"),
    ("deep-unary", "-" * 200 + "1"),
    ("deep-lists", "[" * 100 + "]" * 100),
    ("deep-additions", "1+" * 299 + "1"),
    ("comprehension-explosion", "[x for x in range(10**12)]"),
    ("nested-comprehension", "[(a, b) for a in range(10**5) for b in range(10**5)]"),
    ("busy-sum", "sum(range(10**18))"),
    ("busy-max", "max(range(10**18))"),
    ("busy-any", "any(x < 0 for x in range(10**15))"),
    ("long-expression", "1+" * 400 + "1"),
]
IDS = [i for i, _ in ESCAPES]
assert len(set(IDS)) == len(IDS)

# a failed call says what happened in words: refused (and why), a limit, or Python's error
CLEAR_ERROR = re.compile(r"^(refused: .{8,}|MemoryError: memory limit of \d+ MB exceeded|"
                         r"time limit of [\d.]+ s exceeded|(TypeError|ValueError): .+)", re.S)
LIMITS = {"time_limit_s": 1.0, "memory_mb": 128}


def _snapshot(d: Path) -> list[tuple[str, int, int, bytes]]:
    return sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size, p.read_bytes())
                  for p in d.iterdir())


@pytest.fixture(scope="module")
def canary(tmp_path_factory):
    """A secret in this process's environment and a file the sandbox must never touch."""
    d = tmp_path_factory.mktemp("canary")
    (d / "canary.txt").write_text(SECRET)
    os.chmod(d, 0o777)                       # writable even for the sandbox user
    os.chmod(d / "canary.txt", 0o666)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_API_KEY", SECRET)
        mp.setenv("EVOROUTE_CANARY", SECRET)
        yield d


@pytest.fixture
def intact(canary):
    before = _snapshot(canary)
    yield canary
    assert _snapshot(canary) == before, "the canary directory changed"
    assert not Path("/tmp/evoroute-escape").exists()


def _no_secret(*texts) -> None:
    for t in texts:
        assert SECRET not in json.dumps(t, default=str)


def run_child_raw(expr: str, time_limit_s: float = 1.0, memory_mb: int = 128
                  ) -> subprocess.CompletedProcess:
    """The child in its isolation with the expression as is: no parent-side check."""
    iso = S.sandbox_isolation()
    payload = f"{memory_mb << 20} {max(1, int(time_limit_s))}\n{expr}"
    return subprocess.run([*iso.prefix, S.child_python(), "-I", "-S", "-c", S.child_source()],
                          input=payload, capture_output=True, text=True, env={}, cwd="/",
                          timeout=time_limit_s + 10)


# ------------------------------------------------------------------------------ the corpus
@pytest.mark.parametrize("expr", [e for _, e in ESCAPES], ids=IDS)
def test_escape_fails_with_a_clear_tool_error(expr, intact):
    r = T.run_python(expr, **LIMITS)
    assert not r.ok, (expr, r.value)
    assert r.value is None
    assert CLEAR_ERROR.match(r.error or ""), r.error
    assert r.isolation == S.sandbox_isolation().label()
    _no_secret(r.error)


@pytest.mark.parametrize("expr", [e for _, e in ESCAPES], ids=IDS)
def test_child_refuses_the_escape_without_the_parent_check(expr, intact):
    p = run_child_raw(expr)
    _no_secret(p.stdout, p.stderr)
    if p.returncode in (-24, -9, 128 + 24, 128 + 9):     # the CPU limit stopped a busy loop
        assert "busy" in IDS[[e for _, e in ESCAPES].index(expr)] or "comprehension" in expr \
            or "range" in expr, (expr, p.returncode)
        return
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["ok"] is False, (expr, res)
    assert CLEAR_ERROR.match(res["error"]) or \
        res["error"].startswith("MemoryError: memory limit"), res["error"]


def test_corpus_frame_walks_really_escape_a_plain_eval(canary):
    """The corpus has teeth: the frame-walk entries do escape ``eval`` with whitelisted
    builtins and no underscore names (the evaluator this project had before)."""
    harness = textwrap.dedent("""
        import ast, os, sys
        SAFE = {"list": list, "len": len, "sorted": sorted, "sum": sum, "str": str}
        def main(expr):
            tree = ast.parse(expr, mode="eval")
            assert not any(isinstance(n, ast.Attribute) and n.attr.startswith("_")
                           or isinstance(n, ast.Name) and n.id.startswith("_")
                           for n in ast.walk(tree))
            return eval(compile(tree, "<expression>", "eval"), {"__builtins__": dict(SAFE)}, {})
        print(main(sys.stdin.read())["EVOROUTE_CANARY"])
    """)
    for name in ("genexp-frame-walk-environ",):
        expr = dict(ESCAPES)[name]
        p = subprocess.run([sys.executable, "-I", "-c", harness], input=expr, capture_output=True,
                           text=True, timeout=30, env={**os.environ})
        assert p.stdout.strip() == SECRET, p.stderr     # the naive evaluator leaks the secret
        r = T.run_python(expr, **LIMITS)                   # the tool does not
        assert not r.ok and "attribute access is not allowed" in r.error


def test_corpus_size():
    assert len(ESCAPES) >= 100


# ------------------------------------------------------------------------------ output bombs
# Each is small to build (shared references, long keys, long integers) but was megabytes of
# JSON for the parent to read, keep in the task transcript and hand on: ["a" * 10**5] * 300
# came back as 30 MB (every string was cut to 100,000 characters, their total was not).
OUTPUT_BOMBS = [
    ("shared-strings", '["a" * 10**5] * 300'),
    ("nested-shared-strings", '[["a" * 10**5] * 100] * 100'),
    ("long-keys", '{("a" * 99999, n): 0 for n in range(1000)}'),
    ("long-tuple-keys", '{(("a" * 10**5,) * 50, n): 1 for n in range(100)}'),
    ("long-integers", '[10**3000] * 10000'),
    ("long-integer-keys", '{10**3000 + n: n for n in range(1000)}'),
    ("astral-strings", '["\U0001F600" * 10**5] * 50'),
]


@pytest.mark.parametrize("expr", [e for _, e in OUTPUT_BOMBS], ids=[i for i, _ in OUTPUT_BOMBS])
def test_an_output_bomb_is_cut_in_the_child(expr):
    out = P.dumps({"ok": True, "value": P.to_jsonable(evaluate(expr))})
    # 100,000 characters of text in all, 12 JSON characters each at worst (a surrogate pair)
    assert len(out) <= 12 * P.MAX_OUTPUT_CHARS + 100, len(out)
    text = json.loads(out)["value"]
    flat = json.dumps(text, ensure_ascii=False)
    assert len(flat) <= P.MAX_OUTPUT_CHARS + 10 * P.MAX_OUTPUT_ITEMS


@pytest.mark.parametrize("expr", [e for _, e in OUTPUT_BOMBS[:3]],
                         ids=[i for i, _ in OUTPUT_BOMBS[:3]])
def test_an_output_bomb_reaches_the_parent_bounded(expr):
    p = run_child_raw(expr, time_limit_s=5.0)
    assert p.returncode == 0, p.stderr
    assert len(p.stdout) <= 12 * P.MAX_OUTPUT_CHARS + 100, len(p.stdout)
    r = T.run_python(expr, time_limit_s=5.0)
    assert r.ok, r.error
    assert len(json.dumps(r.value)) <= S.MAX_RESULT_CHARS


def test_small_results_are_not_cut():
    v = P.to_jsonable(evaluate('{"a": [1, "b"], (1, 2): 3, 2**100: "x" * 500}'))
    assert v == {"a": [1, "b"], "(1, 2)": 3, str(2**100): "x" * 500}


# ------------------------------------------------------------------------------ the OS layer alone
def _isolations() -> list[str]:
    out = []
    for name in ("bwrap", "unshare"):
        os.environ[S.ISOLATION_ENV] = name
        try:
            S.sandbox_isolation()
            out.append(name)
        except S.IsolationUnavailable:
            pass
        finally:
            del os.environ[S.ISOLATION_ENV]
    return out


AVAILABLE = _isolations()

HOSTILE = textwrap.dedent("""
    import json, os, socket, sys
    ppid, canary_dir, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    out = {"uid": os.getuid(), "gid": os.getgid(), "env": dict(os.environ)}
    def attempt(name, fn):
        try:
            v = fn()
            out[name] = v if isinstance(v, (int, list)) else "done: " + repr(v)[:200]
        except BaseException as exc:
            out[name] = "blocked: " + type(exc).__name__
    attempt("parent_environ", lambda: open(f"/proc/{ppid}/environ").read())
    attempt("parent_kill", lambda: os.kill(ppid, 0) or "signalled")
    attempt("canary_read", lambda: open(canary_dir + "/canary.txt").read())
    attempt("canary_write", lambda: open(canary_dir + "/canary.txt", "w").write("x"))
    attempt("canary_delete", lambda: os.unlink(canary_dir + "/canary.txt") or "deleted")
    attempt("new_file", lambda: open(canary_dir + "/new.txt", "w").write("x"))
    attempt("tmp_file", lambda: open("/tmp/evoroute-escape", "w").write("x"))
    attempt("root_file", lambda: open("/escape.txt", "w").write("x"))
    attempt("shm_file", lambda: open("/dev/shm/escape.txt", "w").write("x"))
    attempt("usr_file", lambda: open("/usr/escape.txt", "w").write("x"))
    attempt("system", lambda: os.system(f"echo x > {canary_dir}/system.txt"))
    attempt("network", lambda: socket.create_connection(("127.0.0.1", port), timeout=2)
            and "connected")
    attempt("host_pids", lambda: sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
    attempt("capabilities", lambda: [ln for ln in open("/proc/self/status")
                                     if ln.startswith("CapEff")][0].split()[1])
    print(json.dumps(out))
""")


@pytest.mark.skipif(not AVAILABLE, reason="no OS isolation available on this machine")
@pytest.mark.parametrize("level", AVAILABLE)
def test_os_isolation_alone_stops_real_code(level, intact, monkeypatch):
    """As if the interpreter were broken: real Python inside the isolation."""
    monkeypatch.setenv(S.ISOLATION_ENV, level)
    iso = S.sandbox_isolation()
    assert iso.name == level
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        p = subprocess.run([*iso.prefix, S.child_python(), "-I", "-S", "-c", HOSTILE,
                            str(os.getpid()), str(intact), str(port)],
                           capture_output=True, text=True, env={}, cwd="/", timeout=60)
    finally:
        listener.close()
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    _no_secret(out)
    assert out["uid"] == S.SANDBOX_UID and out["gid"] == S.SANDBOX_GID
    assert set(out["env"]) <= {"PWD", "LC_CTYPE"}
    for k in ("parent_environ", "parent_kill", "canary_read", "canary_write", "canary_delete",
              "new_file", "tmp_file", "root_file", "shm_file", "usr_file", "network"):
        assert str(out[k]).startswith("blocked: "), (k, out[k])
    assert out["system"] != 0 and not (intact / "system.txt").exists()
    assert isinstance(out["host_pids"], list) and len(out["host_pids"]) <= 3   # own pid namespace
    assert os.getpid() not in out["host_pids"] or len(out["host_pids"]) <= 3
    assert out["capabilities"] == "done: '0000000000000000'", out["capabilities"]


# ------------------------------------------------------------------------------ the policy
def test_isolation_is_recorded_in_every_result():
    ok = T.run_python("sum([1, 2, 3])")
    bad = T.run_python("open('/etc/passwd')")
    assert ok.ok and ok.value == 6
    assert ok.isolation == bad.isolation == S.sandbox_isolation().label()
    assert ok.isolation.split()[0] in ("bwrap", "unshare")


def test_no_isolation_refuses_the_tool_unless_opted_in(monkeypatch):
    monkeypatch.setenv(S.ISOLATION_ENV, "none")
    monkeypatch.delenv(S.ALLOW_NO_ISOLATION_ENV, raising=False)
    r = T.run_python("1 + 1")
    assert not r.ok and "no OS isolation" in r.error and S.ALLOW_NO_ISOLATION_ENV in r.error
    monkeypatch.setenv(S.ALLOW_NO_ISOLATION_ENV, "1")
    r = T.run_python("1 + 1")
    assert r.ok and r.value == 2 and r.isolation.startswith("none")
    r = T.run_python(FRAME_WALK + "['os'].environ")          # the interpreter still holds
    assert not r.ok and "attribute access is not allowed" in r.error
    monkeypatch.setenv(S.ISOLATION_ENV, "chroot")
    r = T.run_python("1 + 1")
    assert not r.ok and "must be auto, bwrap, unshare or none" in r.error


def test_a_named_isolation_that_is_missing_is_not_replaced_by_a_weaker_one(monkeypatch):
    monkeypatch.setenv(S.ISOLATION_ENV, "bwrap")
    monkeypatch.setenv("PATH", "/nonexistent")
    try:
        with pytest.raises(S.IsolationUnavailable, match="bwrap: not installed"):
            S.sandbox_isolation(refresh=True)
        r = T.run_python("1 + 1")
        assert not r.ok and "bwrap: not installed" in r.error and r.isolation is None
    finally:
        monkeypatch.undo()
        S.sandbox_isolation(refresh=True) if os.environ.get(S.ISOLATION_ENV) else None
        S._ISOLATION.clear()


# ------------------------------------------------------------------------------ legitimate uses
@pytest.mark.parametrize("expr, value", [
    ("sum(x for x in [3, 8, 5, 12] if x % 2 == 1)", 8),
    ("sorted([90, 92, 73, 99, 28])[-2] * 3", 276),
    ("max([4, 9, 1]) - min([4, 9, 1])", 8),
    ("median([95, 52, 10, 49])", 50.5),
    ("mean([1, 2, 3, 4])", 2.5),
    ("round(sum([1.25, 2.5]) / 2, 2)", 1.88),
    ("len([x for x in range(100) if x % 7 == 0])", 15),
    ("sorted([3, 1, 2], key=lambda v: -v)", [3, 2, 1]),
    ("sum(map(lambda a: a * a, [1, 2, 3]))", 14),
    ("{k: v for k, v in zip(['a', 'b'], [1, 2])}", {"a": 1, "b": 2}),
    ("sorted({'b': 2, 'a': 1}.items())", [["a", 1], ["b", 2]]),
    ("'a,b,c'.split(',')", ["a", "b", "c"]),
    ("' Hi '.strip().upper()", "HI"),
    ("[1, 2, 2].count(2)", 2),
    ("{'x': 3}.get('y', 0)", 0),
    ("sum(range(10**6))", 499999500000),
    ("2 ** 100", 2 ** 100),
    ("10 / 4", 2.5),
    ("[a * b for a, b in enumerate([5, 6, 7])]", [0, 6, 14]),
    ("any(x > 5 for x in [1, 9]) and all(x > 0 for x in [1, 9])", True),
])
def test_legitimate_expressions_still_work(expr, value):
    r = T.run_python(expr)
    assert r.ok, r.error
    assert r.value == value


def test_every_bundled_python_task_reference_runs():
    tasks = [t for t in W.load_tasks("default") if t.tool == "python"]
    assert len(tasks) >= 10
    for t in tasks:
        r = T.run_python(t.reference)
        assert r.ok, (t.id, r.error)
        assert T.answer_matches(r.number(), t.answer, t.decimals), (t.id, r.value)


def test_the_interpreter_never_compiles_the_expression():
    """No ``compile``/``eval``/``exec`` call in the child, whose only ``compile`` makes an AST."""
    src = S.child_source()
    calls = re.findall(r"(?<![.\w])(eval|exec|compile)\(", src)
    assert calls == ["compile"], calls
    assert "PyCF_ONLY_AST" in src


# ------------------------------------------------------------------------------ end to end
def _task(**kw) -> W.AgentTask:
    base = dict(id="t1", split="test", kind="sum_even",
                question="What is the sum of the even numbers in the list [4, 7, 10]?",
                answer=14, decimals=0, tool="python",
                reference="sum(x for x in [4, 7, 10] if x % 2 == 0)")
    return W.AgentTask(**{**base, **kw})


@pytest.mark.parametrize("name", ["genexp-frame-walk-environ", "genexp-frame-walk-os",
                                  "proc-1-environ", "format-map", "fstring-r"])
def test_a_model_line_with_an_escape_is_refused_and_recorded_in_the_step(name, intact):
    st = W.TaskState(_task())
    sigma = W.apply_output("solver", st, f"Sure.\nPYTHON: {dict(ESCAPES)[name]}\n")
    assert sigma == 0.0
    assert len(st.calls) == 1 and not st.calls[0].ok
    note = W.step_tool_error(st, "solver")
    assert note is not None and "python tool call" in note and "failed: refused:" in note
    assert f"[isolation: {S.sandbox_isolation().label()}]" in note
    # the next prompt (the verifier's) says why, and carries no secret
    prompt = W.build_messages("verifier", st)[0]["content"]
    assert "refused" in prompt
    _no_secret(prompt, st.transcript())
    assert st.transcript()["tool_errors"]["solver"] == note
    # a later good call by the verifier clears nothing of the solver's record
    assert W.apply_output("verifier", st, "VERDICT: WRONG\nPYTHON: sum([4, 10])") == 1.0
    assert W.step_tool_error(st, "solver") == note and W.step_tool_error(st, "verifier") is None


# ------------------------------------------------------------------------------ a live backend
class ScriptedModel:
    """An OpenAI-compatible streaming server on 127.0.0.1 that answers each agent role with a
    scripted text (the attacker's model) and keeps every prompt it was sent."""

    def __init__(self, replies: dict[str, str]):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.replies, self.prompts = replies, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
                outer.prompts.append(prompt)
                role = next((r for r in W.ROLES if f"You are the {r}" in prompt), "planner")
                text = outer.replies.get(role, "1. add the numbers")
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                words = text.split(" ")
                for i, w in enumerate(words):
                    piece = w if i == 0 else " " + w
                    self.wfile.write(_sse({"choices": [{"index": 0, "delta": {"content": piece}}]}))
                self.wfile.write(_sse({"choices": [{"index": 0, "delta": {},
                                                    "finish_reason": "stop"}]}))
                self.wfile.write(_sse({"choices": [], "usage": {
                    "prompt_tokens": len(prompt) // 4, "completion_tokens": len(words),
                    "total_tokens": len(prompt) // 4 + len(words)}}))
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.api_base = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _sse(obj: dict) -> bytes:
    base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "scripted"}
    return b"data: " + json.dumps({**base, **obj}).encode() + b"\n\n"


def test_a_live_backend_step_with_an_escape_leaks_nothing_to_the_next_prompt(intact):
    """The issue's end-to-end path: the model's PYTHON line ran, and the key came back in the
    next prompt. Now the call is refused, the refusal is kept with the step, and no prompt
    the model server receives carries the secret."""
    from evoroute.backends.live import LiveBackend
    from evoroute.core.types import ModelInfo, StepContext

    server = ScriptedModel({
        "solver": "PYTHON: " + FRAME_WALK + "['os'].environ['EVOROUTE_CANARY']",
        "verifier": "VERDICT: WRONG\nPYTHON: open('/proc/1/environ').read()",
        "answerer": "ANSWER: 1",
    })
    try:
        model = ModelInfo("scripted", litellm_id="openai/scripted", api_base=server.api_base)
        backend = LiveBackend("default", [model], seed=0, max_retries=0, timeout_s=30.0,
                              check_models=False)
        task = backend.tasks("test")[0]
        outcomes = []
        for i, spec in enumerate(task.steps):
            ctx = StepContext(task_key=task.key, step_index=i, role=spec.role,
                              instruction=spec.instruction, query_id=spec.query_id)
            outcomes.append(backend.execute(ctx, model))
        st = backend.state(StepContext(task_key=task.key, step_index=3, role="answerer",
                                       instruction=""))
        solver_note = W.step_tool_error(st, "solver")
        verifier_note = W.step_tool_error(st, "verifier")
        backend.check_task(task, outcomes)
    finally:
        server.close()
    assert len(server.prompts) == 4
    assert [o.error for o in outcomes] == [None] * 4          # the model calls themselves worked
    assert outcomes[1].step_success == 0.0 and outcomes[2].step_success == 0.0
    assert "refused: attribute access is not allowed" in solver_note
    assert "refused: name 'open' is not defined" in verifier_note
    assert "refused" in server.prompts[2]                    # the verifier is told why
    _no_secret(server.prompts, backend.transcripts[task.key])
    assert backend.transcripts[task.key]["tool_errors"] == {"solver": solver_note,
                                                             "verifier": verifier_note}
    # the step outcomes carry the refusal, so the runner stores it in the step record
    assert [o.tool_error for o in outcomes] == [None, solver_note, verifier_note, None]


# ------------------------------------------------------------------------- the interpreter's maths
_ints = st.integers(-10**6, 10**6).map(str)
_floats = st.floats(-1e6, 1e6, allow_nan=False).map(repr)
_ops = st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "<", "==", "and", "or"])


@st.composite
def _expressions(draw, depth=3):
    if depth == 0 or draw(st.booleans()):
        return draw(st.one_of(_ints, _floats))
    op = draw(_ops)
    # a small exponent, so that Python itself (the reference) stays fast
    right = draw(st.integers(-3, 4).map(str)) if op == "**" else draw(_expressions(depth - 1))
    return f"({draw(_expressions(depth - 1))} {op} {right})"


@settings(max_examples=150, deadline=None)
@given(_expressions())
def test_interpreter_arithmetic_equals_python(expr):
    """On plain arithmetic the interpreter gives Python's own value, or refuses a too-large
    power; Python's own errors (ZeroDivisionError, OverflowError) come back as they are."""
    try:
        want = eval(expr, {"__builtins__": {}})     # trusted: generated here, numbers only
    except (ZeroDivisionError, OverflowError) as exc:
        with pytest.raises(type(exc)):
            evaluate(expr)
        return
    except MemoryError:
        return
    try:
        got = evaluate(expr)
    except Refused as exc:
        assert "power too large" in str(exc) or "integer larger" in str(exc)
        return
    if isinstance(want, float) and want != want:
        assert got != got
    else:
        assert got == want and type(got) is type(want)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-1000, 1000), max_size=30), st.integers(-50, 50))
def test_interpreter_list_functions_equal_python(xs, k):
    assert evaluate(f"sum(x for x in {xs} if x % 2 == 0)") == sum(x for x in xs if x % 2 == 0)
    assert evaluate(f"sorted({xs}, key=lambda v: -v)") == sorted(xs, key=lambda v: -v)
    assert evaluate(f"len([x for x in {xs} if x > {k}])") == len([x for x in xs if x > k])
    assert evaluate(f"[a * b for a, b in enumerate({xs})]") == \
        [a * b for a, b in enumerate(xs)]
    if xs:
        assert evaluate(f"max({xs}) - min({xs})") == max(xs) - min(xs)
        assert evaluate(f"median({xs})") == pytest.approx(__import__("statistics").median(xs))
        assert evaluate(f"sorted({xs})[-1]") == sorted(xs)[-1]
