"""A PNG timeline of a run: one row per node, one bar per task execution, faults and
detections marked. Rows beyond MAX_ROWS are folded (the busiest and the faulty nodes are
kept), so a 1,000-node run still gives a readable picture."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PIL import Image, ImageDraw

from microswarm.plotting import font, legend, nice_step, nice_ticks, text_width, tick_label

if TYPE_CHECKING:
    from microswarm.sim.cluster import Simulation

MAX_ROWS = 60
ROW_H = 14
LEFT = 110
RIGHT = 20
TOP = 40
BOTTOM = 44  # the time axis; the legend goes below it
LEGEND_H = 44
WIDTH = 1200

COLOURS = {
    "ok": (70, 130, 180),
    "cancelled": (200, 200, 200),
    "error": (230, 150, 40),
    "aborted": (200, 60, 60),
    "unfinished": (170, 200, 225),
}
BAR_LABELS = {
    "ok": "task ran",
    "cancelled": "cancelled copy",
    "error": "kernel error",
    "aborted": "lost with its node",
    "unfinished": "running at the end",
}
MARK_LABELS = {
    "crash": "crash", "freeze": "freeze", "partition": "partition", "disconnect": "disconnect",
    "straggler": "straggler", "lost": "declared lost", "heal": "heal", "thaw": "thaw",
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


def time_axis(end: float) -> tuple[float, str, list[float]]:
    """(scale, unit, ticks in that unit) for a run `end` seconds long: seconds, minutes or
    hours, whichever gives readable numbers, at a 1/2/5 step."""
    scale, unit = (1.0, "s") if end < 300 else (60.0, "min") if end < 3 * 3600 else (3600.0, "h")
    return scale, unit, nice_ticks(0.0, end / scale, 10)


def plot_timeline(sim: Simulation, path: str) -> None:
    rows = _rows(sim)
    row_of = {node: r for r, node in enumerate(rows)}
    end = max(sim.events.now, 1e-9)
    height = TOP + ROW_H * len(rows) + BOTTOM + LEGEND_H
    img = Image.new("RGB", (WIDTH, height), "white")
    draw = ImageDraw.Draw(img)
    label_font, title_font = font(11), font(13)
    span = WIDTH - LEFT - RIGHT

    def x(t: float) -> int:
        return LEFT + int(span * t / end)

    title = (f"{sim.scenario.name}: {len(sim.nodes)} nodes, {sim.job.describe}"
             f" ({len(rows)} rows shown)" if len(rows) < len(sim.nodes) else
             f"{sim.scenario.name}: {len(sim.nodes)} nodes, {sim.job.describe}")
    draw.text((LEFT, 10), title, fill="black", font=title_font)
    scale, unit, ticks = time_axis(end)
    step = nice_step(end / scale, 10)
    plot_bottom = TOP + ROW_H * len(rows)
    for tick in ticks:
        draw.line([(x(tick * scale), TOP), (x(tick * scale), plot_bottom)], fill=(236, 236, 236))
    for r, node in enumerate(rows):
        y = TOP + r * ROW_H
        name = sim.nodes[node].node_id[:16]
        draw.text((LEFT - 6 - text_width(draw, name, label_font), y + 1), name, fill="black",
                  font=label_font)
        draw.line([(LEFT, y + ROW_H - 1), (WIDTH - RIGHT, y + ROW_H - 1)], fill=(245, 245, 245))
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
    axis_y = plot_bottom + 4
    draw.line([(LEFT, axis_y), (WIDTH - RIGHT, axis_y)], fill="black")
    for tick in ticks:
        tx = x(tick * scale)
        draw.line([(tx, axis_y), (tx, axis_y + 4)], fill="black")
        label = tick_label(tick, step)
        draw.text((tx - text_width(draw, label, label_font) / 2, axis_y + 6), label,
                  fill="black", font=label_font)
    axis = f"simulated time ({unit})"
    draw.text(((LEFT + WIDTH - RIGHT - text_width(draw, axis, label_font)) / 2, axis_y + 22),
              axis, fill="black", font=label_font)
    outcomes = {outcome for *_rest, outcome in sim.gantt}
    kinds = {kind for _node, _t, kind in sim.marks}
    entries = [(BAR_LABELS.get(o, o), COLOURS.get(o, "gray"), "box")
               for o in COLOURS if o in outcomes]
    entries += [(MARK_LABELS.get(k, k), MARK_COLOURS.get(k, "black"), "mark")
                for k in MARK_COLOURS if k in kinds]
    legend(draw, LEFT, height - LEGEND_H + 4, WIDTH - RIGHT, entries, label_font)
    img.save(path)
