"""Load the browser's chart library before the first chart needs it.

Streamlit's frontend loads the script that draws ``st.plotly_chart`` (plotly.js inside
``PlotlyChart.<hash>.js``, 4.7 MB) only when a page first shows a plotly chart, and fetches,
compiles and runs it then: in a fresh tab on this machine that is 1–2 s of Chromium's CPU after
the page's script run has finished (docs/studio.md, "what the browser still draws"), so the
first page with a chart (Runs through the sidebar) took twice as long to draw as the others.
Every studio page run that reaches its end (not one cut short by ``st.stop``, ``st.rerun`` or
``st.switch_page``) therefore ends with a small script that, once the page's script run has
ended and the browser is idle, imports that module: the very URL Streamlit's own lazy loader
imports, so the module is fetched, compiled and run once per tab and the first chart finds it
ready. A page that draws a chart itself has already started the same import; the script only
joins it.

The script is the studio's own constant text (no user or model data reaches it). If this
Streamlit build has no such chunk, nothing is sent. It is the page's last element, so its empty
box and gap sit below everything else.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

import streamlit as st

#: the lazily loaded frontend chunks worth loading ahead (plotly.js; the data grid is loaded
#: by every page's first table anyway)
CHUNKS = ("PlotlyChart",)

_SCRIPT = """<script>
(() => {
  const names = %(names)s;
  if (window.__evorouteChartsPrefetch) return;          // once per tab
  const main = document.querySelector('script[type="module"][src*="/static/js/index."]');
  if (!main) return;
  window.__evorouteChartsPrefetch = "waiting";
  const load = () => {
    window.__evorouteChartsPrefetch = "loading";
    Promise.all(names.map(n => import(new URL(n, main.src).href)))
      .then(() => { window.__evorouteChartsPrefetch = "loaded"; },
            err => { window.__evorouteChartsPrefetch = "failed";
                     console.warn("EvoRoute Studio: loading plotly.js ahead failed", err); });
  };
  const idle = window.requestIdleCallback || (f => setTimeout(f, 200));
  const whenDrawn = () => {       // the script run has ended (not a rerun or stop pending)
    const app = document.querySelector('[data-testid="stApp"]');
    if (app && app.getAttribute("data-test-script-state") === "notRunning") {
      window.__evorouteChartsDrawnAt = performance.now();
      idle(load, {timeout: 4000});
    } else {
      setTimeout(whenDrawn, 150);
    }
  };
  whenDrawn();
})();
</script>"""


@cache
def chunk_files() -> tuple[str, ...]:
    """The file names of :data:`CHUNKS` in the installed Streamlit's static folder."""
    js = Path(st.__file__).parent / "static" / "static" / "js"
    return tuple(sorted(p.name for name in CHUNKS for p in js.glob(f"{name}.*.js")))


#: set to 0 to send no prefetch (``benchmarks/studio_pages.py --no-prefetch`` measures without it)
ENV_SWITCH = "EVOROUTE_PREFETCH_CHARTS"


def script() -> str | None:
    """The ``<script>`` that imports the chunks (None when this Streamlit has none, or when
    ``EVOROUTE_PREFETCH_CHARTS=0``)."""
    names = chunk_files()
    if not names or os.environ.get(ENV_SWITCH, "1") == "0":
        return None
    return _SCRIPT % {"names": json.dumps(list(names))}


def prefetch_charts() -> None:
    """Ask this tab's browser to load the chart library once the page is drawn and the browser
    is idle (app.py calls it after the page)."""
    body = script()
    if body is not None:
        st.html(body, unsafe_allow_javascript=True)
