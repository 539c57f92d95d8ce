#!/usr/bin/env python3
"""Draws ``docs/dataflow.png``: the data flow of a run, from audio to results and to inference.

Usage: ``python docs/make_dataflow.py [OUT.png]`` (default: ``dataflow.png`` beside this script).
The same picture as text is the mermaid block of ``docs/architecture.md``; keep the two in step.
"""

import os
import sys

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch

#: Box colour per role (package or folder that does the step).
ROLES = {
    "recipes": ("#e6e6e6", "recipes/<dataset> (prepare, train.py)"),
    "dataio": ("#cfe2f3", "sssl_brain/dataio"),
    "method": ("#fce5cd", "sssl_brain/method (stage 1)"),
    "song_level": ("#d9ead3", "sssl_brain/song_level (stage 2)"),
    "inference": ("#e6d7f0", "sssl_brain/inference"),
    "file": ("#ffffff", "file written"),
}

W, H = 0.17, 0.15  # box size, axes fraction
#: name -> (x, y, role, title, detail); x, y: box centre.
BOXES = {
    "audio": (0.09, 0.84, "file", "dataset folder", "audio + annotations\n(+ segment truth)"),
    "prepare": (0.29, 0.84, "recipes", "prepare", "dataio.prepare\nprepared/songs.csv\nprepare_report.json"),
    "cache": (0.49, 0.84, "dataio", "log-mel cache", "features.FeatureCache\nprepared/features/*.npy"),
    "segments": (0.69, 0.84, "dataio", "segments", "dataset.build_segments\nslices of the cache"),
    "folds": (0.89, 0.84, "dataio", "folds by song", "dataset.make_folds\nfolds.csv"),
    "brain": (0.89, 0.50, "method", "SSSLBrain per fold", "fold_config.json\nEq. 3-9, save/\npartition.csv"),
    "segpred": (0.69, 0.50, "file", "segment predictions", "segment_predictions.csv\nsegment_probs.npy\n"
                "(selected checkpoint)"),
    "stage2": (0.49, 0.50, "song_level", "stage 2", "evaluate.evaluate_fold\nSongClassifier:\nEq. 10 + SVM"),
    "songpred": (0.29, 0.50, "file", "song_predictions.csv", "metrics.json\nsong_classifier.skops"),
    "results": (0.09, 0.50, "song_level", "results.md / .csv", "results.py\nmean ± std over folds"),
    "export": (0.29, 0.20, "inference", "export (sssl-export)", "export.export_fold\none fold folder"),
    "model": (0.54, 0.20, "file", "model folder",
              "hyperparams.yaml, model.ckpt\nsong_classifier.skops\nmanifest.json, README.md"),
    "classify": (0.81, 0.20, "inference", "EmotionRecognizer", "sssl-classify\nlabel per song"),
}
#: (from, to, label or "", connect from side to side: "h" horizontal, "v" vertical).
ARROWS = [
    ("audio", "prepare", "", "h"),
    ("prepare", "cache", "", "h"),
    ("cache", "segments", "", "h"),
    ("segments", "folds", "", "h"),
    ("folds", "brain", "train / valid / test songs", "v"),
    ("brain", "segpred", "", "h"),
    ("segpred", "stage2", "", "h"),
    ("stage2", "songpred", "", "h"),
    ("songpred", "results", "", "h"),
    ("songpred", "export", "fold folder", "v"),
    ("export", "model", "", "h"),
    ("model", "classify", "", "h"),
]


def _anchor(name, other, mode):
    x, y = BOXES[name][:2]
    ox, oy = BOXES[other][:2]
    if mode == "h":
        return (x + (W / 2 if ox > x else -W / 2), y)
    return (x, y + (H / 2 if oy > y else -H / 2))


def draw(path):
    """Renders the picture to ``path`` (PNG)."""
    fig = Figure(figsize=(12, 6))
    FigureCanvasAgg(fig)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    for x, y, role, title, detail in BOXES.values():
        box = FancyBboxPatch((x - W / 2, y - H / 2), W, H, boxstyle="round,pad=0.005,rounding_size=0.01",
                             facecolor=ROLES[role][0], edgecolor="#444444", linewidth=1.0)
        ax.add_patch(box)
        ax.text(x, y + 0.04, title, ha="center", va="center", fontsize=9.5, weight="bold")
        ax.text(x, y - 0.022, detail, ha="center", va="center", fontsize=7.8, family="monospace",
                linespacing=1.25)
    for src, dst, label, mode in ARROWS:
        start, end = _anchor(src, dst, mode), _anchor(dst, src, mode)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, linewidth=1.2,
                                     color="#333333"))
        if label:
            ax.text((start[0] + end[0]) / 2 - 0.01, (start[1] + end[1]) / 2, label, ha="right", va="center",
                    fontsize=8, style="italic")
    ax.text(0.81, 0.355, "new audio", ha="center", va="center", fontsize=8, style="italic")
    ax.add_patch(FancyArrowPatch((0.81, 0.34), (0.81, 0.20 + H / 2), arrowstyle="-|>", mutation_scale=12,
                                 linewidth=1.2, color="#333333"))
    ax.text(0.03, 0.97, "Training: a recipe's train.py, per experiment", fontsize=10, weight="bold", va="top")
    ax.text(0.03, 0.33, "Inference", fontsize=10, weight="bold", va="top")
    handles = [Patch(facecolor=c, edgecolor="#444444", label=label) for c, label in ROLES.values()]
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0), fontsize=8, frameon=False,
              ncol=len(handles))
    fig.savefig(path, format="png", dpi=90)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                              "dataflow.png")
    draw(out)
    print(f"{out}: {os.path.getsize(out)} bytes")
