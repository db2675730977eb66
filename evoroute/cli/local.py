"""``local start|stop|status``: local llama.cpp model servers on 127.0.0.1."""

from __future__ import annotations

import argparse

from evoroute.cli.common import engine, split_csv


def register(sub: argparse._SubParsersAction) -> None:
    lo = sub.add_parser("local", help="manage local llama.cpp model servers on 127.0.0.1")
    lo.add_argument("action", choices=["start", "stop", "status"])
    lo.add_argument("--models", help="comma-separated local model names (default all)")
    lo.add_argument("--no-register", action="store_true",
                    help="start the servers without registering them as candidate models")
    lo.set_defaults(func=cmd_local)


def cmd_local(args: argparse.Namespace) -> int:
    from evoroute.backends import local_models

    fn = {"start": local_models.cli_start, "stop": local_models.cli_stop,
          "status": local_models.cli_status}[args.action]
    print(fn(split_csv(args.models)) if args.action != "status" else fn())
    if args.action == "start" and not args.no_register:
        from evoroute.backends.live import register_local_models
        from evoroute.storage import db

        with db.session(engine(args)) as s:
            entries = register_local_models(session=s)
        print("registered as candidate models (notional price $0; change it on the Models page "
              "or with `models update`): " + ", ".join(e.name for e in entries))
    return 0
