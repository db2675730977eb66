"""The real agent: planner -> solver (tools) -> verifier (tools) -> answerer.

Each role is one model call, routed on its own by the router (spec §3): the router sees the
role and a *routing instruction* that is fixed per (task, role) (so the runner can embed every
instruction up front), while the model sees a *prompt* built at call time from the task and
what the earlier steps of the same task produced (the plan, the tool results, the verdict).

What each step must produce, and how its step success σ is checked automatically:

============  ===============================================  =====================================
role          the model writes                                 σ = 1 when
============  ===============================================  =====================================
planner       a short numbered plan, no final number           the plan is non-empty and refers to
                                                               at least one number of the problem
solver        ``CALC: <expr>`` or ``PYTHON: <expr>``; the       the tool result equals the known
              tool (not the model) computes the value           answer at the stated precision
verifier      ``VERDICT: CORRECT`` or ``VERDICT: WRONG`` and    a verdict is given and the result
              a corrected ``CALC:`` / ``PYTHON:`` line          after verification is right
answerer      ``ANSWER: <number>``                              the final answer is right
============  ===============================================  =====================================

Task success is the answerer's: the final answer rounds to the known answer (1) or not (0).
Prompts are written so a capable model solves every task by writing one expression; the tiny
local models of this project often do not, which is the honest result.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evoroute.agent import tools as T
from evoroute.agent.results import ToolResult
from evoroute.core.errors import DatasetError
from evoroute.settings import DATA_DIR, DEFAULTS

ROLES = ("planner", "solver", "verifier", "answerer")
MAX_TOKENS = {"planner": 64, "solver": 64, "verifier": 48, "answerer": 24}
BUNDLED_TASKS = DATA_DIR / "agent_tasks" / "tasks.jsonl"
TIERED_TASKS = DATA_DIR / "agent_tasks" / "tiered.jsonl"
TASK_SET_NAMES = ("default", "agent", "agent_tasks")
#: bundled task sets by name (``--data tiered``: easy / medium / hard tiers, for local models)
TASK_SETS = {**{n: BUNDLED_TASKS for n in TASK_SET_NAMES}, "tiered": TIERED_TASKS}
REQUIRED = ("id", "split", "question", "answer", "decimals")


@dataclass(frozen=True)
class AgentTask:
    """A word problem with a known answer (rounded to ``decimals`` places)."""

    id: str
    split: str
    question: str
    answer: float
    decimals: int
    kind: str = ""
    tool: str = ""              # the tool the reference solution uses (not shown to routers)
    reference: str = ""         # a reference expression (provenance; never shown to models
    #                             of this task: a *train* task's one may be shown as a solved
    #                             example, see :func:`select_demos`)
    tier: str = ""              # easy / medium / hard in the tiered set


def resolve_task_file(name_or_path: str | None) -> Path:
    if name_or_path in (None, ""):
        return BUNDLED_TASKS
    if str(name_or_path) in TASK_SETS:
        return TASK_SETS[str(name_or_path)]
    p = Path(str(name_or_path))
    if not p.is_file():
        raise DatasetError(f"no agent task set {name_or_path!r}: give 'default' (the bundled "
                           f"tasks), 'tiered' (easy / medium / hard tiers) or a JSONL file "
                           f"with fields {', '.join(REQUIRED)}")
    return p


def load_tasks(name_or_path: str | None = None) -> list[AgentTask]:
    """Tasks from a JSONL file (one object per line); bad lines name file, line and field."""
    path = resolve_task_file(name_or_path)
    out, seen = [], set()
    try:
        with path.open(encoding="utf-8") as fh:
            _read_task_lines(fh, path, out, seen)
    except UnicodeDecodeError:     # a binary file: one line, not a traceback
        raise DatasetError("not UTF-8 text (a JSONL file of tasks is expected)",
                           file=str(path), line=len(out) + 1) from None
    except OSError as exc:
        raise DatasetError(f"cannot read the file ({exc.strerror or exc})", file=str(path)) from None
    if not out:
        raise DatasetError("no tasks", file=str(path))
    return out


MAX_QUESTION_CHARS = 20_000      # a task's question (it is sent to models in every step prompt)


def _read_task_lines(fh: Any, path: Path, out: list[AgentTask], seen: set[str]) -> None:
    for n, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise DatasetError(f"not JSON ({getattr(exc, 'msg', 'nested too deeply')})",
                               file=str(path), line=n) from None
        if not isinstance(d, dict):
            raise DatasetError("each line must be a JSON object", file=str(path), line=n)
        for k in REQUIRED:
            if k not in d:
                raise DatasetError("missing field", file=str(path), line=n, column=k)
        if d["split"] not in DEFAULTS.splits:
            raise DatasetError(f"split must be train or test, got {str(d['split'])[:40]!r}",
                               file=str(path), line=n, column="split")
        try:
            if isinstance(d["answer"], bool) or isinstance(d["decimals"], bool):
                raise TypeError
            ans, dec = float(d["answer"]), int(d["decimals"])
            if float(d["decimals"]) != dec:
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise DatasetError("answer must be a number and decimals a whole number",
                               file=str(path), line=n, column="answer") from None
        if not math.isfinite(ans) or abs(ans) > 1e15:
            raise DatasetError(f"answer must be a finite number below 1e15, got {d['answer']!r}",
                               file=str(path), line=n, column="answer")
        if not 0 <= dec <= 10:
            raise DatasetError(f"decimals must be between 0 and 10, got {dec}",
                               file=str(path), line=n, column="decimals")
        if not isinstance(d["question"], str) or not d["question"].strip() \
                or len(d["question"]) > MAX_QUESTION_CHARS:
            raise DatasetError(f"question must be non-empty text of at most "
                               f"{MAX_QUESTION_CHARS} characters", file=str(path), line=n,
                               column="question")
        if len(str(d["id"])) > 256:
            raise DatasetError("id is longer than 256 characters", file=str(path), line=n,
                               column="id")
        if str(d["id"]) in seen:
            raise DatasetError(f"duplicate id {d['id']!r}", file=str(path), line=n, column="id")
        seen.add(str(d["id"]))
        out.append(AgentTask(id=str(d["id"]), split=d["split"], question=str(d["question"]),
                             answer=ans, decimals=dec, kind=str(d.get("kind", "")),
                             tool=str(d.get("tool", "")), reference=str(d.get("reference", "")),
                             tier=str(d.get("tier", ""))))


def routing_instruction(role: str, task: AgentTask) -> str:
    """What the router sees for a step: the role's job on this task (fixed before the run)."""
    q = task.question
    return {
        "planner": f"Plan the calculation steps for this word problem: {q}",
        "solver": f"Compute the answer with the calculator or python tool: {q}",
        "verifier": f"Check the computed result and correct the expression if needed: {q}",
        "answerer": f"State the final answer, rounded as asked: {q}",
    }[role]


@dataclass
class TaskState:
    """What the steps of one task have produced so far (the backend keeps one per task)."""

    task: AgentTask
    demos: tuple[tuple[str, str], ...] = ()   # solved train examples: (question, tool line)
    plan: str | None = None
    solver_text: str | None = None
    calls: list[ToolResult] = field(default_factory=list)
    candidate: ToolResult | None = None     # the tool result the answer should be based on
    verdict: str | None = None                # CORRECT | WRONG | None
    verifier_text: str | None = None
    final_text: str | None = None
    final_answer: float | None = None
    success: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    # role -> what went wrong with the tool calls of that step (a refused or failed call);
    # kept apart from ``errors`` (failed model calls) so a refusal is never taken for one
    tool_errors: dict[str, str] = field(default_factory=dict)

    @property
    def correct(self) -> bool:
        return T.answer_matches(self.final_answer, self.task.answer, self.task.decimals)

    def transcript(self) -> dict[str, Any]:
        return {"task": self.task.id, "question": self.task.question, "answer": self.task.answer,
                "plan": self.plan, "solver": self.solver_text, "verifier": self.verifier_text,
                "verdict": self.verdict, "final": self.final_text, "final_answer": self.final_answer,
                "tool_calls": [{"tool": c.tool, "expression": c.expression, "ok": c.ok,
                                "value": c.value, "error": c.error, "isolation": c.isolation}
                               for c in self.calls],
                "step_success": dict(self.success), "errors": dict(self.errors),
                "tool_errors": dict(self.tool_errors), "correct": self.correct}


def _clip(text: str | None, n: int = 600) -> str:
    t = (text or "").strip()
    return t if len(t) <= n else t[:n] + " ..."


SOLVER_TOOLS = (
    "You have two tools. They compute the value for you, so write the expression, not the result.\n"
    "- calculator: a line CALC: <arithmetic expression> (numbers, + - * / ** and parentheses)\n"
    "- python: a line PYTHON: <one Python expression> (for lists: sorted, sum, len, max, min, "
    "median, list comprehensions)\n")
SOLVER_EXAMPLES = (
    "Example 1\nProblem: Pens cost $1.50 each. Ana buys 4 pens and pays with a $10 note. How much "
    "change does she get?\nCALC: 10 - 4*1.50\n\n"
    "Example 2\nProblem: What is the sum of the odd numbers in the list [3, 8, 5, 12]?\n"
    "PYTHON: sum(x for x in [3, 8, 5, 12] if x % 2 == 1)\n\n")


_WORD = re.compile(r"[a-z]+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def tool_line(task: AgentTask) -> str | None:
    """A task's reference solution as the tool line a solver writes, if it has one."""
    if not task.reference or task.tool not in ("calculator", "python"):
        return None
    return ("CALC: " if task.tool == "calculator" else "PYTHON: ") + task.reference


def select_demos(task: AgentTask, pool: list[AgentTask], k: int) -> tuple[tuple[str, str], ...]:
    """Up to ``k`` solved examples for ``task``'s solver prompt, from ``pool`` (the *train*
    tasks; never ``task`` itself): by word overlap of the questions (Jaccard, numbers
    ignored), ties by id, so the choice is deterministic. Only the question is read (not the
    task's ``kind`` label, which a real query does not carry); only train tasks' reference
    expressions are shown, a test task's never is."""
    if k <= 0:
        return ()
    mine = _words(task.question)
    ranked = []
    for t in pool:
        line = tool_line(t)
        if t.id == task.id or t.split != "train" or line is None:
            continue
        w = _words(t.question)
        jac = len(mine & w) / max(1, len(mine | w))
        ranked.append((jac, t.id, t.question, line))
    ranked.sort(key=lambda r: (-r[0], r[1]))
    # the most similar example goes last, right before the problem
    return tuple((q, line) for *_, q, line in reversed(ranked[:k]))


# GBNF grammars (llama.cpp's constrained decoding) holding a local model's output to the line
# its role must write. Sent only to local llama.cpp servers (see the live backend's
# ``grammar``); the expression inside is the model's own choice. Quotes are not in the python
# alphabet, so no string literal can be written (the sandbox is the guard; this is format).
_CALC = ("calc ::= sum",
         'sum ::= prod (" "? [-+] " "? prod){0,12}',
         'prod ::= atom (" "? ("*" | "/" | "**") " "? atom){0,12}')
_EXPR = "\n".join((*_CALC,
                   'atom ::= "-"? ([0-9]{1,12} ("." [0-9]{1,10})? | "(" " "? sum " "? ")")',
                   r"py ::= [-a-zA-Z0-9_.,+*/%<>=!:()\[\] ]{1,160}")) + "\n"
#: numbers an expression may need that a question does not write (percent, minutes, metres,
#: parity, "three largest")
GRAMMAR_CONSTANTS = ("0", "1", "2", "3", "10", "60", "100", "1000")


def _no_leading_zero(n: str) -> str:
    whole, dot, frac = n.partition(".")
    return (whole.lstrip("0") or "0") + dot + frac


def _alt(tokens: list[str]) -> str:
    return " | ".join(json.dumps(t) for t in tokens)


def grammar(role: str, task: AgentTask) -> str | None:
    """The GBNF grammar of ``role``'s output on ``task`` (None: free text, the planner).

    Solver and verifier expressions may use only the numbers the question
    writes (and :data:`GRAMMAR_CONSTANTS`): a small model cannot copy a number from a solved
    example or make one up; which numbers, in which expression, stays its own choice."""
    if role not in GRAMMARS:
        return None
    if role == "answerer":
        return GRAMMARS["answerer"]
    # "09:05" -> 9 and 5: Python (and so both tools) refuse a leading zero
    nums = {_no_leading_zero(n) for n in _NUM_IN_Q.findall(task.question)}
    nums = sorted(nums | set(GRAMMAR_CONSTANTS), key=lambda n: (-len(n), n))
    head = GRAMMARS[role].split("\n", 1)[0]
    # a python line alternates words (a name or a number) with runs of operators, so a
    # number is always followed by an operator (never by a digit, a letter or a "."): no
    # number can be built from the digits of others. The grammar is unambiguous (one parse
    # per prefix): an ambiguous one (names next to names) kept one parse stack per split of
    # every name and made a 262k-token vocabulary ~16x slower to decode (docs/live.md).
    # A list is written from its brackets, its numbers (the question's) and ", ".
    rules = [head, *_CALC,
             'atom ::= "-"? num | "(" " "? sum " "? ")"',
             f"num ::= {_alt(nums)}",
             "py ::= ops? word (ops word){0,40} ops?",
             "word ::= ident | num",
             "ident ::= [a-zA-Z_]{1,16}",
             "ops ::= [ ,+*/%<>=!:()\\[\\]-]{1,10}"]
    return "\n".join(rules) + "\n"


GRAMMARS: dict[str, str] = {
    "solver": r'root ::= ("CALC: " calc | "PYTHON: " py) "\n"' + "\n" + _EXPR,
    "verifier": (r'root ::= "VERDICT: CORRECT\n" | "VERDICT: WRONG\n" ("CALC: " calc | '
                 r'"PYTHON: " py) "\n"' + "\n" + _EXPR),
    "answerer": r'root ::= "ANSWER: " "-"? [0-9]{1,15} ("." [0-9]{1,10})? "\n"' + "\n",
}


def _examples(state: TaskState) -> str:
    if not state.demos:
        return SOLVER_EXAMPLES
    return "".join(f"Example {i}\nProblem: {q}\n{line}\n\n"
                   for i, (q, line) in enumerate(state.demos, start=1))


ANSWER_EXAMPLE = ("Example\nProblem: A box holds 12 pens. How many pens are there in 5 boxes?\n"
                  "Computed result (from the calculator tool): 60\nANSWER: 60\n\n")


def build_messages(role: str, state: TaskState) -> list[dict[str, str]]:
    """The prompt of a step: one user message (some local chat templates drop system ones)."""
    q = state.task.question
    if role == "planner":
        text = ("You are the planner of a team that solves word problems with a calculator.\n"
                f"Problem: {q}\n"
                "Write a short numbered plan (at most 3 steps) saying which numbers to combine "
                "and how. Do not compute the final number.")
    elif role == "solver":
        # the problem comes last, in the examples' own format, so the next line is the tool
        # line (small models continue the pattern; the plan before the examples)
        text = ("You are the solver of a team that solves word problems.\n" + SOLVER_TOOLS
                + f"Plan from the planner: {_clip(state.plan) or '(no plan)'}\n"
                "Write exactly one line that starts with CALC: or PYTHON:.\n\n"
                + _examples(state) + f"Problem: {q}\n")
    elif role == "verifier":
        c = state.candidate
        if c is not None:
            text = ("You are the verifier of a team that solves word problems.\n"
                    f"Problem: {q}\n"
                    f"The solver's expression ({c.tool} tool): {c.expression}\n"
                    f"Tool result: {c.display()}\n"
                    "Does the expression compute exactly what the problem asks? If yes, reply "
                    "VERDICT: CORRECT\nIf not, reply VERDICT: WRONG and, on the next line, a "
                    "corrected CALC: <expression> or PYTHON: <expression>.")
        else:
            last = state.calls[-1] if state.calls else None
            why = (f"its {last.tool} expression {last.expression!r} failed: {last.error}"
                   if last is not None else f"it wrote: {_clip(state.solver_text, 200)!r}")
            text = ("You are the verifier of a team that solves word problems.\n" + SOLVER_TOOLS
                    + f"\nProblem: {q}\nThe solver gave no usable result ({why}).\n"
                    "Reply VERDICT: WRONG and, on the next line, CALC: <expression> or "
                    "PYTHON: <expression> that computes the answer.")
    elif role == "answerer":
        c = state.candidate
        if c is not None:
            checked = {"CORRECT": "; the verifier says it is correct",
                       "WRONG": "; the verifier doubted it"}.get(state.verdict or "", "")
            result = f"Computed result (from the {c.tool} tool{checked}): {c.display()}\n"
        else:
            result = "Computed result: none (the tools gave no result); work it out yourself.\n"
        # the computed result comes last, right before the answer is written (small models
        # copy the nearest number), after one worked example of the format
        text = ("You are the answerer of a team that solves word problems.\n"
                "Reply with one line: ANSWER: <number>, the computed result rounded as the "
                "problem asks.\n\n" + ANSWER_EXAMPLE + f"Problem: {q}\n{result}")
    else:
        raise ValueError(f"unknown role {role!r}; the agent's roles are {', '.join(ROLES)}")
    return [{"role": "user", "content": text}]


# one run of non-word characters between the tag and the word (what the earlier
# ``\W*?\s*[:=]?\s*`` matched, without its cubic backtracking on a long run of spaces)
_VERDICT = re.compile(r"VERDICT\W*(CORRECT|INCORRECT|WRONG)", re.IGNORECASE)
_NUM_IN_Q = re.compile(r"\d+(?:\.\d+)?", re.ASCII)


def tool_call_note(r: ToolResult) -> str:
    """One line for a failed or refused tool call, as stored with the step."""
    where = f" [isolation: {r.isolation}]" if r.isolation else ""
    return f"{r.tool} tool call {_clip(r.expression, 120)!r} failed: {r.error}{where}"


def step_tool_error(state: TaskState, role: str) -> str | None:
    """What went wrong with the tool calls of the role's step (refused, failed), if anything:
    the text a step record stores so that a refused call is visible, not just a σ of 0."""
    return state.tool_errors.get(role)


def _run_calls(state: TaskState, role: str, calls: list[tuple[str, str]],
               limits: dict[str, Any]) -> ToolResult | None:
    """Run every call in order; the last successful one is the step's result. Failed and
    refused calls are noted in ``state.tool_errors[role]``."""
    best = None
    notes = []
    for tool, expr in calls:
        r = T.run_tool(tool, expr, **limits)
        state.calls.append(r)
        if not r.ok:
            notes.append(tool_call_note(r))
        if r.ok and r.number() is not None:
            best = r
    if notes:
        state.tool_errors[role] = _clip("; ".join(notes), 1000)
    return best


def _is_right(r: ToolResult | None, task: AgentTask) -> bool:
    return r is not None and T.answer_matches(r.number(), task.answer, task.decimals)


def apply_output(role: str, state: TaskState, text: str, *,
                 tool_limits: dict[str, Any] | None = None) -> float:
    """Read a step's model output into the task state, run the tools it asks for, return σ."""
    limits = dict(tool_limits or {})
    task = state.task
    text = text or ""
    state.tool_errors.pop(role, None)
    if role == "planner":
        state.plan = text.strip()
        nums = set(_NUM_IN_Q.findall(task.question))
        ok = bool(state.plan) and any(n in state.plan for n in nums)
        sigma = float(ok)
    elif role == "solver":
        state.solver_text = text.strip()
        res = _run_calls(state, role, T.extract_tool_calls(text), limits)
        if res is not None:
            state.candidate = res
        sigma = float(_is_right(res, task))
    elif role == "verifier":
        state.verifier_text = text.strip()
        m = _VERDICT.search(text)
        state.verdict = None if m is None else ("CORRECT" if m.group(1).upper() == "CORRECT" else "WRONG")
        had = state.candidate
        if state.verdict == "WRONG" or had is None:
            # a fix must be tagged (a quoted expression is not a fix); acting as the solver,
            # untagged arithmetic is read as the solver's is
            calls = T.extract_tool_calls(text, allow_untagged=had is None)
            res = _run_calls(state, role, calls, limits)
            if res is not None:
                state.candidate = res
        sigma = float((state.verdict is not None or had is None) and _is_right(state.candidate, task))
    elif role == "answerer":
        state.final_text = text.strip()
        state.final_answer = T.extract_answer(text)
        sigma = float(state.correct)
    else:
        raise ValueError(f"unknown role {role!r}; the agent's roles are {', '.join(ROLES)}")
    state.success[role] = sigma
    return sigma


__all__ = ["ROLES", "MAX_TOKENS", "AgentTask", "TaskState", "load_tasks", "routing_instruction",
           "build_messages", "apply_output", "BUNDLED_TASKS", "TIERED_TASKS", "TASK_SETS",
           "GRAMMARS", "grammar", "select_demos", "tool_line", "resolve_task_file",
           "step_tool_error", "tool_call_note"]
