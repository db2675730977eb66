"""The model registry: candidate models with prices and latency profiles (spec §2).

Prices default to litellm's bundled cost map (loaded locally: ``LITELLM_LOCAL_MODEL_COST_MAP``)
when the litellm id is known there, and can always be overridden; the stored price is what
every cost figure uses. API keys are never stored: they live in the environment only.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from evoroute.core.types import (MAX_NAME_CHARS, MAX_PRICE_PER_M, MAX_TOKENS_PER_S, MAX_TTFT_S,
                                 MIN_TOKENS_PER_S, ModelInfo, validate_name, validate_number)
from evoroute.errors import DuplicateModelError, UnknownModelError, ValidationError
from evoroute.storage import repo
from evoroute.storage.tables import ModelEntry

PRICE_FIELDS = ("input_price_per_m", "output_price_per_m")
# litellm: from the bundled cost map; override: typed by the user; notional: a made-up price
# (e.g. a free local model); recorded: replay uses the dataset's recorded cost per call.
PRICE_SOURCES = ("litellm", "override", "notional", "recorded")
PROFILE_FIELDS = ("ttft_s", "tokens_per_s")
EDITABLE = {"litellm_id", "api_base", *PRICE_FIELDS, *PROFILE_FIELDS, "enabled", "notes", "price_source"}
_FIELD_LABEL = {"input_price_per_m": "input price (USD per 1M tokens)",
                "output_price_per_m": "output price (USD per 1M tokens)",
                "ttft_s": "time to first token (s)", "tokens_per_s": "output tokens per second"}


@lru_cache(maxsize=1)
def _cost_map() -> dict[str, dict[str, Any]]:
    from evoroute.settings import offline_env

    offline_env()  # the bundled price map, never a download
    import litellm  # heavy: imported only when a price is looked up

    return dict(litellm.model_cost)


def litellm_prices(litellm_id: str) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens from litellm's bundled cost map, or None if unknown."""
    if not litellm_id:
        return None
    cmap = _cost_map()
    entry = cmap.get(litellm_id) or cmap.get(litellm_id.split("/", 1)[-1])
    if not entry or "input_cost_per_token" not in entry:
        return None
    return (float(entry.get("input_cost_per_token") or 0.0) * 1e6,
            float(entry.get("output_cost_per_token") or 0.0) * 1e6)


def litellm_catalogue(mode: str = "chat") -> list[str]:
    """Model ids in litellm's bundled catalogue (for search-as-you-type in the studio)."""
    return sorted(k for k, v in _cost_map().items()
                  if isinstance(v, dict) and v.get("mode") == mode and "input_cost_per_token" in v)


# bounds (evoroute.core.types): a price of 1e308 made every run cost $inf
_BOUNDS = {"input_price_per_m": (0.0, MAX_PRICE_PER_M), "output_price_per_m": (0.0, MAX_PRICE_PER_M),
           "ttft_s": (0.0, MAX_TTFT_S), "tokens_per_s": (MIN_TOKENS_PER_S, MAX_TOKENS_PER_S)}


def _number(value: Any, field: str) -> float:
    lo, hi = _BOUNDS[field]
    return validate_number(value, field, lo=lo, hi=hi, label=_FIELD_LABEL.get(field, field))


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    out = dict(fields)
    for f in PRICE_FIELDS:
        if f in out:
            out[f] = _number(out[f], f)
    if "ttft_s" in out:
        out["ttft_s"] = _number(out["ttft_s"], "ttft_s")
    if "tokens_per_s" in out:
        out["tokens_per_s"] = _number(out["tokens_per_s"], "tokens_per_s")
    if "litellm_id" in out:
        lid = str(out["litellm_id"] or "").strip()
        out["litellm_id"] = validate_name(lid, "litellm_id", max_chars=300,
                                          label="litellm id") if lid else ""
    if "notes" in out:
        out["notes"] = str(out["notes"] or "")
        if len(out["notes"]) > 10_000:
            raise ValidationError("notes are longer than 10000 characters", "notes")
    if "api_base" in out and out["api_base"] is not None:
        from evoroute.netsafety import validate_api_base   # http(s), no credentials in the URL

        base = str(out["api_base"]).strip()
        out["api_base"] = validate_api_base(base) if base else None
    return out


def add_model(*, session: Session, name: str, litellm_id: str = "",
              input_price_per_m: float | None = None, output_price_per_m: float | None = None,
              ttft_s: float = 0.5, tokens_per_s: float = 50.0, api_base: str | None = None,
              enabled: bool = True, notional: bool = False, notes: str = "",
              price_source: str | None = None) -> ModelEntry:
    """Register a candidate model. Missing prices come from litellm's cost map, else it fails."""
    name = validate_name(name, "name", max_chars=MAX_NAME_CHARS, label="model name")
    if repo.get_model(name, session=session) is not None:
        raise DuplicateModelError(f"a model named {name!r} is already registered", "name")
    litellm_id = _clean({"litellm_id": litellm_id})["litellm_id"]
    notes = _clean({"notes": notes})["notes"]
    source = "notional" if notional else "override"
    if input_price_per_m is None or output_price_per_m is None:
        known = litellm_prices(litellm_id)
        if known is None:
            missing = "input_price_per_m" if input_price_per_m is None else "output_price_per_m"
            raise ValidationError(
                f"{_FIELD_LABEL[missing]} is missing and litellm's cost map has no price for "
                f"{litellm_id or name!r}; give both prices", missing)
        if input_price_per_m is None and output_price_per_m is None:
            source = "litellm"
        input_price_per_m = known[0] if input_price_per_m is None else input_price_per_m
        output_price_per_m = known[1] if output_price_per_m is None else output_price_per_m
    fields = _clean(dict(input_price_per_m=input_price_per_m, output_price_per_m=output_price_per_m,
                         ttft_s=ttft_s, tokens_per_s=tokens_per_s, api_base=api_base))
    if price_source is not None:
        if price_source not in PRICE_SOURCES:
            raise ValidationError(f"price source must be one of {', '.join(PRICE_SOURCES)}",
                                  "price_source")
        source = price_source
    entry = ModelEntry(name=name, litellm_id=litellm_id, enabled=enabled, notes=notes,
                       price_source=source, **fields)
    session.add(entry)
    try:
        session.commit()
    except IntegrityError:      # another process registered the name since the check above
        session.rollback()
        raise DuplicateModelError(f"a model named {name!r} is already registered", "name") from None
    session.refresh(entry)
    return entry


def update_model(name: str, *, session: Session, **changes: Any) -> ModelEntry:
    """Change fields of a registered model; a price change marks the price as an override."""
    entry = require_model(name, session=session)
    unknown = set(changes) - EDITABLE
    if unknown:
        raise ValidationError(f"cannot update field(s) {', '.join(sorted(unknown))}", sorted(unknown)[0])
    cleaned = _clean(changes)
    if any(f in cleaned for f in PRICE_FIELDS) and "price_source" not in cleaned \
            and entry.price_source != "notional":
        cleaned["price_source"] = "override"
    for k, v in cleaned.items():
        setattr(entry, k, v)
    entry.updated_at = datetime.now(timezone.utc)
    session.add(entry)
    session.commit()
    session.refresh(entry)
    return entry


def remove_model(name: str, *, session: Session) -> None:
    """Unregister a model. Its past step records stay in the experience base."""
    entry = require_model(name, session=session)
    session.delete(entry)
    session.commit()


def require_model(name: str, *, session: Session) -> ModelEntry:
    entry = repo.get_model(name, session=session)
    if entry is None:
        raise UnknownModelError(name, [m.name for m in repo.list_models(session=session)])
    return entry


def model_infos(*, session: Session, enabled_only: bool = True,
                names: list[str] | None = None) -> list[ModelInfo]:
    """Snapshots of registered models; unknown names in ``names`` raise UnknownModelError."""
    entries = repo.list_models(session=session, enabled_only=enabled_only and names is None)
    by_name = {e.name: e for e in entries}
    if names is not None:
        for n in names:
            if n not in by_name:
                raise UnknownModelError(n, list(by_name))
        entries = [by_name[n] for n in names]
    return [to_info(e) for e in entries]


def to_info(e: ModelEntry) -> ModelInfo:
    return ModelInfo(name=e.name, input_price_per_m=e.input_price_per_m,
                     output_price_per_m=e.output_price_per_m, ttft_s=e.ttft_s,
                     tokens_per_s=e.tokens_per_s, litellm_id=e.litellm_id, api_base=e.api_base,
                     price_source=e.price_source)
