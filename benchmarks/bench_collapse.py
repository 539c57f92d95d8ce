"""The confirmation-bias collapse in a controlled setting: which SSSL step keeps a biased model balanced.

240 synthetic segments (``tests/synthetic.py``: 24 songs of 10 segments, 2 balanced classes,
30 % of the segments carry the other class's content, so their inherited label is wrong), the
tiny VGG16 of the tests, a model whose output layer starts biased to class 0 (+3 / -3 on the
two biases), no warm-up, 6 SSSL epochs, constant learning rate 1e-3. Printed per SSSL step and
seed: the share of class 0 among the final predictions on the training segments (50 % =
balanced) and the accuracy against the segments' true classes.

Usage: python benchmarks/bench_collapse.py [--seeds 0,1] [--epochs 6] [--bias 3] [--rows 0,1]
"""

import argparse
import logging
import os
import shutil
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from synthetic import datasets, make_brain, make_noisy_segments, tiny_hparams  # noqa: E402

PAPER = {"prior_weight": 0.0, "refine_labels": False, "pseudo_labels": "step", "rdrop_reduction": "unlabeled",
         "unlabeled_targets": "guess", "unlabeled_loss": "joint"}
STEPS = {
    "the paper's (Eq. 9 alone)": PAPER,
    "+ prior penalty (the default)": {**PAPER, "prior_weight": 1.0},
    "+ prior + label refinement": {**PAPER, "prior_weight": 1.0, "refine_labels": True},
    "+ prior + co-guessing": {**PAPER, "prior_weight": 1.0, "pseudo_labels": "co_guess"},
    "+ prior + R-Drop batch reduction": {**PAPER, "prior_weight": 1.0, "rdrop_reduction": "batch"},
    "+ prior + epoch-start guesses": {**PAPER, "prior_weight": 1.0, "pseudo_labels": "epoch"},
    "+ prior + refined U targets": {**PAPER, "prior_weight": 1.0, "unlabeled_targets": "refined"},
    "all four": {"prior_weight": 1.0, "refine_labels": True, "pseudo_labels": "co_guess",
                 "rdrop_reduction": "batch", "unlabeled_loss": "joint"},
}


def biased_run(folder, segments, seed, epochs, bias, options):
    """Final class-0 share and accuracy against the truth of one biased SSSL run."""
    hp = tiny_hparams(folder, method="sssl", epochs=epochs, warmup=0, seed=seed, plot_partition=False,
                      **options)
    with torch.no_grad():
        last = [m for m in hp["model"].modules() if isinstance(m, torch.nn.Linear)][-1]
        last.bias[0] += bias
        last.bias[1] -= bias
    brain = make_brain(hp)
    dataset = datasets(segments)
    brain.fit(hp["epoch_counter"], dataset, None, train_loader_kwargs={"batch_size": 16, "shuffle": True})
    pred = brain.predict_probs(dataset).argmax(1)
    truth = np.array([s["truth"] for s in segments])
    return float((pred == 0).mean()), float((pred == truth).mean())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--bias", type=float, default=3.0)
    ap.add_argument("--rows", default=None, help="row numbers, e.g. 0,1 (0: the paper's step); default all")
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    work = tempfile.mkdtemp(prefix="bench-collapse-")
    try:
        segments, _ = make_noisy_segments(os.path.join(work, "data"), n_songs=24, segs_per_song=10, noise=0.3,
                                          seed=0)
        print("| SSSL step | class-0 share % | accuracy vs. truth % |\n|---|---|---|")
        rows = None if args.rows is None else {int(r) for r in args.rows.split(",")}
        for step, (name, options) in enumerate(STEPS.items()):
            if rows is not None and step not in rows:
                continue
            runs = [biased_run(os.path.join(work, f"step{step}_seed{seed}"), segments, seed, args.epochs,
                               args.bias, options) for seed in seeds]
            print(f"| {name} | " + " / ".join(f"{100 * a:.1f}" for a, _ in runs) + " | "
                  + " / ".join(f"{100 * b:.1f}" for _, b in runs) + " |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
