"""`streamlit run app.py` as the user starts it (the project's .streamlit/config.toml, no extra
flags), in headless Chromium: the theme follows the browser's colour-scheme preference, and a
CSV import that loads the sentence embedder leaves no file-watcher tracebacks in the log.
"""

from __future__ import annotations

import re

import pytest

from evoroute.storage import db

from browser import browser_missing, button, chromium, click, open_page, streamlit_server, wait_for

pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")


def _luminance(css_color: str) -> float:
    """Relative brightness (0 black .. 1 white) of a computed CSS ``rgb(...)``/``rgba(...)``."""
    r, g, b = (int(x) for x in re.findall(r"\d+", css_color)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def _app_background(driver) -> str:
    return driver.execute_script(
        "return getComputedStyle(document.querySelector('[data-testid=\"stApp\"]')).backgroundColor;")


@pytest.fixture
def base_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'studio.db'}"
    db.make_engine(url).dispose()
    return url


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_theme_follows_browser_colour_scheme(base_url, tmp_path, scheme):
    with streamlit_server(base_url, log=tmp_path / "streamlit.log") as base, \
            chromium(color_scheme=scheme) as d:
        assert d.execute_script(
            f"return matchMedia('(prefers-color-scheme: {scheme})').matches;")
        open_page(d, base, "")
        bg = _app_background(d)
        if scheme == "dark":
            assert _luminance(bg) < 0.25, bg
        else:
            assert _luminance(bg) > 0.9, bg


CSV = ("role,model,instruction,cost_usd,duration_s\n"
       "answerer,gpt-4o-mini,Write a python function that sorts a list,0.0004,1.2\n"
       "answerer,gpt-4o-mini,What is the capital of France?,0.0001,0.4\n"
       "planner,gpt-4o,Plan a three-day trip to Rome,0.003,2.5\n")


def test_csv_import_with_embeddings_leaves_no_watcher_tracebacks(base_url, tmp_path, monkeypatch):
    # a first-time user's empty cache: the embedder exports its ONNX model (torch, transformers)
    monkeypatch.setenv("EVOROUTE_CACHE_DIR", str(tmp_path / "cache"))
    log = tmp_path / "streamlit.log"
    f = tmp_path / "steps.csv"
    f.write_text(CSV, encoding="utf-8")
    with streamlit_server(base_url, log=log) as base, chromium() as d:
        open_page(d, base, "experience")
        wait_for(lambda: d.find_element("css selector", 'input[type="file"]'),
                 what="the CSV uploader").send_keys(str(f))
        wait_for(lambda: button(d, "Import").is_enabled(), what="the upload (Import enabled)")
        click(d, "Import")
        wait_for(lambda: "imported 3 records into run" in d.find_element("tag name", "body").text,
                 timeout=240, every=0.5, what="the import (with embeddings)")
        for page in ("overview", "runs", "experience"):   # reruns after the embedder loaded
            open_page(d, base, page)
    text = log.read_text(errors="replace")
    assert "torchvision" not in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]


def test_make_runs_launcher_serves_the_studio_on_loopback(base_url, tmp_path):
    """`python -m ui.serve` (what `make run` starts) imports the pages' libraries, then serves
    the same app on 127.0.0.1: the Overview page is drawn, with no traceback in the log."""
    log = tmp_path / "serve.log"
    with streamlit_server(base_url, log=log, launcher=True) as base, chromium() as d:
        open_page(d, base, "")
        wait_for(lambda: "EvoRoute Studio" in d.find_element("tag name", "body").text,
                 what="the Overview title")
    text = log.read_text(errors="replace")
    assert "libraries loaded in" in text and "Traceback" not in text, text[-2000:]
