"""Pictures of a genotype's normal and reduction cells (like the figures of the paper's supplement).

Drawn with matplotlib alone (no graphviz binary on clusters): edges are curves labelled with their op,
and each label goes to the spot along its edge where it overlaps least with boxes and other labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ista.rundir.atomic import replacing
from ista.space.genotypes import Genotype

COLOURS = {"input": "#b4eeb4", "node": "#add8e6", "output": "#eee8aa"}
LABEL_CHAR_W, LABEL_H, BOX_W, BOX_H = 0.09, 0.3, 0.62, 0.42  # in data units


def _layout(n_nodes: int) -> dict[int, tuple[float, float]]:
    """State index → (x, y): inputs on the left, intermediate nodes stacked in one column, output right.

    One column for all nodes means no edge ever passes through a node: input edges fan in from the left,
    node-to-node edges bulge out to the right of the column.
    """
    positions = {0: (0.0, 1.6), 1: (0.0, -1.6)}
    for j in range(n_nodes):
        positions[j + 2] = (3.2, (n_nodes - 1) - 2.0 * j)
    positions[-1] = (7.0, 0.0)  # the output c_k
    return positions


def _bezier(p1: np.ndarray, p2: np.ndarray, rad: float, t: float | np.ndarray) -> np.ndarray:
    """A point of matplotlib's `arc3` curve (a quadratic Bézier with control point mid + rad·(dy, −dx))."""
    d = p2 - p1
    control = (p1 + p2) / 2 + rad * np.array([d[1], -d[0]])
    return (1 - t) ** 2 * p1 + 2 * (1 - t) * t * control + t**2 * p2


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Overlap area of two (x, y, half-width, half-height) boxes."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0] - a[2], b[0] - b[2])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1] - a[3], b[1] - b[3])
    return max(w, 0.0) * max(h, 0.0)


def _covers(box: tuple[float, float, float, float], points: np.ndarray) -> int:
    """How many points of another edge's path a label box would hide."""
    inside = (np.abs(points[:, 0] - box[0]) < box[2]) & (np.abs(points[:, 1] - box[1]) < box[3])
    return int(inside.sum())


def draw_cell(ax, pairs: tuple[tuple[str, int], ...], concat: tuple[int, ...], title: str) -> None:
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    pos = _layout(len(pairs) // 2)
    names = {0: "c_{k-2}", 1: "c_{k-1}", -1: "c_{k}"}
    occupied = [(x, y, BOX_W / 2 + 0.05, BOX_H / 2 + 0.05) for x, y in pos.values()]
    boxes = {}
    for s, (x, y) in pos.items():
        kind = "input" if s in (0, 1) else "output" if s == -1 else "node"
        boxes[s] = FancyBboxPatch(
            (x - BOX_W / 2, y - BOX_H / 2),
            BOX_W,
            BOX_H,
            boxstyle="round,pad=0.04",
            fc=COLOURS[kind],
            ec="black",
            lw=1.0,
            zorder=3,
        )
        ax.add_patch(boxes[s])
        ax.text(
            x,
            y,
            f"${names[s]}$" if s in names else str(s - 2),
            ha="center",
            va="center",
            fontsize=11,
            zorder=4,
        )

    def arrow(a: int, b: int, rad: float, **style) -> None:
        # patchA/patchB clip the curve at the box borders, so arrowheads stay visible at any scale.
        ax.add_patch(
            FancyArrowPatch(
                pos[a],
                pos[b],
                connectionstyle=f"arc3,rad={rad}",
                arrowstyle="-|>",
                mutation_scale=12,
                patchA=boxes[a],
                patchB=boxes[b],
                shrinkA=1,
                shrinkB=1,
                zorder=2,
                **style,
            )
        )

    edges = []  # (op, source, target, rad)
    for node in range(len(pairs) // 2):
        both = pairs[2 * node : 2 * node + 2]
        same_input = both[0][1] == both[1][1]
        for p, (op, source) in enumerate(both):
            if source >= 2:  # node to node: bulge right of the column
                rad = -0.45 if p == 0 or not same_input else -0.2
            else:
                rad = (0.2 if p == 0 else -0.2) if same_input else 0.0
            edges.append((op, source, node + 2, rad))
    ts = np.linspace(0.1, 0.9, 33)[:, None]
    paths = [_bezier(np.array(pos[a]), np.array(pos[b]), rad, ts) for _, a, b, rad in edges]
    for e, (op, source, target, rad) in enumerate(edges):
        arrow(source, target, rad, color="#333333", lw=1.3)
        half = (LABEL_CHAR_W * len(op) / 2 + 0.05, LABEL_H / 2)
        # Input edges fan in from two boxes, so they are apart only near their targets.
        spots = (0.5, 0.4, 0.6, 0.3, 0.7) if source >= 2 else (0.68, 0.6, 0.76, 0.52, 0.44)
        candidates = [_bezier(np.array(pos[source]), np.array(pos[target]), rad, t) for t in spots]
        cost = [
            sum(_overlap((*c, *half), o) for o in occupied)
            + 0.01 * sum(_covers((*c, *half), paths[other]) for other in range(len(edges)) if other != e)
            for c in candidates
        ]
        x, y = candidates[int(np.argmin(cost))]  # the most central of the least-crowded spots
        occupied.append((x, y, *half))
        ax.text(
            x,
            y,
            op,
            ha="center",
            va="center",
            fontsize=8.5,
            zorder=5,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "#999999", "lw": 0.6},
        )
    for s in concat:
        arrow(s, -1, 0.0, color="#888888", lw=1.0, linestyle="--")
    xs, ys = zip(*pos.values(), strict=True)
    ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
    ax.set_ylim(min(ys) - 0.5, max(ys) + 0.5)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=12)


def save_genotype_figure(genotype: Genotype, path: str | Path, title: str | None = None) -> Path:
    """Writes the normal and the reduction cell, side by side, to a .png/.svg/.pdf file."""
    from matplotlib.figure import Figure

    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ValueError(f"cell picture must be .png, .svg or .pdf, got {path.name!r}")
    import matplotlib

    fig = Figure(figsize=(14, 6))
    left, right = fig.subplots(1, 2)
    draw_cell(left, genotype.normal, genotype.normal_concat, "normal cell")
    draw_cell(right, genotype.reduce, genotype.reduce_concat, "reduction cell")
    if title:
        fig.suptitle(title, fontsize=14)
    # fixed margins, not a layout engine: that would draw the figure twice, and it costs every run a second
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.89 if title else 0.94, wspace=0.02)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path, keep_suffix=True) as tmp, matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(tmp, dpi=150)  # SVG labels stay searchable text
    return path
