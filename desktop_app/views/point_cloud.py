"""A fast 2-D point cloud item: one pre-rendered dot per colour, stamped with drawPixmapFragments.

pyqtgraph's ScatterPlotItem builds a record and a symbol key per point on every `setData`, which
costs milliseconds per frame at 2000 points. Here a new frame only stores the coordinates (grouped
by colour); painting maps them to device pixels with numpy and stamps an antialiased dot pixmap at
each in one call per colour (the technique ScatterPlotItem uses for painting).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPixmap

try:  # pyqtgraph's wrapper over a C array of PixmapFragment (what its ScatterPlotItem paints with)
    from pyqtgraph.Qt.internals import PrimitiveArray
except ImportError:  # pragma: no cover - older pyqtgraph: fall back to drawPoints
    PrimitiveArray = None


def _dot(rgb: tuple[int, int, int], alpha: int, size: float, dpr: float,
         edge: tuple[int, int, int] | None = None) -> QPixmap:
    side = int(np.ceil(size * dpr)) + 2
    pixmap = QPixmap(side, side)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    if edge is None:
        painter.setPen(Qt.PenStyle.NoPen)
    else:
        pen = QPen(QColor(*edge, 230))
        pen.setWidthF(max(1.0, 0.9 * dpr))
        painter.setPen(pen)
    painter.setBrush(QColor(*rgb, alpha))
    offset = (side - size * dpr) / 2
    painter.drawEllipse(QRectF(offset, offset, size * dpr, size * dpr))
    painter.end()
    pixmap.setDevicePixelRatio(dpr)
    return pixmap


class PointCloudItem(pg.GraphicsObject):
    """Points (N, 2) in data coordinates, each colour group drawn as dots of `size` pixels, with a thin
    `edge` of that colour around each dot when given (samples stand out over a backdrop of the same hue)."""

    def __init__(self, size: float = 3.5, edge: tuple[int, int, int] | None = None):
        super().__init__()
        self.size = size
        self.edge = edge
        self._groups: list[tuple[tuple[int, int, int], int, np.ndarray]] = []
        self._dots: dict[tuple, QPixmap] = {}
        self._rect = QRectF()
        self._pad: tuple[float, float] | None = None  # the dots' size in data units, while the view's scale holds
        self._fragments = PrimitiveArray(QPainter.PixmapFragment, 10) if PrimitiveArray is not None else None

    def set_points(self, points: np.ndarray | None, colors: np.ndarray | None = None,
                   alpha: int = 170) -> None:
        """points (N, 2); colors: None (dark grey), one RGB (3,), or one RGB per point (N, 3) uint8."""
        self.prepareGeometryChange()
        self._groups = []
        if points is None or len(points) == 0:
            self._rect = QRectF()
            self.update()
            return
        points = np.asarray(points, dtype=np.float64)
        if colors is None or np.ndim(colors) == 1:
            rgb = (40, 40, 40) if colors is None else tuple(int(c) for c in colors)
            self._groups.append((rgb, alpha, points))
        else:
            keys, inverse = np.unique(np.asarray(colors), axis=0, return_inverse=True)
            inverse = inverse.reshape(-1)
            for k, rgb in enumerate(keys):
                self._groups.append((tuple(int(c) for c in rgb), alpha, points[inverse == k]))
        lo, hi = points.min(axis=0), points.max(axis=0)
        self._rect = QRectF(lo[0], lo[1], max(hi[0] - lo[0], 1e-9), max(hi[1] - lo[1], 1e-9))
        self.update()

    @property
    def group_colors(self) -> list[tuple[int, int, int]]:
        return [rgb for rgb, _, _ in self._groups]

    def boundingRect(self) -> QRectF:
        # Grow by the dots' size in data units so the outermost dots are repainted too. The scene asks
        # a dozen times a frame, and pyqtgraph's pixelVectors costs ~0.1 ms: kept until the view changes.
        if self._pad is None:
            px, py = self.pixelVectors()
            if px is None:
                return QRectF(self._rect)
            self._pad = (self.size * (abs(px.x()) + abs(py.x())), self.size * (abs(px.y()) + abs(py.y())))
        pad_x, pad_y = self._pad
        return self._rect.adjusted(-pad_x, -pad_y, pad_x, pad_y)

    def viewTransformChanged(self) -> None:
        super().viewTransformChanged()
        self._pad = None

    def dataBounds(self, axis: int, frac: float = 1.0, orthoRange=None):
        if self._rect.isNull():
            return None
        return (self._rect.left(), self._rect.right()) if axis == 0 else (self._rect.top(), self._rect.bottom())

    def paint(self, painter: QPainter, option=None, widget=None) -> None:
        if not self._groups:
            return
        dpr = widget.devicePixelRatioF() if widget is not None else 1.0
        if self._fragments is None:
            return self._paint_points(painter)
        tr = painter.transform()
        painter.resetTransform()
        for rgb, alpha, pts in self._groups:
            key = (rgb, alpha, self.size, dpr)
            dot = self._dots.get(key)
            if dot is None:
                dot = self._dots[key] = _dot(rgb, alpha, self.size, dpr, self.edge)
            x = tr.m11() * pts[:, 0] + tr.m21() * pts[:, 1] + tr.dx()
            y = tr.m12() * pts[:, 0] + tr.m22() * pts[:, 1] + tr.dy()
            self._fragments.resize(len(pts))
            frags = self._fragments.ndarray()
            frags[:, 0] = np.clip(x, -2**30, 2**30)  # target centre (Qt misbehaves far off-screen)
            frags[:, 1] = np.clip(y, -2**30, 2**30)
            frags[:, 2:6] = (0, 0, dot.width(), dot.height())  # source rect in the dot pixmap
            frags[:, 6:10] = (1 / dpr, 1 / dpr, 0.0, 1.0)  # scale x, scale y, rotation, opacity
            painter.drawPixmapFragments(*self._fragments.drawargs(), dot)
        painter.setTransform(tr)

    def _paint_points(self, painter: QPainter) -> None:
        from PySide6.QtCore import QPointF

        for rgb, alpha, pts in self._groups:
            pen = QPen(QColor(*rgb, alpha))
            pen.setWidthF(self.size)
            pen.setCosmetic(True)
            pen.setCapStyle(Qt.PenCapStyle.RoundCap)
            painter.setPen(pen)
            painter.drawPoints([QPointF(x, y) for x, y in pts])


LEFT_AXIS_WIDTH = 44  # px: room for labels like "-0.75" or "1e+03"
AXIS_DRAWINGS_KEPT = 12  # per axis: the few planes and step ranges a view moves between


def cache_axes(plot: pg.PlotItem, kept: int = AXIS_DRAWINGS_KEPT) -> None:
    """Render `plot`'s axes and title into cached pixmaps: a new frame then blits them instead of replaying
    their tick labels (which dominated the GUI thread's time per frame). Each axis keeps its last drawings
    (`remember_axis_drawings`: `kept` of them).

    The left axis gets a fixed width: left to size itself by its tick labels, a new label width
    resizes the view box, which (aspect-locked, or auto-ranged) changes the ticks, whose labels
    resize the axis again — a paint loop that never ends.
    """
    plot.getAxis("left").setWidth(LEFT_AXIS_WIDTH)
    for name in ("left", "bottom", "right", "top"):
        axis = plot.getAxis(name)
        axis.setCacheMode(axis.CacheMode.DeviceCoordinateCache)
        remember_axis_drawings(axis, kept)
    title = plot.titleLabel.item  # rich text, laid out again at every repaint it is part of (a plane change)
    title.setCacheMode(title.CacheMode.DeviceCoordinateCache)


def remember_axis_drawings(axis: pg.AxisItem, most: int = AXIS_DRAWINGS_KEPT) -> None:
    """Keep the axis's last `most` drawings (its ticks and labels, recorded as a QPicture: laying them out
    measures every label's text, 4 ms an axis) by everything they are drawn from, so that an axis returning to a
    range it has shown draws at once. The 2-D panes move between a few fixed planes (the noise's at Start, the
    samples' as they settle) at every run; each move redrew four axes from scratch.

    `axis.draw_ahead((lo, hi))` records the drawing of a range the axis has not shown yet, as it sits now (the
    ranges are keyed to 9 significant digits, so that one computed ahead matches the view's own)."""
    draw = axis.paint
    kept: dict[tuple, Any] = {}

    def drawing_key(span: tuple[float, float]) -> tuple:
        view = axis.linkedView()
        seen = None if view is None else view.mapRectToItem(axis, view.boundingRect()).getRect()
        transform = axis.sceneTransform()  # where the axis sits (pixel rounding of ticks depends on it)
        return (tuple(float(f"{end:.9g}") for end in span), axis.orientation, axis.geometry().getRect(), seen,
                (transform.m11(), transform.m22(), transform.dx(), transform.dy()), axis.grid, axis.scale,
                axis.autoSIPrefixScale, repr(sorted(axis.style.items(), key=lambda kv: kv[0])),
                repr(axis._tickLevels), repr(getattr(axis, "_tickSpacing", None)), axis.labelText,
                axis.pen().color().rgba(), axis.tickPen().color().rgba(), axis.textPen().color().rgba())

    def keep(key: tuple, picture: Any) -> None:
        if picture is not None and key not in kept:
            if len(kept) >= most:
                kept.pop(next(iter(kept)))
            kept[key] = picture

    def paint(painter: Any, option: Any, widget: Any) -> None:
        key = None
        if axis.picture is None:  # the axis changed: draw it again, or take the drawing it had then
            try:
                key = drawing_key(axis.range)
            except Exception:  # noqa: BLE001 — an exception must not leave a paint (Qt would abort): draw anew
                key = None
            axis.picture = kept.get(key)
        draw(painter, option, widget)
        if key is not None:
            keep(key, axis.picture)

    def draw_ahead(span: tuple[float, float]) -> None:
        key = drawing_key(span)
        if key in kept:
            return
        shown, picture = axis.range, axis.picture
        axis.range, axis.picture = [float(span[0]), float(span[1])], None
        scratch = QImage(1, 1, QImage.Format.Format_ARGB32_Premultiplied)
        painter = QPainter(scratch)
        try:
            draw(painter, None, None)  # records the drawing (then plays it into the scratch pixel)
            keep(key, axis.picture)
        finally:
            painter.end()
            axis.range, axis.picture = shown, picture

    axis.paint = paint
    axis.draw_ahead = draw_ahead
