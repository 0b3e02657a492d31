"""Render the app icon set from its one source drawing, resources/icons/app.svg.

Writes resources/icons/app-<N>.png for every size the Linux hicolor theme and the installers use,
app.ico (Windows: 16-256 px in one file) and app.icns (macOS: 16-512 px). Each size is rendered from
the vector drawing, not scaled down from a big bitmap, so small sizes stay sharp.

    python packaging/make_icons.py            # regenerate after editing app.svg
    python packaging/make_icons.py --check    # exit 1 if a generated file is missing or stale

Needs QtSvg (part of PySide6-essentials) and Pillow; run it at build time, not at app run time.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

ICONS = Path(__file__).resolve().parent.parent / "resources" / "icons"
SOURCE = ICONS / "app.svg"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
ICNS_SIZES = (16, 32, 64, 128, 256, 512)


def png_path(size: int) -> Path:
    return ICONS / f"app-{size}.png"


def render(size: int):
    """The drawing rendered at `size`×`size` as an RGBA PIL image."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PIL import Image
    from PySide6.QtCore import QBuffer, QIODevice, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(SOURCE))
    if not renderer.isValid():
        raise ValueError(f"{SOURCE} is not a valid SVG drawing.")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return Image.open(io.BytesIO(bytes(buffer.data()))).convert("RGBA")


def build() -> dict[Path, bytes]:
    """Every generated file's path and its bytes."""
    images = {size: render(size) for size in PNG_SIZES}
    files: dict[Path, bytes] = {}
    for size, image in images.items():
        out = io.BytesIO()
        image.save(out, "PNG", optimize=True)
        files[png_path(size)] = out.getvalue()
    out = io.BytesIO()
    images[256].save(out, "ICO", sizes=[(s, s) for s in ICO_SIZES],
                     append_images=[images[s] for s in ICO_SIZES if s != 256])
    files[ICONS / "app.ico"] = out.getvalue()
    out = io.BytesIO()
    images[512].save(out, "ICNS", append_images=[images[s] for s in ICNS_SIZES if s != 512])
    files[ICONS / "app.icns"] = out.getvalue()
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the files are present and current")
    args = parser.parse_args(argv)
    files = build()
    if args.check:
        stale = [p for p, data in files.items() if not p.exists() or p.read_bytes() != data]
        for path in stale:
            print(f"stale or missing: {path.relative_to(ICONS.parent.parent)}")
        return 1 if stale else 0
    for path, data in files.items():
        path.write_bytes(data)
        print(f"wrote {path.relative_to(ICONS.parent.parent)} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
