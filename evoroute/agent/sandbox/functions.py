"""The names and methods an expression may call (runs inside the child).

Each function is a thin check around a builtin, all eager (no iterator is ever returned);
methods are allowed by the value's exact type (:data:`METHODS`).
"""

import _ast as ast  # the C node classes only: ``import ast`` costs more start-up than the rest
import math

from evoroute.agent.sandbox.values import MAX_INT_BITS, Refused, int_ok


def materialise(x, lim):
    """A list of ``x``'s items (a range or string is checked for size first)."""
    if isinstance(x, range):
        lim.items(len(x), "a range")
    elif not isinstance(x, (list, tuple, str, dict, set, frozenset)):
        raise Refused(f"not iterable: a value of type {type(x).__name__}")
    return list(x)


def _median(xs):
    s = sorted(xs)
    if not s:
        raise ValueError("median of an empty list")
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _mean(xs):
    s = list(xs)
    if not s:
        raise ValueError("mean of an empty list")
    if all(type(x) is int for x in s):
        q = sum(s) / len(s)
        return int(q) if q.is_integer() and abs(q) < 2 ** 53 else q
    return math.fsum(s) / len(s)


def _pow(a, b, m=None):
    if m is not None:
        if not all(type(x) is int for x in (a, b, m)):
            raise TypeError("pow with a modulus takes whole numbers")
        return pow(int_ok(a), int_ok(b), int_ok(m))
    return power(a, b)


def power(a, b):
    """``a ** b`` refused before it is computed when the result would be too large."""
    if type(a) in (int, bool) and type(b) in (int, bool) and b > 0 and abs(a) > 1:
        if b * math.log2(abs(a)) > MAX_INT_BITS:
            raise Refused(f"power too large (over {MAX_INT_BITS} bits)")
    return a ** b           # floats overflow with OverflowError; negative powers give floats


class Functions:
    """The callable names, each a thin check around a builtin (all eager: no iterators)."""

    def __init__(self, interp):
        self.i = interp
        lim = interp.lim
        call = interp.call_value

        def seq(x):
            return materialise(x, lim)

        def walk(x):
            """Items to consume one by one (a range is not materialised: sum(range(10**13))
            runs into the CPU limit, not into memory)."""
            return x if isinstance(x, range) else seq(x)

        def f_list(x=()):
            return seq(x)

        def f_tuple(x=()):
            return tuple(seq(x))

        def f_set(x=()):
            return set(seq(x))

        def f_dict(x=(), /, **kw):
            d = dict(seq(x) if not isinstance(x, dict) else x)
            d.update(kw)
            return d

        def f_range(*args):
            for a in args:
                if type(a) is int:
                    int_ok(a)
            return range(*args)

        def f_sorted(x, key=None, reverse=False):
            return sorted(seq(x), key=None if key is None else (lambda v: call(key, (v,))),
                          reverse=bool(reverse))

        def f_reversed(x):
            return list(reversed(seq(x)))

        def f_enumerate(x, start=0):
            return [(start + n, v) for n, v in enumerate(seq(x))]

        def f_zip(*xs):
            return list(zip(*[seq(x) for x in xs]))

        def f_map(f, *xs):
            return [call(f, args) for args in zip(*[seq(x) for x in xs])]

        def f_filter(f, x):
            return [v for v in seq(x) if (v if f is None else call(f, (v,)))]

        def extreme(builtin):
            def f(*args, key=None, **kw):
                items = walk(args[0]) if len(args) == 1 else list(args)
                if key is not None:
                    kw["key"] = lambda v: call(key, (v,))
                return builtin(items, **kw)
            f.__name__ = builtin.__name__
            return f

        def f_sum(x, start=0):
            if type(start) not in (int, float, bool):
                raise TypeError("sum adds numbers (start must be a number)")
            return sum(walk(x), start)

        def f_all(x):
            return all(walk(x))

        def f_any(x):
            return any(walk(x))

        def f_len(x):
            if isinstance(x, (str, list, tuple, dict, set, frozenset, range)):
                return len(x)
            raise TypeError(f"a value of type {type(x).__name__} has no len()")

        def f_str(x=""):
            if isinstance(x, (list, tuple, dict, set, frozenset)):
                lim.chars(len(x) * 2)
            return str(x)

        def f_int(x=0, *base):
            if isinstance(x, str):
                lim.chars(len(x))
            return int(x, *base)

        def numbers(x):
            return [v for v in seq(x)]

        def f_prod(x, start=1):
            out = start
            for v in numbers(x):
                out = self.i.binop(ast.Mult(), out, v)
            return out

        self.table = {
            "abs": abs, "all": f_all, "any": f_any, "bool": bool, "dict": f_dict,
            "divmod": divmod, "enumerate": f_enumerate, "filter": f_filter, "float": float,
            "int": f_int, "len": f_len, "list": f_list, "map": f_map, "max": extreme(max),
            "min": extreme(min), "pow": _pow, "range": f_range, "reversed": f_reversed,
            "round": round, "set": f_set, "sorted": f_sorted, "str": f_str, "sum": f_sum,
            "tuple": f_tuple, "zip": f_zip,
            "sqrt": math.sqrt, "floor": math.floor, "ceil": math.ceil,
            "fsum": lambda x: math.fsum(numbers(x)), "gcd": math.gcd, "lcm": math.lcm,
            "prod": f_prod, "isqrt": math.isqrt,
            "median": lambda x: _median(numbers(x)), "mean": lambda x: _mean(numbers(x)),
        }
        lim.function_ids = frozenset(id(f) for f in self.table.values())


FUNCTION_NAMES = ("abs", "all", "any", "bool", "dict", "divmod", "enumerate", "filter", "float",
                  "int", "len", "list", "map", "max", "min", "pow", "range", "reversed", "round",
                  "set", "sorted", "str", "sum", "tuple", "zip", "sqrt", "floor", "ceil", "fsum",
                  "gcd", "lcm", "prod", "isqrt", "median", "mean")

# Methods a value may call, by the value's exact type. Each returns a str, int, bool, list or
# tuple of those; none returns a type, a function, a frame or reads an attribute by name.
# Left out on purpose: format / format_map (``'{0.__class__}'.format(x)``), encode (bytes),
# translate / maketrans, and center / ljust / rjust / zfill / expandtabs (a width is a size).
METHODS = {
    str: frozenset({"upper", "lower", "strip", "lstrip", "rstrip", "split", "rsplit",
                    "splitlines", "join", "count", "startswith", "endswith", "isdigit",
                    "isalpha", "isalnum", "isspace", "isnumeric", "isdecimal", "islower",
                    "isupper", "find", "rfind", "index", "rindex", "replace", "title",
                    "capitalize", "swapcase", "partition", "rpartition", "removeprefix",
                    "removesuffix"}),
    list: frozenset({"count", "index"}),
    tuple: frozenset({"count", "index"}),
    dict: frozenset({"keys", "values", "items", "get"}),
}
METHOD_NAMES = frozenset().union(*METHODS.values())
