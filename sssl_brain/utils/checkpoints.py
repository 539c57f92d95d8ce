"""Checkpoints that become visible only once complete.

SpeechBrain's ``Checkpointer.save_checkpoint`` writes ``CKPT.yaml`` (the file
that makes a folder a checkpoint) first and then each parameter file to its
final name, so a run killed or out of disk while saving leaves a newest
checkpoint with a truncated file, and the next run fails to load it.
:class:`AtomicCheckpointer` writes ``CKPT.yaml`` last and atomically and
deletes interrupted saves before recovery; the previous checkpoint is used.
"""

import glob
import json
import logging
import os
import shutil
import time

import yaml
from speechbrain.utils.checkpoints import CKPT_PREFIX, METAFNAME, Checkpointer
from speechbrain.utils.distributed import if_main_process

from sssl_brain.utils.io_utils import atomic_write_text

logger = logging.getLogger(__name__)


class AtomicCheckpointer(Checkpointer):
    """SpeechBrain's Checkpointer, but a checkpoint becomes visible only once every file is written.

    SpeechBrain marks a folder as a checkpoint by its ``CKPT.yaml`` and writes
    that file before the parameter files; here it is written last and
    atomically (after the parameter files are flushed to disk), so a run
    killed while saving leaves an incomplete folder that is never loaded (and
    is deleted at the next recovery); the previous checkpoint is used instead.
    """

    def _save_checkpoint_metafile(self, fpath, meta_to_include={}, end_of_epoch=True):  # noqa: B006
        meta = {"unixtime": time.time(), "end-of-epoch": end_of_epoch}
        meta.update(meta_to_include)
        self._pending_meta = (fpath, meta)  # written by save_checkpoint once the files are complete
        return meta

    def save_checkpoint(self, meta={}, end_of_epoch=True, name=None, verbosity=logging.INFO):  # noqa: B006
        """Same as ``Checkpointer.save_checkpoint``; ``CKPT.yaml`` is written last.

        A failed save (disk full: torch raises "unexpected pos ..." naming no file) deletes the
        incomplete folder and raises an error naming it; the previous checkpoint is kept.
        """
        self._pending_meta = None
        try:
            ckpt = super().save_checkpoint(meta=meta, end_of_epoch=end_of_epoch, name=name,
                                           verbosity=verbosity)
        except Exception as err:
            if self._pending_meta is None:
                raise
            folder = os.path.dirname(self._pending_meta[0])
            shutil.rmtree(folder, ignore_errors=True)
            raise RuntimeError(f"{folder}: cannot save the checkpoint ({err}); disk full? the previous "
                               "checkpoint, if any, is kept") from err
        if self._pending_meta is not None:  # main process
            fpath, saved = self._pending_meta
            for path in ckpt.paramfiles.values():
                if os.path.isfile(path):
                    with open(path, "rb") as f:
                        os.fsync(f.fileno())
            atomic_write_text(str(fpath), "# yamllint disable\n" + yaml.dump(saved))
            self._pending_meta = None
        return ckpt

    def recover_if_possible(self, *args, **kwargs):
        """Deletes interrupted saves (folders without ``CKPT.yaml``), then recovers as SpeechBrain does."""
        if if_main_process() and self.checkpoints_dir.is_dir():
            for path in self.checkpoints_dir.glob(f"{CKPT_PREFIX}+*"):
                if path.is_dir() and not (path / METAFNAME).exists():
                    logger.warning("deleting %s: a checkpoint whose save was interrupted", path)
                    shutil.rmtree(path, ignore_errors=True)
        return super().recover_if_possible(*args, **kwargs)


# ---------------------------------------------------------------- shared warm-up
#: File of a warm-up snapshot that holds the key of the settings it was trained with.
SNAPSHOT_KEY_FILE = "warmup_key.json"


def _link_or_copy(src, dst):
    """Hard link (checkpoint files are never rewritten in place), or a copy across file systems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _complete_checkpoints(folder):
    """Checkpoint folders of ``folder`` whose save finished (``CKPT.yaml`` written, see above)."""
    return sorted(p for p in glob.glob(os.path.join(folder, f"{CKPT_PREFIX}+*"))
                  if os.path.isfile(os.path.join(p, METAFNAME)))


def _link_checkpoints(src, dest):
    """Hard-links (or copies) every complete checkpoint folder of ``src`` into ``dest``, replacing any."""
    os.makedirs(dest, exist_ok=True)
    for ckpt in _complete_checkpoints(src):
        target = os.path.join(dest, os.path.basename(ckpt))
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(ckpt, target, copy_function=_link_or_copy)


def save_warmup_snapshot(save_folder, snapshot_folder, key, train_log=None):
    """Keeps the checkpoints of the end of the warm-up so that another method of the fold can start there.

    The warm-up epochs (plain cross-entropy on the inherited labels) are the
    same computation for every method of a fold when the settings that shape
    them are the same (``key``): SSSL, Proposed* and the inherit baseline
    differ only after it. At the end of epoch ``warmup_epochs`` the save
    folder holds that epoch's checkpoint and the best one so far on
    validation, exactly what a method trained from scratch would hold; they
    are hard-linked (or copied) to ``snapshot_folder`` with ``key`` in
    ``warmup_key.json``, written to a temporary folder and renamed, so a
    killed run never leaves a half snapshot.

    Arguments
    ---------
    save_folder : str
        The fold's checkpoint folder (``save/``).
    snapshot_folder : str
        Where the snapshot goes (replaced if it exists).
    key : dict
        Plain settings that determine the warm-up (see :func:`restore_warmup_snapshot`).
    train_log : str, optional
        The fold's ``train_log.txt`` so far, kept beside the checkpoints.

    Example
    -------
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(root, "save", "CKPT+1"))
    >>> _ = open(os.path.join(root, "save", "CKPT+1", METAFNAME), "w").write("epoch: 1\\n")
    >>> save_warmup_snapshot(os.path.join(root, "save"), os.path.join(root, "snap"), {"lr": 0.1})
    >>> sorted(os.listdir(os.path.join(root, "snap")))
    ['save', 'warmup_key.json']
    """
    tmp = f"{snapshot_folder}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    _link_checkpoints(save_folder, os.path.join(tmp, "save"))
    if train_log and os.path.isfile(train_log):
        shutil.copy2(train_log, os.path.join(tmp, "train_log.txt"))
    atomic_write_text(os.path.join(tmp, SNAPSHOT_KEY_FILE), json.dumps(key, sort_keys=True, indent=1))
    old = f"{snapshot_folder}.old-{os.getpid()}"
    if os.path.isdir(snapshot_folder):
        os.replace(snapshot_folder, old)
    os.replace(tmp, snapshot_folder)
    shutil.rmtree(old, ignore_errors=True)


def restore_warmup_snapshot(snapshot_folder, save_folder, key, train_log=None):
    """Starts a fold's method from a warm-up snapshot made with the same settings; True if it did.

    Nothing happens (False) when the method already has a checkpoint of its
    own (it resumes from it), when there is no complete snapshot, or when the
    snapshot's key differs from ``key`` (other settings: the warm-up is
    trained again). Otherwise the snapshot's checkpoints are hard-linked (or
    copied) into ``save_folder`` and its ``train_log.txt`` becomes the
    beginning of ``train_log``; SpeechBrain's recovery then continues from
    the end of the warm-up with the same weights, optimiser state and
    per-epoch seeds as an uninterrupted run, so the results are identical.

    Arguments
    ---------
    snapshot_folder : str
        Written by :func:`save_warmup_snapshot`.
    save_folder : str
        The method's checkpoint folder.
    key : dict
        The settings this method's warm-up would be trained with.
    train_log : str, optional
        The method's ``train_log.txt``.

    Returns
    -------
    bool
        True when the checkpoints were restored.

    Example
    -------
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(root, "save", "CKPT+1"))
    >>> _ = open(os.path.join(root, "save", "CKPT+1", METAFNAME), "w").write("epoch: 1\\n")
    >>> save_warmup_snapshot(os.path.join(root, "save"), os.path.join(root, "snap"), {"lr": 0.1})
    >>> restore_warmup_snapshot(os.path.join(root, "snap"), os.path.join(root, "other"), {"lr": 0.2})
    False
    >>> restore_warmup_snapshot(os.path.join(root, "snap"), os.path.join(root, "other"), {"lr": 0.1})
    True
    >>> os.listdir(os.path.join(root, "other"))
    ['CKPT+1']
    """
    key_path = os.path.join(snapshot_folder, SNAPSHOT_KEY_FILE)
    if _complete_checkpoints(save_folder) or not os.path.isfile(key_path):
        return False
    with open(key_path, encoding="utf-8") as f:
        if json.load(f) != json.loads(json.dumps(key)):
            logger.info("%s: warm-up snapshot of other settings, not used", snapshot_folder)
            return False
    _link_checkpoints(os.path.join(snapshot_folder, "save"), save_folder)
    log = os.path.join(snapshot_folder, "train_log.txt")
    if train_log and os.path.isfile(log):
        shutil.copy2(log, train_log)
    return True
