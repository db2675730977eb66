"""``demo``: load the bundled demo data (models and one replay run)."""

from __future__ import annotations

import argparse

from evoroute.cli.common import engine


def register(sub: argparse._SubParsersAction) -> None:
    de = sub.add_parser("demo", help="load the bundled demo data (models + one replay run)")
    de.add_argument("--no-run", action="store_true")
    de.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from evoroute import demo

    print(demo.ensure_demo(engine=engine(args), run=not args.no_run))
    return 0
