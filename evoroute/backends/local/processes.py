"""Process supervision of the local model servers, through psutil: launch detached, tell
whether a pid is still the server we launched (pids get reused), end a server and everything
under it, and the small network probes a start needs (free port, ``/v1/models``)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

HOST = "127.0.0.1"
SERVER_MODULE = "llama_cpp.server"
DEFAULT_STOP_GRACE_S = 5.0


CHILDREN: dict[int, subprocess.Popen] = {}   # servers this process launched, reaped on stop


def reap(pid: int) -> bool:
    """Reap ``pid`` if it is a server this process launched and it has exited; True then."""
    proc = CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        CHILDREN.pop(pid, None)
        return True
    return False


def live_process(pid: int) -> psutil.Process | None:
    """The live (not zombie) process ``pid``, or None."""
    if pid <= 0 or reap(pid):
        return None
    try:
        p = psutil.Process(pid)
        return None if p.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD) else p
    except psutil.Error:
        return None


def alive(pid: int) -> bool:
    return live_process(pid) is not None


def is_our_server(pid: int, port: int, name: str) -> bool:
    """True if ``pid`` is still the llama.cpp server we launched (pids get reused)."""
    p = live_process(pid)
    try:
        args = p.cmdline() if p is not None else []
    except psutil.Error:
        return False
    return (SERVER_MODULE in args and _arg(args, "--port") == str(port)
            and _arg(args, "--model_alias") == name)


def _arg(args: list[str], flag: str) -> str | None:
    try:
        return args[args.index(flag) + 1]
    except (ValueError, IndexError):
        return None


def terminate(pid: int, grace: float = DEFAULT_STOP_GRACE_S) -> None:
    """End server ``pid`` and every process under it: terminate, kill what is left after
    ``grace`` seconds, and reap the server if this process launched it."""
    p = live_process(pid)
    if p is not None:
        try:
            procs = [p, *p.children(recursive=True)]
        except psutil.Error:
            procs = [p]
        for sig_step, wait_s in ((psutil.Process.terminate, grace), (psutil.Process.kill, 5.0)):
            for q in procs:
                with contextlib.suppress(psutil.Error):
                    sig_step(q)
            _, procs = psutil.wait_procs(procs, timeout=wait_s)
            if not procs:
                break
    proc = CHILDREN.pop(pid, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5.0)


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # uvicorn binds the same way
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def served_models(port: int, timeout: float) -> list[str] | None:
    """IDs served at ``/v1/models`` on 127.0.0.1:port, or None if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/v1/models", timeout=timeout) as r:
            if r.status != 200:
                return None
            return [m.get("id") for m in json.load(r).get("data", [])]
    except (OSError, ValueError, urllib.error.URLError):
        return None


def log_tail(path: str, n: int = 15) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def spawn_detached(cmd: list[str], *, log_path: Path, cwd: Path, env: dict[str, str]) -> int:
    """Start ``cmd`` with its output in ``log_path`` (rewritten, headed by the command line);
    its pid. ``start_new_session``: own session and process group, no controlling terminal, so
    the server survives the CLI call that started it."""
    with open(log_path, "wb") as log:
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True, cwd=str(cwd), env=env)
    CHILDREN[proc.pid] = proc
    return proc.pid


def server_available() -> bool:
    """Whether llama-cpp-python (the server) is installed."""
    return importlib.util.find_spec("llama_cpp") is not None
