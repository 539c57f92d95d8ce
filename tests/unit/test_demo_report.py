"""Tests of the demo's summary (recipes/demo/report.py): the per-fold segment table and its axes."""

import os

import pytest
from report import experiment_summary, segment_truth_by_fold

from sssl_brain.utils.io_utils import atomic_write_csv

QUADRANT_COLUMNS = ["song_id", "segment", "split", "label", "pred", "truth", "p_Q1", "p_Q2", "p_Q3", "p_Q4"]


def _write_fold(root, method, fold, rows, columns=QUADRANT_COLUMNS):
    path = os.path.join(root, method, f"fold_{fold}", "segment_predictions.csv")
    os.makedirs(os.path.dirname(path))
    atomic_write_csv(path, [dict(zip(columns, r)) for r in rows], columns)


def _quadrant_row(split, label, pred, truth):
    return ["s", 0, split, label, pred, truth, 0.25, 0.25, 0.25, 0.25]


def test_axes_separate_a_model_deaf_to_valence(tmp_path):
    # Q1=0 (V+A+), Q2=1 (V-A+), Q3=2 (V-A-), Q4=3 (V+A-): predicting Q2 for Q1 and Q4 for Q3 keeps
    # arousal and flips valence; a train row is ignored
    deaf = [_quadrant_row("test", 0, 1, 0), _quadrant_row("test", 2, 3, 2), _quadrant_row("test", 0, 0, 0),
            _quadrant_row("train", 0, 2, 0)]
    right = [_quadrant_row("test", 1, 1, 1), _quadrant_row("test", 1, 2, 2)]
    _write_fold(tmp_path, "inherit", 0, deaf)
    _write_fold(tmp_path, "sssl", 1, right)
    rows = {(r["method"], r["fold"]): r for r in segment_truth_by_fold(str(tmp_path))}
    assert set(rows) == {("inherit", 0), ("sssl", 1)}
    r = rows["inherit", 0]
    assert r["n_segments"] == 3
    assert r["acc_truth"] == pytest.approx(100 / 3)
    assert r["valence_acc"] == pytest.approx(100 / 3)
    assert r["arousal_acc"] == pytest.approx(100.0)
    assert r["reference"] == pytest.approx(100.0)
    r = rows["sssl", 1]
    assert (r["acc_truth"], r["valence_acc"], r["arousal_acc"], r["reference"]) == (100.0, 100.0, 100.0, 50.0)


def test_binary_target_has_no_axes_and_unknown_truth_is_skipped(tmp_path):
    columns = ["song_id", "segment", "split", "label", "pred", "truth", "p_low", "p_high"]
    rows = [["s", 0, "test", 1, 1, 1, 0.2, 0.8], ["s", 1, "test", 1, 0, -1, 0.6, 0.4]]
    _write_fold(tmp_path, "inherit", 0, rows, columns)
    _write_fold(tmp_path, "sssl", 0, [["s", 0, "test", 1, 1, -1, 0.2, 0.8]], columns)
    rows = segment_truth_by_fold(str(tmp_path))
    assert len(rows) == 1  # sssl's fold has no truth
    assert rows[0]["n_segments"] == 1 and rows[0]["acc_truth"] == 100.0
    assert rows[0]["valence_acc"] is None and rows[0]["arousal_acc"] is None


def test_summary_prints_the_per_fold_table(tmp_path):
    _write_fold(tmp_path, "inherit", 0, [_quadrant_row("test", 0, 1, 0), _quadrant_row("test", 0, 0, 0)])
    columns = ["method", "aggregator", "n_folds", "acc_mean", "acc_std", "macro_f1_mean", "macro_f1_std"]
    atomic_write_csv(os.path.join(tmp_path, "results.csv"),
                     [dict(zip(columns, ["inherit", "svm", 1, 50, 0, 40, 0]))], columns)
    text = experiment_summary(str(tmp_path))
    assert "| inherit | 0 | 2 | 50.0 | 100.0 | 50.0 | 100.0 |" in text
    assert os.path.isfile(os.path.join(tmp_path, "summary.md"))
