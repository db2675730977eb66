"""Issue 11 item 13, in the browser: at 400 px wide every chart of Compare and Pareto keeps its
tick labels apart and its legend out of the plot area (below it, not beside it), and the page
does not scroll sideways. `streamlit run app.py` on 127.0.0.1, headless Chromium."""

from __future__ import annotations

import pytest

from evoroute.storage import db

from browser import browser_missing, chromium, open_page, seed_studio, streamlit_server, wait_for

pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")

#: per drawn plotly chart: its width, its plot area, its legend box and its tick label boxes
_MEASURE = """
return [...document.querySelectorAll('.js-plotly-plot')].map(p => {
  const box = e => { const r = e.getBoundingClientRect();
                     return [r.left, r.top, r.right, r.bottom]; };
  const bg = p.querySelector('.bglayer rect, .nsewdrag');
  const leg = p.querySelector('g.legend');
  return {width: p.getBoundingClientRect().width,
          plot: bg ? box(bg) : null,
          legend: leg ? box(leg) : null,
          xticks: [...p.querySelectorAll('g.xtick text')].filter(t => t.textContent).map(box),
          yticks: [...p.querySelectorAll('g.ytick text')].filter(t => t.textContent).map(box)};
});
"""


def _overlap(a, b, pad: float = 0.5) -> bool:
    return a[0] < b[2] - pad and b[0] < a[2] - pad and a[1] < b[3] - pad and b[1] < a[3] - pad


@pytest.fixture
def studio(tmp_path):
    url = f"sqlite:///{tmp_path / 'narrow.db'}"
    engine = db.make_engine(url)
    seed_studio(engine)
    with streamlit_server(url, log=tmp_path / "streamlit.log") as base, chromium() as driver:
        driver.set_window_size(400, 1000)
        yield base, driver
    engine.dispose()


#: the charts each page draws for the seeded base (Compare: the hull and two cumulative curves;
#: Pareto: the front and the counterfactual's model mix)
CHARTS = {"compare": 3, "pareto": 2}


@pytest.mark.parametrize("page", sorted(CHARTS))
def test_charts_stay_readable_at_400_px(studio, page):
    base, d = studio
    open_page(d, base, page)
    charts = wait_for(lambda: (c := d.execute_script(_MEASURE)) and len(c) >= CHARTS[page]
                      and all(x["plot"] and x["xticks"] for x in c) and c, timeout=120,
                      what=f"the {CHARTS[page]} drawn charts")
    inner = d.execute_script("return window.innerWidth;")
    assert inner <= 400
    # the page does not scroll sideways
    assert d.execute_script("return document.documentElement.scrollWidth;") <= inner + 1
    for i, c in enumerate(charts):
        assert c["width"] <= inner, (page, i, c["width"])
        for ticks in (c["xticks"], c["yticks"]):
            clash = [(a, b) for k, a in enumerate(ticks) for b in ticks[k + 1:] if _overlap(a, b)]
            assert not clash, (page, i, clash)
        if c["legend"]:
            # the legend lies below the plot area, never beside it taking its width
            assert c["legend"][1] >= c["plot"][3] - 1, (page, i, c["legend"], c["plot"])
            assert c["plot"][2] - c["plot"][0] >= 0.5 * c["width"], (page, i, c)
