"""``export`` and ``import``: step records to and from CSV."""

from __future__ import annotations

import argparse

from evoroute.cli.common import engine, parse_ids, split_csv


def register(sub: argparse._SubParsersAction) -> None:
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


def cmd_export(args: argparse.Namespace) -> int:
    from evoroute.csvio.export import export_csv
    from evoroute.storage.repo import StepFilter

    flt = StepFilter(run_ids=parse_ids(args.runs),
                     roles=split_csv(args.roles), models=split_csv(args.models), text=args.text)
    n = export_csv(args.out, flt, engine=engine(args))
    print(f"exported {n} step records to {args.out}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from evoroute.csvio.importer import import_csv

    run_id, n = import_csv(args.path, engine=engine(args))
    print(f"imported {n} step records into run {run_id}")
    return 0
