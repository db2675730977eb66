"""The llama.cpp servers of the local models: start, stop, status.

Each model runs in its own ``python -m llama_cpp.server`` process (OpenAI-compatible, bound to
127.0.0.1 only), started detached in its own process group so it outlives the CLI call that
started it. One process per model keeps every model resident: llama-cpp-python's multi-model
config swaps models in and out of one process, which would charge a reload to every routing
switch. The live backend reaches a server through litellm with the ``model`` / ``api_base`` /
``api_key`` a :class:`ServerInfo` gives.

State (pid, port, model of each server) lives in a JSON file beside the experience base
(``var/local_models.json`` by default), guarded by a lock file so that two CLI calls cannot
start the same model twice. A state entry whose process is gone, or whose pid now belongs to
another program, is stale: it is dropped whenever the state is read. Processes are watched and
ended through psutil (:mod:`.processes`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evoroute import settings as config
from evoroute.backends.local.catalogue import (
    INSTALL_HINT,
    LOCAL_MODELS,
    LOCAL_TOKENS_PER_S,
    LOCAL_TTFT_S,
    LocalModel,
    get_model,
)
from evoroute.backends.local.processes import (
    DEFAULT_STOP_GRACE_S,
    HOST,
    SERVER_MODULE,
    alive,
    is_our_server,
    log_tail,
    port_free,
    reap,
    served_models,
    server_available,
    spawn_detached,
    terminate,
)
from evoroute.core.errors import BackendError, ValidationError
from evoroute.core.types import ModelInfo
from evoroute.netsafety import LOCAL_API_KEY

DEFAULT_BASE_PORT = 18431
DEFAULT_N_CTX = 2048
DEFAULT_START_TIMEOUT_S = 90.0
# One thread per server. Measured on the 2-core machine while other work ran (docs/local_models.md):
# 16 tokens from smollm2 took 0.7 s with 1 thread, 1.3 s with 2 (OMP_WAIT_POLICY=PASSIVE) and
# 6-9 s with 2 spinning OpenMP threads, whose barriers stall whenever the other core is busy.
# One thread each also lets both models answer at once without oversubscribing the cores.
DEFAULT_N_THREADS = 1


def api_base_at(port: int) -> str:
    return f"http://{HOST}:{port}/v1"


def default_api_base(name: str) -> str:
    """Where ``local start`` serves model ``name`` when the default ports are free: the models
    take the ports from :data:`DEFAULT_BASE_PORT` upwards in catalogue order."""
    get_model(name)
    return api_base_at(DEFAULT_BASE_PORT + list(LOCAL_MODELS).index(name))


@dataclass(frozen=True)
class ServerInfo:
    """A running (or just stopped) local server and how litellm reaches it."""

    name: str
    port: int
    pid: int
    gguf: str
    status: str                       # "running", "unhealthy" (alive, not answering), "stopped"
    model: str = ""                   # litellm model id, e.g. "openai/smollm2-135m"
    api_base: str = ""
    api_key: str = LOCAL_API_KEY
    started_at: float = 0.0           # unix time the process was launched
    startup_s: float | None = None    # launch -> first healthy /v1/models answer
    log_path: str = ""
    n_threads: int = 0
    n_ctx: int = DEFAULT_N_CTX

    def __post_init__(self) -> None:
        if not self.model:
            object.__setattr__(self, "model", f"openai/{self.name}")
        if not self.api_base:
            object.__setattr__(self, "api_base", api_base_at(self.port))

    def litellm_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``litellm.completion`` to call this server."""
        return {"model": self.model, "api_base": self.api_base, "api_key": self.api_key}

    def to_model_info(self, *, ttft_s: float = LOCAL_TTFT_S,
                      tokens_per_s: float = LOCAL_TOKENS_PER_S) -> ModelInfo:
        """A :class:`ModelInfo` for this server at the model's notional prices (zero)."""
        m = LOCAL_MODELS.get(self.name)
        return ModelInfo(name=self.name, input_price_per_m=m.input_price_per_m if m else 0.0,
                         output_price_per_m=m.output_price_per_m if m else 0.0, ttft_s=ttft_s,
                         tokens_per_s=tokens_per_s, litellm_id=self.model,
                         api_base=self.api_base, price_source="local (notional 0)")


# ---------------------------------------------------------------------------------------------
# the manager


@dataclass
class LocalModelServers:
    """Starts, stops and reports the llama.cpp servers of the registered local models.

    ``state_path`` defaults to ``local_models.json`` beside the experience base (EVOROUTE_HOME
    or PROJECT_ROOT/var); tests pass a temporary one so they never touch a user's servers.
    """

    state_path: Path = field(default_factory=lambda: config.settings().home / "local_models.json")
    cache_dir: Path = field(default_factory=lambda: config.settings().cache_dir)

    def __post_init__(self) -> None:
        self.state_path = Path(self.state_path)
        self.cache_dir = Path(self.cache_dir)
        self.log_dir = self.state_path.parent / "local_models_logs"
        self.last_stale: list[str] = []   # names the last status() found dead and dropped

    # -- state file ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.state_path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}   # a corrupt state file is treated as empty; live servers are re-verified
        return data.get("servers", {}) if isinstance(data, dict) else {}

    def _write(self, servers: dict[str, dict]) -> None:
        tmp = self.state_path.with_name(f".{self.state_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"servers": servers}, indent=2, sort_keys=True))
        os.replace(tmp, self.state_path)

    def _reconcile(self) -> tuple[dict[str, dict], list[str]]:
        """Live state entries, and names of stale ones (process gone or pid reused), dropped."""
        servers, stale = {}, []
        for name, e in self._read().items():
            try:
                pid, port = int(e["pid"]), int(e["port"])
            except (KeyError, TypeError, ValueError):
                stale.append(name)
                continue
            if is_our_server(pid, port, name):
                servers[name] = e
            else:
                stale.append(name)
        return servers, stale

    @staticmethod
    def _info(e: dict, status: str) -> ServerInfo:
        return ServerInfo(name=e["name"], port=int(e["port"]), pid=int(e["pid"]), gguf=e["gguf"],
                          status=status, started_at=float(e.get("started_at", 0.0)),
                          startup_s=e.get("startup_s"), log_path=e.get("log_path", ""),
                          n_threads=int(e.get("n_threads", 0)),
                          n_ctx=int(e.get("n_ctx", DEFAULT_N_CTX)))

    # -- public API -----------------------------------------------------------------------------

    def start(self, names: Sequence[str] | None = None, base_port: int = DEFAULT_BASE_PORT, *,
              n_ctx: int = DEFAULT_N_CTX, n_threads: int | None = None,
              timeout: float = DEFAULT_START_TIMEOUT_S) -> list[ServerInfo]:
        """Start a server per model (all registered if ``names`` is None); idempotent.

        A model already served is returned as it is. New servers are launched together and
        then polled until ``GET /v1/models`` answers with their alias; one that dies or does
        not answer within ``timeout`` is killed and reported with the tail of its log.
        """
        names = list(LOCAL_MODELS) if names is None else list(dict.fromkeys(names))
        models = [get_model(n) for n in names]
        if not 1 <= base_port <= 65535:
            raise ValidationError(f"base port must be in 1..65535, got {base_port}", "base_port")
        if n_ctx < 64:
            raise ValidationError(f"n_ctx must be >= 64, got {n_ctx}", "n_ctx")
        if not server_available():
            raise BackendError("llama-cpp-python is not installed; " + INSTALL_HINT)
        threads = DEFAULT_N_THREADS if n_threads is None else n_threads
        if threads < 1:
            raise ValidationError(f"n_threads must be >= 1, got {threads}", "n_threads")
        ggufs = {m.name: m.ensure_gguf(self.cache_dir) for m in models}

        launched: list[str] = []
        with self._locked():
            servers, _ = self._reconcile()
            used = {int(e["port"]) for e in servers.values()}
            port = base_port
            try:
                for m in models:
                    if m.name in servers:
                        continue
                    while port in used or not port_free(port):
                        port += 1
                        if port > min(base_port + 200, 65535):
                            raise BackendError(f"no free port on {HOST} in {base_port}..{port}")
                    servers[m.name] = self._launch(m, ggufs[m.name], port, n_ctx, threads)
                    used.add(port)
                    launched.append(m.name)
            finally:   # record what was launched even if a later launch failed: no orphans
                self._write(servers)

        failures = self._wait_healthy(launched, servers, timeout)
        with self._locked():
            current, _ = self._reconcile()
            for name in names:
                if name not in current and name not in failures:
                    log = servers[name].get("log_path", "")
                    failures[name] = f"process exited after answering; log {log}:\n{log_tail(log)}"
            for name in launched:
                if name in current and name not in failures:
                    current[name]["startup_s"] = servers[name]["startup_s"]
            for name in failures:
                e = current.pop(name, None) or servers[name]
                pid = int(e["pid"])
                if alive(pid) and is_our_server(pid, int(e["port"]), name):
                    terminate(pid)   # alive but never healthy
                else:
                    reap(pid)             # never signal a pid that may now be someone else's
            self._write(current)
        if failures:
            # do not leave half a fleet running: stop what this call launched
            self.stop([n for n in launched if n not in failures])
            raise BackendError("local model server(s) failed to start:\n" + "\n".join(
                f"- {n}: {why}" for n, why in failures.items()))
        return [self._info(current[n], "running") for n in names]

    def _launch(self, m: LocalModel, gguf: Path, port: int, n_ctx: int, threads: int) -> dict:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{m.name}.log"
        cmd = [sys.executable, "-m", SERVER_MODULE, "--model", str(gguf), "--model_alias", m.name,
               "--host", HOST, "--port", str(port), "--n_ctx", str(n_ctx),
               "--n_threads", str(threads), "--n_threads_batch", str(threads), "--verbose", "False"]
        if m.chat_format:
            cmd += ["--chat_format", m.chat_format]
        env = dict(os.environ)
        env.update({"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # waiting threads sleep instead of spinning
        pid = spawn_detached(cmd, log_path=log_path, cwd=self.state_path.parent, env=env)
        return {"name": m.name, "pid": pid, "port": port, "gguf": str(gguf),
                "started_at": time.time(), "startup_s": None, "log_path": str(log_path),
                "n_threads": threads, "n_ctx": n_ctx, "litellm_model": m.litellm_id,
                "api_base": api_base_at(port)}

    def _wait_healthy(self, names: list[str], servers: dict[str, dict],
                      timeout: float) -> dict[str, str]:
        pending, failures = set(names), {}
        deadline = time.monotonic() + timeout
        while pending:
            for name in sorted(pending):
                e = servers[name]
                if not alive(int(e["pid"])):
                    failures[name] = f"process exited; log {e['log_path']}:\n{log_tail(e['log_path'])}"
                    pending.discard(name)
                elif name in (served_models(int(e["port"]), timeout=1.0) or []):
                    e["startup_s"] = round(time.time() - e["started_at"], 3)
                    pending.discard(name)
            if pending and time.monotonic() > deadline:
                for name in pending:
                    failures[name] = (f"no answer on /v1/models within {timeout:.0f} s; log "
                                      f"{servers[name]['log_path']}:\n{log_tail(servers[name]['log_path'])}")
                break
            if pending:
                time.sleep(0.1)
        return failures

    def stop(self, names: Sequence[str] | None = None,
             grace: float = DEFAULT_STOP_GRACE_S) -> list[str]:
        """Stop servers (all if ``names`` is None): SIGTERM the group, SIGKILL after ``grace``.

        Returns the names that were running and are now stopped.
        """
        if names is not None:
            for n in names:
                get_model(n)
        stopped = []
        with self._locked():
            servers, _ = self._reconcile()
            for name in list(servers) if names is None else list(names):
                e = servers.pop(name, None)
                if e is not None:
                    terminate(int(e["pid"]), grace)
                    stopped.append(name)
            self._write(servers)
        return stopped

    def status(self) -> list[ServerInfo]:
        """Servers alive now; stale entries (dead pid, reused pid) are dropped from the state."""
        with self._locked():
            servers, stale = self._reconcile()
            if stale:
                self._write(servers)
        self.last_stale = stale
        out = []
        for name, e in sorted(servers.items()):
            ok = name in (served_models(int(e["port"]), timeout=2.0) or [])
            out.append(self._info(e, "running" if ok else "unhealthy"))
        return out

    @contextlib.contextmanager
    def serving(self, names: Sequence[str] | None = None, base_port: int = DEFAULT_BASE_PORT,
                **kwargs: Any) -> Iterator[list[ServerInfo]]:
        """Serve ``names`` for the duration of a ``with`` block; stops what it started."""
        before = {s.name for s in self.status()}
        started: list[str] = []
        try:
            infos = self.start(names, base_port, **kwargs)
            started = [i.name for i in infos if i.name not in before]
            yield infos
        finally:
            if started:
                self.stop(started)


def default_servers() -> LocalModelServers:
    """The servers of the default state file (beside the experience base, read at call time)."""
    return LocalModelServers()


def start(names: Sequence[str] | None = None, base_port: int = DEFAULT_BASE_PORT,
          **kwargs: Any) -> list[ServerInfo]:
    return default_servers().start(names, base_port, **kwargs)


def stop(names: Sequence[str] | None = None, grace: float = DEFAULT_STOP_GRACE_S) -> list[str]:
    return default_servers().stop(names, grace)


def status() -> list[ServerInfo]:
    return default_servers().status()


def serving(names: Sequence[str] | None = None, base_port: int = DEFAULT_BASE_PORT,
            **kwargs: Any) -> contextlib.AbstractContextManager[list[ServerInfo]]:
    return default_servers().serving(names, base_port, **kwargs)
