"""``bench``: compare routers on a replay dataset."""

from __future__ import annotations

import argparse

from evoroute.cli.common import DEFAULT_WEIGHTS, split_csv
from evoroute.settings import DEFAULTS


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("bench", help="compare routers on a replay dataset")
    b.add_argument("--data", default="routerbench")
    b.add_argument("--routers", default=None, help="comma-separated (default: all)")
    b.add_argument("--weights", default=DEFAULT_WEIGHTS)
    b.add_argument("--protocol", default="bandit", choices=list(DEFAULTS.protocols))
    b.add_argument("--seeds", type=int, default=1)
    b.add_argument("--json")
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from evoroute.core.types import Weights
    from evoroute.evaluation.bench.report import format_table
    from evoroute.evaluation.bench.run import run_bench

    result = run_bench(dataset=args.data, routers=split_csv(args.routers),
                       weights=Weights.parse(args.weights).as_tuple(),
                       protocol=args.protocol, seeds=args.seeds, json_path=args.json,
                       progress=not args.quiet)
    print(format_table(result))
    if args.json:
        print(f"wrote {args.json}")
    return 0
