"""The agent's real tools: a calculator and a sandboxed Python expression evaluator.

Models write *expressions*; the tools compute them, so the arithmetic is exact whatever the
model's size. Both tools return a :class:`ToolResult` (never raise on bad model output): a
failed tool call is part of the step's outcome, not a crash.

- ``calculator``: arithmetic only, evaluated in-process by walking the ``ast`` of the
  expression (numbers, + - * / // % **, unary signs, parentheses and a few functions:
  round, abs, min, max, sqrt, floor, ceil). Powers and magnitudes are bounded so that
  ``9**9**9`` is refused instead of hanging the process.
- ``python``: one Python *expression* (list comprehensions, sorted, sum, len, lambda...)
  computed by the AST interpreter of ``_sandbox_child`` (no ``compile`` / ``eval``: no frame,
  generator or function object the expression could walk to ``os`` ever exists; whitelisted
  nodes, names and a few str / list / tuple / dict methods; sizes bounded) in a separate
  ``python -I -S`` process under rlimits (memory, CPU, no file writes, no new descriptors or
  processes), inside OS isolation: bubblewrap, else unshare (user 65534, empty environment,
  no network, new pid / ipc / uts namespaces, read-only file system). Which isolation ran is
  in :attr:`ToolResult.isolation`; with none available the tool is refused unless
  ``EVOROUTE_SANDBOX_ALLOW_NO_ISOLATION=1`` (see :func:`sandbox_isolation`).
"""

from __future__ import annotations

import ast
import json
import math
import operator
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evoroute.agent import _sandbox_child as _child

TOOLS = ("calculator", "python")
MAX_EXPR_CHARS = _child.MAX_EXPR_CHARS
MAX_ABS = 1e300
DEFAULT_TIME_LIMIT_S = 2.0
DEFAULT_MEMORY_MB = 256
SANDBOX_CHILD = Path(__file__).with_name("_sandbox_child.py")
# the child's JSON: at most _child.MAX_OUTPUT_CHARS characters of text (12 each when escaped)
# and _child.MAX_OUTPUT_ITEMS items
MAX_RESULT_CHARS = 2_000_000


class ToolError(ValueError):
    """An expression a tool refuses or cannot compute (the message says why)."""


@dataclass(frozen=True)
class ToolResult:
    """One tool call: what was asked, what came back, how long it took."""

    tool: str
    expression: str
    ok: bool
    value: Any = None
    error: str | None = None
    elapsed_s: float = 0.0
    isolation: str | None = None    # python tool: the OS isolation it ran in (bwrap, unshare...)

    def number(self) -> float | None:
        """The result as a finite number, if it is one."""
        if not self.ok or isinstance(self.value, bool):
            return None
        if isinstance(self.value, (int, float)) and math.isfinite(float(self.value)):
            return float(self.value)
        return None

    def display(self) -> str:
        if not self.ok:
            return f"error: {self.error}"
        return format_value(self.value)


def format_value(v: Any) -> str:
    """Numbers without float noise (0.1+0.2 -> 0.3), everything else as JSON-ish text."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return f"{v:.10g}"
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


# ------------------------------------------------------------------------------ calculator
_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS: dict[str, Callable[..., Any]] = {
    "round": round, "abs": abs, "min": min, "max": max, "sqrt": math.sqrt,
    "floor": math.floor, "ceil": math.ceil,
}


def normalise_expression(text: str) -> str:
    """Common calculator spellings models use: × ÷ ^ and currency signs."""
    t = text.strip().strip("`").strip()
    t = t.replace("×", "*").replace("÷", "/").replace("−", "-").replace("^", "**")
    t = re.sub(r"[$€£]", "", t)
    return t.rstrip(".;").strip()


def calculate(expression: str) -> int | float:
    """Evaluate an arithmetic expression safely; raises :class:`ToolError` if refused."""
    expr = normalise_expression(expression)
    if not expr:
        raise ToolError("empty expression")
    if len(expr) > MAX_EXPR_CHARS:
        raise ToolError(f"expression longer than {MAX_EXPR_CHARS} characters")
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"not an arithmetic expression ({exc.msg})") from None
    return _eval(tree.body)


def _check(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ToolError(f"not a number: {v!r}")
    if isinstance(v, float) and not math.isfinite(v):
        raise ToolError("result is not finite")
    if abs(v) > MAX_ABS:
        raise ToolError("result too large")
    return v


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return _check(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check(_UNARY[type(node.op)](_eval(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            if abs(right) > 100 or (abs(left) > 1 and abs(right) * math.log10(abs(left)) > 300):
                raise ToolError("power too large")
        try:
            return _check(_BINOPS[type(node.op)](left, right))
        except ZeroDivisionError:
            raise ToolError("division by zero") from None
        except (OverflowError, ValueError) as exc:
            raise ToolError(str(exc)) from None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS \
            and not node.keywords and node.args:
        args = [_eval(a) for a in node.args]
        if node.func.id == "round":
            if len(args) > 2 or (len(args) == 2 and (not float(args[1]).is_integer() or abs(args[1]) > 15)):
                raise ToolError("round takes a number and a whole number of digits")
            args = [args[0]] + [int(a) for a in args[1:]]
        try:
            return _check(_FUNCS[node.func.id](*args))
        except (TypeError, ValueError, OverflowError) as exc:
            raise ToolError(f"{node.func.id}: {exc}") from None
    if isinstance(node, (ast.Tuple, ast.List)):
        raise ToolError("a list is not a number (use the python tool for lists)")
    what = type(node).__name__
    if isinstance(node, ast.Name):
        what = f"name {node.id!r}"
    elif isinstance(node, ast.Call):
        what = "function call" + (f" {node.func.id}()" if isinstance(node.func, ast.Name) else "")
    raise ToolError(f"not allowed in a calculator expression: {what}")


def run_calculator(expression: str) -> ToolResult:
    t0 = time.perf_counter()
    try:
        v = calculate(expression)
        return ToolResult("calculator", expression, True, v, elapsed_s=time.perf_counter() - t0)
    except ToolError as exc:
        return ToolResult("calculator", expression, False, error=str(exc),
                          elapsed_s=time.perf_counter() - t0)


# ------------------------------------------------------------------------------ python sandbox
# Layers of the python tool (each on its own stops the frame-walking escapes of issue 10):
# 1. _sandbox_child.Interpreter: no compile/eval, whitelisted AST nodes, names and methods,
#    bounded sizes (checked here first, then again in the child);
# 2. the child process: ``python -I -S``, rlimits (memory, CPU, no file writes, no new file
#    descriptors or processes), every inherited descriptor but 0-2 closed, wall-clock timeout;
# 3. OS isolation (see :func:`sandbox_isolation`): bubblewrap, else unshare; another user
#    (65534), an empty environment, no network, new pid/ipc/uts namespaces, a read-only
#    file system holding only the interpreter.
ISOLATION_ENV = "EVOROUTE_SANDBOX_ISOLATION"           # auto (default) | bwrap | unshare | none
ALLOW_NO_ISOLATION_ENV = "EVOROUTE_SANDBOX_ALLOW_NO_ISOLATION"
ISOLATION_LEVELS = ("bwrap", "unshare", "none")
SANDBOX_UID = SANDBOX_GID = 65534                       # nobody / nogroup


@dataclass(frozen=True)
class Isolation:
    """The OS isolation the python tool runs in: its name, the command that wraps the child
    interpreter, and (when a stronger one was not available) why."""

    name: str
    prefix: tuple[str, ...] = ()
    note: str = ""

    def label(self) -> str:
        return f"{self.name} ({self.note})" if self.note else self.name


class IsolationUnavailable(ToolError):
    """No OS isolation is available and running without it was not allowed."""


def _child_python() -> str:
    exe = getattr(sys, "_base_executable", None) or sys.executable
    return os.path.realpath(exe)


def _python_roots() -> list[str]:
    """Directories the child interpreter needs (its binary, stdlib and libpython)."""
    roots = {os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix)}
    roots.add(os.path.dirname(os.path.dirname(_child_python())))
    return sorted(r for r in roots if r and not (r == "/usr" or r.startswith("/usr/")))


def _bwrap_prefix(bwrap: str) -> tuple[str, ...]:
    root = os.geteuid() == 0
    args = [bwrap, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv",
            "--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
    for d in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    if os.path.isfile("/etc/ld.so.cache"):
        args += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    made = {"/", "/usr", "/etc"}
    for r in _python_roots():
        parts = r.strip("/").split("/")
        for i in range(1, len(parts)):            # world-readable parents (bwrap makes 0700)
            d = "/" + "/".join(parts[:i])
            if d not in made:
                args += ["--perms", "0755", "--dir", d]
                made.add(d)
        args += ["--ro-bind", r, r]
    args += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/", "--chdir", "/"]
    if root:
        # bwrap as root keeps no user namespace; setpriv drops to nobody with no capabilities
        setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                 "--cap-add", "CAP_SETPCAP", "--", setpriv, f"--reuid={SANDBOX_UID}",
                 f"--regid={SANDBOX_GID}", "--clear-groups", "--inh-caps=-all",
                 "--bounding-set=-all", "--no-new-privs", "--"]
    else:
        args[1:1] = ["--unshare-user", "--disable-userns", "--uid", str(SANDBOX_UID),
                     "--gid", str(SANDBOX_GID)]
        args += ["--"]
    return tuple(args)


_UNSHARE_SCRIPT = (
    # in the new mount namespace: every mount read-only, empty read-only tmpfs over the
    # world-writable directories, then nobody with no capabilities runs the interpreter
    "awk '{print $5}' /proc/self/mountinfo | while read -r m; do "
    "mount -o remount,bind,ro \"$m\" 2>/dev/null; done; "
    "for d in /tmp /var/tmp /dev/shm /run /var/lock; do [ -d \"$d\" ] && "
    "mount -t tmpfs -o ro,nosuid,nodev,noexec,size=4k none \"$d\"; done; "
    f"exec setpriv --reuid={SANDBOX_UID} --regid={SANDBOX_GID} --clear-groups --inh-caps=-all "
    "--bounding-set=-all --no-new-privs -- \"$@\"")


def _unshare_prefix(unshare: str) -> tuple[str, ...]:
    return (unshare, "--mount", "--net", "--ipc", "--pid", "--uts", "--fork", "--kill-child",
            "--mount-proc", "--propagation", "private", "--", "/usr/bin/env", "-i", "/bin/sh",
            "-c", _UNSHARE_SCRIPT, "sandbox")


def _probe(prefix: tuple[str, ...]) -> str | None:
    """None if the sandbox runs a child as nobody with no network; else why not."""
    code = ("import os, socket, json\n"
            "try:\n socket.socket().connect(('127.0.0.1', 9)); net = 'open'\n"
            "except OSError as e:\n net = e.errno\n"
            "print(json.dumps([os.getuid(), os.getgid(), sorted(os.environ), net]))")
    try:
        p = subprocess.run([*prefix, _child_python(), "-I", "-S", "-c", code], capture_output=True,
                           text=True, timeout=15, env={}, cwd="/", stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if p.returncode != 0:
        tail = (p.stderr or "").strip().splitlines()[-1:] or [f"exit status {p.returncode}"]
        return tail[0][:200]
    try:
        uid, gid, env, net = json.loads(p.stdout)
    except ValueError:
        return "the probe printed no result"
    if uid != SANDBOX_UID or gid != SANDBOX_GID:
        return f"the child ran as uid {uid}, not {SANDBOX_UID}"
    if set(env) - {"PWD", "LC_CTYPE"}:
        return f"the child saw environment variables {sorted(env)}"
    if net == "open":
        return "the child reached the network"
    return None


_ISOLATION: dict[str, Isolation | str] = {}


def sandbox_isolation(refresh: bool = False) -> Isolation:
    """The strongest OS isolation that works here (probed once per process).

    Policy (``EVOROUTE_SANDBOX_ISOLATION``): ``auto`` tries bubblewrap, then unshare, and
    records in :attr:`Isolation.note` why a stronger one was skipped; ``bwrap`` / ``unshare``
    require that one. With neither, the python tool is refused (:class:`IsolationUnavailable`)
    unless ``EVOROUTE_SANDBOX_ALLOW_NO_ISOLATION=1``; ``none`` also needs that opt-in. The
    interpreter and the rlimits apply at every level."""
    want = (os.environ.get(ISOLATION_ENV) or "auto").strip().lower()
    allow_none = os.environ.get(ALLOW_NO_ISOLATION_ENV, "").strip() in ("1", "true", "yes")
    key = f"{want}:{allow_none}"
    if refresh:
        _ISOLATION.pop(key, None)
    if key in _ISOLATION:
        got = _ISOLATION[key]
        if isinstance(got, str):
            raise IsolationUnavailable(got)
        return got
    if want not in ("auto", *ISOLATION_LEVELS):
        msg = f"{ISOLATION_ENV} must be auto, bwrap, unshare or none, got {want!r}"
        _ISOLATION[key] = msg
        raise IsolationUnavailable(msg)
    why: list[str] = []
    if want in ("auto", "bwrap", "unshare"):
        for name in (("bwrap", "unshare") if want == "auto" else (want,)):
            exe = shutil.which(name)
            if exe is None:
                why.append(f"{name}: not installed")
                continue
            if name == "unshare" and (os.geteuid() != 0 or not shutil.which("setpriv")):
                why.append("unshare: needs root and setpriv")
                continue
            prefix = _bwrap_prefix(exe) if name == "bwrap" else _unshare_prefix(exe)
            failed = _probe(prefix)
            if failed is None:
                iso = Isolation(name, prefix, note="; ".join(why))
                _ISOLATION[key] = iso
                return iso
            why.append(f"{name}: {failed}")
    if want in ("auto", "none") and allow_none:
        iso = Isolation("none", (), note=("; ".join(why) + "; " if why else "")
                        + f"{ALLOW_NO_ISOLATION_ENV}=1: interpreter and rlimits only")
        _ISOLATION[key] = iso
        return iso
    msg = ("the python tool is refused: no OS isolation is available ("
           + ("; ".join(why) or f"{ISOLATION_ENV}=none") + "). Install bubblewrap "
           f"(scripts/install_system_deps.sh) or set {ALLOW_NO_ISOLATION_ENV}=1 to run it with "
           "only the interpreter and the rlimits")
    _ISOLATION[key] = msg
    raise IsolationUnavailable(msg)


def check_python_expression(expression: str) -> str:
    """Parent-side check with the child's own validator (the child checks again)."""
    expr = expression.strip().strip("`").strip()
    if expr.lower().startswith("python"):
        expr = expr[6:].strip()
    try:
        _child.validate(expr)
    except _child.Refused as exc:
        raise ToolError(str(exc)) from None
    return expr


_CHILD_SOURCE: str | None = None


def _child_source() -> str:
    global _CHILD_SOURCE
    if _CHILD_SOURCE is None:
        _CHILD_SOURCE = SANDBOX_CHILD.read_text(encoding="utf-8")
    return _CHILD_SOURCE


def run_python(expression: str, *, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
               memory_mb: int = DEFAULT_MEMORY_MB) -> ToolResult:
    """Evaluate one Python expression with the interpreter of ``_sandbox_child``, in a
    resource-limited child process inside the OS isolation of :func:`sandbox_isolation`."""
    t0 = time.perf_counter()
    isolation = None

    def fail(msg: str) -> ToolResult:
        return ToolResult("python", expression, False, error=msg,
                          elapsed_s=time.perf_counter() - t0, isolation=isolation)

    try:
        iso = sandbox_isolation()
    except IsolationUnavailable as exc:
        return fail(str(exc))
    isolation = iso.label()
    try:
        expr = check_python_expression(expression)
    except ToolError as exc:
        return fail(f"refused: {exc}")
    payload = f"{int(memory_mb) << 20} {max(1, math.ceil(time_limit_s))}\n{expr}"
    cmd = [*iso.prefix, _child_python(), "-I", "-S", "-c", _child_source()]
    try:
        proc = subprocess.run(cmd, input=payload, capture_output=True, text=True, cwd="/",
                              env={}, close_fds=True, timeout=time_limit_s + 1.0)
    except subprocess.TimeoutExpired:
        return fail(f"time limit of {time_limit_s:g} s exceeded")
    except OSError as exc:
        return fail(f"the sandbox could not start: {exc}")
    if proc.returncode != 0:
        # SIGXCPU / SIGKILL after RLIMIT_CPU, directly or as bwrap's 128 + signal
        if proc.returncode in (-24, -9, 128 + 24, 128 + 9):
            return fail(f"time limit of {time_limit_s:g} s exceeded")
        tail = (proc.stderr or "").strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        if "MemoryError" in tail[0]:
            return fail(f"MemoryError: memory limit of {memory_mb} MB exceeded")
        return fail(f"the sandbox failed: {tail[0][:300]}")
    if len(proc.stdout) > MAX_RESULT_CHARS:       # the child cuts its output far below this
        return fail(f"the sandbox returned more than {MAX_RESULT_CHARS} characters")
    try:
        res = json.loads(proc.stdout)
    except ValueError:
        return fail("the sandbox returned no result")
    if not res.get("ok"):
        err = str(res.get("error", "error"))
        if err.startswith("MemoryError"):
            detail = err.split("(", 1)[1].rstrip(")") if "(" in err else ""
            err = f"MemoryError: memory limit of {memory_mb} MB exceeded" + \
                (f" ({detail})" if detail else "")
        return fail(err)
    return ToolResult("python", expression, True, res.get("value"),
                      elapsed_s=time.perf_counter() - t0, isolation=isolation)


def run_tool(tool: str, expression: str, **limits: Any) -> ToolResult:
    if tool == "calculator":
        return run_calculator(expression)
    if tool == "python":
        return run_python(expression, **limits)
    return ToolResult(tool, expression, False, error=f"unknown tool {tool!r} (known: {', '.join(TOOLS)})")


# ------------------------------------------------------------------------------ reading model output
_TAGGED = re.compile(r"^\W*(CALC|CALCULATOR|PYTHON)\W*?\s*[:=]\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_ARITH = re.compile(r"[\d(][\d\s.+\-*/()%^×÷]*[\d)]")


def extract_tool_calls(text: str, max_calls: int = 3, *, allow_untagged: bool = True
                       ) -> list[tuple[str, str]]:
    """``(tool, expression)`` pairs a model wrote as ``CALC: ...`` / ``PYTHON: ...`` lines.

    When no line is tagged, the longest arithmetic span with an operator (e.g. ``3*4 + 2``)
    goes to the calculator: small models often write the expression without the tag.
    """
    calls = []
    for m in _TAGGED.finditer(text or ""):
        tool = "python" if m.group(1).lower() == "python" else "calculator"
        expr = m.group(2).strip().strip("`").strip()
        if expr:
            calls.append((tool, expr))
    if calls or not allow_untagged:
        return calls[:max_calls]
    spans = [s.strip() for s in _ARITH.findall(text or "")]
    spans = [s for s in spans if re.search(r"\d\s*[-+*/×÷^%]\s*[\d(]", s)]
    if spans:
        return [("calculator", max(spans, key=len))]
    return []


_NUMBER = r"[-+]?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?"
_ANSWER = re.compile(r"ANSWER\W*?\s*[:=]?\s*(" + _NUMBER + r")", re.IGNORECASE)
_ANY_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def parse_number(text: str) -> float | None:
    t = (text or "").replace("$", "").replace(",", "").replace(" ", "")
    try:
        v = float(t)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def extract_answer(text: str) -> float | None:
    """The number after ``ANSWER:``, else the last number in the text, else None."""
    for m in _ANSWER.finditer(text or ""):
        v = parse_number(m.group(1))
        if v is not None:
            return v
    nums = _ANY_NUMBER.findall(text or "")
    return parse_number(nums[-1]) if nums else None


def answer_matches(given: float | None, expected: float, decimals: int) -> bool:
    """Right if ``given`` rounds to the expected answer at the task's stated precision."""
    if given is None or not math.isfinite(given):
        return False
    return abs(round(given, decimals) - round(expected, decimals)) < 0.5 * 10.0 ** (-decimals) * 1e-3


__all__ = ["TOOLS", "ToolError", "ToolResult", "Isolation", "IsolationUnavailable",
           "sandbox_isolation", "calculate", "run_calculator", "run_python",
           "run_tool", "extract_tool_calls", "extract_answer", "answer_matches", "format_value",
           "parse_number"]
