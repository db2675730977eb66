"""The agent's real tools: a calculator and a sandboxed Python expression evaluator.

Models write *expressions*; the tools compute them, so the arithmetic is exact whatever the
model's size. Both tools return a :class:`ToolResult` (never raise on bad model output): a
failed tool call is part of the step's outcome, not a crash.

- ``calculator``: arithmetic only, evaluated in-process by walking the ``ast`` of the
  expression (numbers, + - * / // % **, unary signs, parentheses and a few functions:
  round, abs, min, max, sqrt, floor, ceil). Powers and magnitudes are bounded so that
  ``9**9**9`` is refused instead of hanging the process.
- ``python``: one Python *expression* (list comprehensions, sorted, sum, len, lambda...)
  computed by the AST interpreter of :mod:`evoroute.agent.sandbox` (no ``compile`` /
  ``eval``: no frame, generator or function object the expression could walk to ``os``
  ever exists; whitelisted nodes, names and a few str / list / tuple / dict methods; sizes
  bounded) in a separate
  ``python -I -S`` process under rlimits (memory, CPU, no file writes, no new descriptors or
  processes), inside OS isolation: bubblewrap, else unshare (user 65534, empty environment,
  no network, new pid / ipc / uts namespaces, read-only file system). Which isolation ran is
  in :attr:`ToolResult.isolation`; with none available the tool is refused unless
  ``EVOROUTE_SANDBOX_ALLOW_NO_ISOLATION=1`` (see
  :func:`evoroute.agent.sandbox.launcher.sandbox_isolation`).
"""

from __future__ import annotations

import ast
import math
import operator
import re
import time
from collections.abc import Callable
from typing import Any

from evoroute.agent.results import ToolError, ToolResult
from evoroute.agent.sandbox.launcher import run_python
from evoroute.agent.sandbox.syntax import MAX_EXPR_CHARS

TOOLS = ("calculator", "python")
MAX_ABS = 1e300


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


def run_tool(tool: str, expression: str, **limits: Any) -> ToolResult:
    if tool == "calculator":
        return run_calculator(expression)
    if tool == "python":
        return run_python(expression, **limits)
    return ToolResult(tool, expression, False, error=f"unknown tool {tool!r} (known: {', '.join(TOOLS)})")


# ------------------------------------------------------------------------------ reading model output
# A reply is untrusted text, so every pattern that reads one runs in linear time: no two
# unbounded quantifiers may compete for the same characters (the old ``\W*?\s*`` pairs
# backtracked quadratically on a tag followed by thousands of spaces). Possessive ``*+``
# (Python >= 3.11) never gives characters back.
_TAGGED = re.compile(r"^[^\w\n]*+(CALC|CALCULATOR|PYTHON)[^\w:=]*+[:=]\s*+(.*\S)",
                     re.IGNORECASE | re.MULTILINE)
_ARITH_RUN = re.compile(r"[\d\s.+\-*/()%^×÷]++")
_ARITH_START = re.compile(r"[\d(]")
_ARITH_END = re.compile(r"[\d)]")
_HAS_OPERATOR = re.compile(r"\d\s*+[-+*/×÷^%]\s*+[\d(]")


def _arith_spans(text: str) -> list[str]:
    """Each run of arithmetic characters, from its first digit or ``(`` to its last digit or
    ``)`` (the spans the greedy ``[\\d(][...]*[\\d)]`` finds, without its backtracking)."""
    spans = []
    for run in _ARITH_RUN.finditer(text):
        s = run.group()
        start = _ARITH_START.search(s)
        if start is None:
            continue
        last = _ARITH_END.search(s[::-1])           # the last digit or ")", found from the end
        end = len(s) - 1 - last.start() if last else -1
        if end > start.start():
            spans.append(s[start.start():end + 1].strip())
    return spans


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
    spans = [s for s in _arith_spans(text or "") if _HAS_OPERATOR.search(s)]
    if spans:
        return [("calculator", max(spans, key=len))]
    return []


_NUMBER = r"[-+]?\$?\s?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
# After the tag: markdown and spaces, one ``:`` or ``=``, markdown and spaces (``**ANSWER**: ``,
# ``ANSWER = ``); then a number with at least one digit (an empty number once matched right
# after ``**ANSWER`` and sent the reader to the last number). Anything else after the tag
# (``ANSWER (2 decimals): 3.59``) is not a tagged number: the last number is read instead.
_ANSWER = re.compile(r"ANSWER[*_\s]*+[:=]?[*_\s]*+(" + _NUMBER + r")", re.IGNORECASE)
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

