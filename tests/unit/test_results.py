"""Tests of the cross-fold results tables, per-fold metrics.json and confusion-matrix plots."""

import json
import math
import os

import numpy as np
import pytest

from sssl_brain.song_level.results import (
    RESULT_FIELDS,
    collect_fold_metrics,
    collect_results,
    fold_metrics_from_rows,
    main,
    mean_std,
    plot_confusion_matrix,
    results_markdown,
    write_fold_metrics,
    write_results,
)
from sssl_brain.utils.errors import DataError
from sssl_brain.utils.io_utils import atomic_write_csv, read_csv_dicts

CLASSES = ["low", "high"]
SONG_FIELDS = ["song_id", "split", "aggregator", "label", "pred", "p_low", "p_high"]


def _song_rows(test, train=((0, 1), (1, 0)), aggregator="svm"):
    """Rows with test (label, pred) pairs plus train rows that are all wrong."""
    rows = []
    for split, pairs in (("test", test), ("train", train)):
        for i, (label, pred) in enumerate(pairs):
            rows.append({"song_id": f"{split}{i}", "split": split, "aggregator": aggregator, "label": label,
                         "pred": pred, "p_low": 1.0 - pred, "p_high": float(pred)})
    return rows


def _write_fold(root, method, fold, by_aggregator):
    rows = []
    for agg, test in by_aggregator.items():
        rows += _song_rows(test, aggregator=agg)
    path = os.path.join(root, method, f"fold_{fold}", "song_predictions.csv")
    atomic_write_csv(path, rows, SONG_FIELDS)
    return os.path.dirname(path)


@pytest.fixture
def two_methods(tmp_path):
    """2 methods x 2 folds; every expected number is computed by hand in the tests."""
    root = str(tmp_path / "exp")
    # sssl fold 0, svm: all right. majority: labels 0,0,1,1 preds 1,1,1,1
    _write_fold(root, "sssl", 0, {"svm": [(0, 0), (0, 0), (1, 1), (1, 1)],
                                  "majority": [(0, 1), (0, 1), (1, 1), (1, 1)]})
    # sssl fold 1, svm: labels 0,0,1,1 preds 0,1,1,1. majority: preds 0,0,1,0
    _write_fold(root, "sssl", 1, {"svm": [(0, 0), (0, 1), (1, 1), (1, 1)],
                                  "majority": [(0, 0), (0, 0), (1, 1), (1, 0)]})
    # inherit fold 0, svm: labels 0,1,1,1 preds 0,1,1,0 (imbalanced: weighted != macro)
    _write_fold(root, "inherit", 0, {"svm": [(0, 0), (1, 1), (1, 1), (1, 0)]})
    # inherit fold 1, svm: all right
    _write_fold(root, "inherit", 1, {"svm": [(0, 0), (0, 0), (0, 0), (1, 1)]})
    return root


def test_collect_results_hand_computed(two_methods):
    rows = collect_results(two_methods)
    assert [(r["method"], r["aggregator"]) for r in rows] == [
        ("inherit", "svm"), ("sssl", "svm"), ("sssl", "majority")]
    by = {(r["method"], r["aggregator"]): r for r in rows}
    s2 = math.sqrt(2)

    # sssl/svm: fold accuracies 100, 75; macro-F1 100 and (2/3 + 0.8)/2 = 73.33 (balanced: weighted equal)
    r = by[("sssl", "svm")]
    assert r["n_folds"] == 2 and r["n_test"] == 8
    assert r["acc_mean"] == pytest.approx(87.5) and r["acc_std"] == pytest.approx(25 / s2)
    f1 = 100 * (2 / 3 + 0.8) / 2
    assert r["macro_f1_mean"] == pytest.approx((100 + f1) / 2)
    assert r["macro_f1_std"] == pytest.approx((100 - f1) / s2)
    assert r["weighted_f1_mean"] == pytest.approx((100 + f1) / 2)

    # sssl/majority: fold 0 acc 50, F1 (0 + 2/3)/2; fold 1 acc 75, F1 (0.8 + 2/3)/2
    r = by[("sssl", "majority")]
    f0, f1 = 100 * (2 / 3) / 2, 100 * (0.8 + 2 / 3) / 2
    assert r["acc_mean"] == pytest.approx(62.5) and r["acc_std"] == pytest.approx(25 / s2)
    assert r["macro_f1_mean"] == pytest.approx((f0 + f1) / 2)
    assert r["macro_f1_std"] == pytest.approx((f1 - f0) / s2)

    # inherit/svm: fold 0 acc 75, class F1 2/3 (support 1) and 0.8 (support 3); fold 1 all right
    r = by[("inherit", "svm")]
    macro0, weighted0 = 100 * (2 / 3 + 0.8) / 2, 100 * (2 / 3 * 1 + 0.8 * 3) / 4
    assert r["acc_mean"] == pytest.approx(87.5) and r["acc_std"] == pytest.approx(25 / s2)
    assert r["macro_f1_mean"] == pytest.approx((macro0 + 100) / 2)
    assert r["weighted_f1_mean"] == pytest.approx((weighted0 + 100) / 2)
    assert r["weighted_f1_std"] == pytest.approx((100 - weighted0) / s2)


def test_collect_fold_metrics_only_test_rows(two_methods):
    folds = collect_fold_metrics(two_methods)
    assert len(folds) == 6
    first = folds[0]
    assert (first["method"], first["fold"], first["aggregator"]) == ("inherit", "fold_0", "svm")
    assert first["n"] == 4 and first["confusion_matrix"] == [[1, 0], [1, 2]]
    assert first["class_names"] == CLASSES


def test_write_results_layout(two_methods):
    rows = write_results(two_methods, title="PMEmo valence")
    back = read_csv_dicts(os.path.join(two_methods, "results.csv"))
    with open(os.path.join(two_methods, "results.csv")) as f:
        assert f.readline().strip().split(",") == RESULT_FIELDS
    assert len(back) == len(rows) == 3
    assert back[1]["method"] == "sssl" and float(back[1]["acc_mean"]) == pytest.approx(87.5)
    assert float(back[0]["weighted_f1_mean"]) == pytest.approx(rows[0]["weighted_f1_mean"])

    md = open(os.path.join(two_methods, "results.md"), encoding="utf-8").read().splitlines()
    assert md[0] == "# PMEmo valence"
    assert md[2] == "| Method | Aggregator | Folds | Acc (%) | F1 (%) |"
    assert md[3] == "|---|---|---|---|---|"
    # sssl/svm: 87.50 ± 17.68, macro-F1 86.67 ± 18.86
    assert md[5] == "| sssl | svm | 2 | 87.50 ± 17.68 | 86.67 ± 18.86 |"
    assert md[6].startswith("| sssl | majority | 2 | 62.50 ± 17.68 |")
    note = md[8]
    assert "macro-averaged F1" in note and "weighted F1 is in results.csv" in note and "ddof=1" in note
    assert not [f for f in os.listdir(two_methods) if f.startswith(".tmp")]


def test_single_fold_std_zero_and_method_names(tmp_path):
    root = tmp_path / "runs"
    _write_fold(str(root), "pmemo/sssl", 0, {"mean": [(0, 0), (1, 0)]})
    _write_fold(str(tmp_path), "runs", 7, {"svm": [(1, 1)]})  # fold directly under root
    rows = collect_results(root)
    assert [(r["method"], r["aggregator"], r["n_folds"]) for r in rows] == [
        ("pmemo/sssl", "mean", 1), ("runs", "svm", 1)]
    assert rows[0]["acc_mean"] == 50.0 and rows[0]["acc_std"] == 0.0
    assert mean_std([1.0, 2.0, 4.0]) == (pytest.approx(7 / 3), pytest.approx(np.std([1, 2, 4], ddof=1)))


def test_segment_rows(tmp_path):
    root = str(tmp_path)
    fold = _write_fold(root, "sssl", 0, {"svm": [(0, 0), (1, 1)]})
    seg = [
        # song a (label 1): truth 1, 0, empty ; preds 1, 1, 0
        {"song_id": "a", "segment": 0, "start_s": 0, "end_s": 1, "split": "test", "label": 1, "truth": 1,
         "pred": 1, "p_low": 0.2, "p_high": 0.8},
        {"song_id": "a", "segment": 1, "start_s": 1, "end_s": 2, "split": "test", "label": 1, "truth": 0,
         "pred": 1, "p_low": 0.3, "p_high": 0.7},
        {"song_id": "a", "segment": 2, "start_s": 2, "end_s": 3, "split": "test", "label": 1, "truth": "",
         "pred": 0, "p_low": 0.6, "p_high": 0.4},
        {"song_id": "b", "segment": 0, "start_s": 0, "end_s": 1, "split": "train", "label": 0, "truth": 1,
         "pred": 1, "p_low": 0.1, "p_high": 0.9},
    ]
    atomic_write_csv(os.path.join(fold, "segment_predictions.csv"), seg, list(seg[0]))
    by = {r["aggregator"]: r for r in collect_results(root)}
    assert list(by) == ["svm", "segment", "segment_truth"]
    assert by["segment"]["acc_mean"] == pytest.approx(200 / 3) and by["segment"]["n_test"] == 3
    assert by["segment_truth"]["acc_mean"] == pytest.approx(50.0) and by["segment_truth"]["n_test"] == 2


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda rows: [{k: v for k, v in r.items() if k != "aggregator"} for r in rows], "aggregator"),
        (lambda rows: [{**r, "pred": 5} for r in rows], "line 2: pred=5"),
        (lambda rows: [{**r, "label": "x"} for r in rows], "label='x'"),
        (lambda rows: [{**r, "split": "train"} for r in rows], "no test rows"),
    ],
)
def test_bad_prediction_files(tmp_path, mutate, match):
    rows = mutate(_song_rows([(0, 0), (1, 1)]))
    path = tmp_path / "m" / "fold_0" / "song_predictions.csv"
    atomic_write_csv(str(path), rows, [f for f in SONG_FIELDS if f in rows[0]])
    with pytest.raises(DataError, match=match) as info:
        collect_results(tmp_path)
    assert "song_predictions.csv" in str(info.value)


def test_write_fold_metrics(tmp_path):
    rows = _song_rows([(0, 0), (1, 1), (1, 0)], aggregator="svm") + _song_rows([(0, 0)], aggregator="mean")
    seg = [{"song_id": "a", "split": "test", "label": 1, "pred": 1, "p_low": 0.1, "p_high": 0.9}]
    out = write_fold_metrics(tmp_path, rows, segment_rows=seg, extra={"svm_params": {"C": 10}})
    saved = json.load(open(tmp_path / "metrics.json"))
    assert saved == out
    assert saved["class_names"] == CLASSES and saved["svm_params"] == {"C": 10}
    m = saved["metrics"]
    assert set(m) == {"svm", "mean", "segment"}
    assert m["svm"]["test"]["accuracy"] == pytest.approx(2 / 3)
    assert m["svm"]["test"]["confusion_matrix"] == [[1, 0], [1, 1]]
    assert m["svm"]["train"]["accuracy"] == 0.0
    assert m["mean"]["test"]["n"] == 1 and m["segment"]["test"]["accuracy"] == 1.0
    assert "train" not in m["segment"]


def test_plot_confusion_matrix(tmp_path):
    path = tmp_path / "plots" / "cm.png"
    plot_confusion_matrix(np.array([[5, 1, 0, 0], [0, 3, 1, 0], [0, 0, 2, 2], [1, 0, 0, 4]]),
                          ["Q1", "Q2", "Q3", "Q4"], str(path), title="fold 0", normalize=True)
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert os.listdir(path.parent) == ["cm.png"]
    with pytest.raises(DataError):
        plot_confusion_matrix([[1, 2], [3, 4]], ["a", "b", "c"], str(tmp_path / "bad.png"))
    assert not (tmp_path / "bad.png").exists()


def test_markdown_and_cli(two_methods, capsys):
    assert main([two_methods, "--title", "T"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == "# T"
    assert printed == results_markdown(collect_results(two_methods), title="T")
    assert os.path.exists(os.path.join(two_methods, "results.md"))


def test_segments_of_unknown_truth_are_left_out_of_segment_truth():
    """truth -1 (the truth table does not cover the segment) is not scored; the inherited label still is."""
    songs = [{"split": "test", "aggregator": "svm", "label": 0, "pred": 0}]
    segments = [{"split": "test", "label": 0, "truth": 0, "pred": 0},
                {"split": "test", "label": 0, "truth": -1, "pred": 1},
                {"split": "test", "label": 1, "truth": "1", "pred": 0},
                {"split": "test", "label": 1, "truth": "-1", "pred": 1}]
    metrics = fold_metrics_from_rows(songs, 2, segment_rows=segments)
    assert metrics["segment_truth"]["n"] == 2 and metrics["segment_truth"]["accuracy"] == 0.5
    assert metrics["segment"]["n"] == 4 and metrics["segment"]["accuracy"] == 0.5
