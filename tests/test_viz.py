"""ta.viz: DOT source of the autograd graph (structure, labels, saved bytes) and rendering."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_attn as ta
from tinygrad_attn import viz

NODE = re.compile(r"^\s*(n\d+) \[label=\"((?:[^\"\\]|\\.)*)\"", re.M)
EDGE = re.compile(r"^\s*(n\d+) -> (n\d+);", re.M)


def parse(dot: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Node name -> label (with DOT's \\n turned back into newlines), and the edge list; checks that
    the source is well-formed as far as these tests need."""
    assert dot.startswith("digraph ")
    assert dot.count("{") == dot.count("}") == 1 and dot.rstrip().endswith("}")
    nodes: dict[str, str] = {}
    for name, label in NODE.findall(dot):
        assert name not in nodes, f"{name} declared twice"
        nodes[name] = label.replace("\\n", "\n").replace('\\"', '"')
    edges = EDGE.findall(dot)
    for a, b in edges:
        assert a in nodes and b in nodes, f"edge {a} -> {b} has an undeclared endpoint"
    return nodes, edges


def labels_starting(nodes: dict[str, str], prefix: str) -> list[str]:
    return [lab for lab in nodes.values() if lab.startswith(prefix)]


def test_structure_of_a_small_dag():
    x = ta.randn(3, 4, requires_grad=True)
    y = ta.randn(3, 4, requires_grad=True)
    a = x * y
    loss = (a + a.exp()).sum()  # a is used twice: one node, two outgoing edges
    nodes, edges = parse(viz.to_dot(loss))
    assert len(nodes) == 4 + 2  # Mul, Exp, Add, Sum + the leaves x, y
    assert len(edges) == 6  # x->Mul, y->Mul, Mul->Exp, Mul->Add, Exp->Add, Add->Sum
    names = sorted(lab.split("\n")[0] for lab in nodes.values())
    assert names == ["AddBackward", "ExpBackward", "MulBackward", "SumBackward", "leaf", "leaf"]
    by_name = {lab.split("\n")[0]: n for n, lab in nodes.items() if lab.endswith("B")}
    assert (by_name["MulBackward"], by_name["ExpBackward"]) in edges
    assert (by_name["MulBackward"], by_name["AddBackward"]) in edges
    assert (by_name["AddBackward"], by_name["SumBackward"]) in edges


def test_labels_show_shape_dtype_and_names():
    w = ta.randn(5, 2, dtype=ta.float64, requires_grad=True)
    b = ta.zeros(2, dtype=ta.float64, requires_grad=True)
    x = ta.randn(7, 5, dtype=ta.float64)
    out = x @ w + b
    nodes, _ = parse(viz.to_dot(out, params={"layer.weight": w, "layer.bias": b}))
    labels = set(nodes.values())
    assert "layer.weight\n(5, 2) float64\nrequires_grad" in labels
    assert "layer.bias\n(2,) float64\nrequires_grad" in labels
    (matmul,) = labels_starting(nodes, "MatMulBackward")
    assert matmul.split("\n")[1] == "(7, 2) float64"
    assert len(nodes) == 2 + 2  # MatMul, Add, w, b: x does not require grad, so it is not in the graph


def test_saved_bytes_of_a_product_match_the_inputs():
    x = ta.randn(3, 4, requires_grad=True)  # float32: 48 bytes each
    y = ta.randn(3, 4, requires_grad=True)
    z = x * y
    assert viz.saved_bytes(z.grad_fn) == 2 * 3 * 4 * 4
    nodes, _ = parse(viz.to_dot(z))
    assert labels_starting(nodes, "MulBackward")[0].endswith("saved 96 B")
    # float64 doubles it; a tensor saved twice (x * x) is counted once
    xd = ta.randn(3, 4, dtype=ta.float64, requires_grad=True)
    assert viz.saved_bytes((xd * ta.randn(3, 4, dtype=ta.float64)).grad_fn) == 2 * 96
    assert viz.saved_bytes((x * x).grad_fn) == 48
    assert viz.saved_bytes((x + y).grad_fn) == 0  # add needs nothing for backward


def test_saved_bytes_of_an_output_and_large_sizes():
    x = ta.randn(256, 1024, requires_grad=True)  # 1 MiB of float32
    e = x.exp()  # exp keeps its output
    assert viz.saved_bytes(e.grad_fn) == 256 * 1024 * 4
    nodes, _ = parse(viz.to_dot(e))
    assert labels_starting(nodes, "ExpBackward")[0].endswith("saved 1.0 MiB")


def test_released_graph_shows_zero_saved_bytes():
    x = ta.randn(3, 4, requires_grad=True)
    y = ta.randn(3, 4, requires_grad=True)
    loss = (x * y).exp().sum()
    loss.backward(retain_graph=True)
    kept, _ = parse(viz.to_dot(loss))
    assert labels_starting(kept, "MulBackward")[0].endswith("saved 96 B")
    loss.backward()
    freed, _ = parse(viz.to_dot(loss))
    fn_labels = [lab for lab in freed.values() if "Backward" in lab]
    assert len(fn_labels) == 3
    assert all(lab.endswith("saved 0 B (freed)") for lab in fn_labels)
    assert viz.saved_bytes(loss.grad_fn.next_functions[0].next_functions[0]) == 0


def test_show_saved_false_and_leaf_and_constant_roots():
    x = ta.randn(2, requires_grad=True)
    assert "saved" not in viz.to_dot(x.exp(), show_saved=False)
    nodes, edges = parse(viz.to_dot(x, params={"x": x}))
    assert list(nodes.values()) == ["x\n(2,) float32\nrequires_grad"] and edges == []
    with ta.no_grad():
        c = x * 2
    nodes, edges = parse(viz.to_dot(c))
    assert list(nodes.values()) == ["leaf\n(2,) float32\nno grad"] and edges == []


def test_several_outputs_share_nodes():
    x = ta.randn(4, requires_grad=True)
    h = x.tanh()
    a, b = h.sum(), (h * h).sum()
    nodes, edges = parse(viz.to_dot([a, b]))
    assert len(nodes) == 1 + 1 + 1 + 1 + 1  # x, Tanh, Sum, Mul, Sum
    assert len(edges) == 1 + 1 + 2 + 1
    assert viz.to_dot((a, b)).count("penwidth=2") == 2  # both outputs are marked


def test_labels_are_escaped():
    x = ta.randn(2, requires_grad=True)
    dot = viz.to_dot(x.exp(), params={'say "hi"\\': x})
    assert r'say \"hi\"\\' in dot
    parse(dot)


def test_rejects_non_tensors():
    with pytest.raises(TypeError, match="to_dot expects a Tensor"):
        viz.to_dot(np.zeros(3))


def test_ten_thousand_node_chain():
    x = ta.randn(2, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y + 1.0
    limit = sys.getrecursionlimit()
    nodes, edges = parse(viz.to_dot(y))
    assert sys.getrecursionlimit() == limit
    assert len(nodes) == 10_001 and len(edges) == 10_000
    assert len(labels_starting(nodes, "AddBackward")) == 10_000


OPS = {"add": (2, lambda a, b: a + b), "mul": (2, lambda a, b: a * b),
       "tanh": (1, lambda a: a.tanh()), "neg": (1, lambda a: -a)}


@settings(max_examples=40, deadline=None)
@given(n_leaves=st.integers(1, 3), steps=st.lists(
    st.tuples(st.sampled_from(sorted(OPS)), st.integers(0, 10**6), st.integers(0, 10**6)), min_size=1, max_size=12))
def test_random_dags_have_one_node_per_reachable_op(n_leaves, steps):
    """Build a random expression DAG, track its structure ourselves, and compare with the DOT."""
    pool = [ta.randn(2, requires_grad=True) for _ in range(n_leaves)]
    deps: list[list[int]] = [[] for _ in pool]  # for each pool entry, the pool entries it was made from
    for op, i, j in steps:
        arity, fn = OPS[op]
        args = [i % len(pool), j % len(pool)][:arity]
        pool.append(fn(*(pool[k] for k in args)))
        deps.append(args)
    reachable, stack = set(), [len(pool) - 1]
    while stack:
        k = stack.pop()
        if k not in reachable:
            reachable.add(k)
            stack.extend(deps[k])
    n_ops = sum(1 for k in reachable if k >= n_leaves)
    n_leaf = sum(1 for k in reachable if k < n_leaves)
    n_edges = sum(len(deps[k]) for k in reachable)
    nodes, edges = parse(viz.to_dot(pool[-1]))
    assert len(nodes) == n_ops + n_leaf
    assert len(edges) == n_edges


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' program not installed")
def test_dot_program_accepts_the_source():
    x = ta.randn(3, 3, requires_grad=True)
    dot = viz.to_dot((x @ x).softmax(-1).sum(), params={'w "1"': x})
    done = subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert b"<svg" in done.stdout


def test_render_without_graphviz_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "graphviz", None)  # makes `import graphviz` raise ImportError
    x = ta.randn(2, requires_grad=True)
    with pytest.raises(ImportError, match=r"pip install 'tinygrad_attn\[viz\]'"):
        viz.render(x.exp(), tmp_path / "g")


def test_render_writes_svg(tmp_path):
    pytest.importorskip("graphviz")
    if shutil.which("dot") is None:
        pytest.skip("Graphviz 'dot' program not installed")
    x = ta.randn(3, requires_grad=True)
    path = viz.render(x.exp().sum(), tmp_path / "graph")
    assert path == tmp_path / "graph.svg"
    text = path.read_text()
    assert "<svg" in text and "ExpBackward" in text


def legend(dot: str) -> str:
    """The graph's label (the legend), DOT escapes undone."""
    match = re.search(r'^\s*graph \[.*label="((?:[^"\\]|\\.)*)"', dot, re.M)
    assert match is not None, "no legend"
    return match.group(1).replace("\\n", "\n").replace('\\"', '"')


def test_legend_explains_arrows_and_colours():
    x = ta.randn(3, requires_grad=True)
    text = legend(viz.to_dot(x.exp().sum()))
    assert "Arrows follow the data forwards" in text and "backward() walks them in reverse" in text
    for colour in ("Blue", "Grey", "White", "green"):
        assert colour in text
    assert "Saved for backward in all: 12 B" in text  # ExpBackward keeps its (3,) float32 output
    assert "Saved for backward" not in legend(viz.to_dot(x.exp(), show_saved=False))


def test_an_array_saved_by_two_nodes_is_counted_once_in_the_total():
    x = ta.randn(8, requires_grad=True)  # 32 bytes of float32
    h = x.exp()  # ExpBackward keeps its output h ...
    y = h * h  # ... and MulBackward keeps the same array as both its inputs
    assert viz.saved_bytes(y.grad_fn) == 32 and viz.saved_bytes(h.grad_fn) == 32
    assert viz.total_saved_bytes(y) == 32
    assert "Saved for backward in all: 32 B" in legend(viz.to_dot(y))
    z = x.exp() * h  # a second exp output: Mul keeps both, each Exp its own: 4 records of 2 arrays
    assert viz.total_saved_bytes(z) == 2 * 32
    assert viz.total_saved_bytes([y, z]) == 2 * 32  # the two graphs share h


def test_total_after_backward_is_zero():
    x = ta.randn(4, requires_grad=True)
    loss = (x * x).tanh().sum()
    assert viz.total_saved_bytes(loss) == 2 * 16
    loss.backward()
    assert viz.total_saved_bytes(loss) == 0
