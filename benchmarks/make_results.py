"""Write docs/results.md and its quality-vs-cost plots from the benchmark JSON files.

    python benchmarks/make_results.py                       # everything (minutes: 30 replays)
    python benchmarks/make_results.py --no-replay-checks    # tables and plots only (seconds)

Inputs (written by ``python -m evoroute bench ... --json``; the exact command of each file is
rebuilt from its own content and printed in the document):

    docs/results/bench_bandit.json               RouterBench, all routers, 5 seeds, default weights
    docs/results/bench_full.json                 RouterBench, all routers, 5 seeds, default weights
    docs/results/bench_bandit_costlean.json      evoroute + gpt-4, weights 1,1,0.05
    docs/results/bench_full_costlean.json        evoroute + gpt-4, weights 1,1,0.05
    docs/results/bench_agent_steps_bandit.json   the bundled agent_steps data, all routers
    docs/results/bench_agent_steps_full.json
    docs/results/collab.json, atropos.json       headline numbers of docs/collaboration.md, rescue.md

Outputs: docs/results.md, docs/results/quality_cost.png (bandit protocol),
docs/results/quality_cost_full.png (full protocol), each drawn with plotly into a
self-contained HTML file (plotly.js inlined, no network) and screenshotted with headless
Chromium (kaleido is not a dependency).

Replay checks (default on): what the benchmark JSON does not contain (which model each EvoRoute
design picks per benchmark, the utility terms behind it, the evidence behind its estimates: the
paper union's semantic neighbours, the kNN design's effective sample size and shrinkage, what
the bandit runs observed of gpt-4) is measured by re-running the replays of `evoroute` and
`evoroute-paper` with the benchmark's own settings (same RunSpec, backend seed and routing seed,
so the runs are the benchmark's runs; the document shows that they reproduce the JSON's
numbers). Nothing here reads or tunes on anything but what it reports.

The code is the package ``benchmarks/results/`` (one module per job); this file is its entry
point.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from results.common import DOC, RESULTS, load_reports, load_side
from results.document import write_doc
from results.plots import make_figure, screenshot
from results.replay import replay_checks

from evoroute.settings import offline_env


def main(argv: list[str] | None = None) -> int:
    offline_env()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of the bench_*.json files")
    ap.add_argument("--out", type=Path, default=DOC, help="the Markdown file to write")
    ap.add_argument("--no-replay-checks", action="store_true",
                    help="skip re-running EvoRoute's replays (the reading then cites the JSON only)")
    ap.add_argument("--no-png", action="store_true", help="do not redraw the plots")
    args = ap.parse_args(argv)
    reps = load_reports(args.results)
    images: dict[str, str] = {}
    for key, name in (("bandit", "quality_cost.png"), ("full", "quality_cost_full.png")):
        png = args.results / name
        if not args.no_png:
            fig = make_figure(reps[key], reps.get(f"{key}_costlean"))
            screenshot(fig, png)
            print(f"wrote {png}", file=sys.stderr)
        if png.is_file():
            images[key] = os.path.relpath(png, args.out.parent)
    checks = None if args.no_replay_checks else replay_checks(reps)
    text = write_doc(reps, checks, images, load_side(args.results))
    args.out.write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
