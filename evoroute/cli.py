"""Command line: ``python -m evoroute <command> ...``.

Errors a user can cause print one line (``error: ...``) and exit with status 2; heavy
libraries are imported only by the commands that need them so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from evoroute.settings import offline_env
from evoroute.errors import EvoRouteError


def _engine(args: argparse.Namespace):
    from evoroute.storage.db import get_engine

    try:
        return get_engine(getattr(args, "db", None))
    except ImportError as exc:   # a URL whose driver is not installed (postgresql://, mysql://)
        raise EvoRouteError(f"cannot use the experience base (the database driver "
                            f"'{exc.name or exc}' is not installed); check --db / "
                            f"EVOROUTE_DB_URL") from exc


def _csv(text: str | None) -> list[str] | None:
    return None if not text else [t.strip() for t in text.split(",") if t.strip()]


def _ids(text: str | None, flag: str = "--runs") -> list[int] | None:
    """Comma-separated run ids; ``abc`` is a one-line error naming the flag, not a traceback."""
    out = []
    for t in _csv(text) or []:
        if not t.isdigit():
            raise EvoRouteError(f"{flag} takes comma-separated run ids (whole numbers), got {t!r}")
        out.append(int(t))
    return out or None


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the field and the problem), exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


# ----------------------------------------------------------------------------- models
def cmd_models(args: argparse.Namespace) -> int:
    from evoroute import registry
    from evoroute.storage import db, repo

    engine = _engine(args)
    with db.session(engine) as s:
        if args.action == "list":
            rows = repo.list_models(session=s, enabled_only=not args.all)
            if args.json:
                print(json.dumps([r.model_dump(mode="json", exclude={"created_at", "updated_at"})
                                  for r in rows], indent=1))
                return 0
            if not rows:
                print("no models registered (python -m evoroute models add NAME ...)")
                return 0
            print(f"{'name':38} {'in $/1M':>9} {'out $/1M':>9} {'price':9} {'ttft s':>6} "
                  f"{'tok/s':>6} {'on':3} litellm id")
            for r in rows:
                print(f"{r.name:38} {r.input_price_per_m:9.3f} {r.output_price_per_m:9.3f} "
                      f"{r.price_source:9} {r.ttft_s:6.2f} {r.tokens_per_s:6.1f} "
                      f"{'yes' if r.enabled else 'no':3} {r.litellm_id}")
            return 0
        if args.action == "add":
            e = registry.add_model(session=s, name=args.name, litellm_id=args.litellm_id or "",
                                   input_price_per_m=args.input_price,
                                   output_price_per_m=args.output_price, ttft_s=args.ttft,
                                   tokens_per_s=args.tps, api_base=args.api_base,
                                   enabled=not args.disabled, notional=args.notional)
            print(f"registered {e.name}: ${e.input_price_per_m:g} in / ${e.output_price_per_m:g} "
                  f"out per 1M tokens ({e.price_source}), ttft {e.ttft_s:g} s, "
                  f"{e.tokens_per_s:g} tok/s")
            return 0
        if args.action == "update":
            changes: dict[str, Any] = {}
            for arg, fld in (("litellm_id", "litellm_id"), ("input_price", "input_price_per_m"),
                             ("output_price", "output_price_per_m"), ("ttft", "ttft_s"),
                             ("tps", "tokens_per_s"), ("api_base", "api_base")):
                if getattr(args, arg) is not None:
                    changes[fld] = getattr(args, arg)
            if args.enable:
                changes["enabled"] = True
            if args.disable:
                changes["enabled"] = False
            if not changes:
                raise EvoRouteError("nothing to update: give at least one option")
            e = registry.update_model(args.name, session=s, **changes)
            print(f"updated {e.name}: " + ", ".join(f"{k}={v}" for k, v in changes.items()))
            return 0
        if args.action == "remove":
            registry.remove_model(args.name, session=s)
            print(f"removed {args.name} (its past step records stay in the experience base)")
            return 0
    return 1


# ----------------------------------------------------------------------------- decide
def cmd_decide(args: argparse.Namespace) -> int:
    import numpy as np

    from evoroute import registry
    from evoroute.core.types import StepContext, Weights
    from evoroute.experience import SyncedIndex
    from evoroute.policy.evoroute import EvoRouteConfig, EvoRouteRouter
    from evoroute.storage import db

    engine = _engine(args)
    with db.session(engine) as s:
        models = registry.model_infos(session=s, names=_csv(args.models))
    if not models:
        raise EvoRouteError("no enabled models: register one with `python -m evoroute models add`")
    from evoroute.core.types import validate_name, validate_theta

    cfg = EvoRouteConfig(weights=Weights.parse(args.weights), theta=validate_theta(args.theta),
                         perf_signal=args.signal)
    role = validate_name(args.role, "role", label="--role")
    if not args.instruction.strip():
        raise EvoRouteError("the instruction is empty")
    if args.seed < 0:
        raise EvoRouteError(f"seed must be >= 0, got {args.seed}")
    synced = SyncedIndex(engine, run_ids=_ids(args.runs), perf_signal=args.signal)
    router = EvoRouteRouter(models, cfg, index=synced.index)
    step = StepContext(task_key="cli", step_index=0, role=role, instruction=args.instruction,
                       phase=args.phase)
    d = router.decide(step, np.random.default_rng(args.seed))
    e = d.explanation
    if args.json:
        print(e.to_json())
        return 0
    print(f"chosen model: {d.model}   (propensity {d.propensity:.3f}, phase {e.phase}, mode {e.mode})")
    print(f"why: {e.reason}")
    if e.fallback:
        print(f"fallback used: {e.fallback}")
    print(f"experience base: {len(synced.index)} records; retrieved per channel: "
          + ", ".join(f"{k} {v}" for k, v in e.channels.items()))
    print(f"predicted tools: {', '.join(e.predicted_tools) or '-'}   weights (wp, wc, wd): {e.weights}")
    if e.c_ref is not None:
        print(f"utility scales: C_ref ${e.c_ref:.6f}, D_ref {e.d_ref:.3f} s "
              "(largest estimated means among the explored candidates)")
    print(f"{'model':38} {'n':>6} {'P^':>6} {'C^ $':>10} {'D^ s':>7} {'pareto':6} "
          f"{'θP':>6} {'U':>8} {'prop':>5}")
    for c in sorted(e.candidates, key=lambda c: -(c.utility if c.utility is not None else -9e9)):
        def f(x, fmt):                       # "-" padded to the column's width
            return format(x, fmt) if x is not None else format("-", ">" + fmt.split(".")[0])
        print(f"{c.model:38} {c.n:6d} {f(c.p_hat, '6.3f')} {f(c.c_hat, '10.6f')} {f(c.d_hat, '7.3f')} "
              f"{('yes' if c.pareto else ('new' if c.unexplored else 'no')):6} {f(c.theta_p, '6.3f')} "
              f"{f(c.utility, '8.4f')} {c.propensity:5.2f}")
    return 0


# ----------------------------------------------------------------------------- runs
def _spec_from_args(args: argparse.Namespace):
    from evoroute.core.types import Weights
    from evoroute.evaluation.runner import RunSpec

    w = Weights.parse(args.weights)
    return RunSpec(backend=args.backend, dataset=args.data, router=args.router,
                   weights=w.as_tuple(), seed=args.seed, protocol=args.protocol,
                   n_tasks=args.tasks, n_train=args.train, cold_start_tasks=args.cold_start,
                   steps_per_task=args.steps_per_task, budget_usd=args.budget,
                   models=tuple(_csv(args.models)) if args.models else None, name=args.name or "",
                   backend_params=_params(args.backend_param))


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


def _drop_if_nothing_ran(engine: Any, run_id: int) -> None:
    """A foreground run that failed on bad input before its first step (a dataset with no train
    tasks, models the data has no outcomes for) leaves nothing stored: the error is printed
    instead. A run that executed steps keeps them, with the reason."""
    from evoroute.storage import db, repo

    try:
        with db.session(engine) as s:
            run = repo.get_run(run_id, session=s)
            if run is not None and run.status == "failed" and not run.n_steps_done:
                repo.delete_run(run_id, session=s)
    except Exception:  # noqa: BLE001 - the original error is what the user needs to see
        pass


def cmd_run(args: argparse.Namespace) -> int:
    from evoroute.evaluation import runner

    from evoroute.backends.base import check_params

    spec = _spec_from_args(args)
    engine = _engine(args)
    # checked before the run is stored, so a typo leaves no failed run behind
    check_params(spec.backend, spec.backend_params)
    if spec.models and spec.backend != "simulated":
        from evoroute import registry
        from evoroute.storage import db

        with db.session(engine) as s:
            registry.model_infos(session=s, names=list(spec.models))
    if args.background:
        run_id = runner.start_background(spec, engine_url=args.db)
        print(f"started run {run_id} in the background; watch it in the studio "
              f"(Runs page, ?run={run_id}) or stop it with `python -m evoroute runs stop {run_id}`")
        return 0
    run_id = runner.create_run(spec, engine=engine)
    steps: list[dict[str, Any]] = []
    try:
        last = _follow(runner.execute_run(run_id, engine=engine), steps if args.json else None,
                       show=sys.stderr.isatty() and not args.quiet)
    except EvoRouteError:
        _drop_if_nothing_ran(engine, run_id)
        raise
    from evoroute.storage import db, repo
    with db.session(engine) as s:
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
    from evoroute.evaluation import runner

    last: dict[str, Any] = {}
    with runner.handle_signals():
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
    from evoroute.evaluation import runner

    return runner.worker_main(args.run_id, engine_url=args.db, resume=args.resume)


def cmd_runs(args: argparse.Namespace) -> int:
    from evoroute.evaluation import runner
    from evoroute.storage import db, repo

    engine = _engine(args)
    rid = args.run_id
    if args.action == "stop":
        if runner.stop_run(rid, engine=engine) == "stopped":
            print(f"run {rid} stopped (it had not started)")
            return 0
        print(f"stop requested for run {rid}; its worker stops after the step in progress")
        import time
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline:
            with db.session(engine) as s:
                run = repo.get_run(rid, session=s)
            if run is None or run.status not in repo.ACTIVE_STATUSES:
                print(f"run {rid}: {run.status if run else 'deleted'}"
                      + (f" — {run.error}" if run and run.error else ""))
                return 0
            time.sleep(0.2)
        print(f"run {rid} is still running after {args.wait:g} s (a long model call?); it stops "
              f"at its next step")
        return 0
    if args.action == "resume":
        if args.background:
            runner.resume_background(rid, engine_url=args.db)
            print(f"resuming run {rid} in the background; watch it in the studio "
                  f"(Runs page, ?run={rid}) or stop it with `python -m evoroute runs stop {rid}`")
            return 0
        _follow(runner.execute_run(rid, engine=engine, resume=True), None,
                show=sys.stderr.isatty())           # then shows the run, as `runs show`
    if args.action == "delete":
        counts = runner.delete_run(rid, engine=engine)
        print(f"deleted run {rid}: {counts.get('step', 0)} step records, "
              f"{counts.get('task', 0)} tasks")
        return 0
    with db.session(engine) as s:
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


def cmd_bench(args: argparse.Namespace) -> int:
    from evoroute.core.types import Weights
    from evoroute.evaluation import bench

    result = bench.run_bench(dataset=args.data, routers=_csv(args.routers),
                             weights=Weights.parse(args.weights).as_tuple(),
                             protocol=args.protocol, seeds=args.seeds, json_path=args.json,
                             progress=not args.quiet)
    print(bench.format_table(result))
    if args.json:
        print(f"wrote {args.json}")
    return 0


def cmd_local(args: argparse.Namespace) -> int:
    from evoroute.backends import local_models

    fn = {"start": local_models.cli_start, "stop": local_models.cli_stop,
          "status": local_models.cli_status}[args.action]
    print(fn(_csv(args.models)) if args.action != "status" else fn())
    if args.action == "start" and not args.no_register:
        from evoroute.backends.live import register_local_models
        from evoroute.storage import db

        with db.session(_engine(args)) as s:
            entries = register_local_models(session=s)
        print("registered as candidate models (notional price $0; change it on the Models page "
              "or with `models update`): " + ", ".join(e.name for e in entries))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from evoroute import demo

    print(demo.ensure_demo(engine=_engine(args), run=not args.no_run))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from evoroute import experience_io
    from evoroute.storage.repo import StepFilter

    flt = StepFilter(run_ids=_ids(args.runs),
                     roles=_csv(args.roles), models=_csv(args.models), text=args.text)
    n = experience_io.export_csv(args.out, flt, engine=_engine(args))
    print(f"exported {n} step records to {args.out}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from evoroute import experience_io

    run_id, n = experience_io.import_csv(args.path, engine=_engine(args))
    print(f"imported {n} step records into run {run_id}")
    return 0


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m evoroute",
                                description="EvoRoute Studio: experience-driven per-step LLM routing.")
    p.add_argument("--db", help="SQLAlchemy URL of the experience base (default: EVOROUTE_DB_URL "
                                "or var/evoroute.db)")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("models", help="register and manage candidate models")
    msub = m.add_subparsers(dest="action", required=True)
    ml = msub.add_parser("list", help="list registered models")
    ml.add_argument("--all", action="store_true", help="include disabled models")
    ml.add_argument("--json", action="store_true")
    for name in ("add", "update"):
        a = msub.add_parser(name, help=f"{name} a model")
        a.add_argument("name")
        a.add_argument("--litellm-id", help="litellm model id (prices default from its cost map)")
        a.add_argument("--input-price", type=str, help="USD per 1M input tokens")
        a.add_argument("--output-price", type=str, help="USD per 1M output tokens")
        a.add_argument("--ttft", type=str, default="0.5" if name == "add" else None,
                       help="time to first token, seconds")
        a.add_argument("--tps", type=str, default="50" if name == "add" else None,
                       help="output tokens per second")
        a.add_argument("--api-base", help="OpenAI-compatible base URL (keys come from the environment)")
        if name == "add":
            a.add_argument("--notional", action="store_true",
                           help="prices are notional (e.g. a free local model)")
            a.add_argument("--disabled", action="store_true")
        else:
            a.add_argument("--enable", action="store_true")
            a.add_argument("--disable", action="store_true")
    rm = msub.add_parser("remove", help="unregister a model")
    rm.add_argument("name")
    m.set_defaults(func=cmd_models)

    d = sub.add_parser("decide", help="route one instruction with the current experience base")
    d.add_argument("instruction")
    d.add_argument("--role", required=True)
    d.add_argument("--weights", default="1,0.1,0.05", help="wp,wc,wd")
    d.add_argument("--phase", default="optimize", choices=["optimize", "inference"])
    d.add_argument("--theta", type=float, default=0.85)
    d.add_argument("--signal", default="task", choices=["task", "step"])
    d.add_argument("--models", help="comma-separated registered models (default: all enabled)")
    d.add_argument("--runs", help="comma-separated run ids whose records form the base (default all)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_decide)

    r = sub.add_parser("run", help="execute one run (replay, simulated or live)")
    r.add_argument("--backend", default="replay", choices=["replay", "simulated", "live"])
    r.add_argument("--data", default=None, help="bundled dataset name or file (replay) / scenario")
    r.add_argument("--router", default="evoroute")
    r.add_argument("--weights", default="1,0.1,0.05")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--protocol", default="bandit", choices=["bandit", "full"])
    r.add_argument("--tasks", type=int, default=None, help="number of test tasks (default all)")
    r.add_argument("--train", type=int, default=None, help="number of train tasks (default all)")
    r.add_argument("--cold-start", type=int, default=50)
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

    b = sub.add_parser("bench", help="compare routers on a replay dataset")
    b.add_argument("--data", default="routerbench")
    b.add_argument("--routers", default=None, help="comma-separated (default: all)")
    b.add_argument("--weights", default="1,0.1,0.05")
    b.add_argument("--protocol", default="bandit", choices=["bandit", "full"])
    b.add_argument("--seeds", type=int, default=1)
    b.add_argument("--json")
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(func=cmd_bench)

    lo = sub.add_parser("local", help="manage local llama.cpp model servers on 127.0.0.1")
    lo.add_argument("action", choices=["start", "stop", "status"])
    lo.add_argument("--models", help="comma-separated local model names (default all)")
    lo.add_argument("--no-register", action="store_true",
                    help="start the servers without registering them as candidate models")
    lo.set_defaults(func=cmd_local)

    de = sub.add_parser("demo", help="load the bundled demo data (models + one replay run)")
    de.add_argument("--no-run", action="store_true")
    de.set_defaults(func=cmd_demo)

    ex = sub.add_parser("export", help="export step records to CSV")
    ex.add_argument("out")
    ex.add_argument("--runs")
    ex.add_argument("--roles")
    ex.add_argument("--models")
    ex.add_argument("--text")
    ex.set_defaults(func=cmd_export)

    im = sub.add_parser("import", help="import step records from CSV (validated, all or nothing)")
    im.add_argument("path")
    im.set_defaults(func=cmd_import)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    offline_env()  # before anything can import litellm or sentence-transformers
    args = build_parser().parse_args(argv)
    if args.command == "runs" and args.action != "list" and args.run_id is None:
        print(f"error: runs {args.action} needs a run id", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except EvoRouteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:   # a path given by the user: missing, a directory, not writable
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bad database URL or an unreachable database: one line, no traceback
        from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError, OperationalError

        # a CSV or any other file given as the base: DatabaseError "file is not a database"
        not_a_base = isinstance(exc, DatabaseError) and "not a database" in str(exc)
        if not (isinstance(exc, (ArgumentError, NoSuchModuleError, OperationalError)) or not_a_base):
            raise
        if isinstance(exc, OperationalError) and _is_lock_error(exc):
            print(f"error: {_lock_message(args)}", file=sys.stderr)
            return 2
        print(f"error: cannot use the experience base ({type(exc).__name__}: "
              f"{str(exc).splitlines()[0]}); check --db / EVOROUTE_DB_URL", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _is_lock_error(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in text or "database is busy" in text or "sqlite_busy" in text


def _lock_message(args: argparse.Namespace) -> str:
    """Who holds the write lock, as far as the base says (a read works while another writes)."""
    from evoroute.experience_io import active_writers

    try:
        writers = active_writers(engine=_engine(args))
    except Exception:  # the base cannot even be read now: say what is known
        writers = []
    who = "; ".join(writers) if writers else "another process"
    return (f"the database is locked by another writer ({who}) and stayed locked longer than "
            "the busy timeout; try again when it has finished")
