"""``run``, ``runs list|show|stop|resume|delete`` and the hidden ``worker`` of background runs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from evoroute.backends.names import BACKEND_NAMES, OWN_MODELS
from evoroute.cli.common import DEFAULT_WEIGHTS, engine, split_csv
from evoroute.core.errors import EvoRouteError
from evoroute.settings import DEFAULTS


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="execute one run (replay, simulated or live)")
    r.add_argument("--backend", default="replay", choices=list(BACKEND_NAMES))
    r.add_argument("--data", default=None, help="bundled dataset name or file (replay) / scenario")
    r.add_argument("--router", default="evoroute")
    r.add_argument("--weights", default=DEFAULT_WEIGHTS)
    r.add_argument("--seed", type=int, default=DEFAULTS.seed)
    r.add_argument("--protocol", default="bandit", choices=list(DEFAULTS.protocols))
    r.add_argument("--tasks", type=int, default=None, help="number of test tasks (default all)")
    r.add_argument("--train", type=int, default=None, help="number of train tasks (default all)")
    r.add_argument("--cold-start", type=int, default=DEFAULTS.cold_start_tasks)
    r.add_argument("--steps-per-task", type=int, default=1)
    r.add_argument("--budget", type=float, default=None, help="USD cap for the run")
    r.add_argument("--models", help="comma-separated registered models (default all enabled)")
    r.add_argument("--name")
    r.add_argument("--backend-param", action="append", metavar="KEY=VALUE",
                   help="backend setting, repeatable (live: timeout_s, retries, max_tokens, ...)")
    r.add_argument("--json", help="write every step to this JSON file")
    r.add_argument("--background", action="store_true", help="run in a detached worker")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_run)

    w = sub.add_parser("worker", help=argparse.SUPPRESS)
    w.add_argument("run_id", type=int)
    w.add_argument("--resume", action="store_true")
    w.set_defaults(func=cmd_worker)

    rs = sub.add_parser("runs", help="list, show, stop, resume or delete runs")
    rs.add_argument("action", choices=["list", "show", "stop", "resume", "delete"])
    rs.add_argument("run_id", type=int, nargs="?")
    rs.add_argument("--limit", type=int, default=30)
    rs.add_argument("--background", action="store_true", help="resume in a detached worker")
    rs.add_argument("--wait", type=float, default=10.0,
                    help="stop: seconds to wait for the run to stop (default 10)")
    rs.set_defaults(func=cmd_runs)


def _spec_from_args(args: argparse.Namespace):
    from evoroute.core.types import Weights
    from evoroute.runs.spec import RunSpec

    w = Weights.parse(args.weights)
    return RunSpec(backend=args.backend, dataset=args.data, router=args.router,
                   weights=w.as_tuple(), seed=args.seed, protocol=args.protocol,
                   n_tasks=args.tasks, n_train=args.train, cold_start_tasks=args.cold_start,
                   steps_per_task=args.steps_per_task, budget_usd=args.budget,
                   models=tuple(split_csv(args.models)) if args.models else None,
                   name=args.name or "", backend_params=_params(args.backend_param))


def _params(items: list[str] | None) -> dict[str, Any]:
    """``k=v`` pairs; values are parsed as JSON when they can be (numbers, booleans)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise EvoRouteError(f"--backend-param takes key=value, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _drop_if_nothing_ran(eng: Any, run_id: int) -> None:
    """A foreground run that failed on bad input before its first step (a dataset with no train
    tasks, models the data has no outcomes for) leaves nothing stored: the error is printed
    instead. A run that executed steps keeps them, with the reason."""
    from evoroute.storage import db, repo

    try:
        with db.session(eng) as s:
            run = repo.get_run(run_id, session=s)
            if run is not None and run.status == "failed" and not run.n_steps_done:
                repo.delete_run(run_id, session=s)
    except Exception:  # noqa: BLE001 - the original error is what the user needs to see
        pass


def cmd_run(args: argparse.Namespace) -> int:
    from evoroute.backends.registry import check_params
    from evoroute.runs.execute import create_run, execute_run
    from evoroute.runs.worker import start_background
    from evoroute.storage import db, repo

    spec = _spec_from_args(args)
    eng = engine(args)
    # checked before the run is stored, so a typo leaves no failed run behind
    check_params(spec.backend, spec.backend_params)
    if spec.models and spec.backend not in OWN_MODELS:
        from evoroute import registry

        with db.session(eng) as s:
            registry.model_infos(session=s, names=list(spec.models))
    if args.background:
        run_id = start_background(spec, engine_url=args.db)
        print(f"started run {run_id} in the background; watch it in the studio "
              f"(Runs page, ?run={run_id}) or stop it with `python -m evoroute runs stop {run_id}`")
        return 0
    run_id = create_run(spec, engine=eng)
    steps: list[dict[str, Any]] = []
    try:
        last = _follow(execute_run(run_id, engine=eng), steps if args.json else None,
                       show=sys.stderr.isatty() and not args.quiet)
    except EvoRouteError:
        _drop_if_nothing_ran(eng, run_id)
        raise
    with db.session(eng) as s:
        run = repo.get_run(run_id, session=s)
    quality = (f", quality {last.get('phase_quality', 0):.3f} in the {last.get('phase')} phase "
               f"({last.get('cum_quality', 0):.3f} over all steps)") if last else ""
    print(f"run {run_id}: {run.status}; {run.n_steps_done} steps, cost ${run.cost_usd:.4f}"
          f"{quality} [{run.label}]" + (f" — {run.error}" if run.error else ""))
    if args.json:
        keep = ("step_no", "task_key", "split", "phase", "role", "model", "score", "cost_usd",
                "latency_s", "latency_label", "ttft_s", "input_tokens", "output_tokens", "error",
                "propensity", "task_success", "failed_calls")
        out = {"run_id": run_id, "status": run.status, "config": json.loads(run.config_json),
               "steps": [{("success" if k == "score" else k): st.get(k) for k in keep} for st in steps]}
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1, default=str)
        print(f"wrote {args.json}")
    return 0 if run.status in ("finished", "stopped") else 1


def _follow(gen, steps: list | None, show: bool) -> dict[str, Any]:
    """Consume a run's steps (SIGTERM handled like Ctrl-C: the run ends interrupted with its
    committed steps); shows progress on a terminal; returns the last step."""
    from evoroute.runs.signals import handle_signals

    last: dict[str, Any] = {}
    with handle_signals():
        try:
            for st in gen:
                last = st
                if steps is not None:
                    steps.append(st)
                if show:
                    print(f"\r{st['step_no']}/{st['n_steps_total']} quality "
                          f"{st['cum_quality']:.3f} cost ${st['cum_cost_usd']:.4f}", end="",
                          file=sys.stderr)
        finally:
            gen.close()
            if show:
                print(file=sys.stderr)
    return last


def cmd_worker(args: argparse.Namespace) -> int:
    from evoroute.runs.worker import worker_main

    return worker_main(args.run_id, engine_url=args.db, resume=args.resume)


def cmd_runs(args: argparse.Namespace) -> int:
    from evoroute.runs.execute import execute_run
    from evoroute.runs.lifecycle import delete_run
    from evoroute.runs.worker import resume_background
    from evoroute.storage import db, repo

    eng = engine(args)
    rid = args.run_id
    if args.action == "stop":
        return _stop(rid, eng, args.wait)
    if args.action == "resume":
        if args.background:
            resume_background(rid, engine_url=args.db)
            print(f"resuming run {rid} in the background; watch it in the studio "
                  f"(Runs page, ?run={rid}) or stop it with `python -m evoroute runs stop {rid}`")
            return 0
        _follow(execute_run(rid, engine=eng, resume=True), None,
                show=sys.stderr.isatty())           # then shows the run, as `runs show`
    if args.action == "delete":
        counts = delete_run(rid, engine=eng)
        print(f"deleted run {rid}: {counts.get('step', 0)} step records, "
              f"{counts.get('task', 0)} tasks")
        return 0
    with db.session(eng) as s:
        if args.action in ("show", "resume"):
            r = repo.get_run(rid, session=s)
            if r is None:
                raise EvoRouteError(f"no run with id {rid}")
            beat = repo.as_utc(r.heartbeat_at)
            age = f"{(repo.now() - beat).total_seconds():.1f} s ago" if beat else "never"
            print(f"run {r.id}: {r.status}" + (f" — {r.error}" if r.error else ""))
            print(f"  {r.router} on {r.backend}/{r.dataset}, seed {r.seed}, {r.label}")
            print(f"  steps {r.n_steps_done}, tasks {r.n_tasks_total}, cost ${r.cost_usd:.4f}")
            print(f"  process: pid {r.pid} on {r.host}; heartbeat {age}")
            return 0 if args.action == "show" or r.status in ("finished", "stopped") else 1
        runs = repo.list_runs(session=s, limit=args.limit)
        if not runs:
            print("no runs yet")
        for r in runs:
            print(f"{r.id:5d} {r.status:11} {r.backend:9} {r.router:26} {r.dataset:22} "
                  f"seed {r.seed:<4d} steps {r.n_steps_done:<6d} ${r.cost_usd:.4f}  {r.label}")
    return 0


def _stop(rid: int, eng: Any, wait_s: float) -> int:
    """Ask the run to stop, then wait up to ``wait_s`` for its worker to end it."""
    import time

    from evoroute.runs.lifecycle import stop_run
    from evoroute.storage import db, repo

    if stop_run(rid, engine=eng) == "stopped":
        print(f"run {rid} stopped (it had not started)")
        return 0
    print(f"stop requested for run {rid}; its worker stops after the step in progress")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        with db.session(eng) as s:
            run = repo.get_run(rid, session=s)
        if run is None or run.status not in repo.ACTIVE_STATUSES:
            print(f"run {rid}: {run.status if run else 'deleted'}"
                  + (f" — {run.error}" if run and run.error else ""))
            return 0
        time.sleep(0.2)
    print(f"run {rid} is still running after {wait_s:g} s (a long model call?); it stops "
          f"at its next step")
    return 0
