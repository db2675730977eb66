"""What committing more often costs: steps/s of a real replay run on a real SQLite file when
the runner commits every 1, 5 or 50 steps (issue 10, item 2: at most one step lost per kill).

    python benchmarks/commit_cost.py
    python benchmarks/commit_cost.py --router random --steps 2000 --rounds 3 --json

Each round runs the same spec (RouterBench replayed, seeded) once per batch size, in rotating
order, on a fresh SQLite file in a temporary directory (WAL, synchronous=NORMAL, as the
studio's base), plus once with no database at all (``RunLoop.steps()`` alone) to show what the
routing itself costs. Timed: from the first step written to the last (the run's preparation
— loading the data, the shipped embeddings — is left out; it is the same for every batch
size). The time-based commit (every 0.25 s) is switched off so only the batch size counts.
Reported: the median steps/s (wall clock) and CPU ms per step of this process over the
rounds, and the cost of one commit, i.e. the difference between committing every step and
every 50. The machine's load average is printed: wall-clock numbers from a busy machine are
slower than a quiet machine's (CPU time is less affected).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from evoroute.settings import DEFAULTS, offline_env

offline_env()

from evoroute import demo  # noqa: E402
from evoroute.runs import writer  # noqa: E402
from evoroute.runs.execute import create_run, execute_run  # noqa: E402
from evoroute.runs.loop import RunLoop  # noqa: E402
from evoroute.runs.prepare import prepare_run  # noqa: E402
from evoroute.runs.spec import RunSpec  # noqa: E402
from evoroute.storage import db  # noqa: E402

BATCHES = (1, 5, 50)


def spec(args: argparse.Namespace) -> RunSpec:
    # cold start + online train tasks + test tasks = args.steps one-step tasks
    n_test = max(1, args.steps // 4)
    cold = min(DEFAULTS.cold_start_tasks, args.steps // 10)
    return RunSpec(backend="replay", dataset="routerbench", router=args.router,
                   seed=args.seed, cold_start_tasks=cold, n_train=args.steps - n_test - cold,
                   n_tasks=n_test, models=tuple(sorted(demo.fitted_prices())))


def _timed(steps) -> tuple[int, float, float]:
    """(steps, wall seconds, CPU seconds of this process) from the first step to the last."""
    t0 = c0 = None
    n = 0
    for _ in steps:
        if t0 is None:
            t0, c0 = time.perf_counter(), time.process_time()
        n += 1
    return n, time.perf_counter() - t0, time.process_time() - c0


def timed_run(engine, s: RunSpec, batch: int) -> tuple[int, float, float]:
    writer.COMMIT_EVERY_STEPS, writer.COMMIT_EVERY_S = batch, 1e9
    run_id = create_run(s, engine=engine)
    return _timed(execute_run(run_id, engine=engine))


def timed_loop(engine, s: RunSpec) -> tuple[int, float, float]:
    plan = prepare_run(s, engine=engine)
    return _timed(RunLoop(plan, s.budget_usd).steps())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--router", default="evoroute")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON line only")
    args = p.parse_args()
    s = spec(args)
    rates: dict[str, list[float]] = {str(b): [] for b in BATCHES} | {"no database": []}
    cpu: dict[str, list[float]] = {k: [] for k in rates}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            order = list(BATCHES[rnd % len(BATCHES):] + BATCHES[:rnd % len(BATCHES)])
            for b in order:
                engine = db.make_engine(f"sqlite:///{Path(tmp) / f'r{rnd}-b{b}.db'}")
                demo.register_routerbench_models(engine)
                n, dt, dc = timed_run(engine, s, b)
                rates[str(b)].append((n - 1) / dt)
                cpu[str(b)].append(1000 * dc / (n - 1))
                engine.dispose()
            engine = db.make_engine(f"sqlite:///{Path(tmp) / f'r{rnd}-loop.db'}")
            demo.register_routerbench_models(engine)
            n, dt, dc = timed_loop(engine, s)
            rates["no database"].append((n - 1) / dt)
            cpu["no database"].append(1000 * dc / (n - 1))
            engine.dispose()
    med = {k: statistics.median(v) for k, v in rates.items()}
    cpu_ms = {k: statistics.median(v) for k, v in cpu.items()}
    out = {"router": args.router, "steps": n, "rounds": args.rounds,
           "steps_per_s": {k: round(v, 1) for k, v in med.items()},
           "ms_per_step": {k: round(1000 / v, 3) for k, v in med.items()},
           "cpu_ms_per_step": {k: round(v, 3) for k, v in cpu_ms.items()},
           "commit_ms": round(1000 / med["1"] - 1000 / med["50"], 3),
           "commit_cpu_ms": round(cpu_ms["1"] - cpu_ms["50"], 3),
           "load_avg_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    if args.json:
        print(json.dumps(out))
        return
    print(f"{args.router} replayed on RouterBench, {n} steps, median of {args.rounds} rounds "
          f"(load average {out['load_avg_1m']} on {out['cpus']} CPUs)")
    print(f"{'commit every':>14} {'steps/s':>9} {'ms/step':>8} {'CPU ms/step':>12}")
    for k in [str(b) for b in BATCHES] + ["no database"]:
        label = f"{k} steps" if k != "no database" else k
        print(f"{label:>14} {med[k]:9.1f} {1000 / med[k]:8.3f} {cpu_ms[k]:12.3f}")
    print(f"one commit costs ~{out['commit_ms']:.3f} ms of wall time, "
          f"~{out['commit_cpu_ms']:.3f} ms of CPU (every step vs every 50)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
