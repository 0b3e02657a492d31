"""Guidance maps of image models: for the selected sample of the batch, x_t, x̂0 and the unguided twin's
x̂0 beside signed heat maps of the step's CFG and classifier terms, with the run's one colour scale.

The view reads a run's named tracks (`core.guidance_views` names them): a live `core.recording.Recorder`
or a finished/reopened `core.runs.RunResult`, anything with `tracks`, `request` and `len()`. Every pane
shows its picture over the extent of the x_t preview, so pictures of other resolutions (a latent
model's map, maps of a run file whose previews were shrunk) line up with it.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from core import guidance_views as V
from core.runs import X0, X0_DECODED, XT

from .captions import CAPTIONS, Caption
from .live import ImagePane

PANES = ("xt", "x0", "twin_x0", "cfg_map", "classifier_map")


def caption_label(caption: Caption) -> QLabel:
    """The one-line caption under a pane: plain words, the formula on hover."""
    label = QLabel(caption.line)
    label.setWordWrap(True)
    label.setStyleSheet("color: #555; font-size: 9pt;")
    label.setToolTip(caption.tooltip())
    return label


class CaptionedPane(QWidget):
    """An `ImagePane` titled by its caption, the caption's line below it, the formula on hover."""

    def __init__(self, key: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.key = key
        self.caption = CAPTIONS[key]
        self.pane = ImagePane(self.caption.label)
        self.pane.setToolTip(self.caption.tooltip())
        self.pane.setMinimumSize(40, 40)
        self.note = caption_label(self.caption)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.pane, 1)
        layout.addWidget(self.note)

    def show_picture(self, picture: np.ndarray | None, extent: tuple[int, int]) -> None:
        """Paint `picture` (h, w, 3) uint8 stretched over `extent` (H, W) image pixels; None clears it."""
        self.pane.show_image(picture, extent)


class ColourScale(QWidget):
    """The maps' symmetric colour scale: a vertical diverging bar labelled +scale, 0, −scale."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.scale = 0.0
        self.signed = True
        self.setMinimumWidth(70)
        self.setToolTip(CAPTIONS["map_scale"].tooltip())

    def set_scale(self, scale: float, signed: bool = True) -> None:
        if (scale, signed) != (self.scale, self.signed):
            self.scale, self.signed = scale, signed
            self.update()

    def labels(self) -> tuple[str, str, str]:
        """(top, middle, bottom) texts of the bar."""
        if self.scale <= 0:
            return "", "no guidance yet", ""
        if self.signed:
            return f"+{self.scale:.3g}", "0", f"−{self.scale:.3g}"
        return f"{self.scale:.3g}", f"{self.scale / 2:.3g}", "0"

    def paintEvent(self, event: Any) -> None:
        painter = QPainter(self)
        bar = QRectF(4, 10, 16, max(10, self.height() - 20))
        lut = V.DIVERGING_LUT if self.signed else V.SEQUENTIAL_LUT
        column = np.ascontiguousarray(lut[::-1][:, None, :].repeat(4, axis=1))  # top: the largest value
        image = QImage(column.data, 4, len(lut), 12, QImage.Format.Format_RGB888)
        painter.drawImage(bar, image)
        painter.setPen(QColor("#333"))
        top, middle, bottom = self.labels()
        width = max(self.width() - 26, 30)  # labels use the widget's width; a long one wraps onto lines
        painter.drawText(QRectF(24, 2, width, 16), Qt.AlignmentFlag.AlignLeft, top)
        painter.drawText(QRectF(24, bar.center().y() - 24, width, 48),
                         Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter | Qt.TextFlag.TextWordWrap, middle)
        painter.drawText(QRectF(24, bar.bottom() - 14, width, 16), Qt.AlignmentFlag.AlignLeft, bottom)
        painter.end()


def _picture(preview: np.ndarray | None) -> np.ndarray | None:
    """One sample's preview (h, w, C) uint8 → (h, w, 3)."""
    if preview is None:
        return None
    return np.repeat(preview, 3, axis=-1) if preview.shape[-1] == 1 else preview


class GuidanceMaps(QWidget):
    """The selected sample's x_t, x̂0, twin x̂0 and its two term maps at the step on screen."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.run: Any = None
        self.index = -1
        self.sample = 0
        self.extent = (1, 1)
        self.status = QLabel("")
        self.status.setStyleSheet("color: #777;")
        self.panes = {key: CaptionedPane(key) for key in PANES}
        self.colour_scale = ColourScale()
        grid = QGridLayout()
        grid.setSpacing(6)
        for col, key in enumerate(("xt", "x0", "twin_x0")):
            grid.addWidget(self.panes[key], 0, col)
        grid.addWidget(self.panes["cfg_map"], 1, 0)
        grid.addWidget(self.panes["classifier_map"], 1, 1)
        grid.addWidget(self.colour_scale, 1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.status)
        layout.addLayout(grid, 1)
        self._scales: list[float] = []
        self.scale = 0.0
        self.signed = True

    # --- runs ------------------------------------------------------------------------------------

    def begin(self, run: Any) -> None:
        """Show `run` (a Recorder or RunResult of an image model)."""
        self.run = run
        self.extent = (1, 1)
        self.index = -1
        self._scales = []
        self.scale = 0.0
        request = run.request
        self.sample = min(self.sample, request.batch - 1)
        g = request.guidance
        tracks = run.tracks
        self.signed = V.CFG_NORM not in tracks and V.CLASSIFIER_NORM not in tracks
        self.panes["twin_x0"].setVisible(V.TWIN_X0 in tracks)
        self.panes["cfg_map"].setVisible(g.uses_cfg)
        self.panes["classifier_map"].setVisible(g.uses_classifier)
        maps = self._map_names()
        self.colour_scale.setVisible(g.kind != "none")
        if g.kind == "none":
            self.status.setText("no guidance in this run: nothing to map")
        elif not any(name in tracks for name in maps):
            self.status.setText("guidance maps were off for this run")
        else:
            self.status.setText("")
        self.colour_scale.set_scale(0.0, self.signed)
        for pane in self.panes.values():
            pane.show_picture(None, self.extent)

    def reset(self) -> None:
        """No run on screen."""
        self.run = None
        self.index = -1
        for pane in self.panes.values():
            pane.show_picture(None, self.extent)
        self.colour_scale.set_scale(0.0)
        self.status.setText("")

    def _map_names(self) -> tuple[str, str]:
        return (V.CFG_MAP, V.CLASSIFIER_MAP) if self.signed else (V.CFG_NORM, V.CLASSIFIER_NORM)

    def set_sample(self, sample: int) -> None:
        """Follow sample `sample` of the batch."""
        self.sample = sample
        if self.index >= 0:
            self.show_step(self.index)

    # --- painting --------------------------------------------------------------------------------

    def run_scale(self, upto: int) -> float:
        """The maps' colour scale: the largest per-step scale of steps 0 … upto (it never shrinks during a run)."""
        values = self.run.tracks.get(V.MAP_SCALE, ())
        while len(self._scales) <= upto and len(self._scales) < len(values):
            value = values[len(self._scales)]
            self._scales.append(0.0 if value is None else float(value))
        return max(self._scales, default=0.0)

    def _at(self, name: str, index: int) -> Any:
        values = self.run.tracks.get(name)
        if values is None or index >= len(values):
            return None
        step = values[index]
        return None if step is None else step[self.sample]

    def show_step(self, index: int) -> None:
        """Paint step `index` of the run for the selected sample."""
        if self.run is None or not 0 <= index < len(self.run):
            return
        self.index = index
        first = self.run.tracks[XT][0]
        self.extent = first.shape[1:3]  # every pane spans the x_t preview's pixels
        decoded = self._at(X0_DECODED, index)  # a latent model's VAE-decoded x̂0, where it was paid for
        final = decoded is not None and index == self.run.num_steps  # the result itself, as the main panes show it
        pictures = {"xt": decoded if final else self._at(XT, index),
                    "x0": decoded if decoded is not None else self._at(X0, index),
                    "twin_x0": self._at(V.TWIN_X0, index)}
        for key, preview in pictures.items():
            self.panes[key].show_picture(_picture(preview), self.extent)
        self.scale = max(self.scale, self.run_scale(index))
        self.colour_scale.set_scale(self.scale, self.signed)
        for key, name in zip(("cfg_map", "classifier_map"), self._map_names()):
            values = V.map_at(self.run.tracks, name, index, self.sample)
            picture = None if values is None else V.colorize(values, self.scale, self.signed)
            self.panes[key].show_picture(picture, self.extent)

    def picture(self, key: str) -> np.ndarray | None:
        """What pane `key` shows now, (h, w, 3) uint8 (tests and the help page)."""
        return self.panes[key].pane.image


def tile_at(x: float, y: float, batch: int, tile: tuple[int, int], pad: int = 2) -> int | None:
    """The sample whose tile holds pixel (x, y) of a batch grid of `tile` (h, w) previews with `pad`-pixel
    gaps, about square (`core.images.grid` layout); None on a gap or outside."""
    cols = math.ceil(math.sqrt(batch))
    h, w = tile
    col, cx = divmod(int(math.floor(x)) - pad, w + pad)
    row, cy = divmod(int(math.floor(y)) - pad, h + pad)
    if x < pad or y < pad or cx >= w or cy >= h or col >= cols:
        return None
    index = row * cols + col
    return index if index < batch else None


def connect_tile_clicks(pane: pg.GraphicsLayoutWidget, item: pg.ImageItem, batch_of: Any, tile_of: Any,
                        choose: Any) -> None:
    """Clicking a tile of the batch grid in `pane` calls choose(sample). batch_of() and tile_of() give
    the current batch size and one tile's (h, w) in grid pixels (None when no run is shown)."""
    def clicked(event: Any) -> None:
        tile = tile_of()
        if tile is None or item.image is None:
            return
        point = item.mapFromScene(event.scenePos())
        sample = tile_at(point.x(), point.y(), batch_of(), tile)
        if sample is not None:
            choose(sample)

    pane.scene().sigMouseClicked.connect(clicked)
