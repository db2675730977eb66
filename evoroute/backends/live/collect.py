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
step scores (:attr:`OutcomeTable.task_scores`). A failed call's step score is unknown (NaN):
a failed call is not a wrong answer, as in a run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evoroute import settings as config
from evoroute.backends.base import OutcomeTable
from evoroute.core.types import StepContext

if TYPE_CHECKING:
    from evoroute.backends.live.backend import LiveBackend

FORMAT = 1
#: ``report(done, total, detail)``: how far the pass is
Progress = Callable[[int, int, str], None]


def table_key(backend: LiveBackend, split: str) -> dict[str, Any]:
    """What the collected outcomes depend on (not api bases or prices)."""
    d = backend.describe()
    return {"format": FORMAT, "split": split, "task_file_sha256": d["task_file_sha256"],
            "models": {m.name: m.litellm_id for m in backend.models},
            "max_tokens": d["max_tokens"], "temperature": d["temperature"],
            "few_shot": d["few_shot"], "grammar": d["grammar"], "tool_limits": d["tool_limits"]}


def table_path(backend: LiveBackend, split: str, home: Path | None = None) -> Path:
    key = json.dumps(table_key(backend, split), sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    root = Path(home or config.settings().home) / "live_tables"
    return root / f"{split}-{digest}.json"


def _read(path: Path, key: dict[str, Any]) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"key": key, "tasks": {}}
    if doc.get("key") != key:          # another version of the settings: start again
        return {"key": key, "tasks": {}}
    return doc


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


def _run_task(backend: LiveBackend, spec: Any, model: Any) -> dict[str, Any]:
    steps = []
    for i, s in enumerate(spec.steps):
        ctx = StepContext(task_key=spec.key, step_index=i, role=s.role, instruction=s.instruction)
        o = backend.execute(ctx, model)
        steps.append({"role": s.role,
                      "step_success": None if o.error else float(o.step_success),
                      "input_tokens": o.input_tokens, "output_tokens": o.output_tokens,
                      "duration_s": o.duration_s, "ttft_s": o.ttft_s, "error": o.error,
                      "response": None if o.error else (o.response or "")[:600]})
    return {"task_success": float(backend.check_task(spec, [])), "steps": steps,
            "collected_at": time.strftime("%Y-%m-%dT%H:%M:%S")}


def collect(backend: LiveBackend, split: str, *, progress: Progress | None = None,
            home: Path | None = None) -> OutcomeTable:
    """Run every model on every task of ``split`` not yet in the cache; the table."""
    key = table_key(backend, split)
    path = table_path(backend, split, home)
    doc = _read(path, key)
    tasks = backend.tasks(split)
    total = len(tasks) * len(backend.models)
    done = sum(m.name in doc["tasks"].get(t.key, {}) for t in tasks for m in backend.models)
    for m in backend.models:
        for t in tasks:
            if m.name in doc["tasks"].get(t.key, {}):
                continue
            if progress is not None:
                progress(done, total, f"{m.name} on {t.key}")
            doc["tasks"].setdefault(t.key, {})[m.name] = _run_task(backend, t, m)
            done += 1
            _write(path, doc)
    if progress is not None:
        progress(done, total, f"{total} task runs in {path}")
    return to_table(backend, split, doc)


def cached(backend: LiveBackend, split: str, home: Path | None = None) -> OutcomeTable | None:
    """The split's table if a finished pass with these settings is cached (else None)."""
    path = table_path(backend, split, home)
    if not path.exists():
        return None
    doc = _read(path, table_key(backend, split))
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
                task_sc[r + i, j] = rec["task_success"]
        r += len(t.steps)
    return OutcomeTable(models=[m.name for m in models], task_keys=keys,
                        step_index=np.asarray(pos, dtype=np.int64), roles=roles,
                        instructions=instr, tools=[frozenset() for _ in roles], scores=scores,
                        costs=costs, latencies=lat, responses=responses, task_scores=task_sc)
