"""Child process of the sandboxed Python expression evaluator (run as ``python -I -S <this file>``).

Standalone on purpose: it imports nothing from evoroute (the child runs isolated, without the
project on its path) and only stdlib modules that are loaded *before* the limits are applied.

Protocol: one JSON object on stdin ``{"expr": str, "mem_bytes": int, "cpu_s": int}``; one JSON
object on stdout ``{"ok": true, "value": ...}`` or ``{"ok": false, "error": "..."}``.

Layers, each enough on its own for what it guards:
1. The parent has already rejected any expression whose AST holds names or attributes starting
   with ``_`` (no dunder escapes such as ``().__class__.__subclasses__()``); the child checks
   again.
2. ``eval`` runs with a whitelist of builtins: no ``open``, ``__import__``, ``exec``, ``eval``,
   ``getattr``, ``type``...
3. OS limits (``resource.setrlimit``) applied after start-up and before ``eval``: address space
   (memory), CPU seconds, no file may be written (``RLIMIT_FSIZE`` 0) and no new file
   descriptor may be opened (``RLIMIT_NOFILE`` = lowest free fd), so neither a file nor a socket
   can be opened even if layers 1-2 were bypassed.
"""

import ast
import json
import math
import os
import resource
import statistics
import sys

SAFE_BUILTINS = {
    "abs": abs, "all": all, "any": any, "bool": bool, "dict": dict, "divmod": divmod,
    "enumerate": enumerate, "filter": filter, "float": float, "int": int, "len": len,
    "list": list, "map": map, "max": max, "min": min, "pow": pow, "range": range,
    "reversed": reversed, "round": round, "set": set, "sorted": sorted, "str": str, "sum": sum,
    "tuple": tuple, "zip": zip, "True": True, "False": False, "None": None,
}
# Plain functions only (no module objects, whose attributes would reach sys / os).
SAFE_FUNCTIONS = {
    "sqrt": math.sqrt, "floor": math.floor, "ceil": math.ceil, "fsum": math.fsum,
    "gcd": math.gcd, "lcm": math.lcm, "prod": math.prod, "isqrt": math.isqrt,
    "median": statistics.median, "mean": statistics.mean,
}


def check_names(expr):
    """Raise ValueError on anything but a single expression free of underscore names."""
    tree = ast.parse(expr, mode="eval")
    for node in ast.walk(tree):
        name = getattr(node, "id", None) if isinstance(node, ast.Name) else \
            getattr(node, "attr", None) if isinstance(node, ast.Attribute) else None
        if name is not None and name.startswith("_"):
            raise ValueError(f"names starting with '_' are not allowed: {name}")
    return tree


def apply_limits(mem_bytes, cpu_s):
    resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # the lowest fd number not in use: every new open() / socket() fails with EMFILE
    nfd = 0
    while True:
        try:
            os.fstat(nfd)
            nfd += 1
        except OSError:
            break
    resource.setrlimit(resource.RLIMIT_NOFILE, (nfd, nfd))


def to_jsonable(v, depth=0):
    if isinstance(v, bool) or v is None or isinstance(v, (int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else repr(v)
    if depth < 3 and isinstance(v, (list, tuple, set, frozenset, range)):
        items = sorted(v) if isinstance(v, (set, frozenset)) else list(v)
        return [to_jsonable(x, depth + 1) for x in items[:1000]]
    if depth < 3 and isinstance(v, dict):
        return {str(k): to_jsonable(x, depth + 1) for k, x in list(v.items())[:1000]}
    return repr(v)[:2000]


def main():
    req = json.loads(sys.stdin.read())
    out = sys.stdout
    try:
        code = compile(check_names(req["expr"]), "<expression>", "eval")
        apply_limits(int(req["mem_bytes"]), int(req["cpu_s"]))
        value = eval(code, {"__builtins__": dict(SAFE_BUILTINS), **SAFE_FUNCTIONS}, {})
        text = json.dumps({"ok": True, "value": to_jsonable(value)})
    except MemoryError:
        text = json.dumps({"ok": False, "error": "MemoryError: memory limit exceeded"})
    except BaseException as exc:  # noqa: BLE001 - everything the expression raises is its result
        text = json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]})
    out.write(text)
    out.flush()


if __name__ == "__main__":
    main()
