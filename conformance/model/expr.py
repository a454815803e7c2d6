"""A tiny, safe expression language for sequence-number arithmetic.

Expressions are parsed with :mod:`ast` and then checked against a whitelist: integer literals, names,
``+ - * // % << >> & |``, unary minus, parentheses and the functions ``min`` and ``max``. Nothing is ever
handed to ``eval``. Arithmetic is exact on Python integers and only the final result is reduced modulo
2**32, because TCP sequence space wraps there: ``(l_isn - 1) >> 1`` with ``l_isn = 0`` is therefore
``(-1 >> 1) % 2**32 = 2**32 - 1``, and ``min``/``max`` compare exact intermediate values.
"""

from __future__ import annotations

import ast
import functools
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..tcp import SEQ_MOD

MAX_LENGTH = 200  # plenty for sequence arithmetic; bounds the parser's recursion

_BINARY: dict[type[ast.operator], Callable[[int, int], int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
}
_FUNCTIONS: dict[str, Callable[..., int]] = {"min": min, "max": max}


class ExprError(ValueError):
    """An expression is malformed or refers to a name that is not bound."""


def _check(node: ast.AST) -> None:
    """Reject every construct outside the whitelist, so evaluation can trust the tree."""
    if isinstance(node, ast.Expression):
        _check(node.body)
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, int) or isinstance(node.value, bool):
            raise ExprError(f"only integer literals are allowed, not {node.value!r}")
    elif isinstance(node, ast.Name):
        if node.id in _FUNCTIONS:
            raise ExprError(f"'{node.id}' is a function; call it as {node.id}(a, b)")
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            raise ExprError(f"operator {type(node.op).__name__} is not allowed")
        _check(node.left)
        _check(node.right)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, ast.USub | ast.UAdd):
            raise ExprError(f"operator {type(node.op).__name__} is not allowed")
        _check(node.operand)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS or node.keywords:
            raise ExprError("only min(...) and max(...) may be called")
        if not node.args:
            raise ExprError(f"{node.func.id}() needs at least one argument")
        for arg in node.args:
            _check(arg)
    else:
        raise ExprError(f"'{type(node).__name__}' is not allowed in an expression")


def _names(node: ast.AST) -> frozenset[str]:
    return frozenset(n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id not in _FUNCTIONS)


@dataclass(frozen=True)
class Expr:
    """A parsed expression; ``evaluate`` returns its value modulo 2**32."""

    text: str
    tree: ast.Expression
    names: frozenset[str]

    @classmethod
    def parse(cls, text: str | int) -> Expr:
        if isinstance(text, bool):
            raise ExprError("expected a number or an expression, not a boolean")
        if isinstance(text, int):
            text = str(text)
        if isinstance(text, float):
            raise ExprError(f"expected a whole number or an expression, not {text:g}")
        if not isinstance(text, str):
            raise ExprError(f"expected a number or an expression, not {type(text).__name__}")
        source = text.strip()
        if not source:
            raise ExprError("empty expression")
        if len(source) > MAX_LENGTH:
            raise ExprError(f"expression longer than {MAX_LENGTH} characters")
        return _parsed(source)

    def evaluate(self, env: Mapping[str, int], *, wrap: bool = True) -> int:
        value = _eval(self.tree.body, env)
        return value % SEQ_MOD if wrap else value

    def __str__(self) -> str:
        return self.text


@functools.lru_cache(maxsize=4096)
def _parsed(source: str) -> Expr:
    """One parsed, checked expression per text: the catalogue writes ``l_isn + 1`` hundreds of times, and an
    ``Expr`` is immutable (its tree is never changed after the check)."""
    try:
        tree = ast.parse(source, mode="eval")
        _check(tree)
    except SyntaxError as exc:
        raise ExprError(f"cannot parse expression {source!r}: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise ExprError("expression nested too deeply") from None
    return Expr(source, tree, _names(tree))


def _eval(node: ast.AST, env: Mapping[str, int]) -> int:
    if isinstance(node, ast.Constant):
        return int(node.value)
    if isinstance(node, ast.Name):
        try:
            return int(env[node.id])
        except KeyError:
            known = ", ".join(sorted(env)) or "none"
            raise ExprError(f"name '{node.id}' is not bound (bound: {known})") from None
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, env), _eval(node.right, env)
        if isinstance(node.op, ast.FloorDiv | ast.Mod) and right == 0:
            raise ExprError("division by zero")
        if isinstance(node.op, ast.LShift | ast.RShift) and not 0 <= right <= 64:
            raise ExprError(f"shift by {right} is out of range")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, env)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.Call):
        return _FUNCTIONS[node.func.id]([_eval(a, env) for a in node.args])  # type: ignore[union-attr]
    raise ExprError(f"'{type(node).__name__}' is not allowed")  # unreachable after _check
