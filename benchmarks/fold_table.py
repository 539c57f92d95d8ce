"""Per-fold table of a finished experiment folder: every method side by side, fold by fold.

Reads ``<experiment>/<method>/fold_<k>/`` (metrics.json, segment_predictions.csv,
epoch_stats.csv) as ``bench_ablation.py`` does and prints, per method, each
fold's song accuracy under the three aggregators (SVM over Eq. 10, majority
vote, mean probability), the test segments' accuracy against the inherited
labels, the validation accuracy at the end of the warm-up and its lowest
value after it, and the selected epoch; then mean ± std over the folds that
every listed method finished, and the wall time from the first to the last
checkpoint of the run (from the checkpoints' own times).

Usage::

    python benchmarks/fold_table.py results/4q/quadrant_seg1.0s_seed1986 --warmup 3 --methods inherit,sssl
"""

import argparse
import glob
import json
import os
import sys

import numpy as np
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_ablation import fold_summary  # noqa: E402

COLUMNS = (("svm_accuracy", "SVM acc"), ("svm_macro_f1", "SVM F1"), ("majority_accuracy", "majority acc"),
           ("mean_accuracy", "mean-prob acc"), ("seg_label", "seg acc (inherited)"))


def checkpoint_times(exp):
    """Unix times of every checkpoint of the experiment (CKPT.yaml's ``unixtime``)."""
    times = []
    for path in glob.glob(os.path.join(exp, "*", "fold_*", "save", "CKPT+*", "CKPT.yaml")):
        with open(path, encoding="utf-8") as f:
            times.append(float(yaml.safe_load(f)["unixtime"]))
    return times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment", help="the experiment folder (holds <method>/fold_<k>/)")
    ap.add_argument("--methods", default="inherit,sssl")
    ap.add_argument("--warmup", type=int, required=True, help="warm-up epochs of the run")
    args = ap.parse_args(argv)
    methods = args.methods.split(",")
    done = {m: {int(os.path.basename(os.path.dirname(p))[5:])
                for p in glob.glob(os.path.join(args.experiment, m, "fold_*", "metrics.json"))}
            for m in methods}
    folds = sorted(set.intersection(*done.values())) if done else []
    rows = {m: {k: fold_summary(os.path.join(args.experiment, m, f"fold_{k}"), args.warmup) for k in folds}
            for m in methods}
    header = "| method | fold | " + " | ".join(name for _, name in COLUMNS) + \
        " | valid acc end warm-up -> min after | selected epoch |"
    lines = [header, "|---" * (len(COLUMNS) + 4) + "|"]
    for m in methods:
        for k in folds:
            r = rows[m][k]
            cells = [f"{100 * r[key]:.1f}" if r.get(key) is not None else "" for key, _ in COLUMNS]
            valid = (f"{100 * r['valid_end_warmup']:.1f} -> {100 * r['valid_min_after']:.1f}"
                     if r["valid_end_warmup"] is not None and r["valid_min_after"] is not None else "")
            lines.append(f"| {m} | {k} | " + " | ".join(cells) + f" | {valid} | {r['selected_epoch']} |")
    for m in methods:
        cells = []
        for key, _ in COLUMNS:
            values = [rows[m][k][key] for k in folds if rows[m][k].get(key) is not None]
            std = np.std(values, ddof=1) if len(values) > 1 else 0.0
            cells.append(f"{100 * np.mean(values):.1f} ± {100 * std:.1f}" if values else "")
        lines.append(f"| **{m}** | mean ± std ({len(folds)} folds) | " + " | ".join(cells) + " | | |")
    times = checkpoint_times(args.experiment)
    print("\n".join(lines))
    print(f"\nfolds finished by every method: {folds}")
    if times:
        print(f"first to last checkpoint: {(max(times) - min(times)) / 60:.1f} min")
    print(json.dumps({m: {k: rows[m][k]["svm_accuracy"] for k in folds} for m in methods}))


if __name__ == "__main__":
    main()
