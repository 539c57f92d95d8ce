"""What the Brain reports each epoch: ``partition.csv``, ``epoch_stats.csv``, plots and collapse warnings.

:class:`SSSLReporter` keeps a stage's prediction counts (``count_batch``),
turns them into the validation statistics, writes one ``partition.csv`` row per
SSSL epoch (the partition, and against the truth where it is known: how good X
is, and whether relabelling U can help) and one ``epoch_stats.csv`` row per
epoch, and warns when the predictions collapse onto one class. It reports; it
changes nothing the method computes. The columns are documented in
docs/output_contract.md.
"""

import logging
import os

import numpy as np
import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.distributed import if_main_process
from speechbrain.utils.metric_stats import ClassificationStats

from sssl_brain.method.partition_result import partition_precision_recall
from sssl_brain.method.sssl import refine_labels
from sssl_brain.utils.io_utils import atomic_write_csv

logger = logging.getLogger(__name__)

#: One row per SSSL epoch (``partition.csv``): the partition and what it finds.
PARTITION_COLUMNS = [
    "epoch", "n_clean", "n_noisy", "clean_frac", "gmm_mean_low", "gmm_mean_high", "per_class", "fallback",
    "fallback_trigger", "class_tv", "clean_precision", "clean_recall", "train_seg_acc_truth",
    "train_seg_acc_label", "train_pred_dist", "train_collapse", "u_label_acc_truth", "u_guess_acc_truth",
    "u_refined_acc_truth",
]
#: One row per epoch and method (``epoch_stats.csv``): what the model predicts, on which data.
EPOCH_COLUMNS = [
    "epoch", "method", "sssl", "lr", "train_loss", "train_pred_dist", "valid_loss", "valid_acc",
    "valid_acc_truth", "valid_song_acc", "valid_pred_dist", "valid_collapse",
]


def format_distribution(shares):
    """Class shares as one compact string, e.g. for ``epoch_stats.csv``.

    Example
    -------
    >>> format_distribution([0.25, 0.75])
    '0.250/0.750'
    """
    return "/".join(f"{float(v):.3f}" for v in shares)


def _fmt(value):
    return "" if value is None else round(float(value), 6)


class SSSLReporter:
    """The diagnostics of one method's training (see the module docstring).

    Arguments
    ---------
    method : str
        ``sssl``, ``proposed_star`` or ``inherit`` (the ``method`` column).
    n_classes : int
        K.
    collapse_margin : float
        Warn when a class's predicted share exceeds its label share by more than this.
    output_folder : str, optional
        Where the csv files and plots go (None: nothing written).
    plot_partition : bool
        One loss histogram with the fitted mixture per SSSL epoch.
    train_logger : optional
        SpeechBrain's train logger.
    labels, truth : numpy.ndarray, optional
        The training segments' inherited labels and truth (-1: unknown), in dataset order.
    """

    def __init__(self, method, n_classes, collapse_margin, output_folder=None, plot_partition=False,
                 train_logger=None, labels=None, truth=None):
        self.method, self.n_classes, self.margin = method, int(n_classes), float(collapse_margin)
        self.folder, self.plot, self.train_logger = output_folder, bool(plot_partition), train_logger
        self.labels, self.truth, self.correct, self.label_share = labels, truth, None, None
        if labels is not None:
            known = truth >= 0
            self.correct = (truth == labels) if known.all() and known.size else None
            counts = np.bincount(labels, minlength=self.n_classes).astype(np.float64)
            self.label_share = counts / max(1.0, counts.sum())
        self.train_pred_dist = self.valid_pred_dist = None
        self.valid_collapse = False
        self.start_stage("cpu")

    # ------------------------------------------------------------ a stage's counts
    def start_stage(self, device):
        """Resets the counts of a stage (prediction counts on ``device``)."""
        self.inherited_stats = ClassificationStats()  # predictions vs. the segments' labels
        self.truth_stats = ClassificationStats()  # vs. the per-second truth, where it is known
        self.pred_counts = torch.zeros(self.n_classes, dtype=torch.long, device=device)
        self.song_probs = {}

    def count_batch(self, predictions, labels, batch, stage):
        """Counts the predictions of a batch and, outside training, its hits and song probabilities."""
        pred = predictions.detach().argmax(dim=-1)
        self.pred_counts += torch.bincount(pred, minlength=self.n_classes)  # on the device
        if stage == sb.Stage.TRAIN:
            return
        pred_list, truth = pred.tolist(), batch.truth.data[:, 0].tolist()
        self.inherited_stats.append(batch.id, pred_list, labels.tolist())
        known = [i for i, t in enumerate(truth) if t >= 0]
        self.truth_stats.append([batch.id[i] for i in known], [pred_list[i] for i in known],
                                [truth[i] for i in known])
        probs = torch.softmax(predictions.detach().float(), dim=-1).cpu().numpy()
        for sid, lab, p in zip(batch.song_id, labels.cpu().tolist(), probs):
            entry = self.song_probs.setdefault(sid, [lab, np.zeros_like(p, dtype=np.float64), 0])
            entry[1] += p
            entry[2] += 1

    def end_train_stage(self):
        """Training predictions of the plain CE epochs (unmixed inputs, train mode); SSSL epochs: see
        the partition pass of partition.csv."""
        counts = self.pred_counts.cpu().numpy()
        self.train_pred_dist = counts / counts.sum() if counts.sum() else None

    def stage_stats(self, stage_loss, epoch=None, valid=False):
        """``loss`` and ``acc_inherited`` of a VALID/TEST stage; VALID adds ``acc_truth``, ``song_acc``
        (mean-probability aggregator) and the collapse check."""
        acc = self.inherited_stats.summarize("accuracy") if self.inherited_stats.ids else 0
        stats = {"loss": stage_loss, "acc_inherited": acc}
        if not valid:
            return stats
        if self.truth_stats.ids:
            stats["acc_truth"] = self.truth_stats.summarize("accuracy")
        if self.song_probs:
            hits = [int(np.argmax(total) == lab) for lab, total, _ in self.song_probs.values()]
            stats["song_acc"] = float(np.mean(hits))
        counts = self.pred_counts.cpu().numpy()
        self.valid_pred_dist = counts / max(1, counts.sum())
        self.valid_collapse = self.collapsed(self.valid_pred_dist, f"epoch {epoch}, validation segments")
        return stats

    def collapsed(self, dist, where):
        """True (and a logged warning) when one class takes far more predictions than its label share."""
        if self.label_share is None:
            return False
        excess = np.asarray(dist) - self.label_share
        k = int(np.argmax(excess))
        if excess[k] > self.margin:
            logger.warning("prediction collapse (%s): %.1f %% of the predictions are class %d, "
                           "whose share of the inherited labels is %.1f %% (collapse_margin %.2f)",
                           where, 100 * dist[k], k, 100 * self.label_share[k], self.margin)
            return True
        return False

    # ------------------------------------------------------------ partition.csv
    def partition(self, epoch, result, probs, history):
        """Logs the epoch's partition and writes ``partition.csv`` (and the plot); returns the new history.

        ``probs``: the partition pass's class probabilities (N, K); ``history``: the earlier rows.
        """
        pred = probs.argmax(axis=1)
        row = {"epoch": epoch, **result.summary()}
        row = {k: (_fmt(v) if isinstance(v, float) else v) for k, v in row.items()}
        dist = np.bincount(pred, minlength=self.n_classes) / max(1, pred.size)
        collapsed = self.collapsed(dist, f"epoch {epoch}, training segments at the start of the epoch")
        row.update(clean_precision="", clean_recall="", train_seg_acc_truth="", u_label_acc_truth="",
                   u_guess_acc_truth="", u_refined_acc_truth="",
                   train_seg_acc_label=_fmt((pred == self.labels).mean()),
                   train_pred_dist=format_distribution(dist), train_collapse=int(collapsed))
        if self.correct is not None:
            row.update(self._against_truth(result, probs, pred))
        history = [h for h in history if int(h["epoch"]) < epoch] + [row]
        logger.info("partition: %s", ", ".join(f"{k}={v}" for k, v in row.items() if v != ""))
        if self.folder and if_main_process():
            atomic_write_csv(os.path.join(self.folder, "partition.csv"), history, PARTITION_COLUMNS)
            if self.plot:
                from sssl_brain.utils.plots import plot_partition_histogram

                path = os.path.join(self.folder, "partition_plots", f"epoch_{epoch:03d}.png")
                plot_partition_histogram(result.losses, result, path, epoch)
        return history

    def _against_truth(self, result, probs, pred):
        """How good X is, and whether relabelling U can help (its inherited labels vs. the guesses)."""
        prec, rec = partition_precision_recall(result.clean, self.correct)
        out = {"clean_precision": _fmt(prec), "clean_recall": _fmt(rec),
               "train_seg_acc_truth": _fmt((pred == self.truth).mean())}
        noisy = ~np.asarray(result.clean, dtype=bool)
        if noisy.any():
            out["u_label_acc_truth"] = _fmt(self.correct[noisy].mean())
            out["u_guess_acc_truth"] = _fmt((pred[noisy] == self.truth[noisy]).mean())
            onehot = F.one_hot(torch.as_tensor(self.labels[noisy]), probs.shape[1]).double()
            refined = refine_labels(onehot, torch.as_tensor(probs[noisy]),
                                    torch.as_tensor(np.asarray(result.clean_prob)[noisy])).argmax(1)
            out["u_refined_acc_truth"] = _fmt((refined.numpy() == self.truth[noisy]).mean())
        return out

    # ------------------------------------------------------------ epoch_stats.csv and the train log
    def end_of_epoch(self, epoch, sssl, lr, train_loss, valid_stats, state):
        """Writes the epoch's ``epoch_stats.csv`` row (into ``state.epoch_stats``) and its train-log line."""
        train_dist = self.train_pred_dist  # None in SSSL epochs: see partition.csv
        row = {"epoch": epoch, "method": self.method, "sssl": int(sssl), "lr": _fmt(lr),
               "train_loss": _fmt(train_loss),
               "train_pred_dist": "" if train_dist is None else format_distribution(train_dist),
               "valid_loss": _fmt(valid_stats.get("loss")),
               "valid_acc": _fmt(valid_stats.get("acc_inherited")),
               "valid_acc_truth": _fmt(valid_stats.get("acc_truth")),
               "valid_song_acc": _fmt(valid_stats.get("song_acc")),
               "valid_pred_dist": format_distribution(self.valid_pred_dist) if valid_stats else "",
               "valid_collapse": int(self.valid_collapse) if valid_stats else ""}
        # rows of earlier epochs (a warm-up restored from another method's snapshot is this method's too)
        earlier = [{**r, "method": self.method} for r in state.epoch_stats if int(r["epoch"]) < epoch]
        state.epoch_stats = earlier + [row]
        if valid_stats:
            logger.info("epoch %d: valid acc %.4f, predicted class shares %s (label shares %s)", epoch,
                        valid_stats["acc_inherited"], row["valid_pred_dist"],
                        format_distribution(self.label_share if self.label_share is not None else []))
        if self.folder and if_main_process():
            atomic_write_csv(os.path.join(self.folder, "epoch_stats.csv"), state.epoch_stats, EPOCH_COLUMNS)
        if self.train_logger is None:
            return
        train_stats = {"loss": train_loss}
        last = state.history[-1] if state.history else None
        if last is not None and int(last["epoch"]) == epoch:
            train_stats.update(n_clean=last["n_clean"], n_noisy=last["n_noisy"])
            if last["clean_precision"] != "":
                train_stats["clean_precision"] = last["clean_precision"]
        epoch_info = {"epoch": epoch, "method": self.method, "sssl": sssl}
        if lr is not None:
            epoch_info["lr"] = lr
        self.train_logger.log_stats(epoch_info, train_stats=train_stats, valid_stats=valid_stats or None)

    def log_test(self, epoch_loaded, stats):
        """The train-log line of an evaluation (TEST stage)."""
        if self.train_logger is not None:
            self.train_logger.log_stats({"Epoch loaded": epoch_loaded}, test_stats=stats)
