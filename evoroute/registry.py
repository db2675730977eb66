"""The model registry: candidate models with prices and latency profiles (spec §2).

Prices default to litellm's bundled cost map (loaded locally: ``LITELLM_LOCAL_MODEL_COST_MAP``)
when the litellm id is known there, and can always be overridden; the stored price is what
every cost figure uses. API keys are never stored: they live in the environment only.
"""

from __future__ import annotations

import importlib.util
import json
import math
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict
from pydantic import ValidationError as PydanticError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from evoroute.core.errors import DuplicateModelError, UnknownModelError, ValidationError
from evoroute.core.types import (
    MAX_NAME_CHARS,
    MAX_PRICE_PER_M,
    MAX_TOKENS_PER_S,
    MAX_TTFT_S,
    MIN_TOKENS_PER_S,
    ModelInfo,
    validate_name,
    validate_number,
)
from evoroute.settings import DEFAULTS, offline_env
from evoroute.storage import repo
from evoroute.storage.tables import ModelEntry

PRICE_FIELDS = ("input_price_per_m", "output_price_per_m")
# litellm: from the bundled cost map; override: typed by the user; notional: a made-up price
# (e.g. a free local model); recorded: replay uses the dataset's recorded cost per call.
PRICE_SOURCES = ("litellm", "override", "notional", "recorded")
_FIELD_LABEL = {"input_price_per_m": "input price (USD per 1M tokens)",
                "output_price_per_m": "output price (USD per 1M tokens)",
                "ttft_s": "time to first token (s)", "tokens_per_s": "output tokens per second"}


#: the price map litellm ships in its package and loads itself under LITELLM_LOCAL_MODEL_COST_MAP
LITELLM_COST_MAP_FILE = "model_prices_and_context_window_backup.json"


def expand_aliases(cmap: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """litellm's own step after reading the file (``_expand_model_aliases``): every id in an
    entry's ``aliases`` list becomes a top-level id of the same entry, unless it is already an
    id or claimed by an earlier entry; a non-null ``aliases`` key is removed (litellm keeps
    ``"aliases": null`` as it is)."""
    added: dict[str, dict[str, Any]] = {}
    for info in cmap.values():
        if not isinstance(info, dict) or info.get("aliases") is None:
            continue
        aliases = info.pop("aliases")
        if isinstance(aliases, list):
            for alias in aliases:
                if alias not in cmap and alias not in added:
                    added[alias] = info
    cmap.update(added)
    return cmap


@lru_cache(maxsize=1)
def _cost_map() -> dict[str, dict[str, Any]]:
    """litellm's bundled price map, as ``litellm.model_cost`` holds it offline.

    Read straight from the installed package (10 ms) instead of ``import litellm`` (2.4 s of
    CPU, holding the GIL in the studio's background thread while pages render), with litellm's
    alias expansion applied; the unit test ``test_cost_map_is_litellms`` checks the two are
    equal for the pinned release. Always the bundled file: the product makes no network calls
    at run time, so ``LITELLM_LOCAL_MODEL_COST_MAP=False`` (litellm's download) is not followed.
    Falls back to the import if the file is not where this release keeps it.
    """
    offline_env()  # the bundled price map, never a download
    spec = importlib.util.find_spec("litellm")   # finds the package without importing it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / LITELLM_COST_MAP_FILE
        if path.is_file():
            return expand_aliases(json.loads(path.read_text(encoding="utf-8")))
    import litellm  # heavy: only if the bundled file moved

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
    """Model ids in litellm's bundled catalogue (for search-as-you-type in the studio).

    Ordered so that a substring search lists the exact id first: ids without a provider
    prefix before ``provider/...`` ids, then shorter before longer (an id is the shortest
    string containing itself), then alphabetically.
    """
    ids = {k for k, v in _cost_map().items()
           if isinstance(v, dict) and v.get("mode") == mode and "input_cost_per_token" in v}
    return sorted(ids, key=lambda k: ("/" in k, len(k), k.lower(), k))


def _litellm_priced(litellm_id: str, fields: dict[str, Any]) -> bool:
    """Whether both prices in ``fields`` are litellm's for ``litellm_id`` (e.g. pre-filled in
    the studio and saved unchanged)."""
    known = litellm_prices(litellm_id)
    return known is not None and all(
        math.isclose(fields[f], k, rel_tol=1e-9, abs_tol=1e-12) for f, k in zip(PRICE_FIELDS, known))


# bounds (evoroute.core.types): a price of 1e308 made every run cost $inf
_BOUNDS = {"input_price_per_m": (0.0, MAX_PRICE_PER_M), "output_price_per_m": (0.0, MAX_PRICE_PER_M),
           "ttft_s": (0.0, MAX_TTFT_S), "tokens_per_s": (MIN_TOKENS_PER_S, MAX_TOKENS_PER_S)}
MAX_NOTES_CHARS = 10_000


def _number(field: str) -> BeforeValidator:
    lo, hi = _BOUNDS[field]
    return BeforeValidator(lambda v: validate_number(v, field, lo=lo, hi=hi,
                                                     label=_FIELD_LABEL.get(field, field)))


def _litellm_id(value: Any) -> str:
    lid = str(value or "").strip()
    return validate_name(lid, "litellm_id", max_chars=300, label="litellm id") if lid else ""


def _notes(value: Any) -> str:
    text = str(value or "")
    if len(text) > MAX_NOTES_CHARS:
        raise ValidationError(f"notes are longer than {MAX_NOTES_CHARS} characters", "notes")
    return text


def _api_base(value: Any) -> str | None:
    if value is None:
        return None
    from evoroute.netsafety import validate_api_base  # http(s), no credentials in the URL

    base = str(value).strip()
    return validate_api_base(base) if base else None


def _price_source(value: Any) -> str:
    if value not in PRICE_SOURCES:
        raise ValidationError(f"price source must be one of {', '.join(PRICE_SOURCES)}",
                              "price_source")
    return str(value)


class ModelForm(BaseModel):
    """The editable fields of a registered model, as a form or the CLI gives them; only the
    fields given are validated (and returned by :func:`_clean`)."""

    model_config = ConfigDict(extra="forbid")

    litellm_id: Annotated[str, BeforeValidator(_litellm_id)] = ""
    api_base: Annotated[str | None, BeforeValidator(_api_base)] = None
    input_price_per_m: Annotated[float, _number("input_price_per_m")] = 0.0
    output_price_per_m: Annotated[float, _number("output_price_per_m")] = 0.0
    ttft_s: Annotated[float, _number("ttft_s")] = DEFAULTS.ttft_s
    tokens_per_s: Annotated[float, _number("tokens_per_s")] = DEFAULTS.tokens_per_s
    enabled: bool = True
    notes: Annotated[str, BeforeValidator(_notes)] = ""
    price_source: Annotated[str, BeforeValidator(_price_source)] = "override"


EDITABLE = frozenset(ModelForm.model_fields)


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` validated by :class:`ModelForm`; the first bad one raises ValidationError
    naming it."""
    try:
        form = ModelForm.model_validate(fields)
    except PydanticError as exc:
        first = exc.errors()[0]
        cause = (first.get("ctx") or {}).get("error")
        if isinstance(cause, ValidationError):
            raise cause from None
        field = str(first["loc"][0]) if first["loc"] else ""
        raise ValidationError(f"{field}: {first['msg']}", field) from None
    return form.model_dump(include=set(fields))


def add_model(*, session: Session, name: str, litellm_id: str = "",
              input_price_per_m: float | None = None, output_price_per_m: float | None = None,
              ttft_s: float = DEFAULTS.ttft_s, tokens_per_s: float = DEFAULTS.tokens_per_s,
              api_base: str | None = None,
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
    if source == "override" and _litellm_priced(litellm_id, fields):
        source = "litellm"
    if price_source is not None:
        source = _clean({"price_source": price_source})["price_source"]
    entry = ModelEntry(name=name, litellm_id=litellm_id, enabled=enabled, notes=notes,
                       price_source=source, **fields)
    try:
        return repo.save_model(entry, session=session)
    except IntegrityError:      # another process registered the name since the check above
        raise DuplicateModelError(f"a model named {name!r} is already registered", "name") from None


def update_model(name: str, *, session: Session, **changes: Any) -> ModelEntry:
    """Change fields of a registered model. A price that changes makes the prices an override,
    or ``litellm`` when both now equal litellm's; unchanged prices keep their source."""
    entry = require_model(name, session=session)
    unknown = set(changes) - EDITABLE
    if unknown:
        raise ValidationError(f"cannot update field(s) {', '.join(sorted(unknown))}", sorted(unknown)[0])
    cleaned = _clean(changes)
    prices = {f: cleaned.get(f, getattr(entry, f)) for f in PRICE_FIELDS}
    changed = any(prices[f] != getattr(entry, f) for f in PRICE_FIELDS)
    if changed and "price_source" not in cleaned and entry.price_source != "notional":
        litellm_id = cleaned.get("litellm_id", entry.litellm_id)
        cleaned["price_source"] = "litellm" if _litellm_priced(litellm_id, prices) else "override"
    for k, v in cleaned.items():
        setattr(entry, k, v)
    entry.updated_at = datetime.now(timezone.utc)
    return repo.save_model(entry, session=session)


def remove_model(name: str, *, session: Session) -> None:
    """Unregister a model. Its past step records stay in the experience base."""
    repo.delete_model(require_model(name, session=session), session=session)


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
