"""Shared fixtures: a real SQLite file per test, a few candidate models, a seeded generator.

The offline switches are set when pytest loads this file, before any test module is imported
(none of the imports below loads litellm or sentence-transformers), so no test ever reaches a
hub or downloads litellm's price map.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from evoroute.core.types import ModelInfo
from evoroute.settings import offline_env
from evoroute.storage.db import make_engine
from evoroute.storage.db import session as open_session

offline_env()


@pytest.fixture
def db_path(tmp_path) -> str:
    return str(tmp_path / "experience.db")


@pytest.fixture
def engine(db_path) -> Iterator[Engine]:
    """A fresh engine on a real SQLite file (WAL, busy timeout) with all tables created."""
    eng = make_engine(f"sqlite:///{db_path}")
    yield eng
    eng.dispose()


@pytest.fixture
def db_session(engine) -> Iterator[Session]:
    with open_session(engine) as s:
        yield s


@pytest.fixture
def models() -> list[ModelInfo]:
    """Three candidates with distinct prices and latency profiles."""
    return [
        ModelInfo("cheap", input_price_per_m=0.1, output_price_per_m=0.4, ttft_s=0.2, tokens_per_s=120.0),
        ModelInfo("mid", input_price_per_m=1.0, output_price_per_m=4.0, ttft_s=0.4, tokens_per_s=80.0),
        ModelInfo("strong", input_price_per_m=5.0, output_price_per_m=15.0, ttft_s=0.8, tokens_per_s=40.0),
    ]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def unit_vectors(rng: np.random.Generator, n: int, dim: int = 384) -> np.ndarray:
    """n random L2-normalised float32 vectors (synthetic embeddings)."""
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def make_unit_vectors():
    return unit_vectors
