"""The register form in a real browser (issue 11 item 10): after a successful registration the
fields are empty on screen, and the confirmation is beside the Register button, not at the top
of the page."""

from __future__ import annotations

import pytest

from evoroute.storage import db, repo

from browser import (
    browser_missing,
    button,
    by_label,
    chromium,
    click,
    open_page,
    set_input,
    streamlit_server,
    wait_for,
)

pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")


def test_register_form_is_empty_after_success_and_confirms_beside_its_button(tmp_path):
    url = f"sqlite:///{tmp_path / 'form.db'}"
    engine = db.make_engine(url)
    with streamlit_server(url, log=tmp_path / "streamlit.log") as base, chromium() as d:
        open_page(d, base, "models")
        wait_for(lambda: by_label(d, "name"), what="the name field")
        set_input(d, "name", "form-model")
        set_input(d, "input price (USD per 1M tokens)", "0.5")
        set_input(d, "output price (USD per 1M tokens)", "1.5")
        click(d, "Register model")
        msg = wait_for(lambda: next((e for e in d.find_elements(
            "css selector", '[data-testid="stAlertContentSuccess"]')
            if "registered form-model" in e.text), None), what="the registration message")
        with db.session(engine) as s:
            assert repo.get_model("form-model", session=s) is not None
        # the fields the user typed into are empty on screen
        wait_for(lambda: by_label(d, "name").get_attribute("value") == "", what="an empty name")
        for label in ("input price (USD per 1M tokens)", "output price (USD per 1M tokens)"):
            assert by_label(d, label).get_attribute("value") == "", label
        # the confirmation sits right under the Register button
        gap = msg.rect["y"] - (button(d, "Register model").rect["y"])
        assert 0 < gap < 150, gap
    engine.dispose()


def test_overview_register_confirms_beside_its_button(tmp_path):
    """The same rule on Overview: registering the bundled models from an empty base says so
    where the button pressed was (under Run a replay), and the models are stored."""
    url = f"sqlite:///{tmp_path / 'overview.db'}"
    engine = db.make_engine(url)
    with streamlit_server(url, log=tmp_path / "streamlit.log") as base, chromium() as d:
        open_page(d, base, "")
        btn = wait_for(lambda: next((b for b in d.find_elements("css selector", "button")
                                     if "Register the " in b.text), None),
                       what="the register button")
        top = btn.rect["y"]
        btn.click()
        msg = wait_for(lambda: next((e for e in d.find_elements(
            "css selector", '[data-testid="stAlertContentSuccess"]')
            if "registered" in e.text), None), what="the registration message")
        with db.session(engine) as s:
            assert len(repo.list_models(session=s)) >= 2
        # the warning and its button are gone (the replay can run now); the confirmation takes
        # their place, under the Run a replay button, not at the top of the page
        replay = button(d, "Run a replay")
        assert replay.is_enabled()
        assert 0 < msg.rect["y"] - replay.rect["y"] < 150 and msg.rect["y"] <= top, \
            (msg.rect, replay.rect, top)
    engine.dispose()
