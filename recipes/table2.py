#!/usr/bin/env python3
"""The paper's Table 2: the same experiment for segment durations 1-5 s, in one table.

Runs a recipe's ``train.py`` once per segment duration (each in its own
process, so a killed run resumes per duration and per fold), then collects
every duration's ``results.csv`` into ``<results>/<dataset>/table2_<target>.md``
and ``.csv``: rows = durations, columns = accuracy and macro-F1 of each
method with the SVM song decision (mean ± std over folds).

Usage:
    python recipes/table2.py recipes/pmemo/train.py hparams/vgg16_sssl.yaml --data_folder=... \\
        [--durations=1,2,3,4,5] [--target=valence] [any other override]
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import speechbrain as sb  # noqa: E402

from sssl_brain.utils.hparams import load_hparams, parse_overrides  # noqa: E402
from sssl_brain.utils.io_utils import atomic_write_csv, atomic_write_text, read_csv_dicts  # noqa: E402


def split_args(argv):
    """Separates ``--durations=...`` from the arguments passed on to train.py."""
    durations, rest = [1, 2, 3, 4, 5], []
    for arg in argv:
        if arg.startswith("--durations="):
            durations = [float(d) if "." in d else int(d) for d in arg.split("=", 1)[1].split(",")]
        else:
            rest.append(arg)
    return durations, rest


def table2(rows, title):
    """Markdown of Table 2 from rows ``seg_dur, method, acc_mean, acc_std, macro_f1_mean, macro_f1_std``."""
    methods = sorted({r["method"] for r in rows})
    head = "| seg. duration | " + " | ".join(f"{m} Acc % | {m} F1 %" for m in methods) + " |"
    lines = [f"# {title}", "", head, "|---|" + "---|---|" * len(methods)]
    for dur in sorted({r["seg_dur"] for r in rows}, key=float):
        cells = []
        for m in methods:
            r = next((x for x in rows if x["seg_dur"] == dur and x["method"] == m), None)
            cells += ["", ""] if r is None else [
                f"{float(r['acc_mean']):.2f} ± {float(r['acc_std']):.2f}",
                f"{float(r['macro_f1_mean']):.2f} ± {float(r['macro_f1_std']):.2f}"]
        lines.append(f"| {dur} s | " + " | ".join(cells) + " |")
    lines += ["", "Song level, SVM over Eq. 10 features (features_svm: over hand-crafted song features); "
              "mean ± std over folds; F1 = macro-F1."]
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    train_py, hparams_file = argv[0], argv[1]
    durations, rest = split_args(argv[2:])
    rows, dataset, target = [], None, None
    for dur in durations:
        cmd = [sys.executable, train_py, hparams_file, f"--seg_dur={dur}"] + rest
        print("running:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        _, _, overrides = sb.parse_arguments([hparams_file] + rest)
        overrides = parse_overrides(overrides)
        overrides.update(seg_dur=dur, dataset=os.path.basename(os.path.dirname(os.path.abspath(train_py))))
        hp = load_hparams(hparams_file, overrides)
        dataset, target = hp["dataset"], hp["target"]
        for r in read_csv_dicts(os.path.join(hp["experiment_folder"], "results.csv")):
            if r["aggregator"] == "svm":
                rows.append({"seg_dur": str(dur), **r})
    out = os.path.join(hp["results_folder"], dataset, f"table2_{target}")
    fields = ["seg_dur", "method", "n_folds", "acc_mean", "acc_std", "macro_f1_mean", "macro_f1_std",
              "weighted_f1_mean", "weighted_f1_std"]
    atomic_write_csv(out + ".csv", rows, fields)
    text = table2(rows, f"Table 2: {dataset}, {target}, segment durations {durations}")
    atomic_write_text(out + ".md", text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
