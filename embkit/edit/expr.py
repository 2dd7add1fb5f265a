"""A small expression language for weighted blends: ``"0.7*a + 0.3*b"``, ``"(a + b)/2 - 0.2*neg"``.

A hand-written tokenizer and recursive-descent parser; nothing is ever passed to ``eval``. The result
is a *linear combination*: a weight per name. Names stand for embeddings (the CLI binds ``a``, ``b``,
… to its inputs in order). Only linear expressions are allowed: a product or quotient needs a plain
number on one side (``a*b`` and ``2/a`` are refused), and a bare number term (``a + 1``) is refused.

Grammar::

    expr   := term (("+" | "-") term)*
    term   := unary (("*" | "/") unary)*
    unary  := ("+" | "-") unary | atom
    atom   := NUMBER | NAME | "(" expr ")"
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..errors import OperationError

#: Caps so a hostile or mistaken expression cannot make the parser work hard.
MAX_LENGTH = 2000
MAX_DEPTH = 50

_TOKEN = re.compile(r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[-+*/()]))")


@dataclass
class _Linear:
    """``const + Σ coef[name]·name`` while parsing."""

    const: float = 0.0
    coef: dict[str, float] = field(default_factory=dict)

    @property
    def is_number(self) -> bool:
        return not self.coef

    def add(self, other: "_Linear", sign: float) -> "_Linear":
        coef = dict(self.coef)
        for k, v in other.coef.items():
            coef[k] = coef.get(k, 0.0) + sign * v
        return _Linear(self.const + sign * other.const, coef)

    def times(self, k: float) -> "_Linear":
        return _Linear(self.const * k, {n: v * k for n, v in self.coef.items()})


def tokenize(text: str) -> list[tuple[str, str, int]]:
    """``(kind, text, position)`` tuples: kind is ``num``, ``name`` or ``op``."""
    if len(text) > MAX_LENGTH:
        raise OperationError(f"expression is {len(text)} characters long; the limit is {MAX_LENGTH}")
    tokens = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            bad = text[pos:].lstrip()[:1]
            raise OperationError(f"expression {text!r}: unexpected {bad!r} at position {len(text) - len(text[pos:].lstrip())}")
        kind = m.lastgroup
        tokens.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    def fail(self, message: str) -> OperationError:
        return OperationError(f"expression {self.text!r}: {message}")

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None:
            raise self.fail("ends too early")
        self.i += 1
        return tok

    def parse(self) -> _Linear:
        if not self.tokens:
            raise self.fail("is empty")
        value = self.expr()
        tok = self.peek()
        if tok is not None:
            raise self.fail(f"unexpected {tok[1]!r} at position {tok[2]}")
        return value

    def expr(self) -> _Linear:
        value = self.term()
        while (tok := self.peek()) is not None and tok[1] in "+-" and tok[0] == "op":
            self.take()
            value = value.add(self.term(), 1.0 if tok[1] == "+" else -1.0)
        return value

    def term(self) -> _Linear:
        value = self.unary()
        while (tok := self.peek()) is not None and tok[0] == "op" and tok[1] in "*/":
            self.take()
            right = self.unary()
            if tok[1] == "*":
                if value.is_number:
                    value = right.times(value.const)
                elif right.is_number:
                    value = value.times(right.const)
                else:
                    raise self.fail(f"multiplies two embeddings at position {tok[2]}; only number × embedding is linear")
            else:
                if not right.is_number:
                    raise self.fail(f"divides by an embedding at position {tok[2]}")
                if right.const == 0:
                    raise self.fail(f"divides by zero at position {tok[2]}")
                value = value.times(1.0 / right.const)
        return value

    def unary(self) -> _Linear:
        tok = self.peek()
        if tok is not None and tok[0] == "op" and tok[1] in "+-":
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.fail(f"nests deeper than {MAX_DEPTH}")
            inner = self.unary()
            self.depth -= 1
            return inner if tok[1] == "+" else inner.times(-1.0)
        return self.atom()

    def atom(self) -> _Linear:
        kind, text, pos = self.take()
        if kind == "num":
            value = float(text)
            if not math.isfinite(value):
                raise self.fail(f"number {text} at position {pos} is not finite")
            return _Linear(const=value)
        if kind == "name":
            return _Linear(coef={text: 1.0})
        if text == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.fail(f"nests deeper than {MAX_DEPTH}")
            inner = self.expr()
            closing = self.take()
            if closing[1] != ")":
                raise self.fail(f"expected ')' at position {closing[2]}, found {closing[1]!r}")
            self.depth -= 1
            return inner
        raise self.fail(f"unexpected {text!r} at position {pos}")


def parse_weights(text: str, names: list[str] | None = None) -> dict[str, float]:
    """Parse a linear blend into ``{name: weight}`` in order of first appearance.

    ``names``, when given, are the names that may appear; an unknown name is an
    :class:`~embkit.errors.OperationError` listing them. Weights that cancel to 0 are kept (the
    caller decides). Raises on syntax errors, non-linear terms and bare number terms.

    >>> parse_weights("0.7*a + 0.3*b")
    {'a': 0.7, 'b': 0.3}
    """
    parser = _Parser(text)
    value = parser.parse()
    if value.const != 0:
        raise parser.fail(f"has a term without an embedding ({value.const:g}); every term needs a name")
    if not value.coef:
        raise parser.fail("names no embedding")
    if names is not None:
        unknown = [n for n in value.coef if n not in names]
        if unknown:
            raise parser.fail(f"uses unknown name {unknown[0]!r}; the inputs are {', '.join(names)}")
    if not all(math.isfinite(v) for v in value.coef.values()):
        raise parser.fail("gives a weight that is not finite")
    return dict(value.coef)


__all__ = ["parse_weights", "tokenize"]
