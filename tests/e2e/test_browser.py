"""End to end: `streamlit run app.py` on 127.0.0.1, driven by real headless Chromium.

Registers a model, starts a replay run and watches new decisions arrive in the live feed while
it runs, moves a weight slider, downloads the experience CSV (checked on disk), and saves a
screenshot of every page in the test's temporary folder (``make screenshots`` regenerates the
README's, docs/screenshots/).
"""

from __future__ import annotations

import csv
import re
import time
from datetime import timezone

import pytest

from evoroute.storage import db, repo
from evoroute.storage.tables import Run

from browser import (
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
    set_input,
    set_textarea,
    streamlit_server,
    wait_for,
    watch_metric,
    watched_values,
)

pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")


def _int(text: str | None) -> int:
    return int((text or "0").replace(",", ""))


def _run(engine, run_id: int) -> Run:
    with db.session(engine) as s:
        return s.get(Run, run_id)


@pytest.fixture
def studio(tmp_path):
    path = tmp_path / "e2e.db"
    url = f"sqlite:///{path}"
    engine = db.make_engine(url)
    seed_studio(engine)      # a few finished runs to compare with (and for the screenshots)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with streamlit_server(url, log=tmp_path / "streamlit.log") as base, chromium(downloads) as driver:
        yield base, driver, engine, downloads
    engine.dispose()


def test_register_run_watch_tune_download(studio, tmp_path):
    base, d, engine, downloads = studio
    shots = tmp_path / "screenshots"

    # -- register a model -------------------------------------------------------------------
    open_page(d, base, "models")
    wait_for(lambda: by_label(d, "name"), what="the name field")
    set_input(d, "name", "e2e-model")
    set_input(d, "input price (USD per 1M tokens)", "0.5")
    set_input(d, "output price (USD per 1M tokens)", "1.5")
    click(d, "Register model")
    wait_for(lambda: "registered e2e-model" in d.find_element("tag name", "body").text,
             what="the registration message")
    with db.session(engine) as s:
        m = repo.get_model("e2e-model", session=s)
    assert (m.input_price_per_m, m.output_price_per_m) == (0.5, 1.5)
    # a bad value: the message names the field and nothing is stored
    set_input(d, "name", "e2e-bad")
    set_input(d, "input price (USD per 1M tokens)", "-2")
    set_input(d, "output price (USD per 1M tokens)", "1")
    click(d, "Register model")
    wait_for(lambda: "must be ≥ 0, got -2" in d.find_element("tag name", "body").text,
             what="the price error")
    with db.session(engine) as s:
        assert repo.get_model("e2e-bad", session=s) is None
        # the e2e model is not part of RouterBench: disable it so the replay uses RouterBench's
        from evoroute import registry
        registry.update_model("e2e-model", session=s, enabled=False)

    # -- start a replay run and watch the live feed ------------------------------------------
    open_page(d, base, "runs")
    expand(d, "Launch a run")
    wait_for(lambda: button(d, "Start run"), what="the launch form")
    # the defaults: every RouterBench task (~3,200 steps), long enough to watch them arrive
    # record, inside the page, every value the feed shows with the run it belongs to
    watch_metric(d, "steps seen", '[data-testid="stProgress"]')
    with db.session(engine) as s:
        run_id = max(r.id for r in repo.list_runs(session=s)) + 1      # the run about to start
    click(d, "Start run")
    wait_for(lambda: f"run={run_id}" in d.current_url, what="the new run id in the URL")
    assert wait_for(lambda: _run(engine, run_id).status in ("finished", "stopped", "failed"),
                    timeout=300, every=0.5, what="the run to end")
    run = _run(engine, run_id)
    assert run.status == "finished", run.error
    wait_for(lambda: _int(metric_value(d, "steps seen")) == run.n_steps_done, timeout=30,
             what="the feed to catch up with the finished run")
    seen = [(t, v) for t, v, c in watched_values(d) if c.startswith(f"run #{run_id} ")]
    ended = run.finished_at.replace(tzinfo=timezone.utc).timestamp()
    during = [_int(v) for t, v in seen if t < ended and _int(v) > 0]
    # the feed showed new decisions at least twice while the run was still going, never
    # going backwards
    assert len(set(during)) >= 2, (seen, ended)
    assert during == sorted(during) and during[-1] <= run.n_steps_done
    # selecting a row of the feed (a canvas grid: click its first row) opens the explanation
    open_first_explanation(d)
    assert "retrieved records per channel" in d.find_element("tag name", "body").text
    screenshot(d, shots / "runs.png")

    # -- move a weight slider on the Pareto explorer ------------------------------------------
    open_page(d, base, "pareto")
    wait_for(lambda: by_label(d, "w_c (cost)"), what="the cost slider")
    wait_for(lambda: metric_value(d, "utility-optimal model"), timeout=60, what="the optimal point")
    wait_for(lambda: move_slider(d, "w_c (cost)", 40) or True, what="moving the slider")  # 0.10 -> 0.50
    wait_for(lambda: "with weights (1.0, 0.5, 0.05)" in d.find_element("tag name", "body").text,
             timeout=60, what="the page to rerun with w_c = 0.5")
    assert wait_for(lambda: by_label(d, "w_c (cost)").get_attribute("value") == "0.5",
                    what="the slider to show 0.5")
    screenshot(d, shots / "pareto.png")

    # -- download the experience CSV -----------------------------------------------------------
    open_page(d, base, "experience")
    prepare = wait_for(lambda: d.find_element(
        "xpath", '//button[.//*[starts-with(normalize-space(text()), "Prepare CSV of")]]'),
        what="the export button")
    n_rows = _int(re.search(r"Prepare CSV of ([\d,]+) records", prepare.text).group(1))
    prepare.click()
    wait_for(lambda: d.find_element(
        "xpath", '//button[.//*[starts-with(normalize-space(text()), "Download")]]'),
        what="the download button").click()
    f = wait_for(lambda: next((p for p in downloads.glob("*.csv")), None), timeout=60,
                 what="the downloaded file")
    wait_for(lambda: not list(downloads.glob("*.crdownload")), what="the download to complete")
    with open(f, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with db.session(engine) as s:
        total = repo.count_steps(session=s)
    assert len(rows) == n_rows == total
    assert sum(r["run_id"] == str(run_id) for r in rows) == run.n_steps_done
    assert "embedding" not in rows[0] and list(rows[0])[:3] == ["id", "run_id", "task_key"]
    # the retrieval inspector on a real instruction of the run (its embedding is shipped)
    with db.session(engine) as s:
        last = repo.query_steps(repo.StepFilter(run_ids=[run_id]), session=s, limit=1)[0]
    set_textarea(d, "instruction", last.instruction)
    click(d, "Inspect")
    wait_for(lambda: "Decision:" in d.find_element("tag name", "body").text, timeout=120,
             what="the inspector's decision")
    assert "Pareto set:" in d.find_element("tag name", "body").text
    screenshot(d, shots / "experience.png")

    # -- screenshots of the other pages ------------------------------------------------------------
    for page, ready in (("", "Experience records"), ("models", None), ("compare", None)):
        open_page(d, base, page)
        if ready:
            wait_for(lambda ready=ready: metric_value(d, ready), what=page or "overview")
        time.sleep(1.5)
        screenshot(d, shots / f"{page or 'overview'}.png")
