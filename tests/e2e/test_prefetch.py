"""ui/prefetch in a real browser: on a page without charts (Overview), once the page is drawn,
the browser has loaded plotly.js (Streamlit's PlotlyChart chunk), so the first chart of the tab
(Runs, through the sidebar) finds it ready; the script leaves no visible trace on the page.
`streamlit run app.py` on 127.0.0.1, headless Chromium, a base with replay runs."""

from __future__ import annotations

import pytest

from evoroute.storage import db
from ui.prefetch import chunk_files

from browser import browser_missing, chromium, open_page, seed_studio, streamlit_server, wait_for

pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")

_LOADED = """return performance.getEntriesByType('resource')
  .filter(e => e.name.includes('/static/js/' + arguments[0])).length;"""
_CHARTS = """return [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
  .filter(c => c.querySelector('.main-svg')).length;"""


def test_overview_loads_plotly_ahead_and_runs_draws_with_it(tmp_path):
    (chunk,) = chunk_files()
    url = f"sqlite:///{tmp_path / 'prefetch.db'}"
    engine = db.make_engine(url)
    seed_studio(engine)
    with streamlit_server(url, log=tmp_path / "streamlit.log") as base, chromium() as d:
        open_page(d, base, "")
        assert d.execute_script(_CHARTS) == 0                       # Overview draws no chart
        wait_for(lambda: d.execute_script("return window.__evorouteChartsPrefetch") == "loaded",
                 timeout=60, what="the prefetch")
        assert d.execute_script(_LOADED, chunk) == 1                # fetched once, on Overview
        # and only after the page's script run had ended (the script notes when it saw that)
        started, drawn_at = d.execute_script(
            """return [performance.getEntriesByType('resource').find(
                 e => e.name.includes('/static/js/' + arguments[0])).startTime,
               window.__evorouteChartsDrawnAt];""", chunk)
        assert drawn_at is not None and started >= drawn_at, (started, drawn_at)
        # the prefetch's element is the page's last, with no height: nothing on screen moved
        last = d.execute_script("""const els = [...document.querySelectorAll(
            '[data-testid="stMain"] [data-testid="stElementContainer"]')];
            const e = els[els.length - 1];
            return [e.getBoundingClientRect().height, e.innerText,
                    e.innerHTML.includes('__evorouteChartsPrefetch')];""")
        assert last == [0, "", True], last
        d.find_element("css selector", '[data-testid="stSidebarNav"] a[href$="/runs"]').click()
        wait_for(lambda: d.execute_script(_CHARTS) >= 1, timeout=60, what="the share chart")
        assert d.execute_script(_LOADED, chunk) == 1                # not fetched again
        log = (tmp_path / "streamlit.log").read_text()
        assert "Traceback" not in log, log[-2000:]
    engine.dispose()
