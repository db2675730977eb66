"""The interpreter: computes a validated AST node by node (runs inside the child).

Why an interpreter and not ``eval``: with ``compile`` + ``eval`` every generator, lambda and
comprehension is a real frame, and ``(x for x in ()).gi_frame.f_back.f_globals`` walks from
one to the real ``os`` without a single underscore name. Here the expression is never
compiled: :class:`Interpreter` walks the AST and computes each node itself, so no Python
frame, code object, generator or function the expression could inspect ever exists.
Comprehensions and generator expressions are evaluated eagerly into a list.
"""

import _ast as ast  # the C node classes only: ``import ast`` costs more start-up than the rest

from evoroute.agent.sandbox.functions import FUNCTION_NAMES, METHODS, Functions, materialise, power
from evoroute.agent.sandbox.syntax import ALLOWED_NODES, CONSTANT_TYPES, describe, validate
from evoroute.agent.sandbox.values import MAX_INT_BITS, Closure, Limits, Refused

MAX_CALL_DEPTH = 40         # nested lambda calls ((lambda f: f(f))(lambda f: f(f)))


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
            parts = materialise(args[0], self.lim) if args else []
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
            raise Refused(f"not allowed in a python expression: {describe(node)}")
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
                out.extend(materialise(self.visit(e.value, scope), self.lim))
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
            raise Refused(f"not allowed in a python expression: {describe(node.op)}")
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
        raise Refused(f"not allowed in a python expression: {describe(op)}")

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
            items = materialise(value, self.lim)
            if len(items) != len(target.elts):
                raise ValueError(f"cannot unpack {len(items)} values into {len(target.elts)}")
            for t, v in zip(target.elts, items):
                self._bind(t, v, frame)
        else:
            raise Refused(f"not allowed as a loop variable: {describe(target)}")

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
