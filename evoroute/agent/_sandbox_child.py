"""The sandboxed Python expression evaluator: an interpreter over a whitelist of AST nodes.

Standalone on purpose: it imports nothing from evoroute and only small stdlib modules, because
the parent runs it (as ``python -I -S -c <this source>``) inside an OS sandbox that holds no
copy of the project. The parent also imports :func:`validate` to refuse bad expressions
without starting a process.

Protocol: on stdin ``<mem_bytes> <cpu_s>`` on one line and the expression after it; on stdout
one JSON object ``{"ok": true, "value": ...}`` or ``{"ok": false, "error": "..."}``.

Why an interpreter and not ``eval``: with ``compile`` + ``eval`` every generator, lambda and
comprehension is a real frame, and ``(x for x in ()).gi_frame.f_back.f_globals`` walks from
one to the real ``os`` without a single underscore name. Here the expression is never
compiled: :class:`Interpreter` walks the AST and computes each node itself, so no Python
frame, code object, generator or function the expression could inspect ever exists.

- Nodes: constants (numbers, strings, None), names, list / tuple / set / dict displays,
  arithmetic, comparisons, ``and`` / ``or`` / ``not``, ``x if c else y``, subscripts and
  slices, calls, ``lambda`` (single expression, positional parameters), list / set / dict
  comprehensions and generator expressions (evaluated eagerly into a list). Everything else
  (f-strings, ``:=``, ``await``, ``yield``, ``**`` unpacking, statements) is refused.
- Names: only the functions in :data:`FUNCTIONS` and the variables the expression binds.
  No name starting with ``_``.
- Attributes: none, except calling a method from :data:`METHODS` on a value whose exact
  type is ``str``, ``list``, ``tuple`` or ``dict`` (``"a b".split()``, ``d.get(k)``). No
  ``format`` / ``format_map`` (their field syntax reads attributes), nothing that returns a
  type, a frame or a function.
- Sizes: integers up to :data:`MAX_INT_BITS` bits, strings up to :data:`MAX_STR_CHARS`
  characters, containers up to :data:`MAX_ITEMS` items and, before a list is repeated or a
  range materialised, an estimate of its bytes against the memory limit. Sizes are checked
  *before* the big object would be built (``'a' * 10**10``, ``10**10**10``).
- OS limits (``resource.setrlimit``) before evaluation: address space, CPU seconds, no file
  writes, no new file descriptors, no new processes. The parent adds the OS isolation
  (bubblewrap or unshare: another user, empty environment, no network, read-only files).
"""

import _ast as ast      # the C node classes only: ``import ast`` costs more start-up than the rest
import math
import os
import resource
import sys

MAX_EXPR_CHARS = 600
MAX_AST_DEPTH = 60          # nesting of the expression's syntax tree
MAX_CALL_DEPTH = 40         # nested lambda calls ((lambda f: f(f))(lambda f: f(f)))
MAX_INT_BITS = 10_000       # about 3,000 decimal digits
MAX_STR_CHARS = 1_000_000
MAX_ITEMS = 10_000_000
POINTER_BYTES = 8


class Refused(Exception):
    """An expression (or a step of it) the evaluator will not compute; the message says why."""


class MemoryRefused(Refused):
    """A value the memory limit cannot hold, refused before it is built."""


# ------------------------------------------------------------------------------ the syntax
_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift,
              ast.RShift, ast.BitOr, ast.BitXor, ast.BitAnd, ast.UAdd, ast.USub, ast.Not,
              ast.Invert, ast.And, ast.Or, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE,
              ast.Is, ast.IsNot, ast.In, ast.NotIn)
ALLOWED_NODES = frozenset((
    ast.Expression, ast.Constant, ast.Name, ast.Load, ast.Store, ast.List, ast.Tuple, ast.Set,
    ast.Dict, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Subscript,
    ast.Slice, ast.Call, ast.keyword, ast.Attribute, ast.Starred, ast.Lambda, ast.arguments,
    ast.arg, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.comprehension,
) + _OPERATORS)
_NODE_WORDS = {
    "JoinedStr": "f-string", "FormattedValue": "f-string",
    "NamedExpr": "assignment expression (:=)",
    "Await": "await", "Yield": "yield", "YieldFrom": "yield", "MatMult": "@ operator",
}
CONSTANT_TYPES = (int, float, str, bool, type(None))


def iter_child_nodes(node):
    for name in node._fields:
        v = getattr(node, name, None)
        if isinstance(v, ast.AST):
            yield v
        elif isinstance(v, list):
            for item in v:
                if isinstance(item, ast.AST):
                    yield item


def walk(tree):
    todo = [tree]
    while todo:
        node = todo.pop(0)
        todo.extend(iter_child_nodes(node))
        yield node


def _describe(node):
    name = type(node).__name__
    return _NODE_WORDS.get(name, name)


def _depth(tree):
    deepest, todo = 0, [(tree, 1)]
    while todo:
        node, d = todo.pop()
        deepest = max(deepest, d)
        if deepest > MAX_AST_DEPTH:
            break
        todo.extend((child, d + 1) for child in iter_child_nodes(node))
    return deepest


def validate(expr):
    """The expression's AST if every node is allowed; raises :class:`Refused` otherwise."""
    if not isinstance(expr, str) or not expr.strip():
        raise Refused("empty expression")
    if len(expr) > MAX_EXPR_CHARS:
        raise Refused(f"expression longer than {MAX_EXPR_CHARS} characters")
    try:
        tree = compile(expr, "<expression>", "eval", ast.PyCF_ONLY_AST)
    except SyntaxError as exc:
        raise Refused(f"not a single Python expression ({exc.msg}); statements and imports "
                      f"are not allowed") from None
    except (ValueError, MemoryError, RecursionError) as exc:
        raise Refused(f"not a single Python expression ({type(exc).__name__})") from None
    if _depth(tree) > MAX_AST_DEPTH:
        raise Refused(f"expression nested more than {MAX_AST_DEPTH} levels deep")
    for node in walk(tree):
        name = node.id if isinstance(node, ast.Name) else \
            node.attr if isinstance(node, ast.Attribute) else \
            node.arg if isinstance(node, (ast.arg, ast.keyword)) else None
        if name is not None and name.startswith("_"):
            raise Refused(f"names starting with '_' are not allowed: {name}")
        if type(node) not in ALLOWED_NODES:
            raise Refused(f"not allowed in a python expression: {_describe(node)}")
        if isinstance(node, ast.Constant) and type(node.value) not in CONSTANT_TYPES:
            raise Refused(f"not allowed in a python expression: a {type(node.value).__name__} "
                          f"constant")
        if isinstance(node, ast.Dict) and any(k is None for k in node.keys):
            raise Refused("not allowed in a python expression: ** unpacking in a dict")
        if isinstance(node, ast.keyword) and node.arg is None:
            raise Refused("not allowed in a python expression: ** unpacking in a call")
        if isinstance(node, ast.comprehension) and node.is_async:
            raise Refused("not allowed in a python expression: async comprehension")
        if isinstance(node, ast.arguments) and (node.vararg or node.kwarg or node.kwonlyargs
                                                or node.defaults or node.kw_defaults
                                                or node.posonlyargs):
            raise Refused("a lambda takes plain positional parameters only")
    bound = {n.id for n in walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    bound |= {n.arg for n in walk(tree) if isinstance(n, ast.arg)}
    for node in walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) \
                and node.id not in bound and node.id not in FUNCTION_NAMES:
            raise Refused(f"name {node.id!r} is not defined (the python tool knows: "
                          f"{', '.join(FUNCTION_NAMES)})")
    _check_attributes(tree)
    return tree


def _check_attributes(tree):
    """An attribute may only be an allowed method, called: ``s.upper()``, never ``s.upper``."""
    called = {id(n.func) for n in walk(tree) if isinstance(n, ast.Call)}
    for node in walk(tree):
        if isinstance(node, ast.Attribute) and node.attr not in METHOD_NAMES:
            raise Refused(f"attribute access is not allowed: .{node.attr} (only calls of a "
                          f"few str / list / tuple / dict methods, e.g. s.split(), d.get(k))")
        if isinstance(node, ast.Attribute) and id(node) not in called:
            raise Refused(f"attribute access is not allowed: .{node.attr} (a method can only "
                          f"be called, e.g. x.{node.attr}(...))")


# ------------------------------------------------------------------------------ size checks
def _int_ok(v):
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
            return _int_ok(v)
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


# ------------------------------------------------------------------------------ functions
def _materialise(x, lim):
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
        return pow(_int_ok(a), _int_ok(b), _int_ok(m))
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
            return _materialise(x, lim)

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
                    _int_ok(a)
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


# ------------------------------------------------------------------------------ the interpreter
class Interpreter:
    """Evaluates a validated AST node by node; no ``compile``, no ``eval``."""

    def __init__(self, limits=None):
        self.lim = limits or Limits()
        self.calls = 0
        self.functions = Functions(self).table

    # ------------------------------------------------------------ names and calls
    def lookup(self, name, scope):
        for frame in scope:
            if name in frame:
                return frame[name]
        if name in self.functions:
            return self.functions[name]
        raise Refused(f"name {name!r} is not defined (the python tool knows: "
                      f"{', '.join(FUNCTION_NAMES)})")

    def call_value(self, f, args, kwargs=None):
        kwargs = kwargs or {}
        if isinstance(f, Closure):
            if kwargs:
                raise TypeError("a lambda takes positional arguments only")
            if len(args) != len(f.params):
                raise TypeError(f"the lambda takes {len(f.params)} argument(s), got {len(args)}")
            if self.calls >= MAX_CALL_DEPTH:
                raise Refused(f"lambda calls nested more than {MAX_CALL_DEPTH} deep")
            self.calls += 1
            try:
                return self.visit(f.body, (dict(zip(f.params, args)),) + f.scope)
            finally:
                self.calls -= 1
        if id(f) in self.lim.function_ids:
            return self.lim.value(f(*args, **kwargs))
        raise TypeError(f"a value of type {type(f).__name__} is not callable")

    def call_method(self, obj, name, args, kwargs):
        allowed = METHODS.get(type(obj), frozenset())
        if name not in allowed:
            raise Refused(f"method .{name}() is not allowed on a value of type "
                          f"{type(obj).__name__}")
        if name == "replace" and len(args) >= 2 and all(type(a) is str for a in args[:2]):
            old, new = args[0], args[1]
            n = obj.count(old) if old else len(obj) + 1
            self.lim.chars(len(obj) + n * max(0, len(new) - len(old)))
        if name == "join":
            parts = _materialise(args[0], self.lim) if args else []
            self.lim.chars(sum(len(p) if type(p) is str else 0 for p in parts)
                           + len(obj) * max(0, len(parts) - 1))
            args = (parts,) + tuple(args[1:])
        out = getattr(obj, name)(*args, **kwargs)
        if type(out).__name__ in ("dict_keys", "dict_values", "dict_items"):
            out = list(out)
        return self.lim.value(out)

    # ------------------------------------------------------------ arithmetic
    def binop(self, op, a, b):
        lim = self.lim
        if isinstance(op, ast.Pow):
            return lim.value(power(a, b))
        if isinstance(op, ast.Mult):
            if type(a) in (int, bool) and type(b) in (int, bool):
                if a.bit_length() + b.bit_length() > MAX_INT_BITS + 1:
                    raise Refused(f"integer larger than {MAX_INT_BITS} bits")
            else:
                seq, n = (a, b) if isinstance(a, (str, list, tuple)) else (b, a)
                if isinstance(seq, (str, list, tuple)) and type(n) in (int, bool):
                    size = len(seq) * max(0, n)
                    if isinstance(seq, str):
                        lim.chars(size)
                    else:
                        lim.items(size, f"a {type(seq).__name__}")
        elif isinstance(op, ast.LShift):
            if type(a) in (int, bool) and type(b) in (int, bool) and \
                    b > 0 and a.bit_length() + b > MAX_INT_BITS:
                raise Refused(f"integer larger than {MAX_INT_BITS} bits")
        elif isinstance(op, ast.Add):
            if isinstance(a, str) and isinstance(b, str):
                lim.chars(len(a) + len(b))
            elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
                lim.items(len(a) + len(b))
        elif isinstance(op, ast.Mod) and isinstance(a, str):
            raise Refused("%-formatting of strings is not allowed")
        return lim.value(_BINOPS[type(op)](a, b))

    # ------------------------------------------------------------ nodes
    def visit(self, node, scope=()):
        method = getattr(self, "_" + type(node).__name__, None) \
            if type(node) in ALLOWED_NODES else None
        if method is None or type(node) in (ast.comprehension, ast.keyword, ast.arguments):
            raise Refused(f"not allowed in a python expression: {_describe(node)}")
        return method(node, scope)

    def _Expression(self, node, scope):
        return self.visit(node.body, scope)

    def _Constant(self, node, scope):
        if type(node.value) not in CONSTANT_TYPES:
            raise Refused(f"a {type(node.value).__name__} constant is not allowed")
        return node.value

    def _Name(self, node, scope):
        return self.lookup(node.id, scope)

    def _items(self, elts, scope):
        out = []
        for e in elts:
            if isinstance(e, ast.Starred):
                out.extend(_materialise(self.visit(e.value, scope), self.lim))
            else:
                out.append(self.visit(e, scope))
            self.lim.items(len(out))
        return out

    def _List(self, node, scope):
        return self._items(node.elts, scope)

    def _Tuple(self, node, scope):
        return tuple(self._items(node.elts, scope))

    def _Set(self, node, scope):
        return set(self._items(node.elts, scope))

    def _Dict(self, node, scope):
        return {self.visit(k, scope): self.visit(v, scope) for k, v in zip(node.keys, node.values)}

    def _BinOp(self, node, scope):
        if type(node.op) not in _BINOPS:
            raise Refused(f"not allowed in a python expression: {_describe(node.op)}")
        return self.binop(node.op, self.visit(node.left, scope), self.visit(node.right, scope))

    def _UnaryOp(self, node, scope):
        v = self.visit(node.operand, scope)
        op = node.op
        if isinstance(op, ast.Not):
            return not v
        if isinstance(op, ast.USub):
            return self.lim.value(-v)
        if isinstance(op, ast.UAdd):
            return self.lim.value(+v)
        if isinstance(op, ast.Invert):
            return self.lim.value(~v)
        raise Refused(f"not allowed in a python expression: {_describe(op)}")

    def _BoolOp(self, node, scope):
        v = None
        for e in node.values:
            v = self.visit(e, scope)
            if isinstance(node.op, ast.And) and not v:
                return v
            if isinstance(node.op, ast.Or) and v:
                return v
        return v

    def _Compare(self, node, scope):
        left = self.visit(node.left, scope)
        for op, right_node in zip(node.ops, node.comparators):
            right = self.visit(right_node, scope)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True

    def _IfExp(self, node, scope):
        return self.visit(node.body if self.visit(node.test, scope) else node.orelse, scope)

    def _Subscript(self, node, scope):
        v = self.visit(node.value, scope)
        if not isinstance(v, (list, tuple, str, dict, range)):
            raise TypeError(f"a value of type {type(v).__name__} cannot be indexed")
        return self.lim.value(v[self.visit(node.slice, scope)])

    def _Slice(self, node, scope):
        parts = [None if p is None else self.visit(p, scope)
                 for p in (node.lower, node.upper, node.step)]
        return slice(*parts)

    def _Call(self, node, scope):
        args = self._items(node.args, scope)
        kwargs = {k.arg: self.visit(k.value, scope) for k in node.keywords}
        if isinstance(node.func, ast.Attribute):
            obj = self.visit(node.func.value, scope)
            return self.call_method(obj, node.func.attr, args, kwargs)
        return self.call_value(self.visit(node.func, scope), args, kwargs)

    def _Lambda(self, node, scope):
        return Closure(tuple(a.arg for a in node.args.args), node.body, scope, self)

    # ------------------------------------------------------------ comprehensions
    def _bind(self, target, value, frame):
        if isinstance(target, ast.Name):
            frame[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            items = _materialise(value, self.lim)
            if len(items) != len(target.elts):
                raise ValueError(f"cannot unpack {len(items)} values into {len(target.elts)}")
            for t, v in zip(target.elts, items):
                self._bind(t, v, frame)
        else:
            raise Refused(f"not allowed as a loop variable: {_describe(target)}")

    def _comprehension(self, node, scope, emit):
        def loop(i, scope):
            if i == len(node.generators):
                emit(scope)
                return
            gen = node.generators[i]
            it = self.visit(gen.iter, scope)
            if not isinstance(it, (list, tuple, str, dict, set, frozenset, range)):
                raise TypeError(f"a value of type {type(it).__name__} is not iterable")
            for v in it:
                frame = {}
                self._bind(gen.target, v, frame)
                inner = (frame,) + scope
                if all(self.visit(c, inner) for c in gen.ifs):
                    loop(i + 1, inner)
        loop(0, scope)

    def _collect(self, node, scope):
        out = []

        def emit(s):
            out.append(self.visit(node.elt, s))
            self.lim.items(len(out), "a comprehension")
        self._comprehension(node, scope, emit)
        return out

    def _ListComp(self, node, scope):
        return self._collect(node, scope)

    def _GeneratorExp(self, node, scope):
        return self._collect(node, scope)      # eager: no generator object ever exists

    def _SetComp(self, node, scope):
        return set(self._collect(node, scope))

    def _DictComp(self, node, scope):
        out = {}

        def emit(s):
            out[self.visit(node.key, s)] = self.visit(node.value, s)
            self.lim.items(len(out), "a comprehension")
        self._comprehension(node, scope, emit)
        return out


def _floordiv(a, b):
    return a // b


_BINOPS = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b, ast.FloorDiv: _floordiv, ast.Mod: lambda a, b: a % b,
    ast.Pow: power, ast.LShift: lambda a, b: a << b, ast.RShift: lambda a, b: a >> b,
    ast.BitOr: lambda a, b: a | b, ast.BitXor: lambda a, b: a ^ b,
    ast.BitAnd: lambda a, b: a & b,
}
_COMPARE = {
    ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
    ast.Is: lambda a, b: a is b, ast.IsNot: lambda a, b: a is not b,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}


def evaluate(expr, mem_bytes=256 << 20):
    """Validate and interpret one expression (in this process: the caller isolates it)."""
    tree = validate(expr)
    return Interpreter(Limits(mem_bytes)).visit(tree)


# ------------------------------------------------------------------------------ the process
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
