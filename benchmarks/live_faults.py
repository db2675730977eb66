"""Live calls against a misbehaving OpenAI-compatible server: requests per failed call, time on
a hang, what a 200 non-completion becomes, and budget vs spent.

Starts the fake server of ``tests/reliability/fake_openai.py`` on 127.0.0.1 (no network) and
drives the real live backend (litellm + the OpenAI client) against it::

    python -m benchmarks.live_faults                      # ~1 min

(from the project root: the fake server is imported from ``tests.reliability``). The "was"
figures of docs/reliability.md, the live backend before the reliability work, came from this
script's former ``--before aadd910`` mode, which loaded that commit's single-file live backend
beside the current one; it works from a checkout of commit 213928e (the backend has since
become a package and its old imports no longer exist).

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
import tempfile
import time
from typing import Any

from evoroute.settings import offline_env

offline_env()

from evoroute.backends.live import LiveBackend  # noqa: E402
from evoroute.core.types import ModelInfo  # noqa: E402
from tests.reliability.fake_openai import FakeOpenAI, Scenario  # noqa: E402

MSGS = [{"role": "user", "content": "What is 2 + 2?"}]
PRICE_IN, PRICE_OUT = 10.0, 200.0          # USD per 1M tokens in the budget rows


def backend(models: list[ModelInfo], **kw: Any) -> LiveBackend:
    kw.setdefault("backoff_s", 0.5)
    return LiveBackend("default", models, check_models=False, **kw)


def call_rows(srv: FakeOpenAI, tag: str, timeout: float) -> list[dict[str, Any]]:
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
        b = backend([m], timeout_s=t_out, max_retries=2)
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


def cap_rows(srv: FakeOpenAI, tag: str, cap: float, lie_tokens: int,
             timeout: float) -> list[dict[str, Any]]:
    """One call with ``cap`` USD left and a ``max_tokens`` too large to matter: only the
    budget can stop the stream."""
    rows = []
    for kind in ("lying_usage", "endless"):
        name = f"{tag}-cap-{kind}"
        srv.add(name, Scenario(kind, n_tokens=lie_tokens, chunk_delay_s=0.002,
                               max_stream_s=timeout + 5))
        m = ModelInfo(name, input_price_per_m=PRICE_IN, output_price_per_m=PRICE_OUT,
                      litellm_id="openai/fake", api_base=srv.api_base(name))
        b = backend([m], timeout_s=timeout, max_retries=0)
        t0 = time.perf_counter()
        r = b.call(m, MSGS, 1_000_000, cap_usd=cap)
        took = time.perf_counter() - t0
        time.sleep(0.2)
        reqs = srv.of(name)
        prompt = sum(sum(len(str(x.get("content", ""))) for x in q.body.get("messages", []))
                     for q in reqs) / 4
        streamed = (prompt * PRICE_IN + srv.chunks_sent(name) * PRICE_OUT) / 1e6
        rows.append({"scenario": kind, "budget": cap, "billed": r.cost_usd, "streamed": streamed,
                     "steps": 1, "requests": len(reqs),
                     "status": "error" if r.error else "success", "time_s": took})
    return rows


def budget_rows(srv: FakeOpenAI, tag: str, budget: float, lie_tokens: int,
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
    ap.add_argument("--timeout", type=float, default=2.5, help="call timeout on the hang (s)")
    ap.add_argument("--budget", type=float, default=0.05, help="run budget cap (USD)")
    ap.add_argument("--cap", type=float, default=0.06, help="budget left for one call (USD)")
    ap.add_argument("--lie-tokens", type=int, default=2000,
                    help="tokens the lying server streams per call while reporting 1")
    args = ap.parse_args(argv)

    with FakeOpenAI() as srv:
        srv.add("warm", Scenario("ok"))
        m = ModelInfo("warm", litellm_id="openai/fake", api_base=srv.api_base("warm"))
        backend([m], timeout_s=120).call(m, MSGS, 8)      # litellm's first call is slow
        calls = call_rows(srv, "run", args.timeout)
        caps = cap_rows(srv, "run", args.cap, args.lie_tokens, 10.0)
        budgets = budget_rows(srv, "run", args.budget, args.lie_tokens, 10.0)

    print(f"Requests per failed call (max_retries=2, i.e. a budget of 3; hang: timeout "
          f"{args.timeout:g} s; backoff 0.5 s x 2^k)")
    print(f"{'scenario':<9} {'requests':>8} {'time s':>7} {'1st gap s':>9}  stored as")
    for r in calls:
        gap = "" if r["first_gap_s"] is None else f"{r['first_gap_s']:.2f}"
        print(f"{r['scenario']:<9} {r['requests']:>8} {r['time_s']:>7.2f} {gap:>9}  {r['stored']}")
    print()
    head = (f"{'scenario':<12} {'budget $':>8} {'billed $':>9} {'streamed $':>10} "
            f"{'steps':>5} {'requests':>8} {'status':<9} {'time s':>7}")

    def table(rows: list[dict[str, Any]]) -> None:
        print(head)
        for r in rows:
            print(f"{r['scenario']:<12} {r['budget']:>8.2f} {r['billed']:>9.4f} "
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
