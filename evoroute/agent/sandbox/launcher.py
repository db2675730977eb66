"""The parent side of the python tool: the OS isolation and the child process it runs in.

Layers of the python tool (each on its own stops the frame-walking escapes of issue 10):

1. the interpreter (:mod:`.syntax`, :mod:`.functions`, :mod:`.interpreter`): no compile/eval,
   whitelisted AST nodes, names and methods, bounded sizes (checked here first, then again
   in the child);
2. the child process (:mod:`.protocol`): ``python -I -S``, rlimits (memory, CPU, no file
   writes, no new file descriptors or processes), every inherited descriptor but 0-2 closed,
   wall-clock timeout;
3. OS isolation (see :func:`sandbox_isolation`): bubblewrap, else unshare; another user
   (65534), an empty environment, no network, new pid/ipc/uts namespaces, a read-only
   file system holding only the interpreter.

The sandbox holds no copy of the project: the child program is the source of the modules of
:data:`CHILD_MODULES` joined into one (:func:`child_source`), given as ``-c``.
"""

from __future__ import annotations

import ast
import functools
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from evoroute.agent.results import ToolError, ToolResult
from evoroute.agent.sandbox.syntax import validate
from evoroute.agent.sandbox.values import Refused

DEFAULT_TIME_LIMIT_S = 2.0
DEFAULT_MEMORY_MB = 256
# the child's JSON: at most protocol.MAX_OUTPUT_CHARS characters of text (12 each when
# escaped) and protocol.MAX_OUTPUT_ITEMS items
MAX_RESULT_CHARS = 2_000_000
#: The modules of the child program, in the order they are joined: each uses only names
#: defined by the ones before it (at import time) and imports nothing else from evoroute.
CHILD_MODULES = ("values", "functions", "syntax", "interpreter", "protocol")
ISOLATION_ENV = "EVOROUTE_SANDBOX_ISOLATION"           # auto (default) | bwrap | unshare | none
ALLOW_NO_ISOLATION_ENV = "EVOROUTE_SANDBOX_ALLOW_NO_ISOLATION"
ISOLATION_LEVELS = ("bwrap", "unshare", "none")
SANDBOX_UID = SANDBOX_GID = 65534                       # nobody / nogroup


@dataclass(frozen=True)
class Isolation:
    """The OS isolation the python tool runs in: its name, the command that wraps the child
    interpreter, and (when a stronger one was not available) why."""

    name: str
    prefix: tuple[str, ...] = ()
    note: str = ""

    def label(self) -> str:
        return f"{self.name} ({self.note})" if self.note else self.name


class IsolationUnavailable(ToolError):
    """No OS isolation is available and running without it was not allowed."""


def child_python() -> str:
    exe = getattr(sys, "_base_executable", None) or sys.executable
    return os.path.realpath(exe)


def _python_roots() -> list[str]:
    """Directories the child interpreter needs (its binary, stdlib and libpython)."""
    roots = {os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix)}
    roots.add(os.path.dirname(os.path.dirname(child_python())))
    return sorted(r for r in roots if r and not (r == "/usr" or r.startswith("/usr/")))


def _bwrap_prefix(bwrap: str) -> tuple[str, ...]:
    root = os.geteuid() == 0
    args = [bwrap, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv",
            "--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
    for d in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    if os.path.isfile("/etc/ld.so.cache"):
        args += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    made = {"/", "/usr", "/etc"}
    for r in _python_roots():
        parts = r.strip("/").split("/")
        for i in range(1, len(parts)):            # world-readable parents (bwrap makes 0700)
            d = "/" + "/".join(parts[:i])
            if d not in made:
                args += ["--perms", "0755", "--dir", d]
                made.add(d)
        args += ["--ro-bind", r, r]
    args += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/", "--chdir", "/"]
    if root:
        # bwrap as root keeps no user namespace; setpriv drops to nobody with no capabilities
        setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                 "--cap-add", "CAP_SETPCAP", "--", setpriv, f"--reuid={SANDBOX_UID}",
                 f"--regid={SANDBOX_GID}", "--clear-groups", "--inh-caps=-all",
                 "--bounding-set=-all", "--no-new-privs", "--"]
    else:
        args[1:1] = ["--unshare-user", "--disable-userns", "--uid", str(SANDBOX_UID),
                     "--gid", str(SANDBOX_GID)]
        args += ["--"]
    return tuple(args)


_UNSHARE_SCRIPT = (
    # in the new mount namespace: every mount read-only, empty read-only tmpfs over the
    # world-writable directories, then nobody with no capabilities runs the interpreter
    "awk '{print $5}' /proc/self/mountinfo | while read -r m; do "
    "mount -o remount,bind,ro \"$m\" 2>/dev/null; done; "
    "for d in /tmp /var/tmp /dev/shm /run /var/lock; do [ -d \"$d\" ] && "
    "mount -t tmpfs -o ro,nosuid,nodev,noexec,size=4k none \"$d\"; done; "
    f"exec setpriv --reuid={SANDBOX_UID} --regid={SANDBOX_GID} --clear-groups --inh-caps=-all "
    "--bounding-set=-all --no-new-privs -- \"$@\"")


def _unshare_prefix(unshare: str) -> tuple[str, ...]:
    return (unshare, "--mount", "--net", "--ipc", "--pid", "--uts", "--fork", "--kill-child",
            "--mount-proc", "--propagation", "private", "--", "/usr/bin/env", "-i", "/bin/sh",
            "-c", _UNSHARE_SCRIPT, "sandbox")


def _probe(prefix: tuple[str, ...]) -> str | None:
    """None if the sandbox runs a child as nobody with no network; else why not."""
    code = ("import os, socket, json\n"
            "try:\n socket.socket().connect(('127.0.0.1', 9)); net = 'open'\n"
            "except OSError as e:\n net = e.errno\n"
            "print(json.dumps([os.getuid(), os.getgid(), sorted(os.environ), net]))")
    try:
        p = subprocess.run([*prefix, child_python(), "-I", "-S", "-c", code], capture_output=True,
                           text=True, timeout=15, env={}, cwd="/", stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if p.returncode != 0:
        tail = (p.stderr or "").strip().splitlines()[-1:] or [f"exit status {p.returncode}"]
        return tail[0][:200]
    try:
        uid, gid, env, net = json.loads(p.stdout)
    except ValueError:
        return "the probe printed no result"
    if uid != SANDBOX_UID or gid != SANDBOX_GID:
        return f"the child ran as uid {uid}, not {SANDBOX_UID}"
    if set(env) - {"PWD", "LC_CTYPE"}:
        return f"the child saw environment variables {sorted(env)}"
    if net == "open":
        return "the child reached the network"
    return None


_ISOLATION: dict[str, Isolation | str] = {}


def sandbox_isolation(refresh: bool = False) -> Isolation:
    """The strongest OS isolation that works here (probed once per process).

    Policy (``EVOROUTE_SANDBOX_ISOLATION``): ``auto`` tries bubblewrap, then unshare, and
    records in :attr:`Isolation.note` why a stronger one was skipped; ``bwrap`` / ``unshare``
    require that one. With neither, the python tool is refused (:class:`IsolationUnavailable`)
    unless ``EVOROUTE_SANDBOX_ALLOW_NO_ISOLATION=1``; ``none`` also needs that opt-in. The
    interpreter and the rlimits apply at every level."""
    want = (os.environ.get(ISOLATION_ENV) or "auto").strip().lower()
    allow_none = os.environ.get(ALLOW_NO_ISOLATION_ENV, "").strip() in ("1", "true", "yes")
    key = f"{want}:{allow_none}"
    if refresh:
        _ISOLATION.pop(key, None)
    if key in _ISOLATION:
        got = _ISOLATION[key]
        if isinstance(got, str):
            raise IsolationUnavailable(got)
        return got
    if want not in ("auto", *ISOLATION_LEVELS):
        msg = f"{ISOLATION_ENV} must be auto, bwrap, unshare or none, got {want!r}"
        _ISOLATION[key] = msg
        raise IsolationUnavailable(msg)
    why: list[str] = []
    if want in ("auto", "bwrap", "unshare"):
        for name in (("bwrap", "unshare") if want == "auto" else (want,)):
            exe = shutil.which(name)
            if exe is None:
                why.append(f"{name}: not installed")
                continue
            if name == "unshare" and (os.geteuid() != 0 or not shutil.which("setpriv")):
                why.append("unshare: needs root and setpriv")
                continue
            prefix = _bwrap_prefix(exe) if name == "bwrap" else _unshare_prefix(exe)
            failed = _probe(prefix)
            if failed is None:
                iso = Isolation(name, prefix, note="; ".join(why))
                _ISOLATION[key] = iso
                return iso
            why.append(f"{name}: {failed}")
    if want in ("auto", "none") and allow_none:
        iso = Isolation("none", (), note=("; ".join(why) + "; " if why else "")
                        + f"{ALLOW_NO_ISOLATION_ENV}=1: interpreter and rlimits only")
        _ISOLATION[key] = iso
        return iso
    msg = ("the python tool is refused: no OS isolation is available ("
           + ("; ".join(why) or f"{ISOLATION_ENV}=none") + "). Install bubblewrap "
           f"(scripts/install_system_deps.sh) or set {ALLOW_NO_ISOLATION_ENV}=1 to run it with "
           "only the interpreter and the rlimits")
    _ISOLATION[key] = msg
    raise IsolationUnavailable(msg)


def check_python_expression(expression: str) -> str:
    """Parent-side check with the child's own validator (the child checks again)."""
    expr = expression.strip().strip("`").strip()
    if expr.lower().startswith("python"):
        expr = expr[6:].strip()
    try:
        validate(expr)
    except Refused as exc:
        raise ToolError(str(exc)) from None
    return expr


@functools.cache
def child_source() -> str:
    """The child program: the modules of :data:`CHILD_MODULES` joined into one source."""
    return join_modules(Path(__file__).parent, __name__.rpartition(".")[0], CHILD_MODULES)


def join_modules(folder: Path, package: str, names: tuple[str, ...]) -> str:
    """The modules ``names`` of ``folder`` (the package ``package``) joined into one source,
    their imports of each other removed. Refuses (RuntimeError) a module that imports another
    part of evoroute or defines a name an earlier module defines: joined, it would shadow it."""
    parts: list[str] = []
    owner: dict[str, str] = {}
    for i, name in enumerate(names):
        text = (folder / f"{name}.py").read_text(encoding="utf-8")
        tree = ast.parse(text)
        drop: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "evoroute"
                                                    for a in node.names):
                raise RuntimeError(f"{name}.py: the child cannot import evoroute")
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
                    "evoroute", package.split(".")[0]):
                parent, _, mod = node.module.rpartition(".")
                if node not in tree.body or parent != package or mod not in names[:i]:
                    raise RuntimeError(f"{name}.py: the child can only import, at top level, "
                                       f"the modules joined before it ({node.module})")
                drop.update(range(node.lineno, node.end_lineno + 1))
        for node in tree.body:
            if node.lineno in drop:
                continue
            for bound in _bound_names(node, f"{name}.py line {node.lineno}"):
                if owner.setdefault(bound[0], bound[1]) != bound[1]:
                    raise RuntimeError(f"{name}.py redefines {bound[0]!r} for the child")
        parts.append("\n".join(line for n, line in enumerate(text.splitlines(), 1)
                               if n not in drop))
    return "\n\n".join(parts) + "\n"


def _bound_names(node: ast.stmt, where: str) -> list[tuple[str, str]]:
    """``(name, what)`` for each module-level name a statement binds; an import of the same
    stdlib module may repeat, any other definition may not."""
    if isinstance(node, ast.Import):
        return [((a.asname or a.name).split(".")[0], f"import {a.name}") for a in node.names]
    if isinstance(node, ast.ImportFrom):
        return [(a.asname or a.name, f"from {node.module} import {a.name}") for a in node.names]
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return [(node.name, where)]
    targets = node.targets if isinstance(node, ast.Assign) else \
        [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
    return [(n.id, where) for t in targets for n in ast.walk(t)
            if isinstance(n, ast.Name)]


def run_python(expression: str, *, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
               memory_mb: int = DEFAULT_MEMORY_MB) -> ToolResult:
    """Evaluate one Python expression with the sandbox interpreter, in a
    resource-limited child process inside the OS isolation of :func:`sandbox_isolation`."""
    t0 = time.perf_counter()
    isolation = None

    def fail(msg: str) -> ToolResult:
        return ToolResult("python", expression, False, error=msg,
                          elapsed_s=time.perf_counter() - t0, isolation=isolation)

    try:
        iso = sandbox_isolation()
    except IsolationUnavailable as exc:
        return fail(str(exc))
    isolation = iso.label()
    try:
        expr = check_python_expression(expression)
    except ToolError as exc:
        return fail(f"refused: {exc}")
    payload = f"{int(memory_mb) << 20} {max(1, math.ceil(time_limit_s))}\n{expr}"
    cmd = [*iso.prefix, child_python(), "-I", "-S", "-c", child_source()]
    try:
        proc = subprocess.run(cmd, input=payload, capture_output=True, text=True, cwd="/",
                              env={}, close_fds=True, timeout=time_limit_s + 1.0)
    except subprocess.TimeoutExpired:
        return fail(f"time limit of {time_limit_s:g} s exceeded")
    except OSError as exc:
        return fail(f"the sandbox could not start: {exc}")
    if proc.returncode != 0:
        # SIGXCPU / SIGKILL after RLIMIT_CPU, directly or as bwrap's 128 + signal
        if proc.returncode in (-24, -9, 128 + 24, 128 + 9):
            return fail(f"time limit of {time_limit_s:g} s exceeded")
        tail = (proc.stderr or "").strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        if "MemoryError" in tail[0]:
            return fail(f"MemoryError: memory limit of {memory_mb} MB exceeded")
        return fail(f"the sandbox failed: {tail[0][:300]}")
    if len(proc.stdout) > MAX_RESULT_CHARS:       # the child cuts its output far below this
        return fail(f"the sandbox returned more than {MAX_RESULT_CHARS} characters")
    try:
        res = json.loads(proc.stdout)
    except ValueError:
        return fail("the sandbox returned no result")
    if not res.get("ok"):
        err = str(res.get("error", "error"))
        if err.startswith("MemoryError"):
            detail = err.split("(", 1)[1].rstrip(")") if "(" in err else ""
            err = f"MemoryError: memory limit of {memory_mb} MB exceeded" + \
                (f" ({detail})" if detail else "")
        return fail(err)
    return ToolResult("python", expression, True, res.get("value"),
                      elapsed_s=time.perf_counter() - t0, isolation=isolation)

