"""What stage 2 writes for a trained fold, and the ``features_svm`` baseline's fold.

The recipe (``recipes/sssl_train.py``) calls :func:`write_fold_outputs` once
stage 1 has predicted every segment of the fold; stage 2 itself is
:func:`sssl_brain.song_level.evaluate.evaluate_fold`, which
``recipes/evaluate.py`` re-runs on a finished fold.
"""

import dataclasses
import os

import numpy as np

from sssl_brain.inference.model_folder import fold_config
from sssl_brain.song_level.evaluate import (
    PROBS_FILE,
    SEGMENT_FILE,
    evaluate_fold,
    song_level_options,
    write_song_level_outputs,
)
from sssl_brain.song_level.handcrafted import HandcraftedCache, HandcraftedConfig, song_vectors
from sssl_brain.song_level.predictions import svm_song_predictions
from sssl_brain.utils.io_utils import atomic_save_npy, atomic_write_csv, atomic_write_json


def fold_metrics_extra(hp, exp, fold, **more):
    """What metrics.json records of a fold besides its metrics and SVM params: method, fold, task, more."""
    return {"method": hp["method"], "fold": fold, "target": exp.target, "seg_dur": float(hp["seg_dur"]),
            **more}


def write_fold_outputs(hp, exp, fold, segments, probs, selection=None):
    """Writes segment_predictions.csv and segment_probs.npy, then runs stage 2 on the fold folder.

    Stage 2 (:func:`sssl_brain.song_level.evaluate.evaluate_fold`, what ``recipes/evaluate.py``
    re-runs on a finished fold) writes song_predictions.csv, song_classifier.skops, a confusion
    matrix and metrics.json (last), with the settings of fold_config.json; it reads the segment
    probabilities unrounded from segment_probs.npy (the rows of segment_predictions.csv).
    """
    folder, split_of, names = hp["output_folder"], exp.folds[fold], exp.class_names
    seg_rows = []
    for seg, p in zip(segments, probs):
        row = {"song_id": seg["song_id"], "segment": seg["segment"], "start_s": seg["start_s"],
               "end_s": seg["end_s"], "split": split_of[seg["song_id"]], "label": seg["label"],
               "pred": int(np.argmax(p))}
        if exp.has_truth:
            row["truth"] = seg["truth"]
        row.update({f"p_{c}": round(float(v), 6) for c, v in zip(names, p)})
        seg_rows.append(row)
    seg_cols = ["song_id", "segment", "start_s", "end_s", "split", "label", "pred"]
    seg_cols += (["truth"] if exp.has_truth else []) + [f"p_{c}" for c in names]
    atomic_write_csv(os.path.join(folder, SEGMENT_FILE), seg_rows, seg_cols)
    atomic_save_npy(os.path.join(folder, PROBS_FILE), np.asarray(probs))
    return evaluate_fold(folder, extra=fold_metrics_extra(hp, exp, fold, **(selection or {})))


def run_features_svm_fold(hp, exp):
    """The ``features_svm`` baseline on one fold: hand-crafted song features, StandardScaler + stage 2's SVM.

    Same folds as the other methods (``exp.folds``); the song classifier
    (:func:`sssl_brain.song_level.predictions.svm_song_predictions`: the stage 2 grid
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
    options = song_level_options(hp)
    del options["theta"]  # no Eq. 10 here: the SVM takes the hand-crafted vectors
    out = svm_song_predictions(vectors, split_of, exp.song_label, exp.class_names, **options)
    extra = fold_metrics_extra(hp, exp, fold, n_features=cache.n_features,
                               handcrafted_skipped={"count": len(skipped), "items": skipped})
    return write_song_level_outputs(folder, out, exp.class_names, extra=extra)
