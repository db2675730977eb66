"""One person's journey through the studio (issue 11 "What must exist"), end to end:
`streamlit run app.py` on 127.0.0.1 driven by real headless Chromium, checking what is on
screen at each step.

Register a model on Models; on Runs, disable it (the replay has no outcomes for it), launch a
replay run and watch the bar say each stage of the preparation, then the task phase, while the
feed receives steps, and open one decision's explanation; on Pareto move a weight slider and
see the operating point move; on Experience export the CSV (checked on disk) and import it back;
open Compare with the new run in it. No page shows a traceback. About a minute and a half.
"""

from __future__ import annotations

import csv
import re
import time

import pytest
from sqlmodel import func, select

from evoroute.runs import stages
from evoroute.runs.execute import run_spec
from evoroute.runs.spec import RunSpec
from evoroute.storage import db, repo
from evoroute.storage.tables import Run, StepRecord
from evoroute.studio.feed import PENDING_STAGE, PREPARE_STAGE

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
    set_input,
    streamlit_server,
    wait_for,
    watch_metric,
    watched_values,
)

pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")

#: the run the journey launches: 50 cold-start + 1,200 online train + 450 test tasks, replayed
#: (long enough that the bar shows several step counts on a quiet machine: 500 steps finished
#: between two 0.75 s refreshes there)
TEST_TASKS, TRAIN_TASKS = 450, 1200


def _body(d) -> str:
    return d.find_element("tag name", "body").text


def _no_traceback(d, page: str) -> None:
    shown = [e.text[:300] for e in d.find_elements("css selector", '[data-testid="stException"]')]
    assert not shown, (page, shown)


def _int(text: str | None) -> int:
    return int((text or "0").replace(",", ""))


def _usd(text: str) -> float:
    return float(text.replace("$", "").replace(",", ""))


@pytest.fixture
def studio(tmp_path):
    from evoroute import demo

    url = f"sqlite:///{tmp_path / 'journey.db'}"
    engine = db.make_engine(url)
    demo.register_routerbench_models(engine)
    for _ in run_spec(RunSpec(backend="replay", dataset="routerbench", router="single:"
                              "gpt-4-1106-preview", n_tasks=60, n_train=0, cold_start_tasks=0,
                              name="journey: gpt-4 alone"), engine=engine):
        pass                       # a finished run to compare the new one with
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with streamlit_server(url, log=tmp_path / "streamlit.log") as base, \
            chromium(downloads) as driver:
        yield base, driver, engine, downloads
    engine.dispose()


def test_a_person_registers_runs_watches_tunes_exports_and_compares(studio):
    base, d, engine, downloads = studio
    t0 = time.monotonic()

    # -- Models: register a model; the confirmation names it and its prices ---------------------
    open_page(d, base, "models")
    wait_for(lambda: by_label(d, "name"), what="the name field")
    set_input(d, "name", "journey-model")
    set_input(d, "input price (USD per 1M tokens)", "0.5")
    set_input(d, "output price (USD per 1M tokens)", "1.5")
    click(d, "Register model")
    wait_for(lambda: "registered journey-model" in _body(d), what="the registration message")
    _no_traceback(d, "models")
    with db.session(engine) as s:
        m = repo.get_model("journey-model", session=s)
        assert (m.input_price_per_m, m.output_price_per_m, m.enabled) == (0.5, 1.5, True)

    # -- Runs: the form says the replay has no outcomes for it; disable it from there ----------
    open_page(d, base, "runs")
    expand(d, "Launch a run")
    wait_for(lambda: "Not pre-selected: journey-model" in _body(d), what="the models note")
    click(d, "Disable 1 model(s) without outcomes")
    wait_for(lambda: "Disabled journey-model" in _body(d), what="the disable message")
    with db.session(engine) as s:
        assert not repo.get_model("journey-model", session=s).enabled
    set_input(d, "test tasks (empty = all)", str(TEST_TASKS))
    set_input(d, "online train tasks (empty = all)", str(TRAIN_TASKS))
    # record, inside the page, every value "steps seen" shows with the progress bar's text
    watch_metric(d, "steps seen", '[data-testid="stProgress"]')
    with db.session(engine) as s:
        run_id = max(r.id for r in repo.list_runs(session=s)) + 1
    click(d, "Start run")
    wait_for(lambda: f"run={run_id}" in d.current_url, what="the new run id in the URL")
    wait_for(lambda: _run(engine, run_id).status in ("finished", "stopped", "failed",
                                                     "interrupted"),
             timeout=120, every=0.3, what="the run to end")
    run = _run(engine, run_id)
    assert run.status == "finished", run.error
    n_steps = run.n_steps_done
    assert n_steps == 50 + TRAIN_TASKS + TEST_TASKS
    wait_for(lambda: _int(metric_value(d, "steps seen")) == n_steps, timeout=30,
             what="the feed to catch up with the finished run")
    # the bar's texts as the page drew them (recorded every 0.1 s, in order)
    texts = [c for _, _, c in watched_values(d) if c.startswith(f"run #{run_id} ")]
    first = next(i for i, c in enumerate(texts) if " tasks · " in c)
    # before its first step the bar said what the run was doing — at least once the stage its
    # worker stored — and never "0 of 0 tasks"
    prep_words = [PENDING_STAGE, PREPARE_STAGE] + [stages.title(s) for s in stages.PREPARING]
    assert first > 0 and all(any(w in c for w in prep_words) for c in texts[:first]), texts
    assert [c for c in texts[:first] if any(f" running · {stages.title(s)} · " in c
                                            for s in stages.PREPARING)], texts
    assert not [c for c in texts if "0 of 0 tasks" in c]
    # while it ran, the bar counted steps more than once, never going backwards, and named the
    # task phase with its step count
    during = [_int(m.group(1)) for c in texts if f"#{run_id} running · " in c
              and (m := re.search(r" · ([\d,]+) steps$", c))]
    assert len(set(during)) >= 2 and during == sorted(during), texts
    assert all(0 < n <= n_steps for n in during), texts
    phases = [stages.title(p) for p in (stages.COLD_START, stages.OPTIMIZE, stages.INFERENCE)]
    assert any(re.search(rf"{re.escape(p)} · [\d,]+ of [\d,]+ steps · ", c)
               for p in phases for c in texts), texts
    bar = d.find_element("css selector", '[data-testid="stProgress"]').text
    assert f"{TEST_TASKS + TRAIN_TASKS + 50:,} of {TEST_TASKS + TRAIN_TASKS + 50:,} tasks" in bar
    # open one decision: the feed's first row (the run's last step) and why it was made
    open_first_explanation(d)
    with db.session(engine) as s:
        last = s.exec(select(func.max(StepRecord.id)).where(StepRecord.run_id == run_id)).one()
    wait_for(lambda: f"Step #{last}" in _body(d), what="the explanation of the last step")
    assert "retrieved records per channel" in _body(d)
    _no_traceback(d, "runs")

    # -- Pareto: the weight sliders move the operating point ------------------------------------
    open_page(d, base, "pareto")
    wait_for(lambda: metric_value(d, "utility-optimal model"), timeout=60, what="the optimal point")

    def point() -> tuple:
        return tuple(metric_value(d, k) for k in ("utility-optimal model", "quality", "cost per step"))

    before = point()
    move_slider(d, "w_c (cost)", 40)                                  # 0.10 -> 0.50
    wait_for(lambda: "with weights (1.0, 0.5, 0.05)" in _body(d), timeout=60,
             what="the page to rerun with w_c = 0.5")
    assert by_label(d, "w_c (cost)").get_attribute("value") == "0.5"
    # with no weight on performance the operating point moves to the cheapest, fastest model
    # (in this run's records the model it sent most easy steps to is also the best: moving
    # w_c alone keeps it)
    move_slider(d, "w_p (performance)", -100)                         # 1.0 -> 0.0
    wait_for(lambda: "with weights (0.0, 0.5, 0.05)" in _body(d), timeout=60,
             what="the page to rerun with w_p = 0")
    after = wait_for(lambda: (p := point()) != before and all(p) and p, timeout=30,
                     what="the operating point to move")
    assert _usd(after[2]) < _usd(before[2]), (before, after)
    _no_traceback(d, "pareto")

    # -- Experience: export every record as CSV ------------------------------------------------
    open_page(d, base, "experience")
    prepare = wait_for(lambda: d.find_element(
        "xpath", '//button[.//*[starts-with(normalize-space(text()), "Prepare CSV of")]]'),
        what="the export button")
    n_rows = _int(re.search(r"Prepare CSV of ([\d,]+) records", prepare.text).group(1))
    prepare.click()
    wait_for(lambda: d.find_element(
        "xpath", '//button[.//*[starts-with(normalize-space(text()), "Download")]]'),
        what="the download button").click()
    f = wait_for(lambda: next(iter(downloads.glob("*.csv")), None), timeout=30,
                 what="the downloaded file")
    wait_for(lambda: not list(downloads.glob("*.crdownload")), what="the download to complete")
    with open(f, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with db.session(engine) as s:
        assert len(rows) == n_rows == repo.count_steps(session=s)
    assert sum(r["run_id"] == str(run_id) for r in rows) == n_steps
    # ... and import it back: the rows land in a new run, nothing else changes
    # (without embeddings: the export's 3,000+ texts would take minutes on a busy CI core; the
    # import with embeddings has its own browser test)
    d.find_element("xpath", '//label[.//*[contains(text(), "compute embeddings")]]').click()
    d.find_element("css selector", '[data-testid="stFileUploader"] input[type="file"]').send_keys(str(f))
    wait_for(lambda: button(d, "Import").is_enabled(), what="the upload (Import enabled)")
    click(d, "Import")
    done = wait_for(lambda: re.search(r"imported ([\d,]+) records into run #(\d+)", _body(d)),
                    timeout=180, every=0.5, what="the import message")
    assert _int(done.group(1)) == n_rows
    with db.session(engine) as s:
        assert repo.count_steps(repo.StepFilter(run_ids=[int(done.group(2))]), session=s) == n_rows
        assert repo.count_steps(session=s) == 2 * n_rows
    _no_traceback(d, "experience")

    # -- Compare: the new run is in the comparison, with its table and chart --------------------
    open_page(d, base, "compare")
    wait_for(lambda: f"#{run_id} · evoroute · routerbench" in _body(d), timeout=60,
             what="the new run among the compared runs")
    wait_for(lambda: button(d, "Download the table (CSV)"), what="the comparison table")
    assert d.find_elements("css selector", '[data-testid="stDataFrame"]')
    assert d.find_elements("css selector", '[data-testid="stPlotlyChart"]')
    _no_traceback(d, "compare")
    print(f"journey: {time.monotonic() - t0:.1f} s in the browser")


def _run(engine, run_id: int) -> Run:
    with db.session(engine) as s:
        return s.get(Run, run_id)
