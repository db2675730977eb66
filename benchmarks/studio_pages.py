"""Studio performance at scale: page renders, live-fragment server time, step-to-feed delay.

    python -m benchmarks.studio_pages [--records 100000] [--json out.json] [--no-browser]
                                      [--pages-only] [--streamlit-flag=OPTION=VALUE ...]

Builds a temporary experience base with N step records sampled from the bundled RouterBench
outcomes (real queries, models, scores, costs and token counts, with their shipped
embeddings; latency modelled from each model's profile), spread over 20 finished replay-style
runs, then measures:

* every page's render through ``streamlit.testing.v1.AppTest`` (first render in this process,
  which includes imports and building the experience index, and the median of 3 warm renders);
* the live fragment's server time while a real replay run writes steps in a background worker
  (the Runs page measures its own fragment and shows it; read back from AppTest);
* what a user waits for, in headless Chromium against a fresh ``streamlit run app.py``: every
  page's first load (first visit in the server process) and second load, and the Pareto
  explorer's rerender after one slider step (targets, issue 11: ≤ 1.5 s and ≤ 0.5 s); beside
  each wall time, the CPU seconds the server and the browser spent on it (``*_cpu``: less
  sensitive to other jobs on the machine than wall time); and the floor any Streamlit page
  costs here (``browser_floor``: a one-line app, and one with a plotly chart and a dataframe,
  opened in a fresh Chromium on a fresh server);
* the delay from a step being written to it appearing in the feed, in real headless Chromium
  against ``streamlit run app.py``: the page records (inside the browser) when each new
  "last step id" appears; the delay is that time minus the step's ``created_at`` (set when the
  worker builds the record, before its commit, so the figure includes commit batching).

Targets (issue 5): every page < 2 s, fragment < 100 ms, feed delay < 1.5 s. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import timezone
from pathlib import Path

import numpy as np

from evoroute.settings import PROJECT_ROOT as ROOT
from evoroute.settings import offline_env

PAGES = ("overview", "models", "runs", "pareto", "experience", "compare")


def seed_base(url: str, n_records: int, n_runs: int = 20, seed: int = 0) -> dict:
    """N records sampled from RouterBench outcomes, bulk-inserted (one transaction per run)."""
    from evoroute import demo, registry
    from evoroute.core import labels
    from evoroute.datasets import load_dataset
    from evoroute.retrieval.embedder import get_embedder
    from evoroute.storage import db, repo, run_store
    from evoroute.storage.tables import Run, utcnow

    t0 = time.perf_counter()
    engine = db.get_engine(url)
    demo.register_routerbench_models(engine)
    with db.session(engine) as s:
        infos = {m.name: m for m in registry.model_infos(session=s)}
    df = load_dataset("routerbench").reset_index(drop=True)
    queries = df["query"].unique().tolist()
    vecs = dict(zip(queries, get_embedder().encode(queries)))
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(df), n_records)
    per_run = np.array_split(pick, n_runs)
    now = utcnow()
    k = 0
    for r, rows in enumerate(per_run):
        sub = df.iloc[rows]
        with db.session(engine) as s:
            run = Run(name=f"bench base {r}", status="finished", backend="replay",
                      dataset="routerbench", router="evoroute", label=labels.run_label("replay"),
                      seed=r, n_tasks_total=len(sub), n_steps_done=len(sub),
                      cost_usd=float(sub["cost_usd"].sum()), config_json="{}",
                      started_at=now, finished_at=now)
            s.add(run)
            s.flush()
            keys = [f"bench:{k + i}" for i in range(len(sub))]
            task_ids = run_store.insert_tasks(s, [
                {"run_id": run.id, "task_key": key, "split": "test", "phase": "inference",
                 "n_steps": 1, "success": float(sc), "cost_usd": float(c),
                 "duration_s": float(infos[m].modelled_latency(o)), "created_at": now,
                 "finished_at": now}
                for key, sc, c, m, o in zip(keys, sub["score"], sub["cost_usd"], sub["model"],
                                            sub["output_tokens"])])
            ids = dict(zip(keys, task_ids))
            run_store.insert_steps(s, [
                {"run_id": run.id, "task_id": ids[key], "task_key": key, "step_index": 0,
                 "phase": "inference", "role": role, "model": m, "query_id": qid,
                 "instruction": q, "embedding": repo.embedding_to_bytes(vecs[q]), "tools": "",
                 "cost_usd": float(c), "duration_s": float(infos[m].modelled_latency(o)),
                 "latency_label": labels.DEFAULT_LATENCY["replay"], "step_success": float(sc),
                 "task_success": float(sc), "input_tokens": int(i), "output_tokens": int(o),
                 "router": "evoroute", "created_at": now}
                for key, role, m, qid, q, c, sc, i, o in zip(
                    keys, sub["role"], sub["model"], sub["query_id"], sub["query"],
                    sub["cost_usd"], sub["score"], sub["input_tokens"], sub["output_tokens"])])
            s.commit()
        k += len(sub)
    return {"records": k, "runs": n_runs, "seed_s": round(time.perf_counter() - t0, 1)}


def render_pages(query_run: int, url: str) -> dict:
    """First render of each page, then 3 warm renders. Pareto and Experience start loading the
    shared experience index in the background on arrival; their warm renders are measured
    once it has loaded (its load time is reported apart)."""
    from streamlit.testing.v1 import AppTest

    from ui import state

    out = {}
    for page in PAGES:
        times = []
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
        at.run()
        if page == "runs":
            at.query_params["run"] = str(query_run)
        for i in range(4):
            t = time.perf_counter()
            if i == 0:
                at.switch_page(f"pages/{page}.py").run()
            else:
                at.run()
            times.append(time.perf_counter() - t)
            if at.exception:
                raise RuntimeError(f"{page}: {at.exception[0].value}")
            if i == 0 and page in ("pareto", "experience"):
                t_idx = time.perf_counter()
                state._shared_index(url).ready.wait(600)
                out.setdefault("experience_index_load_wait_s", round(time.perf_counter() - t_idx, 3))
        out[page] = {"first_s": round(times[0], 3), "warm_median_s": round(statistics.median(times[1:]), 3)}
    return out


def fragment_times(url: str) -> dict:
    """Fragment server time while a real replay run writes steps (AppTest reruns = ticks)."""
    from streamlit.testing.v1 import AppTest

    from evoroute.storage import db
    from evoroute.studio.feed import TERMINAL_STATUSES
    from evoroute.studio.launch import build_spec, launch_run

    engine = db.get_engine(url)
    spec = build_spec(backend="replay", dataset="routerbench", router="evoroute", seed=7)
    run_id = launch_run(spec, engine_url=url)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600).run()
    at.query_params["run"] = str(run_id)
    at.switch_page("pages/runs.py").run()
    ms, steps = [], []
    while True:
        status = _status(engine, run_id)
        at.run()
        cap = next(c.value for c in at.caption if c.value.startswith("live view refreshed in"))
        ms.append(float(re.search(r"refreshed in (\d+) ms", cap).group(1)))
        steps.append(int(next(m.value for m in at.metric if m.label == "steps seen").replace(",", "")))
        if status in TERMINAL_STATUSES:
            break
        time.sleep(1.0)
    return {"run": run_id, "ticks": len(ms), "steps_at_end": steps[-1],
            "fragment_ms_median": statistics.median(ms), "fragment_ms_p95": float(np.percentile(ms, 95)),
            "fragment_ms_max": max(ms)}


def feed_delay(url: str) -> dict:
    """Step written -> shown in the feed, in headless Chromium against `streamlit run`."""
    from evoroute.storage import db, repo, views
    from tests.e2e.browser import (
        browser_missing,
        by_label,
        chromium,
        click,
        expand,
        open_page,
        streamlit_server,
        wait_for,
        watch_metric,
        watched_values,
    )

    why = browser_missing()
    if why:
        return {"skipped": why}
    engine = db.get_engine(url)
    with streamlit_server(url) as base, chromium() as d:
        open_page(d, base, "runs")
        expand(d, "Launch a run")
        wait_for(lambda: by_label(d, "seed"), what="the launch form")
        with db.session(engine) as s:
            run_id = max(r.id for r in repo.list_runs(session=s)) + 1
        watch_metric(d, "last step id", '[data-testid="stProgress"]')
        click(d, "Start run")
        wait_for(lambda: f"run={run_id}" in d.current_url, timeout=60, what="the new run")
        wait_for(lambda: _status(engine, run_id) in ("finished", "stopped", "failed"),
                 timeout=600, every=0.5, what="the run to end")
        time.sleep(2)
        seen = [(t, int(v.replace(",", ""))) for t, v, c in watched_values(d)
                if c.startswith(f"run #{run_id} ") and v.replace(",", "").isdigit()]
    with db.session(engine) as s:
        created = views.step_created_at(run_id, session=s)
        run = repo.get_run(run_id, session=s, reconcile=False)
    ended = run.finished_at.replace(tzinfo=timezone.utc).timestamp()
    delays = [t - created[i].replace(tzinfo=timezone.utc).timestamp()
              for t, i in seen if i in created and t <= ended + 1.5]
    return {"run": run_id, "steps": run.n_steps_done, "observations": len(delays),
            "delay_s_median": round(statistics.median(delays), 3) if delays else None,
            "delay_s_p95": round(float(np.percentile(delays, 95)), 3) if delays else None,
            "delay_s_max": round(max(delays), 3) if delays else None}


SCRIPT_DONE_JS = """
const app = document.querySelector('[data-testid="stApp"]');
return !!app && app.getAttribute('data-test-script-state') === 'notRunning'
       && !!document.querySelector('h1');
"""


#: Each page's st.title, to know that the sidebar navigation has drawn the new page.
TITLES = {"overview": "EvoRoute Studio", "models": "Models", "runs": "Runs",
          "pareto": "Pareto explorer", "experience": "Experience", "compare": "Compare runs"}

#: The script run has finished and the page's text holds ``arguments[0]``. ``textContent``
#: needs no layout; Selenium's ``.text`` of the body (visible text, every element's computed
#: style) kept Chromium's main thread busy for tens of ms at every 20 ms poll, slowing the very
#: redraw being timed.
TEXT_DONE_JS = """
const app = document.querySelector('[data-testid="stApp"]');
return !!app && app.getAttribute('data-test-script-state') === 'notRunning'
       && document.body.textContent.includes(arguments[0]);
"""

NAV_DONE_JS = """
const app = document.querySelector('[data-testid="stApp"]'), h1 = document.querySelector('h1');
return !!app && app.getAttribute('data-test-script-state') === 'notRunning'
       && !!h1 && h1.innerText.trim() === arguments[0];
"""


#: The page as a person sees it: its script run has finished, no element is still a skeleton
#: (Streamlit shows one while an element's lazily loaded script arrives: plotly.js, the data
#: grid, even the select boxes on a fresh tab), every plotly chart on screen has drawn its SVG
#: and every data grid in the viewport its canvas (one below the fold draws when scrolled to).
DRAWN_JS = """
const app = document.querySelector('[data-testid="stApp"]');
if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
const shown = e => e.offsetParent !== null;
if ([...document.querySelectorAll('[data-testid="stSkeleton"]')].some(shown)) return false;
const charts = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')].filter(shown);
const grids = [...document.querySelectorAll('[data-testid="stDataFrame"]')].filter(shown)
  .filter(e => e.getBoundingClientRect().top < innerHeight);
return charts.every(c => c.querySelector('.main-svg')) && grids.every(g => g.querySelector('canvas'));
"""


#: Resolves once the page's main thread has a whole idle period (requestIdleCallback with
#: >= 45 of its at most 50 ms left): what the page still draws after its script run has
#: finished (plotly.js loading and drawing, the data grid) is done by then.
IDLE_JS = """
const done = arguments[arguments.length - 1], t0 = performance.now();
function check() {
  const prefetch = window.__evorouteChartsPrefetch;     // ui/prefetch: charged to its page
  if ((prefetch === "waiting" || prefetch === "loading") && performance.now() - t0 < 20000) {
    setTimeout(check, 50);
    return;
  }
  requestIdleCallback(dl => {
    if (dl.timeRemaining() >= 45 || performance.now() - t0 > 20000) done(performance.now() - t0);
    else check();
  }, {timeout: 20000});
}
check();
"""


def settle(d) -> None:
    """Wait until the browser is idle (IDLE_JS), so a page's late drawing is not charged to
    the next page opened."""
    d.set_script_timeout(30)
    d.execute_async_script(IDLE_JS)


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _children(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc; empty where there is no /proc)."""
    parent: dict[int, int] = {}
    for p in Path("/proc").glob("[0-9]*"):
        try:
            parent[int(p.name)] = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    out, todo = [], [pid]
    while todo:
        at = todo.pop()
        kids = [c for c, pp in parent.items() if pp == at]
        out += kids
        todo += kids
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` (all its threads); 0 once it is gone."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / _TICK        # utime, stime (fields 14, 15)
    except (OSError, ValueError, IndexError):
        return 0.0


class CpuMeter:
    """CPU seconds the Streamlit server and the browser (chromedriver's Chromium processes)
    spend on a step: unlike wall time, they do not grow with the time spent waiting for a CPU
    while other jobs run (a busy machine still adds cache misses, so they are not load-free)."""

    def read(self) -> dict[str, dict[int, float]]:
        kids = _children(os.getpid())      # again each time: Chromium starts renderers
        server = [p for p in kids if " streamlit run " in _cmdline(p) or " ui.serve" in _cmdline(p)]
        browser = [p for p in kids if "chrom" in _cmdline(p)]
        return {"server": {p: _cpu_s(p) for p in server}, "browser": {p: _cpu_s(p) for p in browser}}

    def since(self, start: dict[str, dict[int, float]]) -> dict:
        now = self.read()
        return {f"{k}_cpu_s": round(sum(c - start[k].get(p, 0.0) for p, c in now[k].items()), 2)
                for k in ("server", "browser")}


#: A page that draws what a studio page needs from the browser (a title; a plotly chart and a
#: dataframe, whose scripts Streamlit loads the first time a page shows one) and nothing else.
FLOOR_APPS = {
    "title": 'import streamlit as st\nst.title("EvoRoute Studio")\n',
    "title_plotly_dataframe": 'import streamlit as st\nimport plotly.graph_objects as go\n'
                              'st.title("EvoRoute Studio")\n'
                              'st.plotly_chart(go.Figure(go.Scatter(x=[1, 2], y=[1, 2])))\n'
                              'st.dataframe({"a": [1, 2]})\n',
}


def browser_floor(url: str) -> dict:
    """What any Streamlit page costs here: a fresh `streamlit run` of a one-line app opened in
    a fresh Chromium (the browser parses Streamlit's scripts), as the studio is opened."""
    from tests.e2e.browser import browser_missing, chromium, streamlit_server, wait_for

    if browser_missing():
        return {"skipped": browser_missing()}
    out = {}
    with tempfile.TemporaryDirectory(prefix="evoroute-floor-") as tmp:
        for name, code in FLOOR_APPS.items():
            app = Path(tmp) / f"{name}.py"
            app.write_text(code)
            with streamlit_server(url, app=app) as base, chromium() as d:
                meter = CpuMeter()
                start = meter.read()
                t = time.perf_counter()
                d.get(base)
                wait_for(lambda: d.execute_script(SCRIPT_DONE_JS), 180, every=0.02, what=name)
                wall = round(time.perf_counter() - t, 3)
                out[name] = {"open_s": wall, **meter.since(start)}
    return out


def browser_pages(url: str, flags: tuple[str, ...] = (), launcher: bool = False,
                  think: float = 0.0) -> dict:
    """What a user waits for, in headless Chromium against a fresh `streamlit run app.py`
    (until the page's title is drawn and its script run has finished; ``*_settled_s``: until
    the browser is idle as well, which every step waits for before the next, so one page's
    late drawing is not timed as the next one's): opening the studio, then
    every page's first visit in the server process (lazy imports count) and second visit through
    the sidebar; on a second fresh server every page opened by its address (a full page load:
    the browser parses Streamlit's scripts again), first and second time; then the Pareto
    explorer's rerender after one w_c slider step (until the new weights are drawn).
    ``*_drawn_s``: until every chart and on-screen grid is drawn (DRAWN_JS). ``think``: seconds
    a user spends on each page before the next click or address (after the browser is idle)."""
    from tests.e2e.browser import browser_missing, by_label, chromium, streamlit_server, wait_for

    why = browser_missing()
    if why:
        return {"skipped": why}
    out: dict = {"flags": list(flags), "server": "python -m ui.serve" if launcher
                 else "streamlit run app.py", "think_s": think}

    cpu: dict = {}      # the CPU seconds of every step measured, beside its wall time

    def timed(d, page: str, meter: CpuMeter, go, done_js: str, *args) -> float:
        """``go()``, then the wall time until ``done_js`` holds; ``cpu`` gets the step's CPU,
        and the times until drawn and until the browser is idle; then ``think`` seconds."""
        start = meter.read()
        t = time.perf_counter()
        go()
        wait_for(lambda: d.execute_script(done_js, *args), 180, every=0.02, what=page)
        wall = round(time.perf_counter() - t, 3)
        cpu["last"] = meter.since(start)
        wait_for(lambda: d.execute_script(DRAWN_JS), 60, every=0.02, what=f"{page} drawn")
        cpu["drawn_s"] = round(time.perf_counter() - t, 3)
        settle(d)
        cpu["settled_s"] = round(time.perf_counter() - t, 3)
        time.sleep(think)
        return wall

    def load(d, base: str, page: str, meter: CpuMeter) -> float:
        return timed(d, page, meter, lambda: d.get(f"{base}/{'' if page == 'overview' else page}"),
                     SCRIPT_DONE_JS)

    def navigate(d, page: str, meter: CpuMeter) -> float:
        link = d.find_element("css selector", '[data-testid="stSidebarNav"] a[href$="/%s"]'
                              % ("" if page == "overview" else page))
        return timed(d, page, meter, link.click, NAV_DONE_JS, TITLES[page])

    def record(into: dict, prefix: str) -> None:
        """The last step's CPU, drawn and idle times under ``<prefix>_cpu`` / ``_drawn_s`` /
        ``_settled_s``."""
        into[prefix + "_cpu"] = cpu["last"]
        into[prefix + "_settled_s"] = cpu["settled_s"]
        into[prefix + "_drawn_s"] = cpu["drawn_s"]

    # a user's way round: open the studio, then the pages through the sidebar (no reload)
    with streamlit_server(url, flags=flags, launcher=launcher) as base, chromium() as d:
        meter = CpuMeter()
        out["studio_open_s"] = load(d, base, "overview", meter)
        record(out, "studio_open")
        for visit in ("sidebar_first_s", "sidebar_second_s"):
            for page in (*PAGES[1:], "overview"):
                out.setdefault(page, {})[visit] = navigate(d, page, meter)
                record(out[page], visit[:-2])
    # every page opened by its address (a full page load, as a bookmark or a reload does)
    with streamlit_server(url, flags=flags, launcher=launcher) as base, chromium() as d:
        meter = CpuMeter()
        for visit in ("url_first_s", "url_second_s"):
            for page in PAGES:
                out[page][visit] = load(d, base, page, meter)
                record(out[page], visit[:-2])
        load(d, base, "pareto", meter)
        wait_for(lambda: "Starts" in d.find_element("tag name", "body").text, 120,
                 what="the launch caption")     # the index has loaded: the page is complete
        from selenium.webdriver.common.keys import Keys

        times, cpus = [], []
        for _ in range(5):
            slider = by_label(d, "w_c (cost)")
            before = slider.get_attribute("value")
            d.execute_script("arguments[0].focus();", slider)
            start = meter.read()
            t = time.perf_counter()
            slider.send_keys(Keys.ARROW_RIGHT)
            want = f"with weights (1.0, {float(before) + 0.01:.2f}, 0.05)"
            wait_for(lambda w=want: d.execute_script(TEXT_DONE_JS, w), 60, every=0.02,
                     what="the rerender")
            times.append(time.perf_counter() - t)
            cpus.append(meter.since(start))
            time.sleep(0.5)
        out["pareto_slider_rerender_s"] = {"median": round(statistics.median(times), 3),
                                           "max": round(max(times), 3)}
        out["pareto_slider_rerender_cpu"] = {
            k: round(statistics.median(c[k] for c in cpus), 2) for k in cpus[0]}
    return out


def _existing_base(url: str) -> dict:
    """What a base given with --db holds (its records and runs), for the JSON."""
    from evoroute.storage import db, views

    engine = db.get_engine(url)
    with db.session(engine) as s:
        out = {"url": url, "records": views.count_records(session=s),
               "runs": views.count_runs(session=s)}
    engine.dispose()
    return out


def _status(engine, run_id: int) -> str:
    from evoroute.storage import db, repo

    with db.session(engine) as s:
        return repo.get_run(run_id, session=s, reconcile=False).status


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--pages-only", action="store_true",
                    help="page loads and the slider rerender only (no live run, no feed delay)")
    ap.add_argument("--streamlit-flag", action="append", default=[], metavar="OPTION=VALUE",
                    help="extra `streamlit run` option for the browser page loads, e.g. "
                         "--streamlit-flag=--server.fileWatcherType=auto (repeatable)")
    ap.add_argument("--think", type=float, default=0.0, metavar="S",
                    help="seconds spent on each page (once the browser is idle) before the next "
                         "click or address, as a user reading it (default 0)")
    ap.add_argument("--db", help="an existing base to measure (its records as they are; "
                                 "with --pages-only only, which writes nothing to it) instead of "
                                 "seeding a new one, e.g. one made by seed_base(url, 100_000)")
    ap.add_argument("--no-prefetch", action="store_true",
                    help="serve the studio without ui/prefetch's plotly.js prefetch "
                         "(EVOROUTE_PREFETCH_CHARTS=0): the 'before' of docs/studio.md")
    ap.add_argument("--launcher", action="store_true",
                    help="start the server as `make run` does (python -m ui.serve: the pages' "
                         "libraries imported before it listens) instead of `streamlit run app.py`")
    args = ap.parse_args(argv)
    if args.db and not args.pages_only:
        ap.error("--db needs --pages-only (the live run and feed delay write runs into the base)")
    if args.no_prefetch:
        os.environ["EVOROUTE_PREFETCH_CHARTS"] = "0"      # the servers inherit it
    offline_env()
    # the 100,000-record base (~250 MB) is removed afterwards
    with tempfile.TemporaryDirectory(prefix="evoroute-studio-bench-") as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'base.db'}"
        os.environ["EVOROUTE_DB_URL"] = url
        result = {"command": "python -m benchmarks.studio_pages" + " ".join(
                      [""] + (argv if argv is not None else sys.argv[1:])),
                  "cpus": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
                  "prefetch": not args.no_prefetch,
                  "base": _existing_base(url) if args.db else seed_base(url, args.records)}
        from evoroute.experience import SyncedIndex
        from evoroute.storage import db

        t = time.perf_counter()
        SyncedIndex(db.get_engine(url))
        result["experience_index_build_s"] = round(time.perf_counter() - t, 2)
        result["pages"] = render_pages(query_run=1, url=url)
        result["browser_pages"] = {"skipped": "--no-browser"} if args.no_browser \
            else browser_pages(url, tuple(args.streamlit_flag), launcher=args.launcher,
                                           think=args.think)
        result["browser_floor"] = {"skipped": "--no-browser"} if args.no_browser \
            else browser_floor(url)
        if not args.pages_only:
            result["live_fragment"] = fragment_times(url)
            result["feed_delay"] = {"skipped": "--no-browser"} if args.no_browser else feed_delay(url)
        result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
