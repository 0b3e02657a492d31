"""The guidance trade-off plot of an eval sweep as a PNG, drawn with Pillow (no plotting library):
left FID (lower is better) against IS, right precision against recall; points joined in sweep
order and labelled with their guidance value."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

PANEL = (420, 360)  # width, height of one panel in pixels
MARGIN = (64, 28, 20, 48)  # left, top, right, bottom
LINE, POINT, GRID, TEXT = (40, 110, 200), (220, 80, 40), (225, 225, 225), (30, 30, 30)


def _range(values: Sequence[float], fixed: tuple[float, float] | None) -> tuple[float, float]:
    if fixed is not None:
        return fixed
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.1 or max(abs(hi) * 0.1, 1e-3)
    return lo - pad, hi + pad


def _panel(draw: ImageDraw.ImageDraw, origin: tuple[int, int], xs: Sequence[float], ys: Sequence[float],
           tags: Sequence[str], xlabel: str, ylabel: str, font, x_range=None, y_range=None) -> None:
    """One scatter-and-line panel with 5 grid lines per axis, drawn at `origin` (top-left)."""
    ox, oy = origin
    left, top, right, bottom = ox + MARGIN[0], oy + MARGIN[1], ox + PANEL[0] - MARGIN[2], oy + PANEL[1] - MARGIN[3]
    (x0, x1), (y0, y1) = _range(xs, x_range), _range(ys, y_range)

    def to_px(x: float, y: float) -> tuple[float, float]:
        return left + (x - x0) / (x1 - x0) * (right - left), bottom - (y - y0) / (y1 - y0) * (bottom - top)

    for k in range(5):
        fx, fy = x0 + (x1 - x0) * k / 4, y0 + (y1 - y0) * k / 4
        px, _ = to_px(fx, y0)
        _, py = to_px(x0, fy)
        draw.line([(px, top), (px, bottom)], fill=GRID)
        draw.line([(left, py), (right, py)], fill=GRID)
        draw.text((px, bottom + 4), f"{fx:.3g}", fill=TEXT, font=font, anchor="mt")
        draw.text((left - 4, py), f"{fy:.3g}", fill=TEXT, font=font, anchor="rm")
    draw.rectangle([left, top, right, bottom], outline=TEXT)
    points = [to_px(x, y) for x, y in zip(xs, ys)]
    if len(points) > 1:
        draw.line(points, fill=LINE, width=2)
    for (px, py), tag in zip(points, tags):
        draw.ellipse([px - 4, py - 4, px + 4, py + 4], fill=POINT)
        draw.text((px + 6, py - 6), tag, fill=TEXT, font=font, anchor="lb")
    draw.text(((left + right) / 2, bottom + 22), xlabel, fill=TEXT, font=font, anchor="mt")
    draw.text((ox + 4, top - 18), ylabel, fill=TEXT, font=font, anchor="lt")


def plot_tradeoff(rows: Sequence[dict], path: str | Path, title: str = "", symbol: str = "w") -> Path:
    """Write the two-panel plot of `rows` (dicts with value, fid, is, precision, recall); return the path."""
    if not rows:
        raise ValueError("Nothing to plot: the sweep has no rows.")
    font = ImageFont.load_default()
    image = Image.new("RGB", (2 * PANEL[0], PANEL[1] + 24), "white")
    draw = ImageDraw.Draw(image)
    draw.text((PANEL[0], 6), title, fill=TEXT, font=font, anchor="mt")
    tags = [f"{symbol}={r['value']:g}" for r in rows]
    _panel(draw, (0, 24), [r["is"] for r in rows], [r["fid"] for r in rows], tags,
           "IS (judge), higher = more confident and diverse classes", "FID (judge features), lower = closer", font)
    _panel(draw, (PANEL[0], 24), [r["recall"] for r in rows], [r["precision"] for r in rows], tags,
           "recall (k-NN manifold)", "precision", font, x_range=(0.0, 1.0), y_range=(0.0, 1.0))
    path = Path(path)
    image.save(path)
    return path
