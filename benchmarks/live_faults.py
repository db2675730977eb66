"""Live calls against a misbehaving OpenAI-compatible server: requests per failed call, time on
a hang, what a 200 non-completion becomes, and budget vs spent.

Starts the fake server of ``tests/reliability/fake_openai.py`` on 127.0.0.1 (no network) and
drives the real live backend (litellm + the OpenAI client) against it. With ``--before REF``
the same scenarios also run against ``evoroute/backends/live.py`` as it was at git ref REF
(e.g. the commit before the fix), so the table shows before and after from one command::

    python -m benchmarks.live_faults                      # after only (~1 min)
    python -m benchmarks.live_faults --before aadd910     # before and after (~4 min)

(from the project root: the fake server is imported from ``tests.reliability``).

Budget rows, against a server that reports usage of 1 token while streaming ``--lie-tokens``
tokens, and one that ignores ``max_tokens`` and streams until the client closes: first one
call with ``--cap`` USD left and a ``max_tokens`` too large to matter (only the budget can stop
it), then a live run (random router, 1 task = 4 agent steps, 1 retry) with a ``--budget`` cap.
"billed" is what the backend / run recorded (``Run.cost_usd``); "streamed" prices what the
server actually wrote (what a provider would charge; the fake server writes ahead into the
socket buffers, so chunks written after the client closed count too). Timings depend on the
machine's load.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from evoroute.settings import PROJECT_ROOT as ROOT, offline_env

offline_env()

from evoroute.core.types import ModelInfo  # noqa: E402
from tests.reliability.fake_openai import FakeOpenAI, Scenario  # noqa: E402

MSGS = [{"role": "user", "content": "What is 2 + 2?"}]
PRICE_IN, PRICE_OUT = 10.0, 200.0          # USD per 1M tokens in the budget rows


def load_before(ref: str) -> Any:
    """``evoroute/backends/live.py`` as it was at git ref ``ref``, as a module."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:evoroute/backends/live.py"],
                         check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "live_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("evoroute.backends.live_before", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod          # dataclasses look their module up while it loads
    spec.loader.exec_module(mod)
    return mod


@contextlib.contextmanager
def live_module(mod: Any) -> Iterator[None]:
    """Make ``evoroute.backends.live`` resolve to ``mod`` (the runner imports it by name)."""
    key = "evoroute.backends.live"
    old = sys.modules.get(key)
    sys.modules[key] = mod
    try:
        yield
    finally:
        if old is not None:
            sys.modules[key] = old


def backend(mod: Any, models: list[ModelInfo], **kw: Any) -> Any:
    kw.setdefault("backoff_s", 0.5)
    return mod.LiveBackend("default", models, check_models=False, **kw)


def call_rows(mod: Any, srv: FakeOpenAI, tag: str, timeout: float) -> list[dict[str, Any]]:
    rows = []
    for name, sc, t_out in ((f"{tag}-500", Scenario("status", status=500), 30.0),
                            (f"{tag}-429", Scenario("status", status=429), 30.0),
                            (f"{tag}-hang", Scenario("hang", sleep_s=600), timeout),
                            (f"{tag}-ra", Scenario("status", status=429, fail_times=1,
                                                   headers={"Retry-After": "2"}), 30.0),
                            (f"{tag}-garbled", Scenario("json_on_stream"), 30.0),
                            (f"{tag}-empty", Scenario("empty_stream"), 30.0)):
        srv.add(name, sc)
        m = ModelInfo(name, litellm_id="openai/fake", api_base=srv.api_base(name))
        b = backend(mod, [m], timeout_s=t_out, max_retries=2)
        t0 = time.perf_counter()
        r = b.call(m, MSGS, 16)
        took = time.perf_counter() - t0
        reqs = srv.of(name)
        gap = reqs[1].t - reqs[0].t if len(reqs) > 1 else None
        rows.append({"scenario": name.split("-", 1)[1], "requests": len(reqs), "time_s": took,
                     "first_gap_s": gap, "stored": "error" if r.error else
                     f"success, {r.output_tokens or 0} output tokens",
                     "error": (r.error or "")[-60:]})
    return rows


def cap_rows(mod: Any, srv: FakeOpenAI, tag: str, cap: float, lie_tokens: int,
             timeout: float) -> list[dict[str, Any]]:
    """One call with ``cap`` USD left and a ``max_tokens`` too large to matter: only the
    budget can stop the stream (the pre-fix backend has no cap: it reads until the end or
    its timeout)."""
    rows = []
    for kind in ("lying_usage", "endless"):
        name = f"{tag}-cap-{kind}"
        srv.add(name, Scenario(kind, n_tokens=lie_tokens, chunk_delay_s=0.002,
                               max_stream_s=timeout + 5))
        m = ModelInfo(name, input_price_per_m=PRICE_IN, output_price_per_m=PRICE_OUT,
                      litellm_id="openai/fake", api_base=srv.api_base(name))
        b = backend(mod, [m], timeout_s=timeout, max_retries=0)
        t0 = time.perf_counter()
        try:
            r = b.call(m, MSGS, 1_000_000, cap_usd=cap)
        except TypeError:                      # before the fix: no cap
            r = b.call(m, MSGS, 1_000_000)
        took = time.perf_counter() - t0
        time.sleep(0.2)
        reqs = srv.of(name)
        prompt = sum(sum(len(str(x.get("content", ""))) for x in q.body.get("messages", []))
                     for q in reqs) / 4
        streamed = (prompt * PRICE_IN + srv.chunks_sent(name) * PRICE_OUT) / 1e6
        billed = r.cost_usd if hasattr(r, "cost_usd") else \
            b.cost(m, r.input_tokens or 0, r.output_tokens or 0)
        rows.append({"scenario": kind, "budget": cap, "billed": billed, "streamed": streamed,
                     "steps": 1, "requests": len(reqs),
                     "status": "error" if r.error else "success", "time_s": took})
    return rows


def budget_rows(mod: Any, srv: FakeOpenAI, tag: str, budget: float, lie_tokens: int,
                timeout: float) -> list[dict[str, Any]]:
    from evoroute import registry
    from evoroute.runs.execute import create_run, execute_run
    from evoroute.runs.spec import RunSpec
    from evoroute.storage import db, repo

    rows = []
    for kind in ("lying_usage", "endless"):
        name = f"{tag}-{kind}"
        srv.add(name, Scenario(kind, n_tokens=lie_tokens, chunk_delay_s=0.002,
                               max_stream_s=timeout + 5))
        with tempfile.TemporaryDirectory() as d:
            engine = db.make_engine(f"sqlite:///{d}/bench.db")
            with db.session(engine) as s:
                registry.add_model(session=s, name=name, litellm_id="openai/fake",
                                   input_price_per_m=PRICE_IN, output_price_per_m=PRICE_OUT,
                                   api_base=srv.api_base(name))
            spec = RunSpec(backend="live", router="random", n_tasks=1, seed=0,
                           budget_usd=budget, models=(name,),
                           backend_params={"backoff_s": 0.0, "check_models": False,
                                           "max_retries": 1, "timeout_s": timeout})
            t0 = time.perf_counter()
            with live_module(mod):
                run_id = create_run(spec, engine=engine)
                steps = list(execute_run(run_id, engine=engine))
            took = time.perf_counter() - t0
            with db.session(engine) as s:
                run = repo.get_run(run_id, session=s)
                billed, status = float(run.cost_usd or 0.0), run.status
            engine.dispose()
        reqs = srv.of(name)
        prompt = sum(sum(len(str(m.get("content", ""))) for m in q.body.get("messages", []))
                     for q in reqs) / 4
        streamed = (prompt * PRICE_IN + srv.chunks_sent(name) * PRICE_OUT) / 1e6
        rows.append({"scenario": kind, "budget": budget, "billed": billed, "streamed": streamed,
                     "steps": len(steps), "requests": len(reqs), "status": status,
                     "time_s": took})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", metavar="REF", help="also measure live.py at this git ref")
    ap.add_argument("--timeout", type=float, default=2.5, help="call timeout on the hang (s)")
    ap.add_argument("--budget", type=float, default=0.05, help="run budget cap (USD)")
    ap.add_argument("--cap", type=float, default=0.06, help="budget left for one call (USD)")
    ap.add_argument("--lie-tokens", type=int, default=2000,
                    help="tokens the lying server streams per call while reporting 1")
    args = ap.parse_args(argv)

    from evoroute.backends import live as after
    versions = [("after", after)]
    if args.before:
        versions.insert(0, ("before", load_before(args.before)))
    with FakeOpenAI() as srv:
        srv.add("warm", Scenario("ok"))
        m = ModelInfo("warm", litellm_id="openai/fake", api_base=srv.api_base("warm"))
        backend(after, [m], timeout_s=120).call(m, MSGS, 8)      # litellm's first call is slow
        calls = {v: call_rows(mod, srv, v, args.timeout) for v, mod in versions}
        caps = {v: cap_rows(mod, srv, v, args.cap, args.lie_tokens, 10.0) for v, mod in versions}
        budgets = {v: budget_rows(mod, srv, v, args.budget, args.lie_tokens, 10.0)
                   for v, mod in versions}

    print(f"Requests per failed call (max_retries=2, i.e. a budget of 3; hang: timeout "
          f"{args.timeout:g} s; backoff 0.5 s x 2^k)")
    print(f"{'scenario':<9} {'version':<7} {'requests':>8} {'time s':>7} {'1st gap s':>9}  stored as")
    for i in range(len(calls["after"])):
        for v, _ in versions:
            r = calls[v][i]
            gap = "" if r["first_gap_s"] is None else f"{r['first_gap_s']:.2f}"
            print(f"{r['scenario']:<9} {v:<7} {r['requests']:>8} {r['time_s']:>7.2f} {gap:>9}  "
                  f"{r['stored']}")
    print()
    head = (f"{'scenario':<12} {'version':<7} {'budget $':>8} {'billed $':>9} {'streamed $':>10} "
            f"{'steps':>5} {'requests':>8} {'status':<9} {'time s':>7}")

    def table(rows: dict[str, list[dict[str, Any]]]) -> None:
        print(head)
        for i in range(2):
            for v, _ in versions:
                r = rows[v][i]
                print(f"{r['scenario']:<12} {v:<7} {r['budget']:>8.2f} {r['billed']:>9.4f} "
                      f"{r['streamed']:>10.4f} {r['steps']:>5} {r['requests']:>8} "
                      f"{r['status']:<9} {r['time_s']:>7.1f}")

    unit = (f"${PRICE_IN:g} / ${PRICE_OUT:g} per 1M tokens; one chunk = 1 token = "
            f"${PRICE_OUT / 1e6:.6f}; the server streams {args.lie_tokens} tokens reporting 1, "
            f"or without end; call timeout 10 s")
    print(f"Budget vs spent, one call with ${args.cap:g} left ({unit})")
    table(caps)
    print()
    print(f"Budget vs spent, a live run (random router, 1 task = 4 steps) with a "
          f"${args.budget:g} cap")
    table(budgets)


if __name__ == "__main__":
    main()
