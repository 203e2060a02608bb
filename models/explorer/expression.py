"""The autograd view's expressions: a fixed grammar, a hand-written tokenizer and recursive-descent parser.

Nothing the browser sends is executed: the text becomes a tree of tuples, and only the operations named
here can appear in it (``backward_steps.evaluate`` maps each to a ``tinygrad_attn`` op). The grammar::

    expr    := term (("+" | "-") term)*
    term    := unary (("*" | "/" | "@") unary)*
    unary   := "-" unary | power
    power   := atom ("**" NUMBER)?
    atom    := NUMBER | NAME | FUNCTION "(" expr ")" | "(" expr ")"

NAME is one of the view's tensors (``TENSORS``), FUNCTION one of ``FUNCTIONS``. The tree's nodes::

    ("number", value)   ("tensor", name)   ("neg", x)   ("pow", x, exponent)
    ("binary", op, left, right)   ("call", function, x)
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["ExpressionError", "FUNCTIONS", "MAX_DEPTH", "MAX_LENGTH", "MAX_NODES", "parse", "tokenize"]

FUNCTIONS = ("relu", "tanh", "sigmoid", "exp", "log", "sum", "mean", "softmax")
MAX_LENGTH = 200  # characters
MAX_NODES = 40  # operations and operands in the tree
MAX_DEPTH = 12  # parentheses and calls inside each other

_TOKEN = re.compile(r"(\d+\.\d*|\.\d+|\d+)|([A-Za-z_]\w*)|(\*\*|[-+*/@()])")

Node = tuple[Any, ...]


class ExpressionError(ValueError):
    """An expression outside the grammar; the message says where (a character position) and what."""


def tokenize(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, position) for each token: kind is "number", "name" or "op"; then ("end", "", len)."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the expression has {len(text)} characters; at most {MAX_LENGTH}")
    tokens, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            break
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ExpressionError(f"unexpected character {text[pos]!r} at position {pos + 1}")
        kind = "number" if m.group(1) else "name" if m.group(2) else "op"
        tokens.append((kind, m.group(0), pos))
        pos = m.end()
    tokens.append(("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str, tensors: tuple[str, ...]) -> None:
        self.tokens, self.i, self.tensors, self.nodes, self.depth = tokenize(text), 0, tensors, 0, 0

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i]

    def take(self, expected: str | None = None) -> tuple[str, str, int]:
        token = self.tokens[self.i]
        if expected is not None and token[1] != expected:
            raise ExpressionError(f"expected {expected!r} at position {token[2] + 1}, found {_describe(token)}")
        self.i += 1
        return token

    def node(self, *parts: Any) -> Node:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ExpressionError(f"the expression has more than {MAX_NODES} operations and operands")
        return parts

    def expr(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"more than {MAX_DEPTH} parentheses or calls inside each other")
        left = self.term()
        while self.peek()[1] in ("+", "-"):
            left = self.node("binary", self.take()[1], left, self.term())
        self.depth -= 1
        return left

    def term(self) -> Node:
        left = self.unary()
        while self.peek()[1] in ("*", "/", "@"):
            left = self.node("binary", self.take()[1], left, self.unary())
        return left

    def unary(self) -> Node:
        if self.peek()[1] == "-":
            self.take()
            return self.node("neg", self.unary())
        return self.power()

    def power(self) -> Node:
        base = self.atom()
        if self.peek()[1] == "**":
            self.take()
            kind, text, pos = self.take()
            if kind != "number":
                raise ExpressionError(f"the exponent after ** must be a number, found {_describe((kind, text, pos))}")
            return self.node("pow", base, float(text))
        return base

    def atom(self) -> Node:
        kind, text, pos = token = self.take()
        if kind == "number":
            return self.node("number", float(text))
        if text == "(":
            inner = self.expr()
            self.take(")")
            return inner
        if kind == "name" and text in FUNCTIONS:
            self.take("(")
            inner = self.expr()
            self.take(")")
            return self.node("call", text, inner)
        if kind == "name" and text in self.tensors:
            return self.node("tensor", text)
        if kind == "name":
            raise ExpressionError(f"unknown name {text!r} at position {pos + 1}: the tensors are "
                                  f"{', '.join(self.tensors)}; the functions {', '.join(FUNCTIONS)}")
        raise ExpressionError(f"expected a number, a tensor, a function or '(' at position {pos + 1}, "
                              f"found {_describe(token)}")


def _describe(token: tuple[str, str, int]) -> str:
    return "the end" if token[0] == "end" else repr(token[1])


def parse(text: str, tensors: tuple[str, ...]) -> Node:
    """The tree of ``text`` over the tensor names ``tensors``; ``ExpressionError`` if it is outside the grammar."""
    parser = _Parser(text, tensors)
    if parser.peek()[0] == "end":
        raise ExpressionError("the expression is empty")
    tree = parser.expr()
    kind, text_, pos = parser.peek()
    if kind != "end":
        raise ExpressionError(f"unexpected {text_!r} at position {pos + 1}")
    return tree
