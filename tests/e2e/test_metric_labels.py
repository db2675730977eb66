"""Issue 11 item 12 ("truncated metric labels") in the browser: on every page that shows
st.metric, no label or value is cut off (its text is wider than its box) at a desktop width and
at 400 px; the pages that show none still show none (a new metric there must be added here).
`streamlit run app.py` on 127.0.0.1, headless Chromium, a base with replay runs."""

from __future__ import annotations

import pytest

from evoroute.storage import db

from browser import browser_missing, chromium, open_page, seed_studio, streamlit_server, wait_for

pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")

#: every metric's label and value text with whether it is cut (wider than the box that shows it)
_CUT = """
const out = [];
for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
  for (const id of ['stMetricLabel', 'stMetricValue']) {
    const box = m.querySelector(`[data-testid="${id}"]`);
    if (!box) continue;
    for (const e of [box, ...box.querySelectorAll('*')]) {
      if (e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflow !== 'visible') {
        out.push([id, box.innerText.trim(), e.scrollWidth, e.clientWidth]);
        break;
      }
    }
  }
}
return out;
"""

#: the pages that show st.metric and how many each shows on the seeded base (at least): Pareto's
#: last four are the counterfactual's, drawn once the experience index has loaded (Models,
#: Experience and Compare show none: their numbers are tables)
PAGES = {"": 4, "runs": 5, "pareto": 8}
NO_METRICS = ("models", "experience", "compare")


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("labels")
    url = f"sqlite:///{tmp / 'labels.db'}"
    engine = db.make_engine(url)
    seed_studio(engine)
    with streamlit_server(url, log=tmp / "streamlit.log") as base, chromium() as driver:
        yield base, driver
    engine.dispose()


@pytest.mark.parametrize("width", [1280, 400])
@pytest.mark.parametrize("page", sorted(PAGES))
def test_no_metric_label_or_value_is_cut(studio, page, width):
    base, d = studio
    d.set_window_size(width, 1000)
    open_page(d, base, page)
    n = wait_for(lambda: (k := d.execute_script(
        "return document.querySelectorAll('[data-testid=\"stMetric\"]').length;")) >= PAGES[page]
        and k + 1, timeout=60, what=f"{PAGES[page]} metrics on /{page}") - 1
    assert n >= PAGES[page]
    cut = d.execute_script(_CUT)
    assert cut == [], (page, width, cut)


@pytest.mark.parametrize("page", NO_METRICS)
def test_the_pages_without_metrics_still_have_none(studio, page):
    base, d = studio
    d.set_window_size(1280, 1000)
    open_page(d, base, page)
    assert d.execute_script(
        "return document.querySelectorAll('[data-testid=\"stMetric\"]').length;") == 0

