"""A known-noise benchmark where cross-entropy memorises: scikit-learn's digits with symmetric label noise.

The regime SSSL is meant for, measurable on a CPU in minutes: 1,797 8x8 digit
images (scikit-learn's bundled copy, nothing downloaded), 10 balanced
classes; 30 % of the images are the clean test set; of the rest, 10 % are
validation and 90 % training, and in both a share ``--noise`` of the labels
is replaced by another class drawn uniformly (symmetric noise). Each image
is one "segment" (8 frames x 8 bins) fed to the project's own VGG16 lobe
(width 1/8, batch norm, classifier 128) and ``SSSLBrain`` through
:class:`~sssl_brain.dataio.device_segments.DeviceSegments`; its true label
is the segment truth, so ``partition.csv``'s clean precision and recall are
measured.

Configurations (``--configs``):

* ``clean``: cross-entropy on the clean labels (the ceiling);
* ``ce``: cross-entropy on the noisy labels (``method: inherit``);
* ``ce_mixup``: the same with mixup on the noisy labels in every epoch (``warmup_mixup: True``,
  ``prior_weight: 0``), the baseline of Zhang et al. 2018;
* ``ce_mixup_prior``: ``ce_mixup`` with the yaml's class-prior penalty: SSSL's Eq. 9 objective with
  every image labeled (no partition, no guesses), what ``sssl``'s SSSL step should be read against;
* ``sssl_paper``: SSSL as the paper states it (``prior_weight: 0``, ``unlabeled_loss: joint``, the
  yaml's other options);
* ``sssl``: SSSL with the yaml's defaults (class-prior penalty on), except the mean teacher: every
  config without ``+ema`` runs with ``ema_decay: null``, so the rows stay comparable with the
  tables made before the yaml turned the teacher on (2026-12-08); ``sssl+ema`` is the yaml's
  default since then. Every other option follows the yaml: since the end of 2026-12-08 that is
  ``gmm_per_class: True`` too, so the rows of earlier tables need ``--set gmm_per_class=false``;
* ``proposed_star``: ``sssl_paper`` without R-Drop (lambda 0);
* ``<config>+ema``: the same with the mean teacher (``ema_decay`` = ``--ema_decay``), which
  serves the partition, the guesses, validation and the test predictions;
* ``clean_subset``: cross-entropy on the training images whose noisy label is right, the others
  dropped: what a perfect partition with U thrown away would give (an oracle, for reading only).

``--set co_divide=true`` (SSSL configs): the yaml option, DivideMix's co-divide and co-guess (two
networks, each trained on the partition of the other's losses; the first serves; docs/method.md).

``--set oracle_partition=true`` (SSSL configs; an oracle, for reading only) gives the partition pass a
loss of 0 for every training image whose label is right and 1 for the others, so X is exactly the
clean set and U the noisy one: it separates what the partition costs from what the SSSL step (guesses,
mixup) costs.

Per run: the test accuracy against the clean labels at the last epoch, at the
epoch selected on the (noisy) validation accuracy (what the recipe outputs), at the
epoch selected among the post-warm-up epochs only (``selection_scope: post_warmup``; for
SSSL, a warm-up checkpoint is plain cross-entropy; the baseline is selected among all) and
its best over epochs (an oracle, for reading only); how many SSSL epochs hit each
partition fallback (``fallbacks``; ``fallback_triggers`` per epoch); the clean set's
precision and recall over the SSSL epochs (mean; per epoch in the JSON's ``x_precision_curve``
and ``x_recall_curve``); the swing (standard deviation of the validation
accuracy over the post-warm-up epochs). Written to
``<out>/known_noise.md`` / ``.json`` with the per-epoch test curves.

Usage::

    python benchmarks/bench_known_noise.py --configs clean,ce,ce_mixup_prior,sssl_paper,sssl --seeds 0,1
"""

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter

import numpy as np
import speechbrain as sb
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from synthetic import brain_hparams  # noqa: E402

from sssl_brain.dataio.device_segments import DeviceSegments  # noqa: E402
from sssl_brain.lobes.vgg16 import VGG16  # noqa: E402
from sssl_brain.method.brain import SSSLBrain  # noqa: E402
from sssl_brain.method.selection import PartitionState, recover_selected  # noqa: E402
from sssl_brain.utils.io_utils import atomic_write_json, atomic_write_text, read_csv_dicts  # noqa: E402

CONFIGS = {
    "clean": {"method": "inherit", "clean_labels": True},
    "ce": {"method": "inherit"},
    "ce_mixup": {"method": "inherit", "warmup_mixup": True, "prior_weight": 0.0},
    "ce_mixup_prior": {"method": "inherit", "warmup_mixup": True},
    "sssl_paper": {"method": "sssl", "prior_weight": 0.0, "unlabeled_loss": "joint"},
    "sssl": {"method": "sssl"},
    "proposed_star": {"method": "proposed_star", "prior_weight": 0.0, "unlabeled_loss": "joint"},
    "clean_subset": {"method": "inherit", "clean_subset": True},
}


class ImageCache:
    """The digits as a feature source: ``load("img<i>")`` is image i, (8, 8) float32."""

    def __init__(self, images):
        self.images = images

    def load(self, path, mmap=True):
        return self.images[int(path[3:])]


def noisy_split(seed, noise):
    """Images, clean labels and the noisy labels of the train / valid / test split (test labels clean)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32)
    labels = digits.target.astype(np.int64)
    idx = np.arange(len(labels))
    rest, test = train_test_split(idx, test_size=0.3, random_state=seed, stratify=labels)
    train, valid = train_test_split(rest, test_size=0.1, random_state=seed, stratify=labels[rest])
    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    for part in (train, valid):
        flip = part[rng.random(len(part)) < noise]
        noisy[flip] = (labels[flip] + rng.integers(1, 10, len(flip))) % 10  # another class, uniformly
    return images, labels, noisy, {"train": train, "valid": valid, "test": test}


def rows(indices, labels, truth):
    return [{"seg_id": f"img{i}", "song_id": f"img{i}", "path": f"img{i}", "start_frame": 0, "n_frames": 8,
             "label": int(labels[i]), "truth": int(truth[i])} for i in indices]


class CurveBrain(SSSLBrain):
    """SSSLBrain that also scores the clean test set after each validation (diagnostics only); with
    ``co_divide`` also the mean of both networks' predictions (DivideMix's test-time prediction)."""

    def on_stage_end(self, stage, stage_loss, epoch=None):
        super().on_stage_end(stage, stage_loss, epoch)
        if stage == sb.Stage.VALID:
            model, both = self.test_accuracies()
            self.test_curve.append(model)
            if both is not None:
                self.test_curve_both.append(both)

    def test_accuracies(self):
        """Accuracy on the clean test set of the serving model and, with ``co_divide``, of the mean of
        both serving networks' probabilities (each its teacher with ``ema_decay``; else None); the
        model's predictions are computed once."""
        probs = self.predict_probs(self.test_set)
        truth = self.test_set.truth_np
        both = None
        if self.peer is not None:
            passes = self._eval_logits(self.test_set, model=self.serving_peer)  # its teacher with ema_decay
            mean = (probs + torch.cat([torch.softmax(logits, -1) for _, logits in passes]).numpy()) / 2
            both = float((mean.argmax(1) == truth).mean())
        return float((probs.argmax(1) == truth).mean()), both

    def segment_losses(self, dataset, model=None):
        """With ``oracle_losses``: the pass's probabilities and the oracle's losses (0 right, 1 wrong)."""
        losses, probs = super().segment_losses(dataset, model)
        return (losses if self.oracle_losses is None else self.oracle_losses), probs


def config_options(config, ema_decay):
    """The Brain options of ``config`` (a name of CONFIGS, optionally with ``+ema``)."""
    base, _, suffix = config.partition("+")
    if base not in CONFIGS or suffix not in ("", "ema"):
        raise SystemExit(f"--configs: {config!r} is not one of {', '.join(CONFIGS)}, optionally with +ema")
    return {**CONFIGS[base], "ema_decay": float(ema_decay) if suffix == "ema" else None}


def parse_settings(items):
    """``--set key=value`` items as Brain options (values parsed as yaml).

    Example
    -------
    >>> parse_settings(["pseudo_labels=epoch", "tau=0.6", "ema_decay=null"])
    {'pseudo_labels': 'epoch', 'tau': 0.6, 'ema_decay': None}
    """
    import yaml

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: write key=value")
        out[key.strip()] = yaml.safe_load(value)
    return out


def run(config, noise, seed, epochs, warmup, lr, folder, ema_decay=0.99, settings=None):
    """One training run; returns its row (see the module docstring). ``settings``: options set on
    every config (``--set``)."""
    images, clean, noisy, split = noisy_split(seed, noise)
    opts = {**config_options(config, ema_decay), **(settings or {})}
    labels = clean if opts.pop("clean_labels", False) else noisy
    if opts.pop("clean_subset", False):
        split = {**split, "train": split["train"][noisy[split["train"]] == clean[split["train"]]]}
    oracle = opts.pop("oracle_partition", False)
    cache = ImageCache(images)
    sets = {name: DeviceSegments(rows(split[name], labels if name != "test" else clean, clean), cache, "cpu")
            for name in split}
    torch.manual_seed(seed)
    model = VGG16(n_classes=10, width_mult=1 / 8, classifier_dim=128, batch_norm=True, n_mels=8)
    train_imgs = images[split["train"]]
    model.set_input_normalization(train_imgs.mean(axis=(0, 1)), train_imgs.std(axis=(0, 1)) + 1e-3)
    counter = sb.utils.epoch_loop.EpochCounter(epochs)
    state = PartitionState()
    hp = brain_hparams(
        n_classes=10, warmup_epochs=warmup, seed=seed, epoch_counter=counter, partition_batch_size=256,
        partition_state=state, output_folder=folder, plot_partition=False, selection_metric="valid_acc",
        lr_annealing=sb.nnet.schedulers.LinearScheduler(initial_value=lr, final_value=lr / 10,
                                                        epoch_count=epochs), **opts)
    checkpointer = sb.utils.checkpoints.Checkpointer(
        os.path.join(folder, "save"), {"model": model, "counter": counter, "partition_state": state})
    brain = CurveBrain(modules={"model": model}, hparams=hp, checkpointer=checkpointer,
                       opt_class=lambda p: torch.optim.Adam(p, lr=lr, weight_decay=5e-4),
                       run_opts={"device": "cpu", "noprogressbar": True})
    brain.test_set, brain.test_curve, brain.test_curve_both = sets["test"], [], []
    train = split["train"]
    wrong = torch.as_tensor(noisy[train] != clean[train], dtype=torch.float32)
    brain.oracle_losses = wrong if oracle else None
    start = time.time()
    brain.fit(counter, sets["train"], sets["valid"], train_loader_kwargs={"batch_size": 64, "shuffle": True},
              valid_loader_kwargs={"batch_size": 256})
    wall = time.time() - start
    # the partition history of every epoch (recovering a checkpoint restores the history up to its epoch)
    history = [h for h in state.history if h.get("clean_precision", "") != ""]
    precision = [float(h["clean_precision"]) for h in history]
    recall = [float(h["clean_recall"]) for h in history]
    selection = brain.recover_selected()
    test_selected, test_selected_both = brain.test_accuracies()  # the selected checkpoint holds the peer too
    both = {}
    if test_selected_both is not None:
        both = {"test_selected_both": test_selected_both,
                "test_last_both": brain.test_curve_both[-1], "test_curve_both": brain.test_curve_both}
    valid_curve = [float(r["valid_acc"]) for r in read_csv_dicts(os.path.join(folder, "epoch_stats.csv"))]
    post = valid_curve[warmup:]
    post_selection = recover_selected(checkpointer, "valid_acc", hp["method"], warmup, False,
                                      scope="post_warmup")
    test_post = float((brain.predict_probs(sets["test"]).argmax(1) == clean[split["test"]]).mean())
    return {
        "config": config, "settings": dict(settings or {}), "noise": noise, "seed": seed, "epochs": epochs,
        "n_train": int(len(train)),
        "warmup": warmup, "test_last": brain.test_curve[-1], "test_selected": test_selected,
        "selected_epoch": selection["selected_epoch"],
        "selected_in_warmup": selection.get("selected_in_warmup"),
        "test_selected_post_warmup": test_post,
        "selected_epoch_post_warmup": post_selection["selected_epoch"],
        "test_best_oracle": max(brain.test_curve),
        "x_precision": float(np.mean(precision)) if precision else None,
        "x_recall": float(np.mean(recall)) if recall else None,
        "x_precision_curve": precision, "x_recall_curve": recall,
        "swing": float(np.std(post)) if post else None, "test_curve": brain.test_curve,
        "fallbacks": dict(Counter(h["fallback"] or "none" for h in history)),
        "fallback_triggers": [h.get("fallback_trigger", "") for h in history],
        "valid_curve": valid_curve, "wall_s": wall, **both,
    }


def pct(value):
    return "" if value is None else f"{100 * value:.1f}"


def row_label(row, results=()):
    """A row's name in the tables and plots: its config, its ``--set`` settings and, where ``results``
    mix warm-up lengths, its warm-up.

    Example
    -------
    >>> row_label({"config": "ce", "settings": {"warmup_mixup": True}, "warmup": 10})
    'ce [warmup_mixup=True]'
    >>> row_label({"config": "ce", "warmup": 4}, [{"warmup": 4}, {"warmup": 10}])
    'ce (warm-up 4)'
    """
    label = row["config"]
    settings = row.get("settings") or {}
    if settings:
        label += " [" + ", ".join(f"{k}={v}" for k, v in settings.items()) + "]"
    if len({r.get("warmup") for r in results}) > 1:
        label += f" (warm-up {row['warmup']})"
    return label


def mean_table(results):
    """Markdown table of the means over seeds per noise and config (rows of :func:`run`).

    Example
    -------
    >>> rows = [{"noise": 0.4, "config": "ce", "seed": s, "test_last": v, "test_selected": v,
    ...          "test_selected_post_warmup": v, "test_best_oracle": v, "x_precision": None,
    ...          "x_recall": None, "swing": 0.02, "selected_in_warmup": False, "warmup": 10}
    ...         for s, v in ((0, 0.5), (1, 0.7))]
    >>> print(mean_table(rows).splitlines()[2])
    | 40% | ce | 2 | 60.0 | 60.0 | 60.0 | 60.0 |  |  | 2.0 | 0 |  |  |
    """
    groups = {}
    for r in results:
        noise = "any" if r["config"] == "clean" else f"{r['noise']:.0%}"
        groups.setdefault((noise, row_label(r, results)), []).append(r)
    lines = ["| noise | config | seeds | last | selected on valid | selected after warm-up | oracle best "
             "| X precision | X recall | swing | warm-up selected (runs) | co_divide, mean of both networks: "
             "selected | last |", "|---|" * 1 + "---|" * 12]

    def mean(rows, key):
        values = [r[key] for r in rows if r.get(key) is not None]
        return float(np.mean(values)) if values else None

    for (noise, config), rows in groups.items():
        cells = [pct(mean(rows, k)) for k in ("test_last", "test_selected", "test_selected_post_warmup",
                                              "test_best_oracle", "x_precision", "x_recall", "swing")]
        warm = sum(bool(r.get("selected_in_warmup")) for r in rows)
        both = [pct(mean(rows, k)) for k in ("test_selected_both", "test_last_both")]
        lines.append(f"| {noise} | {config} | {len(rows)} | " + " | ".join(cells) + f" | {warm} | "
                     + " | ".join(both) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(results, path):
    """One panel per noise level: the mean test-accuracy curve over seeds of each config (PNG at ``path``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    noises = sorted({r["noise"] for r in results if r["config"] != "clean"})
    row_labels = [row_label(r, results) for r in results]
    labels = list(dict.fromkeys(row_labels))
    # one colour and line style per config in every panel (the order of the runs differs between noise levels)
    styles = {label: {"color": f"C{i % 10}", "ls": "--" if label.startswith("clean") else "-"}
              for i, label in enumerate(labels)}
    fig, axes = plt.subplots(1, len(noises), figsize=(6 * len(noises), 4), squeeze=False, sharey=True)
    for ax, noise in zip(axes[0], noises):
        configs = {}
        for r, label in zip(results, row_labels):
            if r["noise"] == noise or r["config"] == "clean":
                configs.setdefault(label, []).append(r["test_curve"])
        for config in (label for label in labels if label in configs):
            mean = 100 * np.mean(np.array(configs[config]), axis=0)
            ax.plot(np.arange(1, mean.size + 1), mean, label=config, **styles[config])
        warmup = results[0]["warmup"]
        ax.axvline(warmup + 0.5, color="grey", lw=0.8)
        ax.set(title=f"{noise:.0%} symmetric noise (mean of seeds)", xlabel="epoch",
               ylabel="test accuracy vs clean labels, %")
        ax.grid(alpha=0.3)
    # below the panels, in one column: the labels (config and settings) are long
    handles = [plt.Line2D([], [], **styles[label]) for label in labels]
    fig.legend(handles, labels, loc="lower center", ncol=1, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.03 * len(labels) + 0.02, 1, 1))
    fig.set_figheight(4 + 0.2 * len(labels))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--noise", default="0.4,0.6")
    ap.add_argument("--configs", default="clean,ce,sssl_paper,sssl")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=100,
                    help="100 (50 until 2026-12-07): at 50 the SSSL and clean curves were still rising "
                         "(docs/results.md, 'a schedule long enough')")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ema_decay", type=float, default=0.99, help="ema_decay of the +ema configs")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="a Brain option for every config (yaml value), e.g. --set pseudo_labels=epoch")
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "known_noise"))
    ap.add_argument("--summarize", nargs="+", metavar="JSON",
                    help="print the means over seeds of earlier runs' known_noise.json files, run nothing")
    ap.add_argument("--plot", default=None, help="with --summarize: PNG of the mean test curves")
    args = ap.parse_args(argv)
    if args.summarize:
        results = []
        for path in args.summarize:
            with open(path, encoding="utf-8") as f:
                results.extend(json.load(f))
        print(mean_table(results))
        if args.plot:
            plot_curves(results, args.plot)
        return results
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    results = []
    for noise in (float(n) for n in args.noise.split(",")):
        for config in args.configs.split(","):
            config_options(config, args.ema_decay)  # a wrong name stops here
            if config == "clean" and any(r["config"] == "clean" for r in results):
                continue  # the ceiling does not depend on the noise
            for seed in (int(s) for s in args.seeds.split(",")):
                with tempfile.TemporaryDirectory() as folder:
                    row = run(config, noise, seed, args.epochs, args.warmup, args.lr, folder, args.ema_decay,
                              parse_settings(args.set))
                results.append(row)
                print(f"noise {noise:.0%} {config} seed {seed}: test last {pct(row['test_last'])}, selected "
                      f"{pct(row['test_selected'])} (epoch {row['selected_epoch']}), post-warm-up selected "
                      f"{pct(row['test_selected_post_warmup'])}, oracle best "
                      f"{pct(row['test_best_oracle'])}, X precision {pct(row['x_precision'])} recall "
                      f"{pct(row['x_recall'])}, swing {pct(row['swing'])} ({row['wall_s']:.0f} s); "
                      f"SSSL epochs per fallback {row['fallbacks']}",
                      flush=True)
    lines = [f"digits, symmetric noise, {args.epochs} epochs ({args.warmup} warm-up), Adam {args.lr:g} -> "
             f"{args.lr / 10:g}, seeds {args.seeds}, ema_decay of +ema {args.ema_decay:g}; test accuracy "
             f"vs the clean labels, %{'; settings ' + ' '.join(args.set) if args.set else ''}", "",
             "| noise | config | seed | last | selected on valid (epoch) | selected after warm-up (epoch) "
             "| oracle best | X precision | X recall | swing (std of valid acc after warm-up) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        noise = "any" if r["config"] == "clean" else f"{r['noise']:.0%}"
        lines.append(f"| {noise} | {r['config']} | {r['seed']} | {pct(r['test_last'])} | "
                     f"{pct(r['test_selected'])} "
                     f"({r['selected_epoch']}{', warm-up' if r['selected_in_warmup'] else ''}) | "
                     f"{pct(r['test_selected_post_warmup'])} ({r['selected_epoch_post_warmup']}) | "
                     f"{pct(r['test_best_oracle'])} | {pct(r['x_precision'])} | {pct(r['x_recall'])} | "
                     f"{pct(r['swing'])} |")
    table = "\n".join(lines) + "\n\nMeans over seeds:\n\n" + mean_table(results)
    atomic_write_text(os.path.join(args.out, "known_noise.md"), table)
    atomic_write_json(os.path.join(args.out, "known_noise.json"), results)
    print(table)
    return results


if __name__ == "__main__":
    main()
