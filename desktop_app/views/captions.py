"""What each pane and plot shows: one line in plain words, and the formula behind it (shown on hover).

One home for these texts: the panes' captions and tooltips and the Help page ("What am I looking at?")
all read them from here, so the words on screen and in the help never disagree.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caption:
    """title: the pane's name; line: one short sentence in plain words; formula: rich text shown on hover;
    short: the title where room is scarce (small panes), else the title itself."""

    title: str
    line: str
    formula: str
    short: str = ""

    @property
    def label(self) -> str:
        return self.short or self.title

    def tooltip(self) -> str:
        return f"<b>{self.title}</b><br>{self.line}<br><br>{self.formula}"

    def titled(self, title: str | None = None) -> str:
        """Rich text for a pane's title: the title, and the caption line small and grey under it."""
        return f"{title or self.title}<br><span style='font-size:8pt; color:#777'>{self.line}</span>"


CAPTIONS: dict[str, Caption] = {
    "xt": Caption(
        "x<sub>t</sub> — the noisy sample",
        "Noise at first, the picture at the end.",
        "x<sub>t−1</sub> = update(x<sub>t</sub>, ε̂); &nbsp;q(x<sub>t</sub>|x<sub>0</sub>) = "
        "N(√ᾱ<sub>t</sub> x<sub>0</sub>, (1−ᾱ<sub>t</sub>) I)", "x<sub>t</sub>"),
    "x0": Caption(
        "x̂<sub>0</sub> — the model's guess of the end result",
        "The model's guess of the end result.",
        "x̂<sub>0</sub> = (x<sub>t</sub> − √(1−ᾱ<sub>t</sub>) ε̂) / √ᾱ<sub>t</sub>", "x̂<sub>0</sub>"),
    "twin_x0": Caption(
        "unguided twin x̂<sub>0</sub>",
        "The same noise without guidance: what it would have become.",
        "the run with w = 0 and s = 0, same seed, same per-step noise", "twin x̂<sub>0</sub>"),
    "cfg_map": Caption(
        "CFG term",
        "Where CFG changed the noise estimate, and by how much.",
        "w·(ε<sub>c</sub> − ε<sub>u</sub>): red raises ε (x̂<sub>0</sub> darker), blue lowers it "
        "(x̂<sub>0</sub> brighter); latent models: its norm over latent channels"),
    "classifier_map": Caption(
        "classifier term",
        "Where the classifier changed the noise estimate.",
        "DDIM: −s·√(1−ᾱ<sub>t</sub>)·∇<sub>x</sub> log p(y|x<sub>t</sub>); DDPM: the ε-equivalent of the "
        "mean shift s·Σ·∇ log p(y|x<sub>t</sub>)"),
    "map_scale": Caption(
        "colour scale",
        "One symmetric scale for both maps and the whole run; white: no change.",
        "±(99.5th percentile of |Δε| over every step's maps so far)"),
    "twin_distance": Caption(
        "distance to the twin",
        "How far guidance moved the run from its twin.",
        "RMS(x<sub>t</sub> − x′<sub>t</sub>) and RMS(x̂<sub>0</sub> − x̂′<sub>0</sub>), mean over the batch"),
    "class_bars": Caption(
        "p(k | x<sub>t</sub>), every class",
        "How likely each class is, at this step.",
        "p<sub>φ</sub>(k | x<sub>t</sub>, t) = softmax(classifier logits)<sub>k</sub>; at most the top 10, "
        "plus the target"),
    "class_stack": Caption(
        "class shares over the steps",
        "Which classes the points are heading for.",
        "mean over samples of p(k | x<sub>t</sub>) — exact for the analytic mixture: softmax<sub>k</sub>"
        "(−‖x<sub>t</sub> − √ᾱ<sub>t</sub> μ<sub>k</sub>‖² / 2v<sub>t</sub>)"),
    "score_arrows": Caption(
        "model arrows",
        "Where the model's own prediction moves points at this step (towards the data).",
        "−ε(x, t) = √(1−ᾱ<sub>t</sub>)·∇<sub>x</sub> log p<sub>t</sub>(x): the score direction "
        "(ε<sub>c</sub> under CFG)"),
    "guidance_arrows": Caption(
        "guidance arrows",
        "Where guidance pushes points at this step, on the same length scale as the model arrows.",
        "−Δε = −(w·(ε<sub>c</sub> − ε<sub>u</sub>) + classifier term)"),
    "arrows": Caption(
        "arrows and paths on x<sub>t</sub>",
        "Grey: the model's own pull; red: guidance's push; lines: a few samples' paths.",
        "grey −ε(x, t) ∝ ∇<sub>x</sub> log p<sub>t</sub>(x); red −Δε; both on one length scale, for the update "
        "that moves the points shown"),
    "paths": Caption(
        "paths",
        "The way a few samples have travelled from the noise to where they are now.",
        "x<sub>T</sub> → … → x<sub>t</sub> for 8 samples (the chosen one in black)"),
    "prob": Caption(
        "p(y | x<sub>t</sub>) of the target",
        "How sure the classifier is of the target.",
        "mean over the batch of p<sub>φ</sub>(y | x<sub>t</sub>, t)"),
    "norm": Caption(
        "guidance strength ‖Δε‖",
        "How hard guidance pushed at each step.",
        "‖Δε‖ = ‖w·(ε<sub>c</sub> − ε<sub>u</sub>) + classifier term‖, mean over the batch"),
    "noise": Caption(
        "noise level",
        "How much of x<sub>t</sub> is still noise.",
        "√(1−ᾱ<sub>t</sub>)"),
}
