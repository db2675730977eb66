"""Does one page's late drawing slow the next page opened through the sidebar?

Opens the studio (``python -m ui.serve``, fresh Chromium) on a base, then clicks through the
sidebar pages given per sequence and prints each click's time until the page's script run
finished, with the server's and Chromium's CPU; ``--gap`` seconds of pause after each click.

    PYTHONPATH=. python -m benchmarks.sidebar_probe --db sqlite:////tmp/base.db \\
        pareto runs,pareto models,runs,pareto [--gap 3]

(A 100,000-record base: ``benchmarks.studio_pages.seed_base(url, 100_000)``.)
"""
from __future__ import annotations

import argparse
import os
import time

from benchmarks.studio_pages import NAV_DONE_JS, SCRIPT_DONE_JS, TITLES, CpuMeter
from evoroute.settings import offline_env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--gap", type=float, default=0.0)
    ap.add_argument("sequences", nargs="+")
    args = ap.parse_args(argv)
    os.environ["EVOROUTE_DB_URL"] = args.db
    offline_env()
    from tests.e2e.browser import chromium, streamlit_server, wait_for

    for seq in args.sequences:
        with streamlit_server(args.db, launcher=True) as base, chromium() as d:
            meter = CpuMeter()
            d.get(base + "/")
            wait_for(lambda: d.execute_script(SCRIPT_DONE_JS), 180, every=0.02)
            time.sleep(2)
            out = []
            for page in seq.split(","):
                link = d.find_element("css selector",
                                      '[data-testid="stSidebarNav"] a[href$="/%s"]' % page)
                start, t = meter.read(), time.perf_counter()
                link.click()
                wait_for(lambda p=page: d.execute_script(NAV_DONE_JS, TITLES[p]), 180,
                         every=0.02, what=page)
                out.append((page, round(time.perf_counter() - t, 3), meter.since(start)))
                time.sleep(args.gap)
            print(seq, out, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
