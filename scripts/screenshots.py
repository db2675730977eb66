"""Regenerate the README's screenshots from the real studio in headless Chromium.

Seeds a temporary base as the end-to-end test does (the RouterBench models and a few finished
replay runs), serves it with ``streamlit run app.py`` on 127.0.0.1 and walks the pages with
the same browser helper (``tests/e2e/browser.py``): a replay run launched from the Runs page
with one decision's explanation open, the Pareto explorer at w_c = 0.5, the retrieval
inspector on a real instruction, then the overview, models and compare pages. One full-page
PNG per page goes to OUT_DIR (default docs/screenshots/).

Usage, from the project root (``make screenshots``):  python -m scripts.screenshots [OUT_DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from evoroute.settings import PROJECT_ROOT
from evoroute.storage import db, repo
from evoroute.storage.tables import Run
from tests.e2e.browser import (
    browser_missing,
    button,
    by_label,
    chromium,
    click,
    expand,
    metric_value,
    move_slider,
    open_first_explanation,
    open_page,
    screenshot,
    seed_studio,
    set_textarea,
    streamlit_server,
    wait_for,
)

PAGES = ("overview", "models", "runs", "pareto", "experience", "compare")


def take(out: Path, work: Path) -> list[Path]:
    url = f"sqlite:///{work / 'studio.db'}"
    engine = db.make_engine(url)
    seed_studio(engine)
    with streamlit_server(url, log=work / "streamlit.log") as base, chromium() as d:
        # Runs: launch a run with the form's defaults, let it finish, open one explanation
        open_page(d, base, "runs")
        expand(d, "Launch a run")
        wait_for(lambda: button(d, "Start run"), what="the launch form")
        with db.session(engine) as s:
            run_id = max(r.id for r in repo.list_runs(session=s)) + 1      # the run about to start
        click(d, "Start run")
        wait_for(lambda: f"run={run_id}" in d.current_url, what="the new run id in the URL")

        def ended() -> bool:
            with db.session(engine) as s:
                return s.get(Run, run_id).status in ("finished", "stopped", "failed")

        wait_for(ended, timeout=600, every=1.0, what="the run to end")
        open_first_explanation(d)
        screenshot(d, out / "runs.png")

        # Pareto explorer: w_c from 0.10 to 0.50
        open_page(d, base, "pareto")
        wait_for(lambda: metric_value(d, "utility-optimal model"), timeout=60, what="the optimal point")
        wait_for(lambda: move_slider(d, "w_c (cost)", 40) or True, what="moving the slider")
        wait_for(lambda: by_label(d, "w_c (cost)").get_attribute("value") == "0.5",
                 timeout=60, what="the slider to show 0.5")
        time.sleep(1.5)
        screenshot(d, out / "pareto.png")

        # Experience: the retrieval inspector on the last instruction of the run
        open_page(d, base, "experience")
        with db.session(engine) as s:
            last = repo.query_steps(repo.StepFilter(run_ids=[run_id]), session=s, limit=1)[0]
        set_textarea(d, "instruction", last.instruction)
        click(d, "Inspect")
        wait_for(lambda: "Decision:" in d.find_element("tag name", "body").text, timeout=120,
                 what="the inspector's decision")
        screenshot(d, out / "experience.png")

        for page, path, ready in (("overview", "", "Experience records"), ("models", "models", None),
                                  ("compare", "compare", None)):
            open_page(d, base, path)
            if ready:
                wait_for(lambda ready=ready: metric_value(d, ready), what=page)
            time.sleep(1.5)
            screenshot(d, out / f"{page}.png")
    engine.dispose()
    return [out / f"{p}.png" for p in PAGES]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", type=Path, default=PROJECT_ROOT / "docs" / "screenshots")
    args = ap.parse_args(argv)
    why = browser_missing()
    if why:
        print(f"screenshots: {why}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="evoroute-screenshots-") as work:
        for path in take(args.out.resolve(), Path(work)):
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
