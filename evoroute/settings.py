"""One home for settings and defaults.

``DEFAULTS`` holds every default a user can change (weights, θ, cold start, splits, …); modules
refer to it instead of repeating literals. ``settings()`` reads the environment *when called*
(paths, database URL), so tests and workers that set a variable see it.
``offline_env()`` pins the libraries to their bundled resources; it is called by the entry
points (CLI, studio, worker) and by the lazy loaders of sentence-transformers and litellm,
never as a side effect of importing this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from evoroute.core.types import ModelInfo, Weights

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: True when running from the source checkout (the bundled data and var/ live beside the code);
#: an installed wheel keeps its state under ~/.evoroute and reads data from EVOROUTE_DATA_DIR.
IN_CHECKOUT = (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "data").is_dir()
DATA_DIR = Path(os.environ.get("EVOROUTE_DATA_DIR") or PROJECT_ROOT / "data")
_DEFAULT_HOME = PROJECT_ROOT / "var" if IN_CHECKOUT else Path.home() / ".evoroute"

#: What each environment variable does (documentation: docs/architecture.md points here).
ENVIRONMENT = {
    "EVOROUTE_HOME": "folder of the experience base and run logs (default: var/ in the checkout, "
                     "~/.evoroute for an installed wheel)",
    "EVOROUTE_DATA_DIR": "the bundled datasets (default: data/ in the checkout)",
    "EVOROUTE_DB_URL": "SQLAlchemy URL of the experience base (default: sqlite under EVOROUTE_HOME)",
    "EVOROUTE_CACHE_DIR": "embedding and model cache (default: cache/ in the default home)",
    "EVOROUTE_EMBED_BACKEND": "onnx (default), onnx-int8 or reference: the MiniLM query embedder",
    "EVOROUTE_SANDBOX_ISOLATION": "bwrap, unshare or none: how the tool sandbox is isolated",
    "EVOROUTE_SANDBOX_ALLOW_NO_ISOLATION": "1 to run the sandbox without namespaces (tests only)",
    "EVOROUTE_PREFETCH_CHARTS": "0 to stop the studio loading plotly.js ahead of the first chart "
                                "(ui/prefetch.py; default 1)",
}


@dataclass(frozen=True)
class Defaults:
    """Defaults shared by the library, the CLI, the studio and the bench."""

    # performance, cost, latency: the defaults of core.types.Weights (core imports no settings)
    weights: tuple[float, float, float] = (Weights.w_p, Weights.w_c, Weights.w_d)
    theta: float = 0.85                  # cosine threshold of the paper's semantic channel
    cold_start_tasks: int = 50           # tasks explored before the router trusts its estimates
    splits: tuple[str, ...] = ("train", "test")
    protocols: tuple[str, ...] = ("bandit", "full")
    ttft_s: float = ModelInfo.ttft_s     # latency profile of a registered model
    tokens_per_s: float = ModelInfo.tokens_per_s
    seed: int = 0
    page_size: int = 50                  # rows per page of the experience log
    feed_size: int = 50                  # decisions shown in the live feed


DEFAULTS = Defaults()


@dataclass(frozen=True)
class Settings:
    """Paths and switches read from the environment at the moment ``settings()`` is called."""

    home: Path
    cache_dir: Path
    db_url: str

    @property
    def db_path(self) -> Path:
        return self.home / "evoroute.db"


def settings() -> Settings:
    home = Path(os.environ.get("EVOROUTE_HOME") or _DEFAULT_HOME)
    cache = Path(os.environ.get("EVOROUTE_CACHE_DIR") or _DEFAULT_HOME / "cache")
    url = os.environ.get("EVOROUTE_DB_URL") or f"sqlite:///{home / 'evoroute.db'}"
    return Settings(home=home, cache_dir=cache, db_url=url)


def db_url() -> str:
    """SQLAlchemy URL of the experience base: ``EVOROUTE_DB_URL`` or a SQLite file under var/."""
    return settings().db_url


def offline_env() -> None:
    """Pin the libraries we use to their bundled resources: no hub or price-map download."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
