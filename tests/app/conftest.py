"""Fixtures of the studio tests: a temporary SQLite base per test, set through EVOROUTE_DB_URL
before the app script runs (see studio_helpers for the two bases)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from evoroute.storage import db

from studio_helpers import REPLAY_RUNS, seed_fixed


def _use_db(monkeypatch: pytest.MonkeyPatch, path: Path) -> str:
    url = f"sqlite:///{path}"
    monkeypatch.setenv("EVOROUTE_DB_URL", url)
    return url


@pytest.fixture
def fixed_db(tmp_path, monkeypatch) -> Iterator[tuple[str, Engine, int]]:
    url = _use_db(monkeypatch, tmp_path / "fixed.db")
    eng = db.get_engine(url)
    run_id = seed_fixed(eng)
    yield url, eng, run_id


@pytest.fixture
def empty_db(tmp_path, monkeypatch) -> Iterator[tuple[str, Engine]]:
    url = _use_db(monkeypatch, tmp_path / "empty.db")
    yield url, db.get_engine(url)


@pytest.fixture(scope="session")
def replay_template(tmp_path_factory) -> Path:
    """RouterBench models + short real replay runs (EvoRoute at two weights, two single models)."""
    from evoroute import demo
    from evoroute.runs.execute import run_spec
    from evoroute.runs.spec import RunSpec

    path = tmp_path_factory.mktemp("replay") / "replay.db"
    eng = db.make_engine(f"sqlite:///{path}")
    demo.register_routerbench_models(eng)
    for r in REPLAY_RUNS:
        spec = RunSpec(backend="replay", dataset="routerbench", n_tasks=40, n_train=40,
                       cold_start_tasks=20, name=f"test {r['router']}", **r)
        for _ in run_spec(spec, engine=eng):
            pass
    eng.dispose()
    return path


@pytest.fixture
def replay_db(replay_template, tmp_path, monkeypatch) -> Iterator[tuple[str, Engine]]:
    path = tmp_path / "replay.db"
    shutil.copy(replay_template, path)
    url = _use_db(monkeypatch, path)
    yield url, db.get_engine(url)


