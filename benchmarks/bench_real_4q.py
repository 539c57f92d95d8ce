"""The paper's Table 3 rows for 4Q, from the real audio: SSSL, the inherit baseline and features_svm.

Runs ``recipes/4q/train.py`` for each task (valence, arousal, quadrant) with
the chosen methods and folds (finished folds are skipped, so the script
resumes), then writes ``<out>/table3_4q.md`` laid out like the paper's
Table 3 rows for 4Q: accuracy and macro-F1 (song level, SVM over Eq. 10 for
sssl and inherit; the hand-crafted-feature SVM for features_svm), mean ± std
over the folds run, the number of folds, the segment model's size and the
wall time of every run that trained (summed over resumed runs).

The default model is the CPU-sized VGG16 of the demo (width 1/8, classifier
64, batch norm; ``recipes/demo/run_demo.py``), not the paper's full VGG16:
the table says so. Get the audio as ``recipes/4q/README.md``
describes (``get_4q.sh``).

Usage::

    python benchmarks/bench_real_4q.py --data_folder /data/MER_audio_taffc_dataset \\
        --out results/real_4q --tasks quadrant --folds 0,1,2 --methods sssl,inherit,features_svm \\
        --extra "--number_of_epochs=10 --warmup_epochs=4"
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "recipes", "demo"))

from sssl_brain.utils.io_utils import atomic_write_text, read_csv_dicts  # noqa: E402

PAPER = {"valence": (77.20, 78.37), "arousal": (87.20, 86.67), "quadrant": (76.49, 77.60)}
TASK_NAMES = {"valence": "valence", "arousal": "arousal", "quadrant": "4 quadrants"}


def model_size(overrides, n_classes):
    """Trainable parameters of the segment model the overrides describe."""
    from sssl_brain.lobes.vgg16 import VGG16

    opts = {o[2:].split("=")[0]: o.split("=", 1)[1] for o in overrides if o.startswith("--") and "=" in o}
    model = VGG16(n_classes=n_classes, width_mult=float(opts.get("width_mult", 1.0)),
                  classifier_dim=int(opts.get("classifier_dim", 4096)),
                  batch_norm=opts.get("batch_norm", "False") == "True")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def n_features(exp):
    """Length of features_svm's song vector, read from one of its folds' metrics.json."""
    folder = os.path.join(exp, "features_svm")
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        path = os.path.join(folder, name, "metrics.json")
        if os.path.isfile(path):
            return json.load(open(path, encoding="utf-8")).get("n_features")
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data_folder", required=True, help="the MER_audio_taffc_dataset folder")
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "real_4q"))
    ap.add_argument("--tasks", default="valence,arousal,quadrant")
    ap.add_argument("--folds", default=",".join(str(k) for k in range(10)))
    ap.add_argument("--methods", default="sssl,inherit,features_svm")
    ap.add_argument("--seg_dur", default="1")
    ap.add_argument("--extra", default="", help="space-separated overrides added to every run")
    args = ap.parse_args(argv)
    from bench_ablation import DATASET_SCHEDULE
    from run_demo import DEMO_MODEL

    model = [o for o in DEMO_MODEL if not o.startswith(("--target", "--seg_dur"))] + DATASET_SCHEDULE
    common = model + ["--n_folds=10", f"--folds=[{args.folds}]", f"--seg_dur={args.seg_dur}",
                      f"--methods=[{args.methods}]", f"--data_folder={args.data_folder}",
                      f"--results_folder={args.out}", "--device=cpu", "--noprogressbar"] + args.extra.split()
    os.makedirs(args.out, exist_ok=True)
    wall_file = os.path.join(args.out, "wall_seconds.json")
    walls = json.load(open(wall_file, encoding="utf-8")) if os.path.isfile(wall_file) else {}
    tasks = [t for t in args.tasks.split(",") if t]
    for task in tasks:
        cmd = [sys.executable, os.path.join(ROOT, "recipes", "4q", "train.py"),
               os.path.join(ROOT, "hparams", "vgg16_sssl.yaml"), *common, f"--target={task}"]
        print(f"{task}: {' '.join(cmd[2:])}", flush=True)
        start = time.time()
        with open(os.path.join(args.out, f"{task}.log"), "ab") as log:
            proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            raise SystemExit(f"{task} failed (exit {proc.returncode}); see {args.out}/{task}.log")
        walls[task] = walls.get(task, 0.0) + time.time() - start
        atomic_write_text(wall_file, json.dumps(walls, indent=1))
    size = {t: model_size(common, 4 if t == "quadrant" else 2) for t in tasks}
    lines = [f"4Q (real audio), {args.seg_dur} s segments, seed 1986; song level, mean ± std over the "
             f"folds run (10-fold CV, folds {args.folds}); segment model: VGG16 width 1/8, classifier 64, "
             "batch norm (the demo's CPU-sized VGG16, not the paper's full VGG16); F1 = macro-F1", "",
             "| task | method | aggregator | folds | Acc % | F1 % | paper SSSL Acc | paper SSSL F1 "
             "| parameters | wall (task) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for task in tasks:
        exp = os.path.join(args.out, "4q", f"{task}_seg{args.seg_dur}s_seed1986")  # as the yaml names it
        results = os.path.join(exp, "results.csv")
        if not os.path.isfile(results):
            continue
        for r in read_csv_dicts(results):
            if r["aggregator"] not in ("svm", "majority", "mean"):
                continue
            params = f"{size[task]:,}"
            if r["method"] == "features_svm":
                params = f"({n_features(exp)} song features)"
            lines.append(f"| {TASK_NAMES[task]} | {r['method']} | {r['aggregator']} | {r['n_folds']} | "
                         f"{float(r['acc_mean']):.2f} ± {float(r['acc_std']):.2f} | "
                         f"{float(r['macro_f1_mean']):.2f} ± {float(r['macro_f1_std']):.2f} | "
                         f"{PAPER[task][0]:.2f} | {PAPER[task][1]:.2f} | {params} | "
                         f"{walls.get(task, 0) / 60:.0f} min |")
    table = "\n".join(lines) + "\n"
    atomic_write_text(os.path.join(args.out, "table3_4q.md"), table)
    print(table)


if __name__ == "__main__":
    main()
