"""Small helpers for the PNG plots drawn with Pillow (the board bench's latency histogram,
the simulator's timeline): tick steps a person reads (1, 2 or 5 times a power of ten),
their labels, a font with a size, dashed lines and legend entries."""

from __future__ import annotations

import math
from typing import Any

from PIL import ImageDraw, ImageFont


def nice_step(span: float, target: int = 6) -> float:
    """The 1/2/5 x 10^k step that cuts `span` into about `target` intervals."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / max(1, target)
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def nice_ticks(low: float, high: float, target: int = 6) -> list[float]:
    """Tick positions at a nice step from the first multiple >= low up to high."""
    step = nice_step(high - low, target)
    first = math.ceil(low / step - 1e-9) * step
    count = int(math.floor((high - first) / step + 1e-9)) + 1
    return [round(first + i * step, 12) for i in range(max(0, count))]


def tick_label(value: float, step: float, unit: str = "") -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    text = f"{value:.{decimals}f}"
    return f"{text} {unit}".strip()


def font(size: int = 12) -> Any:
    """Pillow's bundled scalable font at `size` pixels (a bitmap font where FreeType is
    missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):
        return ImageFont.load_default()


def text_width(draw: ImageDraw.ImageDraw, text: str, typeface: Any) -> int:
    left, _top, right, _bottom = draw.textbbox((0, 0), text, font=typeface)
    return right - left


def dashed_vline(draw: ImageDraw.ImageDraw, x: float, top: float, bottom: float,
                 fill: Any, dash: int = 5, width: int = 2) -> None:
    y = top
    while y < bottom:
        draw.line([(x, y), (x, min(bottom, y + dash))], fill=fill, width=width)
        y += 2 * dash


def legend(draw: ImageDraw.ImageDraw, x: int, y: int, right: int,
           entries: list[tuple[str, Any, str]], typeface: Any, row_h: int = 18) -> int:
    """Draw entries (label, colour, shape: "box" or "mark") left to right, wrapping at
    `right`; returns the y below the last row."""
    cx = x
    for label, colour, shape in entries:
        w = 16 + text_width(draw, label, typeface) + 14
        if cx + w > right and cx > x:
            cx, y = x, y + row_h
        if shape == "mark":
            draw.polygon([(cx + 5, y + 12), (cx + 1, y + 3), (cx + 9, y + 3)], fill=colour)
        else:
            draw.rectangle([cx, y + 3, cx + 11, y + 12], fill=colour)
        draw.text((cx + 16, y + 1), label, fill="black", font=typeface)
        cx += w
    return y + row_h
