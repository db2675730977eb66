"""Models page: register with validation next to the field, litellm prefill, edit, disable, delete."""

from __future__ import annotations

import pytest

from evoroute import registry
from evoroute.storage import db, repo

from studio_helpers import errors, open_app, wait_until


def _names(engine) -> set[str]:
    with db.session(engine) as s:
        return {m.name for m in repo.list_models(session=s)}


def test_negative_price_shows_error_next_to_field_and_stores_nothing(fixed_db):
    _, engine, _ = fixed_db
    before = _names(engine)
    at = open_app("models")
    at.text_input(key="md_name").set_value("bad-model")
    at.number_input(key="md_in").set_value(-1.0)
    at.number_input(key="md_out").set_value(2.0)
    at.button(key="md_add").click().run()
    errs = errors(at)
    assert len(errs) == 1, errs
    assert "input price (USD per 1M tokens) must be >= 0, got -1" in errs[0]
    assert _names(engine) == before            # nothing stored
    # the message sits in the same column as the input-price field, right under it
    column = next(c for c in at.columns if any(getattr(w, "key", None) == "md_in"
                                               for w in c.number_input))
    assert [e.value for e in column.error] == errs


def test_zero_tokens_per_second_names_its_field(fixed_db):
    _, engine, _ = fixed_db
    at = open_app("models")
    at.text_input(key="md_name").set_value("slow")
    at.number_input(key="md_in").set_value(1.0)
    at.number_input(key="md_out").set_value(2.0)
    at.number_input(key="md_tps").set_value(0.0)
    at.button(key="md_add").click().run()
    assert errors(at) == ["output tokens per second must be >= 0.01, got 0"]
    assert "slow" not in _names(engine)


@pytest.mark.parametrize("name,price,message", [
    ("n" * 200, 1.0, "model name is 200 characters long; at most 128 are allowed"),
    ("a,b", 1.0, "model name must not contain a comma"),
    ("ok-name", 1e308, "input price (USD per 1M tokens) must be <= 10000"),
])
def test_bounds_and_names_are_shown_and_nothing_stored(fixed_db, name, price, message):
    _, engine, _ = fixed_db
    before = _names(engine)
    at = open_app("models")
    at.text_input(key="md_name").set_value(name)
    at.number_input(key="md_in").set_value(price)
    at.number_input(key="md_out").set_value(2.0)
    at.button(key="md_add").click().run()
    errs = errors(at)
    assert len(errs) == 1 and message in errs[0], errs
    assert _names(engine) == before


def test_duplicate_name_is_refused(fixed_db):
    _, engine, _ = fixed_db
    at = open_app("models")
    at.text_input(key="md_name").set_value("mid")
    at.number_input(key="md_in").set_value(1.0)
    at.number_input(key="md_out").set_value(2.0)
    at.button(key="md_add").click().run()
    assert errors(at) == ["a model named 'mid' is already registered"]
    with db.session(engine) as s:
        assert repo.get_model("mid", session=s).input_price_per_m == 1.0   # unchanged


def test_register_valid_model_appears_in_table(fixed_db):
    _, engine, _ = fixed_db
    at = open_app("models")
    at.text_input(key="md_name").set_value("my-model")
    at.number_input(key="md_in").set_value(0.25)
    at.number_input(key="md_out").set_value(1.25)
    at.number_input(key="md_ttft").set_value(0.3)
    at.number_input(key="md_tps").set_value(90.0)
    at.button(key="md_add").click().run()
    assert errors(at) == []
    with db.session(engine) as s:
        m = repo.get_model("my-model", session=s)
    assert (m.input_price_per_m, m.output_price_per_m, m.ttft_s, m.tokens_per_s) == (0.25, 1.25, 0.3, 90.0)
    assert "my-model" in at.dataframe[0].value["name"].tolist()     # the registered-models table
    assert any("registered my-model" in s.value for s in at.success)


def test_litellm_id_search_prefills_catalogue_prices(empty_db):
    _, engine = empty_db
    at = open_app("models")
    # the catalogue loads in a background thread (import litellm takes seconds); wait for it
    assert wait_until(lambda: any(s.key == "md_litellm" for s in at.run().selectbox), timeout=120)
    box = at.selectbox(key="md_litellm")
    assert "gpt-4o-mini" in box.options
    box.set_value("gpt-4o-mini").run()
    expected = registry.litellm_prices("gpt-4o-mini")
    assert expected is not None
    assert at.number_input(key="md_in").value == pytest.approx(expected[0])
    assert at.number_input(key="md_out").value == pytest.approx(expected[1])
    at.text_input(key="md_name").set_value("mini")
    at.button(key="md_add").click().run()
    assert errors(at) == []
    with db.session(engine) as s:
        m = repo.get_model("mini", session=s)
    assert (m.litellm_id, m.input_price_per_m, m.output_price_per_m) == (
        "gpt-4o-mini", pytest.approx(expected[0]), pytest.approx(expected[1]))
    # the pre-filled prices saved unchanged are litellm's, not an override
    assert m.price_source == "litellm"
    assert any("registered mini" in s.value and "litellm" in s.value for s in at.success)


def test_changed_prefilled_price_is_an_override(empty_db):
    _, engine = empty_db
    at = open_app("models")
    assert wait_until(lambda: any(s.key == "md_litellm" for s in at.run().selectbox), timeout=120)
    at.selectbox(key="md_litellm").set_value("gpt-4o-mini").run()
    at.number_input(key="md_out").set_value(0.5)
    at.text_input(key="md_name").set_value("mini")
    at.button(key="md_add").click().run()
    assert errors(at) == []
    with db.session(engine) as s:
        m = repo.get_model("mini", session=s)
    assert (m.output_price_per_m, m.price_source) == (0.5, "override")


def test_register_form_clears_and_confirms_next_to_the_form(fixed_db):
    _, engine, _ = fixed_db
    at = open_app("models")
    at.text_input(key="md_name").set_value("my-model")
    at.number_input(key="md_in").set_value(0.25)
    at.number_input(key="md_out").set_value(1.25)
    at.text_input(key="md_notes").set_value("a note")
    at.button(key="md_add").click().run()
    assert errors(at) == []
    assert "my-model" in _names(engine)
    # the form is empty again: a second click cannot register the same model twice
    assert at.text_input(key="md_name").value == ""
    assert at.number_input(key="md_in").value is None
    assert at.number_input(key="md_out").value is None
    assert at.text_input(key="md_notes").value == ""
    # ... and the browser is told so: a widget shows a server-side value only when the script
    # set it (set_value); a key merely dropped from the session leaves the old text on screen
    for w in (at.text_input(key="md_name"), at.number_input(key="md_in"),
              at.number_input(key="md_out"), at.text_input(key="md_notes")):
        assert w.proto.set_value, w.key
    # the confirmation sits in the register form's container, beside its button
    form = next(c for c in at.container if any(b.key == "md_add" for b in c.button)
                and not any(b.key == "me_save" for b in c.button))
    assert any("registered my-model" in s.value for s in form.success)
    at.button(key="md_add").click().run()
    assert not any("already registered" in e for e in errors(at))


def test_edit_to_a_litellm_id_prefills_its_prices_as_litellm(fixed_db):
    _, engine, _ = fixed_db
    at = open_app("models")
    at.selectbox(key="me_name").set_value("mid").run()
    at.text_input(key="me_litellm").set_value("gpt-4o-mini").run()
    expected = registry.litellm_prices("gpt-4o-mini")
    assert at.number_input(key="me_in").value == pytest.approx(expected[0])
    assert at.number_input(key="me_out").value == pytest.approx(expected[1])
    at.button(key="me_save").click().run()
    assert errors(at) == []
    with db.session(engine) as s:
        m = repo.get_model("mid", session=s)
    assert (m.litellm_id, m.price_source) == ("gpt-4o-mini", "litellm")
    assert any("saved mid" in s.value for s in at.success)
    at.toggle(key="me_enabled").set_value(False)      # a save with the prices unchanged
    at.button(key="me_save").click().run()
    with db.session(engine) as s:
        assert repo.get_model("mid", session=s).price_source == "litellm"


def test_edit_disable_and_delete(fixed_db):
    _, engine, _ = fixed_db
    at = open_app("models")
    at.selectbox(key="me_name").set_value("cheap").run()
    assert at.number_input(key="me_in").value == pytest.approx(0.1)
    at.number_input(key="me_in").set_value(-3.0)
    at.button(key="me_save").click().run()
    assert errors(at) == ["input price (USD per 1M tokens) must be >= 0, got -3"]
    with db.session(engine) as s:
        assert repo.get_model("cheap", session=s).input_price_per_m == pytest.approx(0.1)

    at.number_input(key="me_in").set_value(0.2)
    at.toggle(key="me_enabled").set_value(False)
    at.button(key="me_save").click().run()
    assert errors(at) == []
    with db.session(engine) as s:
        m = repo.get_model("cheap", session=s)
        assert (m.input_price_per_m, m.enabled, m.price_source) == (0.2, False, "override")
        assert [x.name for x in repo.list_models(session=s, enabled_only=True)] == ["mid", "strong"]

    at.button(key="me_delete").click().run()          # not confirmed: nothing happens
    assert "cheap" in _names(engine)
    assert any("yes, delete" in e for e in errors(at))
    at.checkbox(key="me_confirm").check()
    at.button(key="me_delete").click().run()
    assert "cheap" not in _names(engine)
    with db.session(engine) as s:    # its past records stay in the base
        assert repo.count_steps(repo.StepFilter(models=["cheap"]), session=s) == 40


def test_register_local_models(fixed_db):
    _, engine, _ = fixed_db
    at = open_app("models")
    from evoroute.backends.local import catalogue as lm

    installed = sorted(m.name for m in lm.LOCAL_MODELS.values() if m.installed())
    at.button(key="md_local").click().run()
    assert errors(at) == []
    with db.session(engine) as s:
        regs = {m.name: m for m in repo.list_models(session=s)}
    assert sorted(set(regs) & set(lm.LOCAL_MODELS)) == installed
    for name in installed:
        assert regs[name].litellm_id == f"openai/{name}"
        assert regs[name].price_source == "notional"
    msg = " ".join(s.value for s in at.success)
    assert ("registered local models" in msg) if installed else ("no new local model" in msg)


def test_models_tables_show_a_dash_not_none(fixed_db):
    at = open_app("models")
    for d in at.dataframe:
        assert d.proto.placeholder == "–", list(d.value.columns)


def _local_ready() -> bool:
    from evoroute.backends.local.catalogue import LOCAL_MODELS
    from evoroute.backends.local.processes import server_available

    return server_available() and LOCAL_MODELS["smollm2-135m"].installed()


@pytest.mark.skipif(not _local_ready(), reason="llama-cpp-python or smollm2-135m not installed")
def test_local_servers_start_and_stop_from_the_page(fixed_db, tmp_path, monkeypatch):
    """Issue 11 item 8: the servers could only be started from the CLI. Start runs in the
    background (the click returns at once), then the model is registered at its server's
    address; Stop stops it; the table shows each server's status."""
    import time

    from evoroute.backends.local.servers import LocalModelServers

    _, engine, _ = fixed_db
    monkeypatch.setenv("EVOROUTE_HOME", str(tmp_path))    # a state file of this test only
    servers = LocalModelServers(state_path=tmp_path / "local_models.json")
    try:
        at = open_app("models")

        def server_of(name: str) -> str:
            table = next(d.value for d in at.dataframe if "server" in d.value.columns)
            table = table.set_index("name")
            return table.loc[name, "server"]

        assert server_of("smollm2-135m") == "stopped"
        at.multiselect(key="md_local_pick").set_value(["smollm2-135m"])
        t0 = time.monotonic()
        at.button(key="md_local_start").click().run()
        assert time.monotonic() - t0 < 10                      # the page did not wait
        assert errors(at) == []
        assert any("starting smollm2-135m" in i.value for i in at.info)
        assert wait_until(lambda: any("servers started" in s.value for s in at.run().success),
                          timeout=120), [e.value for e in at.error]
        assert server_of("smollm2-135m") == "running"
        (info,) = servers.status()
        with db.session(engine) as s:
            m = repo.get_model("smollm2-135m", session=s)
        assert (m.api_base, m.litellm_id, m.enabled) == (info.api_base, info.model, True)
        # a live run on it needs no provider key: the backend's pre-run check passes
        from evoroute import registry
        from evoroute.backends.live.backend import LiveBackend
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        with db.session(engine) as s:
            infos = registry.model_infos(session=s, names=["smollm2-135m"])
        LiveBackend(None, infos, check_models=True)

        at.button(key="md_local_stop").click().run()
        assert wait_until(lambda: any("servers stopped: smollm2-135m" in s.value
                                      for s in at.run().success), timeout=60)
        assert server_of("smollm2-135m") == "stopped"
        assert servers.status() == []
    finally:
        servers.stop()
