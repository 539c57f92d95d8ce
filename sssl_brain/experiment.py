"""What a trained fold writes: its settings (``fold_config.json``) and its stage-2 outputs.

The recipes (``recipes/sssl_train.py``) call these after training a fold.
"""

import dataclasses
import logging
import os

import numpy as np

from sssl_brain.dataio.features import FeatureConfig
from sssl_brain.song_level.handcrafted import HandcraftedCache, HandcraftedConfig, song_vectors
from sssl_brain.song_level.results import (
    plot_confusion_matrix,
    write_fold_metrics,
)
from sssl_brain.song_level.stage2 import (
    song_level_predictions,
    svm_song_predictions,
    write_song_predictions,
)
from sssl_brain.utils.io_utils import atomic_write_csv, atomic_write_json
from sssl_brain.utils.model_io import save_song_classifier

logger = logging.getLogger(__name__)

def feature_config(hp):
    """FeatureConfig from the hyperparameters."""
    return FeatureConfig(sample_rate=int(hp["sample_rate"]), n_fft=int(hp["n_fft"]),
                         hop_length=int(hp["hop_length"]), n_mels=int(hp["n_mels"]),
                         ref=float(hp["mel_power_ref"]))


FOLD_CONFIG_KEYS = (
    "target", "seg_dur", "seg_overlap", "max_song_duration", "sample_rate", "n_fft", "hop_length", "n_mels",
    "mel_power_ref", "n_classes", "width_mult", "classifier_dim", "batch_norm", "dropout", "channels_last",
    "song_theta", "method", "fold", "seed",
)


def fold_config(hp, exp):
    """Plain settings a trained fold needs for inference (written as ``fold_config.json``)."""
    config = {k: hp[k] for k in FOLD_CONFIG_KEYS}
    config.update(class_names=list(exp.class_names), valence_threshold=exp.valence_threshold,
                  arousal_threshold=exp.arousal_threshold)
    return config


def write_confusion_matrix(folder, song_rows, class_names):
    """``confusion_matrix.png`` of the SVM's decisions on the fold's test songs (nothing without any)."""
    test = [r for r in song_rows if r["split"] == "test" and r["aggregator"] == "svm"]
    if test:
        cm = np.zeros((len(class_names),) * 2, dtype=int)
        for r in test:
            cm[r["label"], r["pred"]] += 1
        plot_confusion_matrix(cm, class_names, os.path.join(folder, "confusion_matrix.png"))


def fold_metrics_extra(hp, exp, fold, svm_params, **more):
    """What metrics.json records of a fold besides its metrics: method, fold, task, SVM params, more."""
    return {"method": hp["method"], "fold": fold, "target": exp.target, "seg_dur": float(hp["seg_dur"]),
            **more, "svm_params": {k: (v if isinstance(v, (int, float, str)) else str(v))
                                   for k, v in svm_params.items()}}


def write_fold_outputs(hp, exp, fold, segments, probs, selection=None):
    """Writes segment_predictions.csv, song_predictions.csv, a confusion matrix and metrics.json (last)."""
    folder, split_of, names = hp["output_folder"], exp.folds[fold], exp.class_names
    seg_rows, by_song = [], {}
    for seg, p in zip(segments, probs):
        row = {"song_id": seg["song_id"], "segment": seg["segment"], "start_s": seg["start_s"],
               "end_s": seg["end_s"], "split": split_of[seg["song_id"]], "label": seg["label"],
               "pred": int(np.argmax(p))}
        if exp.has_truth:
            row["truth"] = seg["truth"]
        row.update({f"p_{c}": round(float(v), 6) for c, v in zip(names, p)})
        seg_rows.append(row)
        by_song.setdefault(seg["song_id"], []).append(p)
    seg_cols = ["song_id", "segment", "start_s", "end_s", "split", "label", "pred"]
    seg_cols += (["truth"] if exp.has_truth else []) + [f"p_{c}" for c in names]
    atomic_write_csv(os.path.join(folder, "segment_predictions.csv"), seg_rows, seg_cols)
    out = song_level_predictions(
        {s: np.stack(v) for s, v in by_song.items()}, split_of, exp.song_label, names,
        theta=float(hp["song_theta"]), grid_search=bool(hp["svm_grid_search"]), seed=int(hp["seed"]),
        C=float(hp["svm_C"]), gamma=hp["svm_gamma"])
    write_song_predictions(os.path.join(folder, "song_predictions.csv"), out.rows, names)
    save_song_classifier(out.classifier, os.path.join(folder, "song_classifier.skops"))
    write_confusion_matrix(folder, out.rows, names)
    extra = fold_metrics_extra(hp, exp, fold, out.params, **(selection or {}))
    return write_fold_metrics(folder, out.rows, seg_rows, extra=extra)


def run_features_svm_fold(hp, exp):
    """The ``features_svm`` baseline on one fold: hand-crafted song features, StandardScaler + stage 2's SVM.

    Same folds as the other methods (``exp.folds``); the song classifier
    (:func:`sssl_brain.song_level.stage2.svm_song_predictions`: the stage 2 grid
    search, StandardScaler, calibrated SVM) is fitted on the fold's training
    songs only, as stage 2 is. Writes ``fold_config.json``,
    ``song_predictions.csv`` (aggregator ``svm``), ``song_classifier.skops``,
    ``confusion_matrix.png`` and ``metrics.json`` (last). Songs too short for
    a feature are left out, logged with their names and counted in
    ``metrics.json`` (``handcrafted_skipped``).
    """
    fold, folder, split_of = int(hp["fold"]), hp["output_folder"], exp.folds[int(hp["fold"])]
    config = HandcraftedConfig.from_hparams(hp)
    atomic_write_json(os.path.join(folder, "fold_config.json"),
                      {**fold_config(hp, exp), "handcrafted": dataclasses.asdict(config)})
    cache = HandcraftedCache(hp.get("hc_cache") or os.path.join(hp["prepare_folder"], "handcrafted"), config)
    vectors, skipped = song_vectors(cache, [s for s in exp.songs if s["song_id"] in split_of], split_of,
                                    n_jobs=int(hp["feature_jobs"]), what=f"features_svm fold {fold}")
    out = svm_song_predictions(vectors, split_of, exp.song_label, exp.class_names,
                               grid_search=bool(hp["svm_grid_search"]), seed=int(hp["seed"]),
                               C=float(hp["svm_C"]), gamma=hp["svm_gamma"])
    write_song_predictions(os.path.join(folder, "song_predictions.csv"), out.rows, exp.class_names)
    save_song_classifier(out.classifier, os.path.join(folder, "song_classifier.skops"))
    write_confusion_matrix(folder, out.rows, exp.class_names)
    extra = fold_metrics_extra(hp, exp, fold, out.params, n_features=cache.n_features,
                               handcrafted_skipped={"count": len(skipped), "items": skipped})
    return write_fold_metrics(folder, out.rows, extra=extra)
