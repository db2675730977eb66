"""Convert the bundled agent-step labels to the long replay format.

Reads ``data/agent_steps/source/`` (UncommonRoute's calibration split, gzipped, and
TwinRouterBench's tier -> model map and prices, all upstream bytes) and writes
``data/agent_steps/agent_steps_long.csv.gz`` plus its record ``agent_steps_long.json``.
Offline and deterministic: rerunning it gives the same bytes. Assumptions:
``data/agent_steps/PROVENANCE.md``.

Usage: python scripts/convert_agent_steps.py [--source DIR] [--out FILE] [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evoroute.settings import offline_env

offline_env()

from evoroute.core.errors import EvoRouteError  # noqa: E402
from evoroute.datasets import agent_steps as ag  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ag.SOURCE_DIR,
                        help="directory with calibration.jsonl(.gz) and the TwinRouterBench JSONs")
    parser.add_argument("--out", type=Path, default=ag.LONG_FILE,
                        help="long-format file to write (its .json record goes beside it)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the shipped file differs from a fresh "
                             "conversion")
    parser.add_argument("--no-verify", action="store_true",
                        help="accept source files whose sha256 differs from upstream's")
    args = parser.parse_args(argv)
    try:
        frame, meta = ag.convert(args.source, check=not args.no_verify)
    except EvoRouteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        same = args.out.is_file() and args.out.read_bytes() == ag.to_csv_gz(frame)
        print(f"{args.out}: {'up to date' if same else 'DIFFERS from a fresh conversion'}")
        return 0 if same else 1
    meta_path = args.out.with_name(args.out.name.split(".")[0] + ".json")
    path = ag.write(frame, meta, args.out, meta_path)
    print(f"wrote {path} ({len(frame)} rows: {meta['steps']} steps x {len(meta['tiers'])} "
          f"tier models) and {meta_path.name}")
    print(ag.summary(frame).to_string(float_format=lambda v: f"{v:.4f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
