"""Checkpoints and model selection of stage 1: the partition state, each epoch's checkpoint, the selected one.

Each epoch ends with one checkpoint (the model, the epoch counter and the
:class:`PartitionState`), kept by SpeechBrain's ``Checkpointer`` under the key
of ``selection_metric`` (``max_keys`` / ``min_keys``); after ``fit``,
:func:`recover_selected` loads the best one with ``recover_if_possible(max_key=...)``
(``last``: the newest). At the end of the warm-up a snapshot of the checkpoints is
saved for the fold's other methods (:mod:`sssl_brain.method.warmup`).
"""

import logging
import os

import torch
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from speechbrain.utils.distributed import if_main_process

from sssl_brain.method.checks import SELECTION_METRICS
from sssl_brain.utils.checkpoints import save_warmup_snapshot

logger = logging.getLogger(__name__)


@register_checkpoint_hooks
class PartitionState:
    """The partition of the current epoch and the per-epoch history, checkpointed.

    Saved with ``torch.save`` of tensors and plain types only and loaded with
    ``weights_only=True``, so a resumed run keeps its partition history (and
    reuses the partition if it resumes inside an epoch).
    """

    def __init__(self):
        self.epoch = 0
        self.clean = None
        self.clean_prob = None
        self.probs = None  # (N, K) eval-mode probabilities of the partition pass
        self.history = []
        self.epoch_stats = []

    @mark_as_saver
    def save(self, path):
        """Writes the state (checkpoint hook)."""
        torch.save({
            "epoch": self.epoch,
            "clean": self.clean,
            "clean_prob": self.clean_prob,
            "probs": self.probs,
            "history": self.history,
            "epoch_stats": self.epoch_stats,
        }, path)

    @mark_as_loader
    def load(self, path, end_of_epoch=True):
        """Reads the state (checkpoint hook), without executing code from the file."""
        state = torch.load(path, weights_only=True)
        self.epoch, self.clean = state["epoch"], state["clean"]
        self.clean_prob, self.history = state["clean_prob"], list(state["history"])
        self.probs, self.epoch_stats = state.get("probs"), list(state.get("epoch_stats", []))


def selection_key(selection_metric, valid_absent, meta=None):
    """``(meta key, "max"/"min")`` of ``selection_metric``; None for ``last``, without validation or
    when ``meta`` lacks the key.

    Example
    -------
    >>> selection_key("valid_acc", False), selection_key("valid_acc", True), selection_key("last", False)
    (('acc_inherited', 'max'), None, None)
    """
    key, direction = SELECTION_METRICS[selection_metric]
    if direction is None or valid_absent or (meta is not None and key not in meta):
        return None
    return key, direction


def save_epoch_checkpoint(checkpointer, epoch, valid_stats, selection_metric, valid_absent, warmup=None,
                          warmup_epochs=0):
    """Saves the epoch's checkpoint (keeping the selected one) and, at the end of the warm-up, its snapshot.

    ``warmup``: the :class:`sssl_brain.method.warmup.WarmupSnapshot` of ``share_warmup`` (None: no snapshot).
    """
    meta = {"epoch": epoch, **valid_stats}
    selection = selection_key(selection_metric, valid_absent, meta)
    keys = {f"{selection[1]}_keys": [selection[0]]} if selection else {}
    checkpointer.save_and_keep_only(meta=meta, num_to_keep=1, **keys)
    if warmup is not None and epoch == int(warmup_epochs) and if_main_process():
        save_warmup_snapshot(str(checkpointer.checkpoints_dir), warmup.folder, warmup.key, warmup.train_log)


def recover_selected(checkpointer, selection_metric, method, warmup_epochs, valid_absent):
    """Loads the checkpoint chosen by ``selection_metric`` on validation (after ``fit``).

    SpeechBrain's recipes test the checkpoint with the best validation
    score; every method (sssl, proposed_star, inherit) is selected the
    same way. ``last`` (or no validation set) keeps the last epoch.

    Returns
    -------
    dict
        ``selection_metric``, ``selected_epoch``, ``selected_value`` and, for
        the SSSL methods, ``selected_in_warmup`` (for metrics.json; the
        checkpoint's folder name holds a wall-clock time, so it is not
        recorded: the epoch identifies it).
    """
    selection = selection_key(selection_metric, valid_absent)
    out = {"selection_metric": selection_metric if selection else "last",
           "selected_epoch": None, "selected_value": None}
    if checkpointer is None:
        return out
    ckpt = checkpointer.recover_if_possible(**({f"{selection[1]}_key": selection[0]} if selection else {}))
    if ckpt is None:
        return out
    value = ckpt.meta.get(selection[0]) if selection else None
    epoch = ckpt.meta.get("epoch")
    out.update(selected_epoch=epoch, selected_value=None if value is None else float(value))
    if method != "inherit" and epoch is not None:
        # a warm-up checkpoint is plain cross-entropy: the SSSL epochs did not reach the outputs
        out["selected_in_warmup"] = int(epoch) <= int(warmup_epochs)
        if out["selected_in_warmup"]:
            logger.warning("%s: the selected checkpoint is warm-up epoch %s (plain cross-entropy), "
                           "not an SSSL epoch", method, epoch)
    logger.info("selected checkpoint %s (epoch %s, %s = %s)", os.path.basename(str(ckpt.path)),
                out["selected_epoch"], out["selection_metric"], out["selected_value"])
    return out
