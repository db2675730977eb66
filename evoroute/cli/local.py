"""``local start|stop|status|bench``: local llama.cpp model servers on 127.0.0.1."""

from __future__ import annotations

import argparse
import os
import statistics
from typing import Any

from evoroute.cli.common import engine, split_csv


def register(sub: argparse._SubParsersAction) -> None:
    lo = sub.add_parser("local", help="manage local llama.cpp model servers on 127.0.0.1")
    lo.add_argument("action", choices=["start", "stop", "status", "bench"],
                    help="bench: serve the models and time one streamed call per prompt on each")
    lo.add_argument("--models", help="comma-separated local model names (default all)")
    lo.add_argument("--no-register", action="store_true",
                    help="start the servers without registering them as candidate models")
    lo.add_argument("--base-port", type=int, default=None,
                    help="first port to try on 127.0.0.1 (start, bench; default 18431)")
    lo.add_argument("--threads", type=int, default=None,
                    help="threads per server (start, bench; default 1)")
    lo.set_defaults(func=cmd_local)


def cmd_local(args: argparse.Namespace) -> int:
    from evoroute.backends.local import servers as srv

    names = split_csv(args.models) or None
    base_port = srv.DEFAULT_BASE_PORT if args.base_port is None else args.base_port
    if args.action == "start":
        from evoroute.netsafety import LOCAL_API_KEY

        infos = srv.start(names, base_port, n_threads=args.threads)
        print("\n".join([f"local model servers (api_key: any string, e.g. {LOCAL_API_KEY}):",
                         *_server_lines(infos)]))
        if not args.no_register:
            from evoroute.backends.local.register import register_local_models
            from evoroute.storage import db

            with db.session(engine(args)) as s:
                entries = register_local_models(session=s)
            print("registered as candidate models (notional price $0; change it on the Models "
                  "page or with `models update`): " + ", ".join(e.name for e in entries))
    elif args.action == "stop":
        stopped = srv.stop(names)
        print(("stopped: " + ", ".join(stopped)) if stopped else "no local model server was running")
    elif args.action == "status":
        print(_status_text())
    else:
        print(_bench_text(names, base_port, args.threads))
    return 0


def _server_lines(infos: list[Any]) -> list[str]:
    return [f"  {i.name:<14} {i.status:<9} pid {i.pid:<7} {i.model:<22} api_base {i.api_base}"
            + (f"  (up in {i.startup_s:.1f} s)" if i.startup_s else "") for i in infos]


def _status_text() -> str:
    from evoroute.backends.local.catalogue import LOCAL_MODELS
    from evoroute.backends.local.servers import default_servers, server_available

    servers = default_servers()
    infos = {i.name: i for i in servers.status()}
    lines = [f"llama-cpp-python: {'installed' if server_available() else 'NOT installed'}",
             f"state file: {servers.state_path}"]
    if servers.last_stale:
        lines.append("cleaned stale entries (process gone): " + ", ".join(servers.last_stale))
    for name, m in LOCAL_MODELS.items():
        pkg = f"{m.package}=={m.version}" + ("" if m.installed() else " (NOT installed)")
        if name in infos:
            lines += _server_lines([infos[name]])
        else:
            lines.append(f"  {name:<14} stopped   {pkg}")
    return "\n".join(lines)


def _bench_text(names: list[str] | None, base_port: int, n_threads: int | None,
                max_tokens: int = 32) -> str:
    """The medians of :func:`evoroute.backends.local.measure.bench`, one line per model; the
    load average before and after (on 2 shared cores it matters)."""
    from evoroute.backends.local.measure import BENCH_PROMPTS, bench

    med = statistics.median
    lines = [f"{len(BENCH_PROMPTS)} prompts, max_tokens {max_tokens}, temperature 0; "
             f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start"]
    for b in bench(names, BENCH_PROMPTS, max_tokens, base_port, n_threads):
        ms = b.calls
        lines.append(
            f"  {b.info.name:<13} threads {b.info.n_threads}  start {b.info.startup_s or 0:.2f} s  "
            f"cold TTFT {b.cold.ttft_s:.3f} s  medians: TTFT {med([m.ttft_s for m in ms]):.3f} s, "
            f"total {med([m.total_s for m in ms]):.3f} s, "
            f"{med([m.prompt_tokens for m in ms]):.0f}+{med([m.completion_tokens for m in ms]):.0f} tok, "
            f"decode {med([m.decode_tokens_per_s for m in ms]):.1f} tok/s, "
            f"server CPU {med([m.server_cpu_s or 0.0 for m in ms]):.2f} s/call")
        lines.append(f"    e.g. {ms[0].text.strip()[:90]!r}")
    lines.append(f"load average {os.getloadavg()[0]:.2f} at end")
    return "\n".join(lines)
