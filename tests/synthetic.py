"""Synthetic segment data with known label noise, for Brain tests (no audio needed).

Each "song" is a feature array (frames x mels) saved as .npy; a segment of a
song carries the song's class pattern except for a known minority of
segments whose content belongs to the other class: their inherited label is
wrong, and the truth is known.
"""

import os
from pathlib import Path

import numpy as np
import torch
import yaml

from sssl_brain.dataio.dataset import segment_dataset
from sssl_brain.method.checks import BRAIN_HPARAMS
from sssl_brain.method.selection import PartitionState

#: The recipe's yaml: the one source of the Brain's settings.
YAML = Path(__file__).resolve().parents[1] / "hparams" / "vgg16_sssl.yaml"


class NpyCache:
    """Stand-in for FeatureCache: the 'audio path' is the .npy feature file itself."""

    def entry_path(self, path):
        return path


def make_noisy_segments(folder, n_songs=24, segs_per_song=10, seg_frames=8, n_mels=16, noise=0.3,
                        n_classes=2, seed=0, separation=1.5):
    """Writes songs as .npy features and returns segment rows with inherited labels and truth.

    Returns
    -------
    segments : list of dict
        Rows like :func:`sssl_brain.dataio.dataset.build_segments` gives.
    flipped : numpy.ndarray
        True where the inherited label is wrong.
    """
    rng = np.random.default_rng(seed)
    protos = rng.normal(0, 1, size=(n_classes, n_mels)) * separation
    segments, flipped = [], []
    os.makedirs(folder, exist_ok=True)
    for s in range(n_songs):
        label = s % n_classes
        truths = np.full(segs_per_song, label)
        n_bad = int(round(noise * segs_per_song))
        bad = rng.choice(segs_per_song, size=n_bad, replace=False)
        truths[bad] = (label + 1 + rng.integers(0, n_classes - 1, size=n_bad)) % n_classes
        frames = []
        for t in truths:
            frames.append(protos[t][None, :] + rng.normal(0, 1.0, size=(seg_frames, n_mels)))
        feats = np.concatenate(frames).astype(np.float32)
        path = os.path.join(folder, f"song{s:03d}.npy")
        np.save(path, feats)
        for k, t in enumerate(truths):
            segments.append({
                "seg_id": f"song{s:03d}__{k:04d}", "song_id": f"song{s:03d}", "segment": k,
                "start_s": float(k), "end_s": float(k + 1), "start_frame": k * seg_frames,
                "n_frames": seg_frames, "path": path, "label": label, "truth": int(t),
            })
            flipped.append(t != label)
    return segments, np.array(flipped)


class _PlainLoader(yaml.SafeLoader):
    """A yaml loader that reads hyperpyyaml's tagged values (``!new``, ``!ref``, ``!apply``...) as None."""


_PlainLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def yaml_values(path=YAML):
    """Every top-level key of a recipe yaml with its plain value; a tagged value is None.

    Reads the file without building any object or setting any seed (unlike
    :func:`sssl_brain.utils.hparams.load_hparams`), so a test can start from
    the yaml's settings and keep its own random state.
    """
    with open(path, encoding="utf-8") as fin:
        return yaml.load(fin, Loader=_PlainLoader)


def brain_hparams(**overrides):
    """The yaml's values of every key the Brain reads (:data:`BRAIN_HPARAMS`), with ``overrides``."""
    values = yaml_values()
    return {**{key: values[key] for key in BRAIN_HPARAMS}, **overrides}


def tiny_hparams(folder, method="sssl", epochs=6, warmup=2, n_classes=2, seed=0, batch_norm=True, **extra):
    """Hyperparameters of a tiny SSSLBrain run: the yaml's settings (:func:`brain_hparams`), a tiny model."""
    import speechbrain as sb

    from sssl_brain.lobes.vgg16 import VGG16

    torch.manual_seed(seed)
    model = VGG16(n_classes=n_classes, width_mult=1 / 8, classifier_dim=32, dropout=0.3,
                  batch_norm=batch_norm)
    counter = sb.utils.epoch_loop.EpochCounter(epochs)
    state = PartitionState()
    # the yaml's settings; tiny runs take the paper's step (no prior penalty) and keep the last epoch
    hp = brain_hparams(
        method=method, n_classes=n_classes, warmup_epochs=warmup, seed=seed, epoch_counter=counter,
        partition_batch_size=64, prior_weight=0.0, selection_metric="last", partition_state=state,
        output_folder=folder, model=model,
        checkpointer=sb.utils.checkpoints.Checkpointer(
            os.path.join(folder, "save"), {"model": model, "counter": counter, "partition_state": state}),
    )
    hp.update(extra)
    return hp


def make_brain(hp, run_opts=None):
    """An SSSLBrain for the tiny hyperparameters."""
    from sssl_brain.method.brain import SSSLBrain

    return SSSLBrain(modules={"model": hp["model"]}, opt_class=lambda p: torch.optim.Adam(p, lr=1e-3),
                     hparams=hp, run_opts=run_opts or {"device": "cpu", "noprogressbar": True},
                     checkpointer=hp["checkpointer"])


def datasets(segments):
    """Train dataset of all segments (for the partition tests)."""
    return segment_dataset(segments, NpyCache())
