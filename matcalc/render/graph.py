"""A program's computation graph, forward and backward, as a picture (SVG text) for students: the inputs and the
program's definitions in the forward band, left to right in the order the values are computed; the adjoints
(g_h, the seeds' deltas) and the gradients in the backward band below, right to left as the backward pass runs.
An edge goes from each name to each line that uses it. Pure functions; no pass recurses over an expression."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from ..core import ir
from ..core.ir import Expr

Bindings = Sequence[tuple[str, Expr]]


@dataclass(frozen=True)
class Node:
    name: str
    band: str  # "input", "forward" or "backward"
    column: int  # left to right within its band
    text: str  # what the line computes, as the engine prints it ("" for an input)


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    edges: tuple[tuple[str, str], ...]  # (from, to): `to`'s line uses `from`


def computation_graph(program: Bindings, definitions: Bindings, gradients: Bindings) -> Graph:
    """The graph of a program (its own definitions, the output last) as the engine prints its derivative: the
    definitions the gradients use (forward values and shared parts, then adjoints), the program's lines it does not
    print (the output), and the gradients (label, expression). Forward are the lines of values; backward are the
    adjoints (g_h of a name h of the program or a variable), what uses them, and the gradients."""
    from .text import to_text

    printed = {name for name, _ in definitions}
    own = {name for name, _ in program}
    lines = [*definitions, *((name, value) for name, value in program if name not in printed), *gradients]
    defined = {name for name, _ in lines}
    uses = {name: [used for used in ir.variables(value) if used != name] for name, value in lines}
    backward: set[str] = {label for label, _ in gradients}
    for name, _ in lines:  # in order: a line is backward when it is an adjoint or uses one
        if name not in own and (_is_adjoint(name) or any(used in backward for used in uses[name])):
            backward.add(name)
    forward = [(name, value) for name, value in lines if name not in backward]
    inputs = list(dict.fromkeys(used for name, _ in lines for used in uses[name] if used not in defined))
    nodes = [Node(name, "input", 0, "") for name in inputs]
    nodes += [Node(name, "forward", index + 1, to_text(value)) for index, (name, value) in enumerate(forward)]
    back = [(name, value) for name, value in lines if name in backward]
    nodes += [Node(name, "backward", len(forward) - index, to_text(value)) for index, (name, value) in enumerate(back)]
    edges = tuple((used, name) for name, _ in lines for used in uses[name])
    return Graph(tuple(nodes), edges)


def _is_adjoint(name: str) -> bool:
    """g_h, the adjoint the backward pass names after a value h of the program (or g_x of a variable x)."""
    return name.startswith("g_") and len(name) > 2


BOX_WIDTH, BOX_HEIGHT, GAP_X, ROW_Y = 150, 46, 40, {"input": 30, "forward": 30, "backward": 190}
LABEL_CHARACTERS = 22  # of the line's text shown in a box (the whole line is its tooltip)


def graph_svg(graph: Graph) -> str:
    """The graph as SVG text: a box per node (its name, the start of its line; the whole line as its title),
    forward edges solid, edges into the backward band dashed."""
    inputs = [node for node in graph.nodes if node.band == "input"]
    position: dict[str, tuple[float, float]] = {}
    for index, node in enumerate(inputs):  # the inputs stacked in the first column
        position[node.name] = (10, 10 + index * (BOX_HEIGHT + 12))
    input_height = 10 + len(inputs) * (BOX_HEIGHT + 12)
    backward_y = max(ROW_Y["backward"], input_height + 40)
    for node in graph.nodes:
        if node.band != "input":
            x = 10 + node.column * (BOX_WIDTH + GAP_X)
            position[node.name] = (x, ROW_Y["forward"] if node.band == "forward" else backward_y)
    width = max(x for x, _ in position.values()) + BOX_WIDTH + 10
    height = max(y for _, y in position.values()) + BOX_HEIGHT + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" viewBox="0 0 {width:g} {height:g}" '
             f'width="{width:g}" height="{height:g}" role="img" aria-label="computation graph">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>']
    bands = {node.name: node.band for node in graph.nodes}
    for source, target in graph.edges:
        (x1, y1), (x2, y2) = position[source], position[target]
        start = (x1 + BOX_WIDTH, y1 + BOX_HEIGHT / 2) if x1 < x2 else (x1 + BOX_WIDTH / 2, y1 + BOX_HEIGHT)
        if y1 > y2:
            start = (x1 + BOX_WIDTH / 2, y1)
        end = (x2 + BOX_WIDTH / 2, y2 + (BOX_HEIGHT if y1 > y2 else 0)) if y1 != y2 else (
            (x2, y2 + BOX_HEIGHT / 2) if x1 < x2 else (x2 + BOX_WIDTH, y2 + BOX_HEIGHT / 2))
        kind = "backward" if bands[target] == "backward" else "forward"
        dashes = ' stroke-dasharray="5 3"' if kind == "backward" else ""
        parts.append(f'<line class="edge {kind}" data-from="{escape(source)}" data-to="{escape(target)}" '
                     f'x1="{start[0]:g}" y1="{start[1]:g}" x2="{end[0]:g}" y2="{end[1]:g}" stroke="#555" '
                     f'stroke-width="1.2"{dashes} marker-end="url(#arrow)"/>')
    fills = {"input": "#eef3ff", "forward": "#e9f7ec", "backward": "#fdf0e6"}
    for node in graph.nodes:
        x, y = position[node.name]
        shown = node.text if len(node.text) <= LABEL_CHARACTERS else node.text[:LABEL_CHARACTERS - 1] + "…"
        parts.append(f'<g class="node {node.band}" data-name="{escape(node.name)}"><title>'
                     f'{escape(node.name + (" = " + node.text if node.text else ""))}</title>'
                     f'<rect x="{x:g}" y="{y:g}" width="{BOX_WIDTH}" height="{BOX_HEIGHT}" rx="6" '
                     f'fill="{fills[node.band]}" stroke="#777"/>'
                     f'<text x="{x + 8:g}" y="{y + 18:g}" font-family="monospace" font-size="13" '
                     f'font-weight="bold">{escape(node.name)}</text>'
                     f'<text x="{x + 8:g}" y="{y + 36:g}" font-family="monospace" font-size="11">'
                     f'{escape(shown)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
