"""Trajectory export: an animated GIF with x_t and x̂0 side by side, one frame per step. Qt-free."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core.fileio import atomic_write
from core.runs import RunResult

from ..run.trajectory import Frames
from .pngio import points_picture

MIN_PANEL = 192  # image grids smaller than this are enlarged (nearest neighbour) to stay legible
POINT_EXTENT = 3.0  # 2-D frames show [−3, 3]²: all of the initial noise cloud, like the live view
LABEL_HEIGHT = 22
GAP = 8


def font(size: int = 14) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at `size` (scalable when FreeType is present)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def enlarge(picture: np.ndarray, min_side: int = MIN_PANEL) -> np.ndarray:
    """Repeat pixels by the smallest integer factor that makes the shorter side ≥ min_side."""
    factor = max(1, -(-min_side // min(picture.shape[:2])))
    return picture if factor == 1 else picture.repeat(factor, axis=0).repeat(factor, axis=1)


def frame_picture(frame: np.ndarray | None, result: RunResult, like: np.ndarray | None = None) -> np.ndarray:
    """One frame's pane → (H, W, 3) uint8: a point cloud is rasterised, an image grid enlarged.

    None (x̂0 before the first update) gives a blank pane: white for points, black the size of `like`
    for images.
    """
    if result.is_points:
        if frame is None:
            return np.full((256, 256, 3), 255, np.uint8)
        return points_picture(frame, result.request, size=256, extent=POINT_EXTENT)
    if frame is None:
        if like is None:
            raise ValueError("An image trajectory frame is missing.")
        return np.zeros_like(enlarge(like))
    return enlarge(np.asarray(frame, dtype=np.uint8))


def labelled(picture: np.ndarray, text: str) -> Image.Image:
    """The picture with a white caption strip above it."""
    h, w = picture.shape[:2]
    canvas = Image.new("RGB", (w, h + LABEL_HEIGHT), "white")
    canvas.paste(Image.fromarray(picture), (0, LABEL_HEIGHT))
    ImageDraw.Draw(canvas).text((4, 3), text, fill="black", font=font(14))
    return canvas


def trajectory_frames(result: RunResult, max_frames: int | None = None) -> list[Image.Image]:
    """One RGB frame per stored step (or `max_frames` evenly spaced ones, always with the last).

    Each frame is x_t (left) and x̂0 (right) with captions naming the step, so no two frames are
    identical (GIF writers merge identical consecutive frames).
    """
    frames_of = Frames(result)
    n = len(frames_of)
    if n == 0:
        raise ValueError("This run has no trajectory frames to export.")
    indices = list(range(n))
    if max_frames is not None and n > max_frames:
        if max_frames < 2:
            raise ValueError("A trajectory GIF needs at least 2 frames.")
        indices = sorted({round(i * (n - 1) / (max_frames - 1)) for i in range(max_frames)})
    last = n - 1
    frames = []
    for i in indices:
        frame = frames_of.frame(i)
        xt = labelled(frame_picture(frame.xt, result), f"x_t   step {i}/{last}")
        x0 = labelled(frame_picture(frame.x0, result, like=frame.xt),
                      "predicted x0" if frame.x0 is not None else "predicted x0 (none yet)")
        canvas = Image.new("RGB", (xt.width + GAP + x0.width, max(xt.height, x0.height)), "white")
        canvas.paste(xt, (0, 0))
        canvas.paste(x0, (xt.width + GAP, 0))
        frames.append(canvas)
    return frames


def write_animation(path: str | Path, frames: list[Image.Image], frame_ms: int = 80,
                    hold_last_ms: int = 1500) -> Path:
    """Write `frames` as a looping animation at `path`, atomically: a GIF, or an APNG for a .png path
    (full colour, where GIF has 256 colours a frame). The last frame is held `hold_last_ms`."""
    if frame_ms < 20:
        raise ValueError("Animation frames must last at least 20 ms (browsers ignore shorter delays).")
    if not frames:
        raise ValueError("There are no frames to write.")
    durations = [frame_ms] * (len(frames) - 1) + [max(frame_ms, hold_last_ms)]
    kind = "PNG" if Path(path).suffix.lower() == ".png" else "GIF"
    same_size = [f if f.size == frames[0].size else f.resize(frames[0].size) for f in frames]

    def write(fh):
        same_size[0].save(fh, format=kind, save_all=True, append_images=same_size[1:], duration=durations,
                          loop=0, **({"optimize": False} if kind == "GIF" else {"disposal": 0}))

    return atomic_write(path, write)


def export_gif(result: RunResult, path: str | Path, frame_ms: int = 80, hold_last_ms: int = 1500,
               max_frames: int | None = 200) -> Path:
    """Write the trajectory as a looping GIF at `path` (atomically); returns the path."""
    if frame_ms < 20:
        raise ValueError("GIF frames must last at least 20 ms (browsers ignore shorter delays).")
    return write_animation(path, trajectory_frames(result, max_frames), frame_ms, hold_last_ms)
