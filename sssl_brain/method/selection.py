"""Checkpoints and model selection of stage 1: the partition state, each epoch's checkpoint, the selected one.

Each epoch ends with one checkpoint (the model, the epoch counter and the
:class:`PartitionState`), kept by SpeechBrain's ``Checkpointer`` under the key
of ``selection_metric`` (:func:`selection_rank`: the best value, ties to the later
epoch); after ``fit``, :func:`recover_selected` loads the best one with
``recover_if_possible(importance_key=...)``
(``last``: the newest). With ``selection_scope: post_warmup`` an SSSL method is
selected among its SSSL epochs only (a warm-up checkpoint is plain cross-entropy);
the best warm-up and the best post-warm-up checkpoints are both kept, so
``metrics.json`` reports both. At the end of the warm-up a snapshot of the checkpoints is
saved for the fold's other methods (:mod:`sssl_brain.method.warmup`).
"""

import logging
import os

import numpy as np
import torch
from speechbrain.utils.checkpoints import (
    ckpt_recency,
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
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
        #: ``co_divide``: the peer's partition (made from the model's losses) and its own probabilities
        self.peer_clean = self.peer_clean_prob = self.peer_probs = None
        self.history = []
        self.epoch_stats = []

    def keep(self, epoch, result, probs, peer_result=None, peer_probs=None):
        """Keeps ``epoch``'s partition (a PartitionResult and the pass's probabilities (N, K)) and, with
        ``co_divide``, the peer's, as tensors."""

        def tensors(res, pr):
            if res is None:
                return None, None, None
            return (torch.as_tensor(np.asarray(res.clean, dtype=bool)),
                    torch.as_tensor(np.asarray(res.clean_prob, dtype=np.float32)),
                    torch.as_tensor(np.asarray(pr, dtype=np.float32)))

        self.epoch = epoch
        self.clean, self.clean_prob, self.probs = tensors(result, probs)
        self.peer_clean, self.peer_clean_prob, self.peer_probs = tensors(peer_result, peer_probs)

    @mark_as_saver
    def save(self, path):
        """Writes the state (checkpoint hook)."""
        torch.save({
            "epoch": self.epoch,
            "clean": self.clean,
            "clean_prob": self.clean_prob,
            "probs": self.probs,
            "peer_clean": self.peer_clean,
            "peer_clean_prob": self.peer_clean_prob,
            "peer_probs": self.peer_probs,
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
        self.peer_clean, self.peer_clean_prob = state.get("peer_clean"), state.get("peer_clean_prob")
        self.peer_probs = state.get("peer_probs")


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


def in_warmup(warmup_epochs):
    """The checkpoint predicate "a warm-up epoch" (``epoch <= warmup_epochs`` in its meta).

    Example
    -------
    >>> from types import SimpleNamespace as Ckpt
    >>> [in_warmup(2)(Ckpt(meta={"epoch": e})) for e in (1, 2, 3)]
    [True, True, False]
    """
    return lambda ckpt: int(ckpt.meta.get("epoch", 0)) <= int(warmup_epochs)


def after_warmup(warmup_epochs):
    """The checkpoint predicate "an epoch after the warm-up" (an SSSL epoch)."""
    return lambda ckpt: not in_warmup(warmup_epochs)(ckpt)


def selection_rank(selection):
    """The checkpointer's ``importance_key`` of ``selection`` (``(meta key, "max"/"min")``): the better
    value ranks higher, and of tied values the later epoch (SpeechBrain's ``max_key`` breaks ties by the
    order of the folder listing, which the file system decides).

    Example
    -------
    >>> from types import SimpleNamespace as Ckpt
    >>> ckpts = [Ckpt(meta={"epoch": e, "acc": a}) for e, a in ((1, 0.5), (2, 0.8), (3, 0.8), (4, 0.6))]
    >>> max(ckpts, key=selection_rank(("acc", "max"))).meta["epoch"]
    3
    >>> max(ckpts, key=selection_rank(("acc", "min"))).meta["epoch"]
    1
    """
    key, direction = selection
    sign = 1.0 if direction == "max" else -1.0
    return lambda ckpt: (sign * float(ckpt.meta[key]), int(ckpt.meta.get("epoch", 0)))


def _scored(selection, group=None):
    """Checkpoint predicate: holds the selection key (and is in ``group``)."""
    return lambda ckpt: selection[0] in ckpt.meta and (group is None or group(ckpt))


def save_epoch_checkpoint(checkpointer, epoch, valid_stats, selection_metric, valid_absent, warmup=None,
                          warmup_epochs=0):
    """Saves the epoch's checkpoint and, at the end of the warm-up, its snapshot.

    Kept: the newest checkpoint and, by ``selection_metric``, the best warm-up one and the best
    post-warm-up one (so both selection scopes can be read after ``fit``).
    ``warmup``: the :class:`sssl_brain.method.warmup.WarmupSnapshot` of ``share_warmup`` (None: no snapshot).
    """
    meta = {"epoch": epoch, **valid_stats}
    selection = selection_key(selection_metric, valid_absent, meta)
    if selection is None:  # the newest only
        checkpointer.save_and_keep_only(meta=meta, num_to_keep=1)
    else:
        checkpointer.save_checkpoint(meta=meta, end_of_epoch=True)
        # warm-up epochs: the best (and the newest while the warm-up runs, to resume); SSSL epochs: the
        # best and the newest
        rank = selection_rank(selection)
        warm_keys = [rank] if epoch > int(warmup_epochs) else [rank, ckpt_recency]
        checkpointer.delete_checkpoints(num_to_keep=1, importance_keys=warm_keys,
                                        ckpt_predicate=_scored(selection, in_warmup(warmup_epochs)))
        checkpointer.delete_checkpoints(num_to_keep=1, importance_keys=[rank, ckpt_recency],
                                        ckpt_predicate=_scored(selection, after_warmup(warmup_epochs)))
    if warmup is not None and epoch == int(warmup_epochs) and if_main_process():
        save_warmup_snapshot(str(checkpointer.checkpoints_dir), warmup.folder, warmup.key, warmup.train_log)


def _best(checkpointer, selection, predicate=None):
    """``{"epoch", "value"}`` of the best checkpoint by ``selection`` among ``predicate``'s, or None."""
    found = checkpointer.find_checkpoints(importance_key=selection_rank(selection),
                                          ckpt_predicate=_scored(selection, predicate), max_num_checkpoints=1)
    if not found:
        return None
    return {"epoch": found[0].meta.get("epoch"), "value": float(found[0].meta[selection[0]])}


def recover_selected(checkpointer, selection_metric, method, warmup_epochs, valid_absent, scope="all"):
    """Loads the checkpoint chosen by ``selection_metric`` on validation (after ``fit``).

    SpeechBrain's recipes test the checkpoint with the best validation
    score; every method (sssl, proposed_star, inherit) is selected the
    same way. ``last`` (or no validation set) keeps the last epoch.
    ``scope`` (``selection_scope``): ``all`` epochs, or ``post_warmup``: an SSSL method is
    selected among its epochs after the warm-up (the baseline among all; with no such
    checkpoint, among all, with a warning).

    Returns
    -------
    dict
        ``selection_metric``, ``selection_scope``, ``selected_epoch``, ``selected_value`` and, for
        the SSSL methods, ``selected_in_warmup`` and, with a selection metric, ``best_all`` and
        ``best_post_warmup`` (``{"epoch", "value"}`` of each scope's best checkpoint, whichever is
        used) for metrics.json (the checkpoint's folder name holds a wall-clock time, so it is not
        recorded: the epoch identifies it).
    """
    selection = selection_key(selection_metric, valid_absent)
    scoped = scope == "post_warmup" and method != "inherit" and selection is not None
    out = {"selection_metric": selection_metric if selection else "last",
           "selection_scope": "post_warmup" if scoped else "all",
           "selected_epoch": None, "selected_value": None}
    if checkpointer is None:
        return out
    predicate = None if selection is None else _scored(selection)
    if selection and method != "inherit":
        out["best_all"] = _best(checkpointer, selection)
        out["best_post_warmup"] = _best(checkpointer, selection, after_warmup(warmup_epochs))
        if scoped and out["best_post_warmup"] is None:
            logger.warning("%s: no checkpoint after the warm-up; selecting among all epochs", method)
            out["selection_scope"] = "all"
        elif scoped:
            predicate = _scored(selection, after_warmup(warmup_epochs))
    ckpt = checkpointer.recover_if_possible(
        **({"importance_key": selection_rank(selection)} if selection else {}), ckpt_predicate=predicate)
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
