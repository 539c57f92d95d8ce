"""A tiny trained fold and its exported model, built once per test session (shared by several test files).

:func:`trained_fold` runs the csv recipe on 8 generated demo songs (one fold,
two epochs, VGG16 at width 1/16; about 20 s) in the session's base temporary
folder; :func:`exported_model` exports it. Both are memoised on disk, so the
test files that use them (test_export, test_inference, test_cli) pay once.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from sssl_brain.inference.export import export_fold
from sssl_brain.inference.model_folder import MANIFEST_FILE
from sssl_brain.utils.io_utils import read_csv_dicts

REPO = Path(__file__).resolve().parents[1]
RECIPE_ARGS = ["--n_folds=2", "--folds=[0]", "--number_of_epochs=2", "--warmup_epochs=1",
               "--width_mult=0.0625", "--classifier_dim=32", "--seg_dur=1", "--target=quadrant",
               "--svm_grid_search=False", "--device=cpu", "--noprogressbar", "--feature_jobs=1"]


def trained_fold(basetemp):
    """Runs the csv recipe once; returns ``(fold_dir, songs)`` with songs = rows of the songs table."""
    root = Path(basetemp) / "sssl_tiny_run"
    results = root / "results"
    fold = results / "csv" / "quadrant_seg1s_seed1986" / "sssl" / "fold_0"
    if not (fold / "metrics.json").is_file():
        from demo_data import generate_demo_dataset

        generate_demo_dataset(str(root / "data"), n_songs=8, seed=0, min_duration=4, max_duration=6,
                              progress=False)
        cmd = [sys.executable, str(REPO / "recipes" / "csv" / "train.py"),
               str(REPO / "hparams" / "vgg16_sssl.yaml"), f"--data_folder={root / 'data'}",
               f"--results_folder={results}", *RECIPE_ARGS]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    songs = read_csv_dicts(results / "csv" / "prepared" / "songs.csv")
    return fold, songs


def exported_model(basetemp):
    """Exports the fold of :func:`trained_fold`."""
    fold, _ = trained_fold(basetemp)
    out = Path(basetemp) / "sssl_tiny_model"
    if not (out / MANIFEST_FILE).is_file():
        export_fold(fold, out)
    return out


def segment_reference(fold, song_id, class_names):
    """Rows of ``segment_predictions.csv`` of one song: start times, end times, probabilities (S, K)."""
    rows = [r for r in read_csv_dicts(fold / "segment_predictions.csv") if r["song_id"] == song_id]
    starts = np.array([float(r["start_s"]) for r in rows])
    ends = np.array([float(r["end_s"]) for r in rows])
    probs = np.array([[float(r[f"p_{c}"]) for c in class_names] for r in rows])
    return starts, ends, probs


def fold_by_hand(folder, target="valence", class_names=("low", "high"), seg_dur=3.0, width_mult=0.0625,
                 classifier_dim=16, normalization=True, max_song_duration=None, seed=0):
    """A fold folder built without training: an untrained tiny VGG16 and a SongClassifier on random songs.

    Arguments
    ---------
    normalization : bool
        Give the model a non-trivial per-bin input normalisation; False keeps
        the single global mean 0 / std 1 (``n_mels=None``).

    Returns
    -------
    pathlib.Path
        The fold folder (``fold_config.json``, ``save/CKPT+.../model.ckpt``, ``song_classifier.skops``).
    """
    import json
    import warnings

    import torch

    from sssl_brain.lobes.vgg16 import VGG16
    from sssl_brain.song_level.classifier import SongClassifier
    from sssl_brain.utils.model_io import save_song_classifier

    folder = Path(folder)
    n_classes = len(class_names)
    torch.manual_seed(seed)
    model = VGG16(n_classes=n_classes, width_mult=width_mult, classifier_dim=classifier_dim,
                  n_mels=128 if normalization else None)
    if normalization:
        rng = np.random.default_rng(seed)
        model.set_input_normalization(rng.uniform(-60, -20, 128), rng.uniform(5, 15, 128))
    state = model.state_dict()
    ckpt = folder / "save" / "CKPT+2024-01-01+00-00-00+00"
    ckpt.mkdir(parents=True)
    torch.save(state, ckpt / "model.ckpt")
    (ckpt / "CKPT.yaml").write_text("end-of-epoch: true\nunixtime: 1700000000.0\n")
    config = {"target": target, "seg_dur": seg_dur, "seg_overlap": None,
              "max_song_duration": max_song_duration, "sample_rate": 22050, "n_fft": 1024,
              "hop_length": 512, "n_mels": 128, "mel_power_ref": 1.0,
              "n_classes": n_classes, "width_mult": width_mult, "classifier_dim": classifier_dim,
              "batch_norm": False, "dropout": 0.5, "channels_last": False, "song_theta": 0.5,
              "svm_grid_search": False, "svm_C": 1.0, "svm_gamma": "scale", "svm_C_grid": [0.1, 1, 10, 100],
              "svm_gamma_grid": ["scale", 0.01, 0.1, 1], "method": "sssl", "fold": 0, "seed": seed,
              "class_names": list(class_names),
              "valence_threshold": 0.5, "arousal_threshold": 0.5}
    (folder / "fold_config.json").write_text(json.dumps(config))
    rng = np.random.default_rng(seed)
    songs = [rng.dirichlet(np.ones(n_classes), size=6) for _ in range(8 * n_classes)]
    y = np.arange(len(songs)) % n_classes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_song_classifier(SongClassifier(theta=0.5, random_state=seed, calibration_folds=3).fit(songs, y),
                             folder / "song_classifier.skops")
    return folder
