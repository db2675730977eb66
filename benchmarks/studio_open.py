"""Opening the studio in a fresh Chromium on a fresh server: `streamlit run app.py` against
`python -m ui.serve` (what `make run` starts: the pages' libraries imported before the server
listens). Seconds until Overview's script run has finished, then Compare opened by address::

    python -m benchmarks.studio_open [--reps 3]

Builds a small base first (the RouterBench models and three finished replay runs, as the
browser tests seed it). Prints JSON; *live* wall times of this machine (state the load).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "e2e")]

from benchmarks.studio_pages import SCRIPT_DONE_JS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args(argv)
    from evoroute.settings import offline_env
    from evoroute.storage import db

    from browser import browser_missing, chromium, seed_studio, streamlit_server, wait_for

    offline_env()
    if why := browser_missing():
        print(json.dumps({"skipped": why}))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'open.db'}"
        seed_studio(db.make_engine(url))
        out: dict = {"load_1min_at_start": os.getloadavg()[0], "reps": a.reps}
        for name, launcher in (("streamlit run app.py", False), ("python -m ui.serve", True)):
            rows = []
            for _ in range(a.reps):
                with streamlit_server(url, launcher=launcher) as base, chromium() as d:
                    time.sleep(1.0)                      # the user opens the page afterwards
                    t = time.perf_counter()
                    d.get(base + "/")
                    wait_for(lambda: d.execute_script(SCRIPT_DONE_JS), 120, every=0.02)
                    studio = time.perf_counter() - t
                    t = time.perf_counter()
                    d.get(base + "/compare")
                    wait_for(lambda: d.execute_script(SCRIPT_DONE_JS), 120, every=0.02)
                    rows.append({"open_studio_s": round(studio, 2),
                                 "compare_by_address_s": round(time.perf_counter() - t, 2)})
            out[name] = {"runs": rows, "open_studio_median_s": statistics.median(
                r["open_studio_s"] for r in rows), "compare_median_s": statistics.median(
                r["compare_by_address_s"] for r in rows)}
        out["load_1min_at_end"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
