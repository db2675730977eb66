"""Drive the real studio: `streamlit run app.py` on 127.0.0.1 and headless Chromium via selenium.

Used by the end-to-end test, ``scripts/screenshots.py`` (``make screenshots``) and
benchmarks/studio_pages.py. Needs ``chromium`` and ``chromedriver`` on the PATH (Debian's
packages ``chromium`` and ``chromium-driver``: ``make system-deps``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from evoroute.settings import DEFAULTS

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
                "--disable-dev-shm-usage", "--window-size=1500,1100")


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if CHROMIUM is None:
        return "chromium is not on the PATH (apt-get install chromium chromium-driver)"
    if CHROMEDRIVER is None:
        return "chromedriver is not on the PATH (apt-get install chromium-driver)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def streamlit_server(db_url: str, *, port: int | None = None, log: Path | None = None,
                     timeout: float = 90.0, flags: tuple[str, ...] = (),
                     app: Path = ROOT / "app.py", launcher: bool = False) -> Iterator[str]:
    """`streamlit run app.py` bound to 127.0.0.1 on a free port; yields its base URL.

    Everything else comes from the project's .streamlit/config.toml, as when a user starts it
    (``flags``: more `streamlit run` options, e.g. to measure another setting; ``app``: another
    script, run from the project root with the same config; ``launcher``: start it as `make
    run` does, ``python -m ui.serve``, which imports the pages' libraries first)."""
    port = port or free_port()
    env = {**os.environ, "EVOROUTE_DB_URL": db_url}     # app.py sets the offline switches
    out = open(log, "wb") if log else subprocess.DEVNULL
    start = [sys.executable, "-m", "ui.serve"] if launcher else \
        [sys.executable, "-m", "streamlit", "run", str(app)]
    proc = subprocess.Popen(
        [*start,
         "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false", *flags],
        cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}"
                                   + (f"; log: {log.read_text()[-2000:]}" if log else ""))
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > end:
                raise TimeoutError("streamlit did not become healthy")
            time.sleep(0.3)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if log:
            out.close()


@contextmanager
def chromium(download_dir: Path | None = None, color_scheme: str | None = None) -> Iterator["object"]:
    """A headless Chromium WebDriver with a fresh profile (and a download directory); with
    ``color_scheme`` ("dark" or "light") the pages see that ``prefers-color-scheme``."""
    os.environ.setdefault("SE_OFFLINE", "true")          # selenium-manager: never download
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="evoroute-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    if download_dir is not None:
        opts.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                               "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    if download_dir is not None:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                               {"behavior": "allow", "downloadPath": str(download_dir)})
    if color_scheme is not None:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
            "features": [{"name": "prefers-color-scheme", "value": color_scheme}]})
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(cond: Callable[[], object], timeout: float = 30.0, every: float = 0.2,
             what: str = "condition") -> object:
    end = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < end:
        try:
            v = cond()
            if v:
                return v
        except Exception as exc:  # the DOM changes under us while Streamlit redraws
            last_exc = exc
        time.sleep(every)
    raise TimeoutError(f"timed out waiting for {what}" + (f" ({last_exc})" if last_exc else ""))


def page_ready(driver) -> bool:
    """The app finished its script run (no 'running' indicator) and drew a title."""
    running = driver.find_elements("css selector", '[data-testid="stStatusWidget"]')
    titles = driver.find_elements("css selector", "h1")
    return bool(titles) and not any(e.is_displayed() and "Running" in e.text for e in running)


def open_page(driver, base: str, path: str = "", timeout: float = 60.0) -> None:
    driver.get(f"{base}/{path}")
    wait_for(lambda: page_ready(driver), timeout, what=f"page {path or '/'}")
    time.sleep(0.5)


def by_label(driver, label: str, tag: str = "input"):
    return driver.find_element("css selector", f'{tag}[aria-label="{label}"]')


def button(driver, text: str):
    return driver.find_element("xpath", f'//button[.//*[normalize-space(text())="{text}"]]')


def set_input(driver, label: str, value: str, timeout: float = 20.0) -> None:
    """Type ``value`` into the input labelled ``label`` and commit it (Tab), retrying while
    Streamlit redraws the element under us."""
    from selenium.webdriver.common.keys import Keys

    def attempt() -> bool:
        el = by_label(driver, label)
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].focus();", el)
        el.send_keys(Keys.CONTROL, "a")
        el.send_keys(Keys.DELETE)
        el.send_keys(value)
        el.send_keys(Keys.TAB)
        return True

    wait_for(attempt, timeout, what=f"typing into {label!r}")
    time.sleep(0.5)


def click(driver, text: str, timeout: float = 20.0) -> None:
    """Click the button showing ``text`` (retrying while the page redraws)."""
    def attempt() -> bool:
        b = button(driver, text)
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", b)
        b.click()
        return True

    wait_for(attempt, timeout, what=f"clicking {text!r}")


def expand(driver, title: str, timeout: float = 20.0) -> None:
    """Open the st.expander titled ``title`` (no-op if it is open)."""
    def attempt() -> bool:
        summary = driver.find_element(
            "xpath", f'//details[.//summary//*[normalize-space(text())="{title}"]]')
        if summary.get_attribute("open") is None:
            summary.find_element("tag name", "summary").click()
        return summary.get_attribute("open") is not None

    wait_for(attempt, timeout, what=f"opening {title!r}")
    time.sleep(0.5)


def metric_value(driver, label: str) -> str | None:
    """The value of the st.metric whose label is ``label`` (None if not on the page)."""
    for m in driver.find_elements("css selector", '[data-testid="stMetric"]'):
        lab = m.find_elements("css selector", '[data-testid="stMetricLabel"]')
        if lab and lab[0].text.strip() == label:
            return m.find_element("css selector", '[data-testid="stMetricValue"]').text.strip()
    return None


WATCH_METRICS_JS = """
window.__evoSeen = [];
const label = arguments[0], context = arguments[1];
window.__evoWatch = setInterval(() => {
  const ctx = context ? (document.querySelector(context) || {}).innerText || "" : "";
  for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
    const lab = m.querySelector('[data-testid="stMetricLabel"]');
    const val = m.querySelector('[data-testid="stMetricValue"]');
    if (lab && val && lab.innerText.trim() === label) {
      const v = val.innerText.trim();
      const seen = window.__evoSeen, last = seen[seen.length - 1];
      if (!last || last.v !== v || last.c !== ctx) seen.push({t: Date.now(), v: v, c: ctx});
    }
  }
}, 100);
"""


def watch_metric(driver, label: str, context: str | None = None) -> None:
    """Record, inside the page, every value the metric ``label`` shows (with a timestamp and
    the text of the first element matching the CSS selector ``context``, drawn with it).

    The page keeps recording while WebDriver calls wait on a busy browser, so what the user
    saw is known exactly; read it back with :func:`watched_values`.
    """
    driver.execute_script(WATCH_METRICS_JS, label, context)


def watched_values(driver) -> list[tuple[float, str, str]]:
    """(unix time in s, value, context) of every change the watcher saw."""
    return [(e["t"] / 1000.0, e["v"], e["c"])
            for e in driver.execute_script("return window.__evoSeen || [];")]


def screenshot(driver, path: Path) -> None:
    """Full-page screenshot (the window is grown to the page's height first)."""
    h = driver.execute_script(
        "const m=document.querySelector('[data-testid=\"stMain\"]')||document.body;"
        "return Math.max(m.scrollHeight, document.body.scrollHeight);")
    driver.set_window_size(1500, min(max(int(h) + 120, 900), 4000))
    time.sleep(0.8)
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    driver.set_window_size(1500, 1100)


def move_slider(driver, label: str, steps: int) -> None:
    """Move the slider labelled ``label`` by ``steps`` arrow-key presses (negative: left)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    el = by_label(driver, label)
    driver.execute_script("arguments[0].focus();", el)
    chain = ActionChains(driver)
    for _ in range(abs(steps)):
        chain.send_keys(Keys.ARROW_RIGHT if steps > 0 else Keys.ARROW_LEFT)
    chain.perform()
    time.sleep(0.3)
    driver.execute_script("arguments[0].blur();", el)


def set_textarea(driver, label: str, text: str) -> None:
    """Type ``text`` into the text area labelled ``label`` and commit it (Ctrl+Enter)."""
    from selenium.webdriver.common.keys import Keys

    def attempt() -> bool:
        el = driver.find_element("css selector", f'textarea[aria-label="{label}"]')
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].focus();", el)
        el.send_keys(Keys.CONTROL, "a")
        el.send_keys(Keys.DELETE)
        el.send_keys(text)
        el.send_keys(Keys.CONTROL, Keys.ENTER)      # commit the text area
        return True

    wait_for(attempt, what=f"typing into {label!r}")
    time.sleep(0.8)


def click_first_row(driver) -> None:
    """Click the selection cell of the feed's first data row (the grid draws on a canvas)."""
    from selenium.webdriver.common.action_chains import ActionChains

    grid = [g for g in driver.find_elements("css selector", '[data-testid="stDataFrame"]')
            if "sampled utilities" in (g.get_attribute("innerText") or "")
            or g.size["height"] > 300][-1]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", grid)
    time.sleep(0.5)
    w, h = grid.size["width"], grid.size["height"]
    # header row ~35 px high, then rows of ~35 px; the selection column is ~30 px wide
    ActionChains(driver).move_to_element_with_offset(grid, -w // 2 + 15, -h // 2 + 52).click().perform()


def open_first_explanation(driver, timeout: float = 60.0) -> None:
    """Select the live feed's first decision until its explanation ("Step #…") is drawn."""
    def opened() -> bool:
        body = driver.find_element("tag name", "body").text
        if "Step #" not in body:
            click_first_row(driver)          # (again, if a redraw swallowed the click)
            time.sleep(1.0)
            body = driver.find_element("tag name", "body").text
        return "Step #" in body

    wait_for(opened, timeout=timeout, every=0.5, what="the explanation of the selected decision")


#: Finished runs the studio shows besides the one a tour launches: (router, weights).
SEED_RUNS = (("single:gpt-4-1106-preview", DEFAULTS.weights),
             ("single:mistralai/mistral-7b-chat", DEFAULTS.weights),
             ("evoroute", (1.0, 1.0, 0.05)))


def seed_studio(engine) -> None:
    """The RouterBench models and a few finished replay runs to compare with."""
    from evoroute import demo
    from evoroute.runs.execute import run_spec
    from evoroute.runs.spec import RunSpec

    demo.register_routerbench_models(engine)
    for router, weights in SEED_RUNS:
        spec = RunSpec(backend="replay", dataset="routerbench", router=router, weights=weights,
                       n_tasks=300, n_train=300, name=f"seed run: {router}")
        for _ in run_spec(spec, engine=engine):
            pass
