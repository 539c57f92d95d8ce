"""Ablation of SSSL's guards against confirmation bias, side by side on the same folds and seed.

Every configuration is one experiment of a recipe (``recipes/<dataset>/train.py``)
with the same yaml, folds and seed, differing only in the overrides below;
each writes its own experiment folder under ``--out`` (finished folds are
skipped, so the script resumes). The table compares, per configuration:

* song level on the test songs (SVM, majority vote, mean probability):
  accuracy and macro-F1, mean ± std over folds;
* segment level on the test songs: accuracy against the inherited labels and,
  where segment truth exists (the demo), against the truth beside the
  "copy the song label" reference;
* the largest share of one class among the test predictions (collapse check);
* the clean-set precision of X (mean over SSSL epochs, where truth exists);
* validation accuracy (inherited labels) at the end of warm-up, its lowest
  value afterwards, and the epoch the validation selected.

Configurations (``--configs``, default all): ``inherit_paper`` and
``sssl_paper`` are the paper's recipe as v0.1 ran it (last epoch, constant
learning rate, Eq. 9 alone); ``inherit``, ``sssl`` and ``proposed_star`` use
the yaml's defaults (model selection on validation, annealed learning rate,
the class-prior penalty); ``sssl_paper_eq`` is ``sssl`` without the
class-prior penalty (the paper's Eq. 9 with our training schedule);
``sssl_refine``, ``sssl_coguess``, ``sssl_rdrop_batch`` and ``sssl_refine_u``
(U's guess blended with its inherited label) add one optional guard each to
``sssl``; ``sssl_alpha05`` is ``sssl`` with mixup alpha 0.5 (DivideMix's
value for its real-world-noise data sets); ``features_svm`` is the
hand-crafted-feature SVM on the same folds; ``truth_ceiling`` (datasets with
per-second truth: the demo) is ``inherit`` trained and validated on every
segment's truth instead of its song's label, the clean-label ceiling;
``inherit_mixup`` is ``inherit`` with mixup on the inherited labels in every
epoch (``warmup_mixup``: CE + mixup) and ``sssl_mixup_warmup`` is ``sssl`` whose
warm-up is that baseline's.

Usage::

    python benchmarks/bench_ablation.py --recipe demo --out results/ablation_demo
    python benchmarks/bench_ablation.py --recipe 4q --data_folder /data/MER_audio_taffc_dataset \\
        --out results/ablation_4q --folds 0,1,2 --configs inherit,sssl_paper,sssl

``--recipe demo`` generates the demo data (as ``make demo``) and uses the
demo's model and schedule; any other value names a recipe folder and uses
the same small model (``--extra`` adds overrides to every configuration).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "recipes", "demo"))

from sssl_brain.utils.io_utils import atomic_write_text, read_csv_dicts  # noqa: E402

#: A dataset recipe's schedule (``--extra`` overrides it): the demo's until 2026-12-07, which the 4Q
#: runs of docs/results.md used (a real data set's fold has 8-10 times the demo's segments per epoch).
DATASET_SCHEDULE = ["--batch_size=64", "--number_of_epochs=16", "--warmup_epochs=5"]
PAPER_GUARDS = ["--prior_weight=0", "--refine_labels=False", "--pseudo_labels=step",
                "--rdrop_reduction=unlabeled", "--unlabeled_targets=guess", "--unlabeled_loss=joint"]
PAPER_TRAINING = ["--selection_metric=last", "--lr_final_ratio=1"]
CONFIGS = {
    "inherit_paper": ["--methods=[inherit]"] + PAPER_TRAINING,
    "sssl_paper": ["--methods=[sssl]"] + PAPER_GUARDS + PAPER_TRAINING,
    "inherit": ["--methods=[inherit]"],
    "sssl_paper_eq": ["--methods=[sssl]"] + PAPER_GUARDS,
    "sssl": ["--methods=[sssl]"],
    "sssl_refine": ["--methods=[sssl]", "--refine_labels=True"],
    "sssl_coguess": ["--methods=[sssl]", "--pseudo_labels=co_guess"],
    "sssl_refine_u": ["--methods=[sssl]", "--unlabeled_targets=refined"],
    "sssl_rdrop_batch": ["--methods=[sssl]", "--rdrop_reduction=batch"],
    "sssl_alpha05": ["--methods=[sssl]", "--mixup_alpha=0.5"],
    "proposed_star": ["--methods=[proposed_star]"],
    "features_svm": ["--methods=[features_svm]"],
    "truth_ceiling": ["--methods=[inherit]", "--train_labels=truth"],
    "inherit_mixup": ["--methods=[inherit]", "--warmup_mixup=True"],
    "sssl_mixup_warmup": ["--methods=[sssl]", "--warmup_mixup=True"],
}


def run_config(name, args, common, log_folder):
    """Runs one configuration (resumable); returns its wall time in seconds."""
    recipe = "csv" if args.recipe == "demo" else args.recipe
    cmd = [sys.executable, os.path.join(ROOT, "recipes", recipe, "train.py"),
           os.path.join(ROOT, "hparams", "vgg16_sssl.yaml"), *common, *CONFIGS[name],
           f"--experiment_folder={os.path.join(args.out, name)}"]
    start = time.time()
    with open(os.path.join(log_folder, f"{name}.log"), "ab") as log:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed (exit {proc.returncode}); see {log_folder}/{name}.log")
    return time.time() - start


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return ""
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{100 * np.mean(values):.1f} ± {100 * std:.1f}"


def fold_summary(fold_dir, warmup):
    """The per-fold numbers of the table, read back from the fold's files."""
    metrics = json.load(open(os.path.join(fold_dir, "metrics.json"), encoding="utf-8"))
    m = metrics["metrics"]
    out = {f"{agg}_{key}": m[agg]["test"][key] for agg in ("svm", "majority", "mean")
           for key in ("accuracy", "macro_f1") if agg in m}
    out["seg_label"] = m.get("segment", {}).get("test", {}).get("accuracy")
    out["seg_truth"] = m.get("segment_truth", {}).get("test", {}).get("accuracy")
    seg_file = os.path.join(fold_dir, "segment_predictions.csv")  # none for features_svm
    seg = [r for r in read_csv_dicts(seg_file) if r["split"] == "test"] if os.path.isfile(seg_file) else []
    preds = np.array([int(r["pred"]) for r in seg], dtype=int)
    out["max_share"] = float(np.bincount(preds).max() / preds.size) if preds.size else None
    known = [r for r in seg if r.get("truth", "") not in ("", "-1")]
    out["reference"] = float(np.mean([r["label"] == r["truth"] for r in known])) if known else None
    part = os.path.join(fold_dir, "partition.csv")
    part_rows = read_csv_dicts(part) if os.path.isfile(part) else []
    prec = [float(r["clean_precision"]) for r in part_rows if r["clean_precision"] != ""]
    out["clean_precision"] = float(np.mean(prec)) if prec else None
    # U's inherited labels, the model's guesses and the refined guesses against the truth, weighted by |U|
    rows = [r for r in part_rows if r.get("u_label_acc_truth", "") != ""]
    n_u = np.array([int(r["n_noisy"]) for r in rows], dtype=float)
    for key in ("u_label", "u_guess", "u_refined"):
        acc = np.array([float(r[f"{key}_acc_truth"]) for r in rows if r.get(f"{key}_acc_truth", "") != ""])
        out[key] = float(np.average(acc, weights=n_u)) if acc.size and acc.size == n_u.size else None
    stats_file = os.path.join(fold_dir, "epoch_stats.csv")
    stats = read_csv_dicts(stats_file) if os.path.isfile(stats_file) else []
    valid = {int(r["epoch"]): float(r["valid_acc"]) for r in stats if r["valid_acc"] != ""}
    out["valid_end_warmup"] = valid.get(warmup)
    after = [v for e, v in valid.items() if e > warmup]
    out["valid_min_after"] = min(after) if after else None
    out["valid_by_epoch"] = [valid[e] for e in sorted(valid)]
    out["selected_epoch"] = metrics.get("selected_epoch")
    return out


def summarise(args, names):
    """Markdown table of every configuration (and the per-epoch validation curves)."""
    lines = [f"Ablation on `{args.recipe}` (folds {args.folds}; seed 1986; percent, mean ± std over folds)",
             "",
             "| config | folds | SVM acc | SVM F1 | majority acc | mean-prob acc | seg acc (inherited) | "
             "seg acc (truth) | reference | max class share | X precision | U acc (truth): label / guess / "
             "refined | valid acc end warm-up -> min after | selected epochs |",
             "|---|" + "---|" * 13]
    curves = []
    for name in names:
        method = CONFIGS[name][0].split("[")[1].rstrip("]")
        root = os.path.join(args.out, name, method)
        done = [k for k in args.fold_list if os.path.isfile(os.path.join(root, f"fold_{k}", "metrics.json"))]
        if not done:
            continue
        rows = [fold_summary(os.path.join(root, f"fold_{k}"), args.warmup) for k in done]

        def col(key, rows=rows):
            return _mean_std([r.get(key) for r in rows])

        shares = "/".join(f"{100 * r['max_share']:.0f}" for r in rows if r["max_share"] is not None)
        valid = "; ".join(f"{100 * r['valid_end_warmup']:.1f} -> {100 * r['valid_min_after']:.1f}"
                          if r["valid_end_warmup"] is not None and r["valid_min_after"] is not None else "-"
                          for r in rows)
        u_acc = " / ".join(col(k) for k in ("u_label", "u_guess", "u_refined")) if col("u_label") else ""
        selected = "/".join(str(r["selected_epoch"]) for r in rows if r["selected_epoch"] is not None)
        lines.append(f"| {name} | {len(rows)} | {col('svm_accuracy')} | {col('svm_macro_f1')} | "
                     f"{col('majority_accuracy')} | {col('mean_accuracy')} | {col('seg_label')} | "
                     f"{col('seg_truth')} | {col('reference')} | {shares} | {col('clean_precision')} | "
                     f"{u_acc} | {valid} | {selected} |")
        for k, r in zip(done, rows):
            if r["valid_by_epoch"]:
                curve = " ".join(f"{100 * v:.1f}" for v in r["valid_by_epoch"])
                curves.append(f"| {name} | {k} | {curve} |")
    lines += ["", "Validation accuracy (segments of the validation songs, inherited labels) per epoch", "",
              "| config | fold | valid acc % per epoch |", "|---|---|---|"] + curves
    plot_curves(args, names)
    return "\n".join(lines) + "\n"


def plot_curves(args, names):
    """``valid_acc.png``: validation accuracy per epoch, one panel per fold, one line per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(args.fold_list), figsize=(5 * len(args.fold_list), 3.6), squeeze=False)
    for ax, k in zip(axes[0], args.fold_list):
        for name in names:
            method = CONFIGS[name][0].split("[")[1].rstrip("]")
            path = os.path.join(args.out, name, method, f"fold_{k}", "epoch_stats.csv")
            if not os.path.isfile(path):
                continue
            rows = [r for r in read_csv_dicts(path) if r["valid_acc"] != ""]
            ax.plot([int(r["epoch"]) for r in rows], [100 * float(r["valid_acc"]) for r in rows], label=name)
        ax.axvline(args.warmup + 0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"fold {k}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("valid acc (inherited labels) %")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "valid_acc.png"), dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="demo", help="demo, or a recipe folder name (4q, pmemo, eim, csv)")
    ap.add_argument("--data_folder", default=None, help="the dataset folder (not for the demo)")
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "ablation_demo"))
    ap.add_argument("--folds", default="0,1", help="comma-separated fold indices")
    ap.add_argument("--n_folds", type=int, default=None, help="default: 5 for the demo, 10 otherwise")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--extra", default="", help="space-separated overrides added to every configuration")
    ap.add_argument("--summary_only", action="store_true",
                    help="train nothing: tabulate the folds already finished under --out")
    args = ap.parse_args(argv)
    from run_demo import DEMO_MODEL, DEMO_SCHEDULE

    args.fold_list = [int(k) for k in args.folds.split(",")]
    names = [n for n in args.configs.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        ap.error(f"unknown configuration(s) {unknown}; choose from {', '.join(CONFIGS)}")
    model = list(DEMO_MODEL)
    if args.recipe == "demo":
        from demo_data import generate_demo_dataset

        data = args.data_folder or os.path.join(ROOT, "demo_data")
        generate_demo_dataset(data, n_songs=160, seed=0, min_duration=20, max_duration=30)
        model += DEMO_SCHEDULE
    elif not args.data_folder:
        ap.error("--data_folder is required for a dataset recipe")
    else:
        data = args.data_folder
        model += DATASET_SCHEDULE
    n_folds = args.n_folds or (5 if args.recipe == "demo" else 10)
    extra = args.extra.split()
    common = model + [f"--n_folds={n_folds}", f"--folds=[{args.folds}]", f"--data_folder={data}",
                      f"--results_folder={args.out}", "--device=cpu", "--noprogressbar"] + extra
    warmups = [o.split("=")[1] for o in common if o.startswith("--warmup_epochs=")]
    args.warmup = int(warmups[-1]) if warmups else 5
    os.makedirs(args.out, exist_ok=True)
    for name in [] if args.summary_only else names:
        print(f"{name}: {' '.join(CONFIGS[name])}", flush=True)
        seconds = run_config(name, args, common, args.out)
        print(f"{name}: {seconds:.0f} s (finished folds are skipped)", flush=True)
    table = summarise(args, names)
    atomic_write_text(os.path.join(args.out, "ablation.md"), table)
    print(table)


if __name__ == "__main__":
    main()
