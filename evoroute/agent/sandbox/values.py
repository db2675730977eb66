"""The values an expression may hold and the bounds on their size (runs inside the child).

Sizes are checked *before* a big object would be built (``'a' * 10**10``, ``10**10**10``):
integers up to :data:`MAX_INT_BITS` bits, strings up to :data:`MAX_STR_CHARS` characters,
containers up to :data:`MAX_ITEMS` items and, before a list is repeated or a range
materialised, an estimate of its bytes against the memory limit.
"""

MAX_INT_BITS = 10_000       # about 3,000 decimal digits
MAX_STR_CHARS = 1_000_000
MAX_ITEMS = 10_000_000
POINTER_BYTES = 8


class Refused(Exception):
    """An expression (or a step of it) the evaluator will not compute; the message says why."""


class MemoryRefused(Refused):
    """A value the memory limit cannot hold, refused before it is built."""



def int_ok(v):
    if v.bit_length() > MAX_INT_BITS:
        raise Refused(f"integer larger than {MAX_INT_BITS} bits")
    return v


class Limits:
    """Bounds of one evaluation (the memory budget comes from the parent)."""

    def __init__(self, mem_bytes=256 << 20):
        self.mem_bytes = int(mem_bytes)
        self.function_ids = frozenset()     # the interpreter's own functions (kept alive by it)

    def items(self, n, what="a container"):
        """Refuse building ``n`` items (a pointer each) when it cannot fit."""
        if n * POINTER_BYTES > self.mem_bytes // 2:
            raise MemoryRefused(f"{what} of {n} items does not fit the memory limit")
        if n > MAX_ITEMS:
            raise Refused(f"{what} of {n} items is over the limit of {MAX_ITEMS}")

    def chars(self, n):
        if n > MAX_STR_CHARS:
            raise Refused(f"a string of {n} characters is over the limit of {MAX_STR_CHARS}")

    def value(self, v):
        """Check a computed value's type and size (cheap: no deep walk)."""
        t = type(v)
        if t is int:
            return int_ok(v)
        if t in (float, bool, type(None)):
            return v
        if t is str:
            self.chars(len(v))
            return v
        if t in (list, tuple, dict, set, frozenset):
            self.items(len(v))
            return v
        if t is range or t is Closure or id(v) in self.function_ids:
            return v
        raise Refused(f"a value of type {t.__name__} is not allowed")



class Closure:
    """A ``lambda`` of the expression: its parameters, body and the scope it was made in.

    Builtins such as ``sorted(key=...)`` call it like a function; calling it interprets the
    body. It has no attribute the expression could reach (attribute access is refused)."""

    __slots__ = ("params", "body", "scope", "interp")

    def __init__(self, params, body, scope, interp):
        self.params, self.body, self.scope, self.interp = params, body, scope, interp

    def __call__(self, *args):
        return self.interp.call_value(self, args)

    def __repr__(self):
        return "<lambda>"
