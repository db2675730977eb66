"""Executing a run: from ``pending`` to its final status, writing each step as it happens.

Every run stores its full configuration and seed; a kill loses at most the step in progress
(every step is committed on its own, fenced on ownership); SIGTERM is handled like Ctrl-C
(:func:`evoroute.runs.signals.handle_signals`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from evoroute.backends.base import TableBackend
from evoroute.core import labels
from evoroute.core.errors import EvoRouteError
from evoroute.core.types import PHASES
from evoroute.runs import lifecycle, stages
from evoroute.runs.feed import step_dict
from evoroute.runs.lifecycle import RunTakenOver
from evoroute.runs.loop import ResumeDivergence, RunLoop
from evoroute.runs.prepare import prepare_run
from evoroute.runs.signals import SIG
from evoroute.runs.spec import RunSpec
from evoroute.runs.writer import Writer
from evoroute.storage import db, repo, run_store


def create_run(spec: RunSpec, *, engine: Engine | None = None) -> int:
    """A Run row (status pending) carrying the spec as JSON and its seed."""
    engine = engine or db.get_engine()
    w = spec.weights
    with db.session(engine) as s:
        run = repo.create_run(session=s, config=spec.to_dict(), name=spec.name,
                              status="pending", backend=spec.backend, dataset=str(spec.dataset),
                              router=spec.router, protocol=spec.protocol, seed=spec.seed,
                              w_p=w[0], w_c=w[1], w_d=w[2], budget_usd=spec.budget_usd,
                              label=labels.run_label(spec.backend))
        return int(run.id)


def run_spec(spec: RunSpec, *, engine: Engine | None = None, embedder: Any = None
             ) -> Iterator[dict[str, Any]]:
    """create_run + execute_run."""
    engine = engine or db.get_engine()
    run_id = create_run(spec, engine=engine)
    yield from execute_run(run_id, engine=engine, embedder=embedder)


def execute_run(run_id: int, *, engine: Engine | None = None, embedder: Any = None,
                resume: bool = False, claim_from: Sequence[str] | None = None
                ) -> Iterator[dict[str, Any]]:
    """Execute a pending run (or, ``resume``, continue an interrupted / stopped one), writing
    each step as it happens; yields one dict per step written.

    Status goes pending -> running -> finished | stopped | failed | interrupted. A run stops
    cleanly on a stop request (read at every commit) or when the next step's expected cost
    would exceed its budget; SIGINT / SIGTERM (under :func:`~evoroute.runs.signals.handle_signals`)
    and a write the base refuses (lock timeout) end it ``interrupted``. The reason is stored in ``Run.error``.
    User errors are stored and re-raised (typed), so the CLI and the studio show the message.

    Resuming replays the run from its seed: the generator re-decides every stored step with
    the same random streams and feeds the router the same outcomes — recomputed (and checked
    against the stored ones) on replay / simulated backends, the stored ones on live (no model
    is called again) — so the router's learning state and the random streams at the first new
    step are exactly those of an uninterrupted run; nothing is written until then.
    """
    engine = engine or db.get_engine()
    owner = lifecycle.claim(engine, run_id, resume, claim_from)
    heartbeat = lifecycle.Heartbeat(engine, run_id, owner)
    report = lifecycle.StageReporter(engine, run_id, owner, heartbeat)
    writer: Writer | None = None
    status: str | None = "failed"
    error: str | None = None
    done = 0
    try:
        with db.session(engine) as s:
            run = repo.get_run(run_id, session=s, reconcile=False)
        cfg_in = json.loads(run.config_json or "{}")
        spec = RunSpec.from_dict(cfg_in)
        plan = prepare_run(spec, engine=engine, embedder=embedder, report=report)
        recomputes = isinstance(plan.backend, TableBackend)
        done, recorded, tasks = run.n_steps_done if resume else 0, {}, {}
        if done:
            recorded, tasks = lifecycle.stored_steps(engine, run_id, done)
            if not recomputes:
                done = lifecycle.drop_open_task(engine, run_id, owner, recorded, tasks)
        cfg = {**spec.to_dict(), "resolved": plan.details}
        if resume:
            cfg["resolved"] = {**plan.details, **{k: v for k, v in cfg_in.get("resolved", {}).items()
                                                  if k in ("prepare_s", "embedding_s")},
                               "resumed_at_steps": [*cfg_in.get("resolved", {}).get(
                                   "resumed_at_steps", []), done]}
        run_store.set_run(engine, run_id, config_json=json.dumps(cfg, sort_keys=True, default=str),
                          label=labels.run_label(spec.backend, plan.backend.latency_label),
                          n_tasks_total=plan.n_tasks_total)
        loop = RunLoop(plan, spec.budget_usd, recorded=None if recomputes else recorded)
        open_tasks = {key: tid for tid, (key, succ) in tasks.items() if succ is None}
        cost0 = run_store.run_cost(engine, run_id) if done else 0.0
        if done:
            report(stages.REPLAYING, None, f"{done:,} stored steps, to restore the router's "
                                           f"state (nothing is written)")
        writer = Writer(engine, run_id, plan.router.name, owner, heartbeat, n_steps=done,
                        cost=cost0, open_tasks=open_tasks)
        n_total = plan.n_steps_total
        # the stage of the task phases goes with each step's commit (no extra write)
        phase_steps = {p: sum(t.n_steps for t in ts) for p, ts in plan.phases}
        stage: dict[str, Any] = {}
        q_sum, cost_sum, phase_stats = 0.0, 0.0, {p: [0.0, 0] for p in PHASES}
        stopped_by_request = False
        last_no = 0
        for r in loop.steps():
            last_no = r.step_no
            o = r.outcome
            score = 0.0 if o.step_success is None else float(o.step_success)
            q_sum += score
            cost_sum += o.cost_usd + sum(f.cost_usd for _, f in r.failed)
            ps = phase_stats.setdefault(r.phase, [0.0, 0])
            ps[0] += score
            ps[1] += 1
            if r.step_no <= done:                      # replaying a stored step: no write
                if recomputes:
                    lifecycle.check_replayed(run_id, r, recorded[r.step_no])
                continue
            writer.add(r)
            stage = dict(stage=r.phase, stage_progress=ps[1] / max(phase_steps[r.phase], 1),
                         stage_detail=f"{ps[1]:,} of {phase_steps[r.phase]:,} steps")
            if writer.due():
                stopped_by_request = writer.commit(**stage)
            yield step_dict(run_id, r, n_total, q_sum / r.step_no, cost_sum, ps[0] / ps[1],
                            plan.backend.label)
            if stopped_by_request:
                break
        if last_no < done and not loop.stop_reason:
            raise ResumeDivergence(f"cannot resume run {run_id} exactly: it stores {done} steps "
                                   f"but its tasks now give only {last_no}; the data changed")
        if writer.buffer:
            stopped_by_request = writer.commit(**stage) or stopped_by_request
        if stopped_by_request:
            status, error = "stopped", f"stopped on request after {writer.n_steps} steps"
        elif loop.stop_reason:
            status, error = "stopped", loop.stop_reason
        else:
            status = "finished"
    except GeneratorExit:
        if SIG.received:
            status, error = "interrupted", lifecycle.interrupt_reason(
                SIG.received, run_id, writer.committed if writer is not None else done)
        else:
            status, error = "stopped", "the consumer stopped reading the run"
        raise
    except RunTakenOver:
        status = None                    # not ours any more: write nothing
        raise
    except lifecycle.StoppedWhilePreparing as exc:
        status, error = "stopped", str(exc)   # asked for: the run ends cleanly, no step ran
    except ResumeDivergence as exc:
        status, error = "interrupted", str(exc)
        raise
    except EvoRouteError as exc:
        status, error = "failed", str(exc)
        raise
    except KeyboardInterrupt as exc:
        status = "interrupted"
        error = lifecycle.interrupt_reason(getattr(exc, "signame", "SIGINT"), run_id,
                                           writer.committed if writer is not None else done)
        raise
    except Exception as exc:   # noqa: BLE001
        if isinstance(exc, OperationalError):   # e.g. a lock timeout: resumable, not a bug
            status = "interrupted"
            error = lifecycle.write_failure(exc, run_id, writer.committed if writer else done)
            raise EvoRouteError(error) from None
        # a bug: record it so the run does not stay "running" forever
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        heartbeat.stop()
        if writer is not None:
            writer.close()
        if status is not None:
            lifecycle.finish(engine, run_id, owner, status, error)
