"""The benchmark report's plots, drawn with Pillow (no plotting library needed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

COLOURS = [(70, 110, 180), (220, 120, 40), (90, 160, 90), (180, 70, 70), (130, 90, 170),
           (120, 120, 120)]


def _canvas(width: int, height: int) -> tuple[Any, Any]:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), "white")
    return image, ImageDraw.Draw(image)


def sched_ratios(sched: dict[str, Any], path: Path, width: int = 900,
                 height: int = 420) -> None:
    """Grouped bars: one group per scenario, one bar per policy, log-scaled ratio."""
    runs = sched["scenarios"]
    scenarios = list(runs)
    policies = list(next(iter(runs.values()))) if runs else []
    values = [r["ratio"] for by in runs.values() for r in by.values() if r["ratio"]]
    top_value = max(values + [2.0])
    image, draw = _canvas(width, height)
    left, right, top, bottom = 60, width - 160, 30, height - 50
    span = math.log10(top_value) or 1.0

    def y(v: float) -> float:
        return bottom - (bottom - top) * math.log10(max(v, 1.0)) / span

    group = (right - left) / max(1, len(scenarios))
    bar = group * 0.8 / max(1, len(policies))
    for i, name in enumerate(scenarios):
        x0 = left + i * group + group * 0.1
        for j, policy in enumerate(policies):
            ratio = runs[name][policy]["ratio"]
            if ratio:
                draw.rectangle([x0 + j * bar, y(ratio), x0 + (j + 1) * bar - 2, bottom],
                               fill=COLOURS[j % len(COLOURS)])
        draw.text((x0, bottom + 8), name, fill="black")
    for v in (1, 1.15, 2, 5, 10, 20, 50):
        if v <= top_value:
            draw.line([left - 4, y(v), right, y(v)], fill=(225, 225, 225))
            draw.text((8, y(v) - 6), f"{v:g}", fill="black")
    draw.line([left, bottom, right, bottom], fill="black")
    draw.line([left, top, left, bottom], fill="black")
    draw.text((left, 8), "makespan / lower bound (log scale; 1 = the bound)", fill="black")
    for j, policy in enumerate(policies):
        draw.rectangle([right + 20, top + j * 20, right + 32, top + j * 20 + 12],
                       fill=COLOURS[j % len(COLOURS)])
        draw.text((right + 38, top + j * 20), policy, fill="black")
    image.save(path)


def scale_curves(scale: dict[str, Any], path: Path, width: int = 900,
                 height: int = 380) -> None:
    """Two panels against sessions: master RSS (MB) and dispatches per master CPU second."""
    curves = scale["curves"]
    xs = curves["sessions"]
    image, draw = _canvas(width, height)
    panels = (("master RSS, MB", [v / 1024 for v in curves["rss_kb"]]),
              ("dispatches per master CPU second", curves["dispatches_per_cpu_s"]))
    pw = width // 2
    for k, (title, ys) in enumerate(panels):
        left, right, top, bottom = k * pw + 60, (k + 1) * pw - 20, 30, height - 40
        xmax = max(xs + [1])
        ymax = max(ys + [1]) * 1.1

        def px(x: float, left=left, right=right, xmax=xmax) -> float:
            return left + (right - left) * x / xmax

        def py(v: float, top=top, bottom=bottom, ymax=ymax) -> float:
            return bottom - (bottom - top) * v / ymax

        draw.line([left, bottom, right, bottom], fill="black")
        draw.line([left, top, left, bottom], fill="black")
        points = [(px(x), py(v)) for x, v in zip(xs, ys, strict=True)]
        if len(points) > 1:
            draw.line(points, fill=COLOURS[k], width=2)
        for (x, v), (u, w) in zip(zip(xs, ys, strict=True), points, strict=True):
            draw.ellipse([u - 3, w - 3, u + 3, w + 3], fill=COLOURS[k])
            draw.text((u - 10, w - 16), f"{v:.0f}", fill="black")
            draw.text((u - 12, bottom + 6), str(x), fill="black")
        draw.text((left, 8), title + " against sessions", fill="black")
        draw.text((4, top), f"{ymax:.0f}", fill="black")
    image.save(path)
