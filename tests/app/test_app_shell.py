"""app.py, the shell around every page: the page runs inside ui.state.page_run() (so the
background index load yields to it) and the browser is asked to load plotly.js ahead
(ui/prefetch). AppTest runs app.py only for the default page (a switched page is run from
pages/ directly), so the other pages' wiring is checked in the browser
(tests/e2e/test_prefetch.py)."""

from __future__ import annotations

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


def test_no_chunk_no_script(monkeypatch):
    monkeypatch.setattr(prefetch, "chunk_files", lambda: ())
    assert prefetch.script() is None
