"""Per-epoch validation curves of an experiment's methods, fold by fold: a picture and a table.

Reads ``<experiment>/<method>/fold_<k>/epoch_stats.csv`` (one row per epoch,
``valid_acc`` = segment accuracy of the validation songs against their
inherited labels; ``--column valid_acc_truth``: against the per-second truth,
where the dataset has it) and writes one panel per fold with a line per method and
the end of the warm-up marked, plus the same numbers as a markdown table
on stdout, with each curve's swing (the standard deviation of the validation
accuracy over the post-warm-up epochs) and its epoch-to-epoch change (the mean
absolute change between consecutive post-warm-up epochs: the jumps without the
climb). The selected epoch of each fold and method (``metrics.json``) is drawn as a dot.

Usage::

    python benchmarks/plot_epoch_curves.py results/4q/quadrant_seg1s_seed1986 --warmup 3 --out curves.png
    python benchmarks/plot_epoch_curves.py results/demo/quadrant_seg1s_seed1986 --warmup 5 \
        --column valid_acc_truth
"""

import argparse
import json
import math
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sssl_brain.utils.io_utils import read_csv_dicts  # noqa: E402

#: What a curve can show: the column of epoch_stats.csv and its axis label.
COLUMNS = {"valid_acc": "inherited labels", "valid_acc_truth": "per-second truth"}


def read_curves(exp, column="valid_acc"):
    """``{method: {fold: ([epochs], [column %], selected epoch or None)}}`` of the finished folds."""
    curves = {}
    for method in sorted(os.listdir(exp)):
        folder = os.path.join(exp, method)
        if not os.path.isdir(folder) or method == "warmup":
            continue
        for name in sorted(os.listdir(folder)):
            stats = os.path.join(folder, name, "epoch_stats.csv")
            metrics = os.path.join(folder, name, "metrics.json")
            if not (name.startswith("fold_") and os.path.isfile(stats) and os.path.isfile(metrics)):
                continue
            rows = [r for r in read_csv_dicts(stats) if r.get(column, "") != ""]
            with open(metrics, encoding="utf-8") as f:
                selected = json.load(f).get("selected_epoch")
            curves.setdefault(method, {})[int(name.split("_")[1])] = (
                [int(r["epoch"]) for r in rows], [100 * float(r[column]) for r in rows], selected)
    return curves


def swing(epochs, acc, warmup):
    """The swing of a curve: the standard deviation of ``acc`` over the epochs after ``warmup``, or None.

    Example
    -------
    >>> swing([1, 2, 3, 4, 5], [10.0, 50.0, 40.0, 44.0, 42.0], warmup=2)
    1.632993161855452
    """
    post = [a for e, a in zip(epochs, acc) if e > warmup]
    return float(np.std(post)) if post else None


def epoch_change(epochs, acc, warmup):
    """The mean absolute change of ``acc`` from one epoch to the next, both epochs after ``warmup``, or None.

    The swing (:func:`swing`) of a curve that climbs steadily measures the climb as much as the
    jumps; this measures the jumps: a curve that climbs by 2 points every epoch has a change of
    2.0, one that alternates 40, 60, 40, 60 a change of 20.0.

    Example
    -------
    >>> epoch_change([1, 2, 3, 4, 5], [10.0, 50.0, 40.0, 44.0, 42.0], warmup=2)
    3.0
    >>> epoch_change([1, 2], [10.0, 50.0], warmup=1) is None
    True
    """
    post = [a for e, a in zip(epochs, acc) if e > warmup]
    return float(np.mean(np.abs(np.diff(post)))) if len(post) > 1 else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment")
    ap.add_argument("--warmup", type=int, required=True, help="warm-up epochs of the run")
    ap.add_argument("--out", default=None, help="PNG file (default: <experiment>/valid_curves.png, "
                    "valid_curves_truth.png for valid_acc_truth)")
    ap.add_argument("--column", choices=sorted(COLUMNS), default="valid_acc",
                    help="valid_acc (against the inherited labels) or valid_acc_truth (against the truth)")
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = read_curves(args.experiment, args.column)
    against = COLUMNS[args.column]
    folds = sorted({k for per_fold in curves.values() for k in per_fold})
    if not folds:
        raise SystemExit(f"{args.experiment}: no finished fold with {args.column} in its epoch_stats.csv")
    cols = min(3, len(folds))
    rows = math.ceil(len(folds) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, sharey=True)
    print(f"| method | fold | valid acc % per epoch ({against}) | selected | swing after the warm-up "
          "| epoch-to-epoch change after the warm-up |")
    print("|---|---|---|---|---|---|")
    for ax, fold in zip(axes.flat, folds):
        for method, per_fold in curves.items():
            if fold not in per_fold:
                continue
            epochs, acc, selected = per_fold[fold]
            (line,) = ax.plot(epochs, acc, marker=".", label=method)
            if selected in epochs:
                ax.plot([selected], [acc[epochs.index(selected)]], "o", color=line.get_color(), markersize=9,
                        markerfacecolor="none")
            spread, change = swing(epochs, acc, args.warmup), epoch_change(epochs, acc, args.warmup)
            cells = ["" if v is None else f"{v:.1f}" for v in (spread, change)]
            print(f"| {method} | {fold} | {' '.join(f'{a:.1f}' for a in acc)} | {selected} | "
                  f"{cells[0]} | {cells[1]} |")
        ax.axvline(args.warmup + 0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"fold {fold}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(folds):]:
        ax.axis("off")
    axes[0][0].set_ylabel(f"valid acc % ({against})")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{os.path.basename(os.path.normpath(args.experiment))}: validation per epoch "
                 f"(dotted: end of warm-up; circle: selected epoch)", fontsize=9)
    fig.tight_layout()
    name = "valid_curves.png" if args.column == "valid_acc" else "valid_curves_truth.png"
    out = args.out or os.path.join(args.experiment, name)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"\n{out}")


if __name__ == "__main__":
    main()
