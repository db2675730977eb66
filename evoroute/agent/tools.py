"""The agent's real tools: a calculator and a sandboxed Python expression evaluator.

Models write *expressions*; the tools compute them, so the arithmetic is exact whatever the
model's size. Both tools return a :class:`ToolResult` (never raise on bad model output): a
failed tool call is part of the step's outcome, not a crash.

- ``calculator``: arithmetic only, evaluated in-process by walking the ``ast`` of the
  expression (numbers, + - * / // % **, unary signs, parentheses and a few functions:
  round, abs, min, max, sqrt, floor, ceil). Powers and magnitudes are bounded so that
  ``9**9**9`` is refused instead of hanging the process.
- ``python``: one Python *expression* (list comprehensions, sorted, sum, len, lambda...)
  evaluated in a separate ``python -I -S`` process with whitelisted builtins, no names
  starting with ``_``, an empty environment (no API key reaches it), an empty working
  directory, and OS limits set with ``resource.setrlimit``: address space, CPU seconds, no
  file writes and no new file descriptors (so no file and no socket can be opened), plus a
  wall-clock timeout enforced by the parent.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOOLS = ("calculator", "python")
MAX_EXPR_CHARS = 600
MAX_ABS = 1e300
DEFAULT_TIME_LIMIT_S = 2.0
DEFAULT_MEMORY_MB = 256
SANDBOX_CHILD = Path(__file__).with_name("_sandbox_child.py")


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
def check_python_expression(expression: str) -> str:
    """Parent-side check: a single expression with no ``_`` names (the child re-checks)."""
    expr = expression.strip().strip("`").strip()
    if expr.lower().startswith("python"):
        expr = expr[6:].strip()
    if not expr:
        raise ToolError("empty expression")
    if len(expr) > MAX_EXPR_CHARS:
        raise ToolError(f"expression longer than {MAX_EXPR_CHARS} characters")
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"not a single Python expression ({exc.msg}); statements and imports "
                        f"are not allowed") from None
    for node in ast.walk(tree):
        name = node.id if isinstance(node, ast.Name) else \
            node.attr if isinstance(node, ast.Attribute) else None
        if name is not None and name.startswith("_"):
            raise ToolError(f"names starting with '_' are not allowed: {name}")
    return expr


def run_python(expression: str, *, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
               memory_mb: int = DEFAULT_MEMORY_MB) -> ToolResult:
    """Evaluate one Python expression in a resource-limited, isolated child process."""
    t0 = time.perf_counter()

    def fail(msg: str) -> ToolResult:
        return ToolResult("python", expression, False, error=msg, elapsed_s=time.perf_counter() - t0)

    try:
        expr = check_python_expression(expression)
    except ToolError as exc:
        return fail(str(exc))
    payload = json.dumps({"expr": expr, "mem_bytes": int(memory_mb) << 20,
                          "cpu_s": max(1, math.ceil(time_limit_s))})
    with tempfile.TemporaryDirectory(prefix="evoroute-sandbox-") as cwd:
        try:
            proc = subprocess.run([sys.executable, "-I", "-S", str(SANDBOX_CHILD)], input=payload,
                                  capture_output=True, text=True, cwd=cwd,
                                  env={"LANG": "C.UTF-8"}, timeout=time_limit_s + 1.0)
        except subprocess.TimeoutExpired:
            return fail(f"time limit of {time_limit_s:g} s exceeded")
    if proc.returncode != 0:
        if proc.returncode in (-24, -9):   # SIGXCPU / SIGKILL after RLIMIT_CPU
            return fail(f"time limit of {time_limit_s:g} s exceeded")
        tail = (proc.stderr or "").strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        if "MemoryError" in tail[0]:
            return fail(f"MemoryError: memory limit of {memory_mb} MB exceeded")
        return fail(tail[0][:300])
    try:
        res = json.loads(proc.stdout)
    except ValueError:
        return fail("the sandbox returned no result")
    if not res.get("ok"):
        err = str(res.get("error", "error"))
        if err.startswith("MemoryError"):
            err = f"MemoryError: memory limit of {memory_mb} MB exceeded"
        return fail(err)
    return ToolResult("python", expression, True, res.get("value"),
                      elapsed_s=time.perf_counter() - t0)


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


__all__ = ["TOOLS", "ToolError", "ToolResult", "calculate", "run_calculator", "run_python",
           "run_tool", "extract_tool_calls", "extract_answer", "answer_matches", "format_value",
           "parse_number"]
