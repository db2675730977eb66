"""app.py, the shell around every page: the page runs inside ui.state.page_run() (so the
background index load yields to it) and the browser is asked to load plotly.js ahead
(ui/prefetch). AppTest runs app.py only for the default page (a switched page is run from
pages/ directly), so the other pages' wiring is checked in the browser
(tests/e2e/test_prefetch.py)."""

from __future__ import annotations

from pathlib import Path

from ui import prefetch, state

from studio_helpers import open_app


def _prefetch_scripts(at) -> list[str]:
    return [e.proto.body for e in at.main.get("html")
            if "__evorouteChartsPrefetch" in e.proto.body]


def test_the_page_runs_inside_page_run_and_the_prefetch_is_sent(fixed_db, monkeypatch):
    seen: list[bool] = []
    engine = state.engine

    def watched_engine():
        seen.append(state.FOREGROUND.busy())      # the page script asks for the engine
        return engine()

    monkeypatch.setattr(state, "engine", watched_engine)
    at = open_app()
    assert at.title[0].value == "EvoRoute Studio"
    assert seen and all(seen), seen              # every engine use was inside the page run
    assert not state.FOREGROUND.busy()           # and the run has ended
    scripts = _prefetch_scripts(at)
    assert len(scripts) == 1
    assert all(name in scripts[0] for name in prefetch.chunk_files())


def test_the_installed_streamlit_has_the_chunk_to_prefetch():
    """Streamlit names its lazily loaded chart script PlotlyChart.<hash>.js; a Streamlit that
    renamed it would turn the prefetch into a silent no-op, so this test says so."""
    files = prefetch.chunk_files()
    assert len(files) == 1 and files[0].startswith("PlotlyChart.") and files[0].endswith(".js")
    assert prefetch.script().count(files[0]) == 1


def test_the_script_finds_what_it_imports_in_this_streamlit():
    """The two things the script relies on besides the chunk's name: the page loads Streamlit's
    main module from static/js/index.<hash>.js (the script resolves the chunk against its src),
    and that module lazily imports the chunk by that same relative name."""
    import re

    import streamlit

    static = Path(streamlit.__file__).parent / "static"
    mains = re.findall(r'<script type="module"[^>]*src="\./(static/js/index\.[^"]+\.js)"',
                       (static / "index.html").read_text())
    assert len(mains) == 1, mains
    (chunk,) = prefetch.chunk_files()
    assert f"./{chunk}" in (static / mains[0]).read_text()


def test_no_chunk_no_script(monkeypatch):
    monkeypatch.setattr(prefetch, "chunk_files", lambda: ())
    assert prefetch.script() is None


def test_the_switch_turns_it_off(monkeypatch):
    monkeypatch.setenv(prefetch.ENV_SWITCH, "0")
    assert prefetch.script() is None
    monkeypatch.setenv(prefetch.ENV_SWITCH, "1")
    assert prefetch.script() is not None
