"""recipes/evaluate.py: stage 2 re-run on a finished experiment (in place, into --out, with overrides)."""

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sssl_brain.song_level.evaluate import evaluate_fold, read_segment_predictions
from sssl_brain.song_level.predictions import song_level_predictions
from sssl_brain.utils.errors import DataError
from sssl_brain.utils.io_utils import atomic_write_csv, read_csv_dicts
from sssl_brain.utils.model_io import load_song_classifier

pytestmark = pytest.mark.filterwarnings("ignore:song classifier")
REPO = Path(__file__).resolve().parents[2]
FOLD_OUTPUTS = ("song_predictions.csv", "song_classifier.skops", "confusion_matrix.png", "metrics.json")


def _recipe():
    spec = importlib.util.spec_from_file_location("evaluate_recipe", REPO / "recipes" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def experiment(fold_and_songs, tmp_path):
    """A copy of the tiny run's experiment folder (``<experiment>/sssl/fold_0``)."""
    fold = fold_and_songs[0]
    copy = tmp_path / "experiment"
    shutil.copytree(fold.parents[1], copy)
    return copy


def _digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_in_place_reproduces_the_experiment_byte_for_byte(experiment, capsys):
    fold = experiment / "sssl" / "fold_0"
    names = ("results.csv", "results.md", "sssl/fold_0/song_predictions.csv", "sssl/fold_0/metrics.json")
    before = {name: (experiment / name).read_bytes() for name in names}
    classifier = load_song_classifier(fold / "song_classifier.skops")
    assert _recipe().main([str(experiment), "--noprogressbar"]) == 0
    for name, data in before.items():
        assert (experiment / name).read_bytes() == data, name
    assert capsys.readouterr().out.endswith(before["results.md"].decode())  # the tables, printed
    metrics = json.loads(before["sssl/fold_0/metrics.json"])
    assert "selected_epoch" in metrics and metrics["method"] == "sssl"  # training-time fields kept
    again = load_song_classifier(fold / "song_classifier.skops")
    assert again.get_params() == classifier.get_params() and again.best_params_ == classifier.best_params_


def test_the_table_alone_is_evaluated_and_a_foreign_probability_file_refused(experiment, tmp_path):
    fold = experiment / "sssl" / "fold_0"
    exact = np.load(fold / "segment_probs.npy")
    assert exact.shape == (len(read_csv_dicts(fold / "segment_predictions.csv")), 4)
    np.save(fold / "segment_probs.npy", exact[::-1])
    with pytest.raises(DataError, match="segment_probs.npy: its probabilities do not round to those of"):
        evaluate_fold(fold, tmp_path / "out")
    np.save(fold / "segment_probs.npy", exact[1:])
    with pytest.raises(DataError, match=r"segment_probs.npy: shape \(\d+, 4\)"):
        evaluate_fold(fold, tmp_path / "out")
    # without it, the table's 6-decimal probabilities: same table layout, same segment metrics
    (fold / "segment_probs.npy").unlink()
    metrics = evaluate_fold(fold, tmp_path / "out")
    trained = json.loads((fold / "metrics.json").read_text())
    assert metrics["metrics"]["segment"] == trained["metrics"]["segment"]
    rows = read_csv_dicts(tmp_path / "out" / "song_predictions.csv")
    old = read_csv_dicts(fold / "song_predictions.csv")
    key = ("song_id", "split", "aggregator", "label")
    assert [tuple(r[k] for k in key) for r in rows] == [tuple(r[k] for k in key) for r in old]
    assert not (tmp_path / "out" / "segment_probs.npy").exists()


def test_out_folder_with_overrides_leaves_the_experiment_untouched(experiment, tmp_path):
    before = _digests(experiment)
    out = tmp_path / "out"
    args = [str(experiment), f"--out={out}", "--theta=0.7", "--svm_grid_search=False", "--svm_C=10",
            "--noprogressbar"]
    assert _recipe().main(args) == 0
    assert _digests(experiment) == before
    fold, new = experiment / "sssl" / "fold_0", out / "sssl" / "fold_0"
    for name in ("fold_config.json", "segment_predictions.csv", "segment_probs.npy"):
        assert (new / name).read_bytes() == (fold / name).read_bytes()
    assert all((new / name).is_file() for name in FOLD_OUTPUTS)
    assert (out / "results.csv").is_file() and (out / "results.md").is_file()
    metrics = json.loads((new / "metrics.json").read_text())
    assert metrics["song_level_overrides"] == {"song_theta": 0.7, "svm_grid_search": False, "svm_C": 10}
    assert metrics["svm_params"]["C"] == 10.0
    clf = load_song_classifier(new / "song_classifier.skops")
    assert clf.theta == 0.7 and clf.C == 10.0 and clf.grid_search is False
    # the svm rows are those of stage 2 with theta 0.7 on the fold's table; the baselines do not change
    config = json.loads((fold / "fold_config.json").read_text())
    names = config["class_names"]
    _, probs, split, label = read_segment_predictions(fold / "segment_predictions.csv", names,
                                                      fold / "segment_probs.npy")
    expected = song_level_predictions(probs, split, label, names, theta=0.7, grid_search=False,
                                      seed=config["seed"], C=10.0, gamma=config["svm_gamma"])
    rows = read_csv_dicts(new / "song_predictions.csv")
    assert [r["pred"] for r in rows] == [str(r["pred"]) for r in expected.rows]
    p = [c for c in rows[0] if c.startswith("p_")]
    np.testing.assert_array_equal([[float(r[c]) for c in p] for r in rows],
                                  [[r[c] for c in p] for r in expected.rows])
    old = read_csv_dicts(fold / "song_predictions.csv")
    assert [r for r in rows if r["aggregator"] != "svm"] == [r for r in old if r["aggregator"] != "svm"]


def test_features_svm_folds_are_skipped_and_said_so(experiment, tmp_path, capsys):
    fold = experiment / "sssl" / "fold_0"
    baseline = experiment / "features_svm" / "fold_0"
    baseline.mkdir(parents=True)
    rows = [r for r in read_csv_dicts(fold / "song_predictions.csv") if r["aggregator"] == "svm"]
    atomic_write_csv(baseline / "song_predictions.csv", rows, list(rows[0]))
    shutil.copyfile(fold / "fold_config.json", baseline / "fold_config.json")
    out = tmp_path / "out"
    assert _recipe().main([str(experiment), f"--out={out}", "--noprogressbar"]) == 0
    said = capsys.readouterr().out
    assert "features_svm/fold_0: no segment_predictions.csv" in said and "not re-run" in said
    assert (out / "features_svm" / "fold_0" / "song_predictions.csv").read_bytes() == (
        baseline / "song_predictions.csv").read_bytes()
    methods = [(r["method"], r["aggregator"]) for r in read_csv_dicts(out / "results.csv")]
    assert ("features_svm", "svm") in methods and ("sssl", "svm") in methods


def test_nothing_to_evaluate_names_the_folder(tmp_path, capsys):
    empty = tmp_path / "not_an_experiment"
    (empty / "sssl" / "fold_0").mkdir(parents=True)
    assert _recipe().main([str(empty)]) == 2
    err = capsys.readouterr().err
    assert f"error: {empty}: nothing to evaluate" in err and "segment_predictions.csv" in err
    assert _recipe().main([str(tmp_path / "missing")]) == 2
    assert "experiment folder not found" in capsys.readouterr().err


def test_a_bad_override_names_the_option(experiment, capsys):
    assert _recipe().main([str(experiment), "--svm_grid_search=maybe", "--noprogressbar"]) == 2
    assert "svm_grid_search='maybe': must be true or false" in capsys.readouterr().err
