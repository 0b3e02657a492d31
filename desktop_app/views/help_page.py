"""Help › "What am I looking at?": a short page illustrated with pictures of the window's own views, taken
as they are when it opens (no web), each with the captions and formulas of `captions.CAPTIONS`."""
from __future__ import annotations

import html
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QPixmap, QTextDocument
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

from .captions import CAPTIONS

PICTURE_WIDTH = 360  # px: each view is pictured at most this wide

INTRO = (
    "A diffusion model starts from pure noise and removes a little of it at every step. At each step it "
    "predicts the noise ε in the current sample x<sub>t</sub>; guidance changes that prediction by Δε to "
    "steer the result towards a class. The views below are pictured as they are in your window now: run a "
    "model and open this page again to see them filled."
)


def sections(window: Any) -> list[tuple[str, QWidget | None, tuple[str, ...]]]:
    """(heading, the widget to picture or None, caption keys) for each part of `window` worth explaining."""
    live, guidance = window.views, window.guidance
    points = live.points_mode
    xt_pane, x0_pane = live.point_panes if points else live.image_panes
    out: list[tuple[str, QWidget | None, tuple[str, ...]]] = [
        ("The noisy sample", xt_pane, ("xt",) + (("score_arrows", "guidance_arrows", "paths") if points else ())),
        ("The predicted end result", x0_pane, ("x0",) + (("twin_x0",) if points else ())),
        ("Curves over the steps", window.plots, ("prob", "norm", "noise")),
    ]
    if not points:
        out.append(("Where guidance acts, for one sample", guidance.maps,
                    ("cfg_map", "classifier_map", "map_scale", "twin_x0")))
    out.append(("Against the unguided twin", guidance.twin, ("twin_distance",)))
    out.append(("Every class at once", guidance.bars, ("class_bars",)))
    if points:
        out.append(("Every class over the steps", guidance.stack, ("class_stack",)))
    return out


def _snapshot(widget: QWidget) -> QPixmap:
    """`widget` as it is on screen; an image pane only where its picture is (not the empty margins)."""
    item = getattr(widget, "item", None)
    if isinstance(item, pg.ImageItem) and item.image is not None:
        corners = widget.mapFromScene(item.sceneBoundingRect()).boundingRect()
        return widget.grab(corners.adjusted(-4, -4, 4, 4).intersected(widget.rect()))
    return widget.grab()


class HelpPage(QDialog):
    """The illustrated page; `pictures` counts the views it shows."""

    def __init__(self, window: Any, parent: QWidget | None = None):
        super().__init__(parent or window)
        self.setWindowTitle("What am I looking at?")
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(False)
        self.pictures = 0
        self.browser.setHtml(self._page(window))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser, 1)
        layout.addWidget(buttons)
        self.resize(720, 760)

    def _picture(self, name: str, widget: QWidget | None) -> str:
        """An <img> of `widget` as it is on screen now ("" when it is not shown)."""
        if widget is None or not widget.isVisible() or widget.width() < 2:
            return ""
        image = _snapshot(widget).toImage()
        if image.width() > PICTURE_WIDTH:
            image = image.scaledToWidth(PICTURE_WIDTH, Qt.TransformationMode.SmoothTransformation)
        url = QUrl(f"view://{name}")
        self.browser.document().addResource(QTextDocument.ResourceType.ImageResource, url, image)
        self.pictures += 1
        return f"<p><img src='{url.toString()}' width='{image.width()}'></p>"

    def _page(self, window: Any) -> str:
        parts = [f"<h2>What am I looking at?</h2><p>{INTRO}</p>"]
        for n, (heading, widget, keys) in enumerate(sections(window)):
            parts.append(f"<h3>{html.escape(heading)}</h3>")
            picture = self._picture(f"section{n}", widget)
            parts.append(picture or "<p style='color:#888'>(not on screen now)</p>")
            for key in keys:
                caption = CAPTIONS[key]
                parts.append(f"<p><b>{caption.title}</b> — {caption.line}<br>"
                             f"<span style='color:#555'>{caption.formula}</span></p>")
        return "\n".join(parts)
