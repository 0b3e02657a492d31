"""What each pane and plot shows: one line in plain words, and the formula behind it (shown on hover).

One home for these texts: the panes' captions and tooltips and the Help page ("What am I looking at?")
all read them from here, so the words on screen and in the help never disagree.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caption:
    """title: the pane's name; line: one sentence in plain words; formula: rich text shown on hover."""

    title: str
    line: str
    formula: str

    def tooltip(self) -> str:
        return f"<b>{self.title}</b><br>{self.line}<br><br>{self.formula}"


CAPTIONS: dict[str, Caption] = {
    "xt": Caption(
        "x<sub>t</sub> — the noisy sample",
        "The sample as it is now: pure noise at step 0, the finished picture at the last step.",
        "x<sub>t−1</sub> = update(x<sub>t</sub>, ε̂); &nbsp;q(x<sub>t</sub>|x<sub>0</sub>) = "
        "N(√ᾱ<sub>t</sub> x<sub>0</sub>, (1−ᾱ<sub>t</sub>) I)"),
    "x0": Caption(
        "x̂<sub>0</sub> — the model's guess of the end result",
        "What the model thinks the finished picture is, judged from the current noisy sample.",
        "x̂<sub>0</sub> = (x<sub>t</sub> − √(1−ᾱ<sub>t</sub>) ε̂) / √ᾱ<sub>t</sub>"),
    "twin_x0": Caption(
        "unguided twin x̂<sub>0</sub>",
        "The same noise sampled with guidance switched off: what this sample would have become.",
        "the run with w = 0 and s = 0, same seed, same per-step noise"),
    "cfg_map": Caption(
        "CFG term",
        "How much classifier-free guidance changed the noise estimate at this step, pixel by pixel.",
        "w·(ε<sub>c</sub> − ε<sub>u</sub>): red raises ε (x̂<sub>0</sub> darker), blue lowers it "
        "(x̂<sub>0</sub> brighter); latent models: its norm over latent channels"),
    "classifier_map": Caption(
        "classifier term",
        "How much the classifier's gradient changed the noise estimate at this step, pixel by pixel.",
        "DDIM: −s·√(1−ᾱ<sub>t</sub>)·∇<sub>x</sub> log p(y|x<sub>t</sub>); DDPM: the ε-equivalent of the "
        "mean shift s·Σ·∇ log p(y|x<sub>t</sub>)"),
    "map_scale": Caption(
        "colour scale",
        "Both maps share one symmetric scale, fixed for the whole run: white is no change.",
        "±(99.5th percentile of |Δε| over every step's maps so far)"),
    "twin_distance": Caption(
        "distance to the unguided twin",
        "How far guidance has moved this run away from the same noise without guidance, step by step.",
        "RMS(x<sub>t</sub> − x′<sub>t</sub>) and RMS(x̂<sub>0</sub> − x̂′<sub>0</sub>), mean over the batch"),
    "class_bars": Caption(
        "p(class | x<sub>t</sub>) of every class",
        "How sure the classifier is, for the selected sample at this step, about each class.",
        "p<sub>φ</sub>(k | x<sub>t</sub>, t) = softmax(classifier logits)<sub>k</sub>; at most the top 10, "
        "plus the target"),
    "class_stack": Caption(
        "p(class | x<sub>t</sub>) of every class, over the steps",
        "Which classes the points are heading for: each band is one class's share, averaged over the batch.",
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
    "paths": Caption(
        "paths",
        "The way a few samples have travelled from the noise to where they are now.",
        "x<sub>T</sub> → … → x<sub>t</sub> for 8 samples"),
    "prob": Caption(
        "p(y | x<sub>t</sub>) of the target",
        "How sure the classifier is that the batch shows the target class, step by step.",
        "mean over the batch of p<sub>φ</sub>(y | x<sub>t</sub>, t)"),
    "norm": Caption(
        "guidance strength ‖Δε‖",
        "How hard guidance pushed at each step: the size of its change to the noise estimate.",
        "‖Δε‖ = ‖w·(ε<sub>c</sub> − ε<sub>u</sub>) + classifier term‖, mean over the batch"),
    "noise": Caption(
        "noise level",
        "How much of x<sub>t</sub> is still noise: 1 at the start, 0 at the end.",
        "√(1−ᾱ<sub>t</sub>)"),
}
