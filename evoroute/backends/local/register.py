"""The local models as candidate models of the registry: the one place they are registered
(the CLI's ``local start``, the studio's Models page and the tests call it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlmodel import Session

from evoroute import registry
from evoroute.backends.local.catalogue import LOCAL_MODELS, LOCAL_TOKENS_PER_S, LOCAL_TTFT_S
from evoroute.backends.local.servers import ServerInfo, default_api_base, default_servers
from evoroute.core.errors import BackendError
from evoroute.storage import repo
from evoroute.storage.tables import ModelEntry


def register_local_models(*, session: Session, servers: Sequence[ServerInfo] | None = None,
                          installed_only: bool = True, input_price_per_m: float = 0.0,
                          output_price_per_m: float = 0.0,
                          enable: bool = True) -> list[ModelEntry]:
    """Register (or refresh) local llama.cpp models as candidate models; the entries changed.

    Each becomes a model named like its server (``smollm2-135m``...), litellm id
    ``openai/<name>``, api base ``http://127.0.0.1:<port>/v1``, at a *notional* price (0 by
    default; give prices to study the cost trade-off). A running server gives the port. A
    model without one gets the port ``local start`` gives it when the default ports are free,
    so a live run never sends its calls (nor a provider key) to a hosted provider; if the
    server is not there, the live backend says so before the run starts.

    ``servers``: register exactly these running servers (none: :class:`BackendError`). None:
    the servers of the default state file that answer, and every catalogue model whose weight
    package is installed (every one if not ``installed_only``) not yet registered.
    A model already registered keeps its prices; a running server refreshes its id and api
    base (ports can change between starts).
    """
    if servers is not None and not servers:
        raise BackendError("no local model server is running; start them with "
                           "`python -m evoroute local start`")
    running = {s.name: s for s in (servers if servers is not None else
                                   [s for s in default_servers().status()
                                    if s.status == "running"])}
    names = list(running)
    if servers is None:
        names += [m.name for m in LOCAL_MODELS.values()
                  if m.name not in running and (m.installed() or not installed_only)]
    entries = []
    for name in names:
        server = running.get(name)
        known = repo.get_model(name, session=session) is not None
        if known and server is None:
            continue             # registered already, and no server to refresh it from
        model = f"openai/{name}" if server is None else server.model
        api_base = default_api_base(name) if server is None else server.api_base
        if not known:
            e = registry.add_model(session=session, name=name, litellm_id=model,
                                   input_price_per_m=input_price_per_m,
                                   output_price_per_m=output_price_per_m,
                                   ttft_s=LOCAL_TTFT_S, tokens_per_s=LOCAL_TOKENS_PER_S,
                                   api_base=api_base, enabled=enable, notional=True,
                                   notes=_notes(name, server))
        else:
            changes: dict[str, Any] = {"litellm_id": model, "api_base": api_base}
            if enable:
                changes["enabled"] = True
            e = registry.update_model(name, session=session, **changes)
        entries.append(e)
    return entries


def _notes(name: str, server: ServerInfo | None) -> str:
    m = LOCAL_MODELS.get(name)
    if m is not None:
        return f"local llama.cpp model from {m.package}=={m.version}; notional price"
    return f"local llama.cpp server ({server.gguf if server else '?'}); notional price"
