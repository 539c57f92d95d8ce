"""Shared warm-up: the methods of a fold train the same plain cross-entropy epochs once.

A method writes a snapshot of its checkpoints at the end of the warm-up and
another method of the fold with the same settings (:func:`warmup_key`) starts
from it; the results are those of a run from scratch.
"""

import logging
import os
from typing import NamedTuple

import torch
from speechbrain.utils.distributed import ddp_barrier, if_main_process

from sssl_brain.method.checks import AFTER_WARMUP_HPARAMS
from sssl_brain.utils.checkpoints import restore_warmup_snapshot

logger = logging.getLogger(__name__)


def _plain(value):
    """``value`` if it is made of plain yaml types only (numbers, strings, lists, dicts), else None."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return items if all(i is not None or v is None for i, v in zip(items, value)) else None
    if isinstance(value, dict):
        items = {str(k): _plain(v) for k, v in value.items()}
        return items if all(items[str(k)] is not None or v is None for k, v in value.items()) else None
    return None


class WarmupSnapshot(NamedTuple):
    """What :func:`share_warmup` returns and :class:`sssl_brain.method.brain.SSSLBrain` takes
    (``warmup_snapshot=``): where the fold's warm-up snapshot goes, its key, the train log, and
    whether this method's warm-up was restored from it."""

    folder: str
    key: dict
    train_log: object
    restored: bool


#: Left out of the warm-up key: per-method paths, the snapshot's own settings, the run's list of folds
#: and the folders that only say where outputs go (the snapshot lives in the experiment folder, so
#: renaming or linking it keeps its warm-up usable).
_NOT_IN_WARMUP_KEY = ("output_folder", "save_folder", "train_log", "warmup_snapshot", "warmup_key", "folds",
                      "experiment_folder", "results_folder")


def warmup_key(hp):
    """The settings that determine a fold's warm-up epochs, as a plain dict (see ``share_warmup``).

    Every plain value of the fold's hyperparameters (numbers, strings, lists:
    data, features, folds, model, optimiser, schedule, batch size, seed,
    selection metric, the fold index...) except the list of folds of the
    run, those that act only after the
    warm-up or in stage 2 (:data:`sssl_brain.method.checks.AFTER_WARMUP_HPARAMS`,
    the ``hc_*`` options of features_svm; ``mixup_alpha`` counts with ``warmup_mixup``, ``co_divide``
    for the SSSL methods),
    the method's own paths and the experiment and results folders (where outputs go). Two
    methods of a fold with the same key train the same warm-up epochs.
    """
    skip = set(AFTER_WARMUP_HPARAMS) | set(_NOT_IN_WARMUP_KEY)
    if hp.get("warmup_mixup"):
        skip.discard("mixup_alpha")  # mixup trains the warm-up too
    if hp.get("co_divide") and hp.get("method") != "inherit":
        skip.discard("co_divide")  # the peer trains in the warm-up too (the baseline has no peer)
    return _plain_settings(hp, skip, ("hc_", "__"))


def _plain_settings(hp, skip, skip_prefixes):
    """The plain values of ``hp`` (see :func:`_plain`) whose names are neither in ``skip`` nor start with
    one of ``skip_prefixes``, in ``hp``'s order."""
    out = {}
    for name, value in hp.items():
        plain = _plain(value)
        if name in skip or name.startswith(skip_prefixes) or (plain is None and value is not None):
            continue
        out[name] = plain
    return out


#: Left out of a finished fold's settings record: where outputs go and how many processes made them.
_NOT_IN_FOLD_SETTINGS = (*_NOT_IN_WARMUP_KEY, "fold_jobs", "feature_jobs")


def fold_settings(hp):
    """Every plain setting a fold's results depend on, as a plain dict (its ``fold_settings.json``).

    A finished fold is reused only when it was made with these settings (see
    :func:`settings_differences`): every plain hyperparameter except the
    folders outputs go to, the run's list of folds and the process counts.

    Example
    -------
    >>> fold_settings({"batch_size": 16, "output_folder": "x", "model": object()})
    {'batch_size': 16}
    """
    return _plain_settings(hp, set(_NOT_IN_FOLD_SETTINGS), ("__",))


def settings_differences(old, new):
    """The names whose values differ between two :func:`fold_settings` records, sorted.

    Example
    -------
    >>> settings_differences({"batch_size": 64, "lr": 0.001}, {"batch_size": 16, "lr": 0.001, "seed": 1})
    ['batch_size', 'seed']
    """
    return sorted(k for k in set(old) | set(new) if old.get(k, "<absent>") != new.get(k, "<absent>"))


def warmup_snapshot_folder(hp):
    """``<experiment_folder>/warmup/snapshot_fold_<k>``: the warm-up snapshot shared by a fold's methods."""
    return os.path.join(hp["experiment_folder"], "warmup", f"snapshot_fold_{int(hp['fold'])}")


def share_warmup(hp, run_opts=None):
    """Sets up the shared warm-up of a fold's method; returns a :class:`WarmupSnapshot`, or None when off.

    With ``share_warmup`` (and ``warmup_epochs`` > 0) the method writes a
    snapshot of its checkpoints at the end of the warm-up (the Brain, given
    the returned object as ``warmup_snapshot``, calls
    :func:`sssl_brain.utils.checkpoints.save_warmup_snapshot`), and, when it has
    no checkpoint of its own yet, starts from a snapshot another method of the
    fold wrote with the same :func:`warmup_key` (``restored``): the results are
    those of a run from scratch, without training the warm-up twice.
    """
    if not hp["share_warmup"] or int(hp["warmup_epochs"]) <= 0:
        return None
    # the thread count and the device change the floating-point results, so they are part of the key
    key = {**warmup_key(hp), "torch_threads": torch.get_num_threads(),
           "device": str((run_opts or {}).get("device", "cpu"))}
    folder = warmup_snapshot_folder(hp)
    restored = False
    if if_main_process():
        restored = restore_warmup_snapshot(folder, hp["save_folder"], key, train_log=hp["train_log"])
        if restored:
            with open(hp["train_log"], "a", encoding="utf-8") as log:
                log.write(f"# epochs 1-{int(hp['warmup_epochs'])} above: restored from the warm-up snapshot "
                          f"{folder} (same settings, identical results)\n")
            logger.info("%s fold %d: epochs 1-%d restored from the warm-up snapshot %s (same settings)",
                        hp["method"], int(hp["fold"]), int(hp["warmup_epochs"]), folder)
    ddp_barrier()
    return WarmupSnapshot(folder, key, hp["train_log"], bool(restored))
