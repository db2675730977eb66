"""``bench``: compare routers on a replay dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from evoroute.cli.common import DEFAULT_WEIGHTS, split_csv
from evoroute.core.errors import ValidationError
from evoroute.settings import DEFAULTS


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("bench", help="compare routers on a replay dataset")
    b.add_argument("--data", default="routerbench")
    b.add_argument("--routers", default=None, help="comma-separated (default: all)")
    b.add_argument("--weights", default=DEFAULT_WEIGHTS)
    b.add_argument("--protocol", default="bandit", choices=list(DEFAULTS.protocols))
    b.add_argument("--seeds", type=int, default=1)
    b.add_argument("--steps-per-task", type=int, default=1, metavar="N",
                   help="compose tasks of N consecutive queries (multi-step tasks, e.g. for atropos)")
    b.add_argument("--json")
    b.add_argument("--merge-into", metavar="JSON",
                   help="rerun only --routers (plus the file's single models and oracles, which "
                        "the hull and AIQ need) and merge them into this bench JSON, in place")
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from evoroute.core.types import Weights
    from evoroute.evaluation.bench.report import format_table, merge_reports
    from evoroute.evaluation.bench.run import _json_num, run_bench

    routers = split_csv(args.routers)
    base = None
    sweep_seeds: int | None = 3                   # run_bench's default
    if args.merge_into:
        base = _read_report(args.merge_into)
        if not routers:
            raise ValidationError("--merge-into needs --routers: the routers to rerun", "routers")
        refs = [r for r in base["routers"] if r.startswith("single:") or r in base.get("oracles", [])]
        routers = list(dict.fromkeys([*routers, *refs]))
        if base.get("sweep_seeds"):               # the file's sweeps ran on its first N seeds
            sweep_seeds = len(base["sweep_seeds"])
    result = run_bench(dataset=args.data, routers=routers,
                       weights=Weights.parse(args.weights).as_tuple(),
                       protocol=args.protocol, seeds=args.seeds,
                       steps_per_task=args.steps_per_task, sweep_seeds=sweep_seeds,
                       json_path=None if base is not None else args.json,
                       progress=not args.quiet)
    if base is not None:
        result = merge_reports(base, result)
        out = Path(args.json or args.merge_into)
        out.write_text(json.dumps(result, indent=1, allow_nan=False, default=_json_num) + "\n")
        args.json = str(out)
    print(format_table(result))
    if args.json:
        print(f"wrote {args.json}")
    return 0


def _read_report(path: str) -> dict:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ValidationError(f"--merge-into: no such file {path}", "merge_into") from None
    except json.JSONDecodeError as e:
        raise ValidationError(f"--merge-into: {path} is not JSON ({e})", "merge_into") from None
    if not isinstance(data, dict) or not isinstance(data.get("routers"), dict):
        raise ValidationError(f"--merge-into: {path} is not a bench report (no 'routers')",
                              "merge_into")
    return data
