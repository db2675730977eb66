"""Which Python syntax an expression may use: :func:`validate` (runs in the child and in the
parent, which refuses a bad expression without starting a process).

Nodes: constants (numbers, strings, None), names, list / tuple / set / dict displays,
arithmetic, comparisons, ``and`` / ``or`` / ``not``, ``x if c else y``, subscripts and
slices, calls, ``lambda`` (single expression, positional parameters), list / set / dict
comprehensions and generator expressions. Everything else (f-strings, ``:=``, ``await``,
``yield``, ``**`` unpacking, statements) is refused. Names: only :data:`FUNCTION_NAMES` and
the variables the expression binds, none starting with ``_``. Attributes: only a call of a
method from :data:`METHODS`.
"""

import _ast as ast  # the C node classes only: ``import ast`` costs more start-up than the rest

from evoroute.agent.sandbox.functions import FUNCTION_NAMES, METHOD_NAMES
from evoroute.agent.sandbox.values import Refused

MAX_EXPR_CHARS = 600
MAX_AST_DEPTH = 60          # nesting of the expression's syntax tree


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


def describe(node):
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
            raise Refused(f"not allowed in a python expression: {describe(node)}")
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
