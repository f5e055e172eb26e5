"""A program's computation graph (render/graph.py), forward and backward: its nodes and edges are exactly the
names each printed line uses, read from the printed program's text (not from the graph's own code)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

import matcalc
from matcalc.render.graph import Graph, Node, computation_graph, graph_svg
from matcalc.render.text import to_text

SVG = "{http://www.w3.org/2000/svg}"
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

PROGRAMS = [("h1 = tanh(W1 x); h2 = tanh(W2 h1); L = sum(h2)", "W1"),
            ("H = relu(W1 X + b1 vector(1)^T); L = sum((W2 H - Y).^2) / 2", "W1")]


def _lines_and_uses(d: matcalc.Derivative, label: str) -> dict[str, set[str]]:
    """Each line's name -> the names (variables and other lines) its text uses: the lines as printed, the
    program's output (not printed) as the user wrote it, and the result's line as `label`."""
    printed = str(d).split("\n")
    lines = [line.split(" = ", 1) for line in printed[:-1]]
    lines.append((d.program[-1][0], d.program[-1][1]))  # the output's value, as the program gives it
    lines.append((label, printed[-1]))
    known = set(d.where) | {name for name, _ in lines}
    return {name: {token for token in NAME.findall(text if isinstance(text, str) else to_text(text))
                   if token in known and token != name} for name, text in lines}


@pytest.mark.parametrize(("program", "wrt"), PROGRAMS)
def test_the_graph_of_a_program_has_an_edge_for_each_name_a_line_uses(program, wrt):
    d = matcalc.diff(program, wrt)
    label = f"dL/d{wrt}"
    graph = computation_graph(d.program, d.definitions, [(label, d.body)])
    uses = _lines_and_uses(d, label)
    assert {(used, name) for name, names in uses.items() for used in names} == set(graph.edges)
    bands = {node.name: node.band for node in graph.nodes}
    assert {name for name, _ in d.program} <= {name for name, band in bands.items() if band == "forward"}
    assert {name for name, band in bands.items() if band == "backward"} == \
        {label} | {name for name in uses if name.startswith("g_")}
    assert all(band == "input" for name, band in bands.items() if name in d.where)


def test_the_svg_draws_every_node_and_edge_and_escapes_the_text():
    d = matcalc.diff(*PROGRAMS[0])
    graph = computation_graph(d.program, d.definitions, [("dL/dW1", d.body)])
    svg = ET.fromstring(graph_svg(graph))  # well-formed XML
    names = [g.get("data-name") for g in svg.iter(f"{SVG}g")]
    assert sorted(names) == sorted(node.name for node in graph.nodes)
    edges = {(line.get("data-from"), line.get("data-to")) for line in svg.iter(f"{SVG}line")}
    assert edges == set(graph.edges)
    dashed = {(line.get("data-from"), line.get("data-to")) for line in svg.iter(f"{SVG}line")
              if line.get("stroke-dasharray")}
    assert dashed == {edge for edge in graph.edges if edge[1] in ("g_h1", "dL/dW1")}  # into the backward band
    # a line's text is escaped: a node whose name and text hold markup characters stays well-formed XML
    marked = Graph((Node("a<b", "forward", 1, "x & <y>"),), ())
    drawn = ET.fromstring(graph_svg(marked))
    assert [g.get("data-name") for g in drawn.iter(f"{SVG}g")] == ["a<b"]
    assert "a<b = x & <y>" in "".join(drawn.itertext())
