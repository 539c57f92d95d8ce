"""Checkpoints that become visible only once complete.

SpeechBrain's ``Checkpointer.save_checkpoint`` writes ``CKPT.yaml`` (the file
that makes a folder a checkpoint) first and then each parameter file to its
final name, so a run killed or out of disk while saving leaves a newest
checkpoint with a truncated file, and the next run fails to load it.
:class:`AtomicCheckpointer` writes ``CKPT.yaml`` last and atomically and
deletes interrupted saves before recovery; the previous checkpoint is used.
"""

import logging
import os
import shutil
import time

import yaml
from speechbrain.utils.checkpoints import CKPT_PREFIX, METAFNAME, Checkpointer
from speechbrain.utils.distributed import if_main_process

from .io_utils import atomic_write_text

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
