"""The child process: OS limits, the request on stdin, the JSON answer on stdout.

Protocol: on stdin ``<mem_bytes> <cpu_s>`` on one line and the expression after it; on stdout
one JSON object ``{"ok": true, "value": ...}`` or ``{"ok": false, "error": "..."}``.
OS limits (``resource.setrlimit``) before evaluation: address space, CPU seconds, no file
writes, no new file descriptors, no new processes. The parent adds the OS isolation
(:mod:`evoroute.agent.sandbox.launcher`).
"""

import math
import os
import resource
import sys

from evoroute.agent.sandbox.interpreter import Interpreter
from evoroute.agent.sandbox.syntax import validate
from evoroute.agent.sandbox.values import Closure, Limits, MemoryRefused, Refused


def close_inherited_fds():
    """Close every descriptor but stdin / stdout / stderr (whatever the launcher left open)."""
    try:
        fds = [int(f) for f in os.listdir("/proc/self/fd")]
    except OSError:
        fds = range(3, 1024)
    for fd in fds:
        if fd > 2:
            try:
                os.close(fd)
            except OSError:
                pass


def apply_limits(mem_bytes, cpu_s):
    resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    except (ValueError, OSError):
        pass
    # the lowest fd number not in use: every new open() / socket() fails with EMFILE
    nfd = 0
    while True:
        try:
            os.fstat(nfd)
            nfd += 1
        except OSError:
            break
    resource.setrlimit(resource.RLIMIT_NOFILE, (nfd, nfd))


MAX_OUTPUT_ITEMS = 10_000
MAX_OUTPUT_CHARS = 100_000


def to_jsonable(v, depth=0, budget=None):
    """The value as JSON data, cut to :data:`MAX_OUTPUT_ITEMS` items and
    :data:`MAX_OUTPUT_CHARS` characters *in all* (strings, dict keys and the digits of
    integers count; lists of lists are not multiplied out): ``["a" * 10**5] * 300`` is one
    result of 100,000 characters, not 30 MB sent to the parent."""
    budget = [MAX_OUTPUT_ITEMS, MAX_OUTPUT_CHARS] if budget is None else budget
    budget[0] -= 1

    def text(s):
        room = max(0, budget[1])
        budget[1] -= min(len(s), room)
        return s if len(s) <= room else s[:room] + " ..."

    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        if v.bit_length() > 64:         # a long integer's digits count against the budget
            digits = len(str(v))
            if digits > budget[1]:
                return text(str(v))
            budget[1] -= digits
        return v
    if isinstance(v, str):
        return text(v)
    if isinstance(v, float):
        return v if math.isfinite(v) else repr(v)
    if isinstance(v, Closure):
        return "<lambda>"
    if isinstance(v, (list, tuple, set, frozenset, range, dict)):
        if depth >= 3 or budget[0] <= 0 or budget[1] <= 0:
            return "..."
        if isinstance(v, (set, frozenset)):
            try:
                v = sorted(v)
            except TypeError:
                v = list(v)
        pairs = v.items() if isinstance(v, dict) else enumerate(v)
        out = {} if isinstance(v, dict) else []
        for n, (k, x) in enumerate(pairs):
            if n >= 1000 or budget[0] <= 0 or budget[1] <= 0:
                break
            if isinstance(out, dict):
                k = text(k if isinstance(k, str) else _short_repr(k))
                out[k] = to_jsonable(x, depth + 1, budget)
            else:
                out.append(to_jsonable(x, depth + 1, budget))
        return out
    return "<" + type(v).__name__ + ">"


def _short_repr(k, room=MAX_OUTPUT_CHARS):
    """A dict key as text of at most about ``room`` characters, never building the whole
    ``str`` of a big key (a tuple of long strings would be megabytes)."""
    if isinstance(k, tuple):
        parts, used = [], 2
        for x in k:
            if used >= room:
                parts.append("...")
                break
            r = _short_repr(x, room - used)
            parts.append(r)
            used += len(r) + 2
        return "(" + ", ".join(parts) + ("," if len(k) == 1 else "") + ")"
    if isinstance(k, str):
        return repr(k[:room])
    return repr(k)[:room]


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _json_str(s):
    out = []
    for ch in s:
        c = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 32 <= c < 127:
            out.append(ch)
        elif c < 0x10000:
            out.append("\\u%04x" % c)
        else:
            c -= 0x10000
            out.append("\\u%04x\\u%04x" % (0xD800 + (c >> 10), 0xDC00 + (c & 0x3FF)))
    return '"' + "".join(out) + '"'


def dumps(v):
    """JSON text of a :func:`to_jsonable` value (the ``json`` package is not imported: it
    pulls in ``re`` and doubles the child's start-up)."""
    if v is None:
        return "null"
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return _json_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(dumps(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(_json_str(str(k)) + ": " + dumps(x) for k, x in v.items()) + "}"
    return _json_str(repr(v))


def read_request(text):
    """``<mem_bytes> <cpu_s>`` on the first line, the expression after it."""
    head, _, expr = text.partition("\n")
    mem, cpu = head.split()
    return expr, int(mem), int(cpu)


def main():
    close_inherited_fds()
    out = sys.stdout
    try:
        expr, mem, cpu = read_request(sys.stdin.read())
        tree = validate(expr)
        apply_limits(mem, cpu)
        value = Interpreter(Limits(mem)).visit(tree)
        text = dumps({"ok": True, "value": to_jsonable(value)})
    except (MemoryError, MemoryRefused) as exc:
        text = dumps({"ok": False, "error": f"MemoryError: memory limit exceeded ({exc})"[:500]})
    except Refused as exc:
        text = dumps({"ok": False, "error": f"refused: {exc}"[:500]})
    except RecursionError:
        text = dumps({"ok": False, "error": "refused: expression nested too deeply"})
    except BaseException as exc:  # noqa: BLE001 - everything the expression raises is its result
        text = dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]})
    out.write(text)
    out.flush()


if __name__ == "__main__":
    main()
