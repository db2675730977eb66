"""Paths and environment. Everything the library reads from the environment is read here."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"
DEFAULT_DB_PATH = Path(os.environ.get("EVOROUTE_HOME", PROJECT_ROOT / "var")) / "evoroute.db"
CACHE_DIR = Path(os.environ.get("EVOROUTE_CACHE_DIR", PROJECT_ROOT / "var" / "cache"))


def offline_env() -> None:
    """Pin the libraries we use to their bundled resources: no hub or price-map download."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def db_url() -> str:
    """SQLAlchemy URL of the experience base: ``EVOROUTE_DB_URL`` or a SQLite file under var/."""
    url = os.environ.get("EVOROUTE_DB_URL")
    if url:
        return url
    path = Path(os.environ.get("EVOROUTE_HOME", PROJECT_ROOT / "var")) / "evoroute.db"
    return f"sqlite:///{path}"


offline_env()
