"""The autograd view's grammar: what parses and how, what is refused, and the graph and backward steps
against gradients worked out by hand in NumPy."""

import re

import numpy as np
import pytest

from models.explorer.backward_steps import backward_steps, make_tensors
from models.explorer.expression import MAX_LENGTH, ExpressionError, parse

NAMES = ("x", "w", "b", "y")


def test_precedence_follows_python():
    assert parse("x + w * b", NAMES) == ("binary", "+", ("tensor", "x"),
                                         ("binary", "*", ("tensor", "w"), ("tensor", "b")))
    assert parse("-x ** 2", NAMES) == ("neg", ("pow", ("tensor", "x"), 2.0))  # ** binds tighter than minus
    assert parse("x - w - b", NAMES) == ("binary", "-", ("binary", "-", ("tensor", "x"), ("tensor", "w")),
                                         ("tensor", "b"))  # left-associative
    assert parse("sum((x @ w))", NAMES) == ("call", "sum", ("binary", "@", ("tensor", "x"), ("tensor", "w")))
    assert parse(" 2.5*x ", NAMES) == ("binary", "*", ("number", 2.5), ("tensor", "x"))


@pytest.mark.parametrize("text, message", [
    ("__import__(x)", "unknown name '__import__'"),
    ("eval(x)", "unknown name 'eval'"),
    ("x.T", "unexpected character '.'"),
    ("x; w", "unexpected character ';'"),
    ("'x'", "unexpected character"),
    ("x ** w", "exponent after ** must be a number"),
    ("x +", "found the end"),
    ("(x", "expected ')'"),
    ("x)", "unexpected ')'"),
    ("", "empty"),
    ("x" * (MAX_LENGTH + 1), "at most"),
    ("(" * 30 + "x" + ")" * 30, "inside each other"),
    ("+".join(["x"] * 30), "more than"),
])
def test_text_outside_the_grammar_is_refused_with_a_reason(text, message):
    with pytest.raises(ExpressionError, match=re.escape(message)):
        parse(text, NAMES)


def test_backward_steps_give_the_gradients_worked_out_by_hand():
    """L = sum((relu(x w + b) - y)^2): dL/dz = 2 (relu(z) - y) [z > 0], dw = x^T g, dx = g w^T, db = sum_rows g."""
    result = backward_steps("sum((relu(x @ w + b) - y) ** 2)")
    t = {name: v.numpy().astype(np.float64) for name, v in make_tensors().items()}
    z = t["x"] @ t["w"] + t["b"]
    g = 2 * (np.maximum(z, 0) - t["y"]) * (z > 0)
    expected = {"x": g @ t["w"].T, "w": t["x"].T @ g, "b": g.sum(0), "y": -2 * (np.maximum(z, 0) - t["y"])}
    assert np.isclose(result["output"], ((np.maximum(z, 0) - t["y"]) ** 2).sum(), atol=1e-3)
    leaves = {result["nodes"][s["node"]]["label"]: np.array(s["grad"]) for s in result["steps"]
              if result["nodes"][s["node"]]["kind"] == "leaf"}
    assert set(leaves) == set(expected)
    for name, grad in expected.items():
        np.testing.assert_allclose(leaves[name], grad, atol=2e-3, err_msg=name)


def test_backward_visits_every_node_once_after_all_its_consumers():
    result = backward_steps("sum(tanh(x @ w) * exp(x @ w) + b)")
    order = [s["node"] for s in result["steps"]]
    assert sorted(order) == list(range(len(result["nodes"])))  # each node (and leaf) receives its gradient once
    assert order[0] == 0 and result["nodes"][0]["label"] == "SumBackward"  # the output first
    position = {node: i for i, node in enumerate(order)}
    for source, target in result["edges"]:  # the gradient flows against the arrows: consumers come first
        assert position[target] < position[source]
    ops = [n for n in result["nodes"] if n["kind"] == "op"]
    assert sum(n["saved"] for n in ops) > 0 and all(n["saved_after"] == 0 for n in ops)  # freed by backward


def test_a_number_or_a_shape_error_is_an_expression_error():
    with pytest.raises(ExpressionError, match="use at least one tensor"):
        backward_steps("2 * 3")
    with pytest.raises(ExpressionError):
        backward_steps("x @ x")  # (2, 3) @ (2, 3)
    with pytest.raises(ExpressionError, match="not a number"):
        backward_steps("x @ 2")
