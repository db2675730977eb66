"""Drive the real studio: `streamlit run app.py` on 127.0.0.1 and headless Chromium via selenium.

Used by the end-to-end test, the screenshot step and benchmarks/studio_pages.py. Needs the
Debian packages ``chromium`` and ``chromium-driver`` (/usr/bin/chromium, /usr/bin/chromedriver).
"""

from __future__ import annotations

import os
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

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
                "--disable-dev-shm-usage", "--window-size=1500,1100")


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is absent (apt-get install chromium chromium-driver)"
    if not CHROMEDRIVER.exists():
        return f"{CHROMEDRIVER} is absent (apt-get install chromium-driver)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def streamlit_server(db_url: str, *, port: int | None = None, log: Path | None = None,
                     timeout: float = 90.0) -> Iterator[str]:
    """`streamlit run app.py` bound to 127.0.0.1 on a free port; yields its base URL."""
    port = port or free_port()
    env = {**os.environ, "EVOROUTE_DB_URL": db_url, "HF_HUB_OFFLINE": "1",
           "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(ROOT)}
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
         "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
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
def chromium(download_dir: Path | None = None) -> Iterator["object"]:
    """A headless Chromium WebDriver with a fresh profile (and a download directory)."""
    os.environ.setdefault("SE_OFFLINE", "true")          # selenium-manager: never download
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="evoroute-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    if download_dir is not None:
        opts.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                               "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    if download_dir is not None:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                               {"behavior": "allow", "downloadPath": str(download_dir)})
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
