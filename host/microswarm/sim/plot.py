"""A PNG timeline of a run: one row per node, one bar per task execution, faults and
detections marked. Rows beyond MAX_ROWS are folded (the busiest and the faulty nodes are
kept), so a 1,000-node run still gives a readable picture."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:
    from microswarm.sim.cluster import Simulation

MAX_ROWS = 60
ROW_H = 14
LEFT = 110
RIGHT = 20
TOP = 40
BOTTOM = 40
WIDTH = 1200

COLOURS = {
    "ok": (70, 130, 180),
    "cancelled": (200, 200, 200),
    "error": (230, 150, 40),
    "aborted": (200, 60, 60),
    "unfinished": (170, 200, 225),
}
MARK_COLOURS = {
    "crash": (200, 0, 0),
    "freeze": (120, 0, 160),
    "partition": (230, 120, 0),
    "disconnect": (230, 120, 0),
    "straggler": (0, 150, 0),
    "lost": (0, 0, 0),
    "heal": (0, 160, 160),
    "thaw": (0, 160, 160),
}


def _rows(sim: Simulation) -> list[int]:
    marked = {i for i, _t, _k in sim.marks if i >= 0}
    if len(sim.nodes) <= MAX_ROWS:
        return list(range(len(sim.nodes)))
    keep = sorted(marked)[: MAX_ROWS // 2]
    rest = [n.index for n in sim.nodes if n.index not in marked][: MAX_ROWS - len(keep)]
    return sorted(keep + rest)


def plot_timeline(sim: Simulation, path: str) -> None:
    rows = _rows(sim)
    row_of = {node: r for r, node in enumerate(rows)}
    end = max(sim.events.now, 1e-9)
    height = TOP + ROW_H * len(rows) + BOTTOM
    img = Image.new("RGB", (WIDTH, height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    span = WIDTH - LEFT - RIGHT

    def x(t: float) -> int:
        return LEFT + int(span * t / end)

    title = (f"{sim.scenario.name}: {len(sim.nodes)} nodes, {sim.job.describe}"
             f" ({len(rows)} rows shown)" if len(rows) < len(sim.nodes) else
             f"{sim.scenario.name}: {len(sim.nodes)} nodes, {sim.job.describe}")
    draw.text((LEFT, 8), title, fill="black", font=font)
    for r, node in enumerate(rows):
        y = TOP + r * ROW_H
        draw.text((4, y), sim.nodes[node].node_id[:16], fill="black", font=font)
        draw.line([(LEFT, y + ROW_H - 1), (WIDTH - RIGHT, y + ROW_H - 1)], fill=(235, 235, 235))
    for node, _task, start, stop, outcome in sim.gantt:
        r = row_of.get(node)
        if r is None:
            continue
        y = TOP + r * ROW_H
        x0, x1 = x(start), max(x(stop), x(start) + 1)
        draw.rectangle([x0, y + 2, x1, y + ROW_H - 3], fill=COLOURS.get(outcome, "gray"))
        if x1 - x0 > 3:
            draw.line([(x0, y + 2), (x0, y + ROW_H - 3)], fill="white")
    for node, t, kind in sim.marks:
        r = row_of.get(node)
        if r is None:
            continue
        y = TOP + r * ROW_H
        colour = MARK_COLOURS.get(kind, "black")
        draw.polygon([(x(t), y + ROW_H - 2), (x(t) - 4, y), (x(t) + 4, y)], fill=colour)
    axis_y = TOP + ROW_H * len(rows) + 4
    draw.line([(LEFT, axis_y), (WIDTH - RIGHT, axis_y)], fill="black")
    for i in range(11):
        t = end * i / 10
        draw.line([(x(t), axis_y), (x(t), axis_y + 4)], fill="black")
        draw.text((x(t) - 12, axis_y + 6), f"{t:.3g}s", fill="black", font=font)
    legend = ("bars: ok (blue), cancelled copy (grey), lost to a crash (red), still running "
              "at the end (pale); marks: crash red, freeze purple, partition orange, "
              "straggler green, lost black, heal/thaw teal")
    draw.text((LEFT, height - 14), legend, fill="black", font=font)
    img.save(path)
