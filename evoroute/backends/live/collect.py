"""A live collection pass: every candidate model runs every task of a split, all its steps.

Routers that learn from every model's outcome on the train split (``masrouter``, ``atropos``,
the learned baselines, and EvoRoute's ``full`` protocol) need a table the live backend does not
have: a run calls one model per step. The pass makes one, the way RouterBench made its
recorded outcomes: each model solves each train task alone (planner, solver, verifier and
answerer all on that model, the same prompts, grammars and demos as a run), and every call's
measured outcome is kept: step success, tokens, latency, the reply, a failed call's error.

The table is *live* (measured when it was collected) and cached in the home directory, one
JSON file per (task file, split, models, agent settings), written after every task (atomic
replace): a pass that stops part-way resumes where it stopped, and a later run with the same
settings reuses it. Costs are recomputed from the stored token counts at the prices
registered now; API bases and prices are not part of the key (ports move, prices change).

Task success in the table is the task's own (the final answer is right), kept beside the
step scores (:attr:`OutcomeTable.task_scores`). A failed call's step score is unknown (NaN),
and so is that task's success for that model: a failed call is not a wrong answer, as in a
run; the next pass runs such a task again. The key holds a digest of the agent's code
(prompts, grammars, tools, scoring), so another version never reuses a table. Replies are
stored redacted. One pass per table at a time (a lock file beside it).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from evoroute import settings as config
from evoroute.agent import tools as agent_tools
from evoroute.agent import workflow as W
from evoroute.backends.base import OutcomeTable
from evoroute.backends.live.client import redact
from evoroute.backends.live.tokens import PROMPT_TOKEN_MARGIN
from evoroute.core.errors import ValidationError
from evoroute.core.types import StepContext

#: a :class:`evoroute.backends.live.backend.LiveBackend` (not imported: it imports this module)
LiveBackend = Any

FORMAT = 2
#: ``report(done, total, detail)``: how far the pass is
Progress = Callable[[int, int, str], None]


def agent_code_digest() -> str:
    """The agent's prompts, grammars, tools and scoring are code: a digest of its source, so
    a table collected by another version of the agent is never reused."""
    h = hashlib.sha256()
    for mod in (W, agent_tools):
        h.update(Path(mod.__file__).read_bytes())
    return h.hexdigest()[:16]


def table_key(backend: LiveBackend, split: str) -> dict[str, Any]:
    """What the collected outcomes depend on (not api bases or prices; the seed only orders
    the tasks)."""
    d = backend.describe()
    return {"format": FORMAT, "split": split, "task_file_sha256": d["task_file_sha256"],
            "agent_code": agent_code_digest(),
            "models": {m.name: m.litellm_id for m in backend.models},
            # whether a grammar is sent depends on the endpoint (a packaged llama.cpp server)
            "grammar_sent": {m.name: backend.grammar_for(m, "solver") is not None
                             for m in backend.models},
            "max_tokens": d["max_tokens"], "temperature": d["temperature"],
            "few_shot": d["few_shot"], "grammar": d["grammar"], "tool_limits": d["tool_limits"]}


def _located(backend: LiveBackend, split: str, home: Path | None) -> tuple[dict[str, Any], Path]:
    """The split's key and the file its table is cached in (the key computed once)."""
    key = table_key(backend, split)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return key, Path(home or config.settings().home) / "live_tables" / f"{split}-{digest}.json"


def table_path(backend: LiveBackend, split: str, home: Path | None = None) -> Path:
    return _located(backend, split, home)[1]


_STEP_FIELDS = ("step_success", "input_tokens", "output_tokens", "duration_s")


def _well_formed(doc: Any, n_steps: int) -> bool:
    """Every record has its steps with numeric (or null) measurements: a file edited by hand
    or written by something else is not read as outcomes."""
    tasks = doc.get("tasks") if isinstance(doc, dict) else None
    if not isinstance(tasks, dict):
        return False
    for per_model in tasks.values():
        if not isinstance(per_model, dict):
            return False
        for rec in per_model.values():
            steps = rec.get("steps") if isinstance(rec, dict) else None
            if not isinstance(steps, list) or len(steps) != n_steps:
                return False
            if not all(isinstance(st, dict) and all(
                    st.get(f) is None or (isinstance(st.get(f), (int, float))
                                          and not isinstance(st.get(f), bool))
                    for f in _STEP_FIELDS) for st in steps):
                return False
    return True


def _read(path: Path, key: dict[str, Any]) -> dict[str, Any]:
    """The cached pass for ``key``; a missing, corrupt, malformed or other-settings file reads
    as an empty pass (it is then collected again and overwritten)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"key": key, "tasks": {}}
    if not isinstance(doc, dict) or doc.get("key") != key \
            or not _well_formed(doc, len(W.ROLES)):
        return {"key": key, "tasks": {}}
    return doc


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        fh.write(json.dumps(doc, indent=1))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _run_task(backend: LiveBackend, spec: Any, model: Any) -> dict[str, Any]:
    """One model alone on every step of one task. A task with a failed call is kept with its
    task success unknown (``failed``) and run again by the next pass."""
    steps = []
    for i, s in enumerate(spec.steps):
        ctx = StepContext(task_key=spec.key, step_index=i, role=s.role, instruction=s.instruction)
        o = backend.execute(ctx, model)
        steps.append({"role": s.role,
                      "step_success": None if o.error else float(o.step_success),
                      "input_tokens": o.input_tokens, "output_tokens": o.output_tokens,
                      "duration_s": o.duration_s, "ttft_s": o.ttft_s, "error": o.error,
                      # a reply is untrusted text: stored redacted, like every error
                      "response": None if o.error else redact((o.response or "")[:600])})
    solved = float(backend.check_task(spec, []))
    failed = any(st["error"] for st in steps)
    return {"task_success": None if failed else solved, "failed": failed, "steps": steps,
            "collected_at": time.strftime("%Y-%m-%dT%H:%M:%S")}


@contextlib.contextmanager
def _locked(path: Path) -> Any:
    """One pass per table at a time (a second run waits, then finds the work done)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _todo(doc: dict[str, Any], tasks: list[Any], models: list[Any]) -> list[tuple[Any, Any]]:
    """(model, task) pairs not collected yet, or collected with a failed call."""
    out = []
    for m in models:
        for t in tasks:
            rec = doc["tasks"].get(t.key, {}).get(m.name)
            if rec is None or rec.get("failed"):
                out.append((m, t))
    return out


#: what a later prompt may carry besides earlier outputs: tool results, verdict lines
CARRIED_SLACK_TOKENS = 96


def estimate_cost(backend: LiveBackend, split: str, home: Path | None = None) -> float:
    """An upper bound, per attempt, of what the pass still has to spend at registered prices:
    each step's prompt as the backend estimates it before earlier steps ran (its margin
    included) plus max_tokens of output, plus, as input, every earlier step's max_tokens (the
    outputs a later prompt quotes) and :data:`CARRIED_SLACK_TOKENS`, with the same margin.
    0 for models at price 0."""
    key, path = _located(backend, split, home)
    return _estimate(backend, _todo(_read(path, key), backend.tasks(split), backend.models))


def _estimate(backend: LiveBackend, todo: list[tuple[Any, Any]]) -> float:
    total = 0.0
    for m, t in todo:
        carried = 0
        for i, s in enumerate(t.steps):
            ctx = StepContext(task_key=t.key, step_index=i, role=s.role, instruction=s.instruction)
            total += backend.estimate_cost(ctx, m) or 0.0
            if carried:
                total += backend.cost(m, (carried + CARRIED_SLACK_TOKENS) * PROMPT_TOKEN_MARGIN, 0)
            carried += backend.max_tokens.get(s.role, 128)
        backend._state.pop(t.key, None)          # the estimate built a fresh state: drop it
    return total


def collect(backend: LiveBackend, split: str, *, progress: Progress | None = None,
            home: Path | None = None, budget_usd: float | None = None) -> OutcomeTable:
    """Run every model on every task of ``split`` not yet in the cache (and again those whose
    last try had a failed call); the table. ``budget_usd``: refuse, before any call, a pass
    whose upper-bound cost (:func:`estimate_cost`) exceeds it."""
    key, path = _located(backend, split, home)
    tasks = backend.tasks(split)
    if budget_usd is not None:
        need = _estimate(backend, _todo(_read(path, key), tasks, backend.models))
        if need > budget_usd:
            raise ValidationError(
                f"the live collection pass could cost up to ${need:.4f} (every model on every "
                f"{split} task, at registered prices), more than the run's budget of "
                f"${budget_usd:.4f}; raise the budget, or pick a router that needs no train "
                f"table", "budget_usd")
    with _locked(path):
        doc = _read(path, key)                 # after the lock: another pass may have run
        total = len(tasks) * len(backend.models)
        todo = _todo(doc, tasks, backend.models)
        done = total - len(todo)
        for m, t in todo:
            if progress is not None:
                progress(done, total, f"{m.name} on {t.key}")
            doc["tasks"].setdefault(t.key, {})[m.name] = _run_task(backend, t, m)
            done += 1
            _write(path, doc)
    if progress is not None:
        progress(done, total, f"{total} task runs in {path}")
    return to_table(backend, split, doc)


def skeleton(backend: LiveBackend, split: str) -> OutcomeTable:
    """The split's table with nothing recorded: its shape (tasks, steps, roles), so a router's
    data check runs before a pass is paid for."""
    return to_table(backend, split, {"tasks": {}})


def cached(backend: LiveBackend, split: str, home: Path | None = None) -> OutcomeTable | None:
    """The split's table if a finished pass with these settings is cached (else None)."""
    key, path = _located(backend, split, home)
    if not path.exists():
        return None
    doc = _read(path, key)
    names = [m.name for m in backend.models]
    if not all(set(names) <= set(doc["tasks"].get(t.key, {})) for t in backend.tasks(split)):
        return None
    return to_table(backend, split, doc)


def to_table(backend: LiveBackend, split: str, doc: dict[str, Any]) -> OutcomeTable:
    """The cached outcomes as an :class:`OutcomeTable`, rows in the backend's task order, costs
    at the prices registered now."""
    tasks = backend.tasks(split)
    models = backend.models
    n, k = sum(len(t.steps) for t in tasks), len(models)
    scores, costs, lat, task_sc = (np.full((n, k), np.nan) for _ in range(4))
    responses = np.full((n, k), None, dtype=object)
    keys, pos, roles, instr = [], [], [], []
    r = 0
    for t in tasks:
        for i, s in enumerate(t.steps):
            keys.append(t.key)
            pos.append(i)
            roles.append(s.role)
            instr.append(s.instruction)
            for j, m in enumerate(models):
                rec = doc["tasks"].get(t.key, {}).get(m.name)
                if rec is None:
                    continue
                st = rec["steps"][i]
                if st["step_success"] is not None:
                    scores[r + i, j] = st["step_success"]
                    responses[r + i, j] = st["response"]
                costs[r + i, j] = backend.cost(m, st["input_tokens"] or 0, st["output_tokens"] or 0)
                lat[r + i, j] = st["duration_s"] or 0.0
                if rec.get("task_success") is not None:
                    task_sc[r + i, j] = rec["task_success"]
        r += len(t.steps)
    return OutcomeTable(models=[m.name for m in models], task_keys=keys,
                        step_index=np.asarray(pos, dtype=np.int64), roles=roles,
                        instructions=instr, tools=[frozenset() for _ in roles], scores=scores,
                        costs=costs, latencies=lat, responses=responses, task_scores=task_sc)
