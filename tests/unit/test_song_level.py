"""Tests of stage 2: Eq. 10 song features, the song SVM, baseline aggregators, metrics."""

import warnings

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier

from sssl_brain.song_level import classifier as song_classifier
from sssl_brain.song_level.classifier import SongSVM, predict_song_proba
from sssl_brain.song_level.features import majority_vote, mean_probability, song_feature_names, song_features
from sssl_brain.song_level.predictions import (
    classification_metrics,
    song_level_predictions,
    song_prediction_fieldnames,
    write_song_predictions,
)
from sssl_brain.utils.errors import ConfigError, DataError
from sssl_brain.utils.io_utils import read_csv_dicts

# ---------------------------------------------------------------- Eq. 10


def test_song_features_hand_computed():
    # class 0 column: 0.1, 0.5, 0.7, 0.9 ; class 1 column: 0.9, 0.5, 0.3, 0.1
    P = np.array([[0.1, 0.9], [0.5, 0.5], [0.7, 0.3], [0.9, 0.1]])
    # linear percentiles of sorted [a0..a3]: q1 at position 0.75, median 1.5, q3 2.25
    expected = [
        0.9, 0.1, 0.1 + 0.75 * 0.4, 0.6, 0.7 + 0.25 * 0.2, 0.55, 2 / 4,  # 0.5 itself is not > 0.5
        0.9, 0.1, 0.1 + 0.75 * 0.2, 0.4, 0.5 + 0.25 * 0.4, 0.45, 1 / 4,
    ]
    feats = song_features(P, theta=0.5)
    assert feats.shape == (14,)
    np.testing.assert_allclose(feats, expected, atol=1e-12)


def test_song_features_one_segment():
    feats = song_features([[0.2, 0.8]], theta=0.5)
    np.testing.assert_allclose(feats, [0.2] * 6 + [0.0] + [0.8] * 6 + [1.0])


def test_song_features_theta_is_strict():
    P = [[0.5, 0.5], [0.5, 0.5]]
    assert song_features(P, theta=0.5)[6] == 0.0
    assert song_features(P, theta=0.5)[13] == 0.0
    assert song_features(P, theta=0.49)[6] == 1.0
    P3 = [[0.3, 0.7], [0.7, 0.3], [0.71, 0.29]]
    assert song_features(P3, theta=0.7)[6] == pytest.approx(1 / 3)


def test_song_features_four_classes_order_matches_names():
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(4), size=9)
    feats = song_features(P, theta=0.3)
    names = song_feature_names(["Q1", "Q2", "Q3", "Q4"])
    assert feats.shape == (28,) and len(names) == 28
    by_name = dict(zip(names, feats))
    assert by_name["p_Q3_max"] == P[:, 2].max()
    assert by_name["p_Q2_min"] == P[:, 1].min()
    assert by_name["p_Q4_median"] == np.median(P[:, 3])
    assert by_name["p_Q1_q3"] == np.percentile(P[:, 0], 75)
    assert by_name["p_Q4_mean"] == pytest.approx(P[:, 3].mean())
    assert by_name["p_Q2_frac"] == pytest.approx((P[:, 1] > 0.3).mean())
    stats = ["max", "min", "q1", "median", "q3", "mean", "frac"]
    assert names[:7] == [f"p_Q1_{s}" for s in stats]
    assert names[7] == "p_Q2_max"


@pytest.mark.parametrize("bad", [np.zeros((0, 2)), np.array([0.2, 0.8]), np.array([[np.nan, 1.0]])])
def test_song_features_bad_input(bad):
    with pytest.raises(DataError):
        song_features(bad)


# ---------------------------------------------------------------- baselines


def test_majority_vote_plain_and_tie_break():
    pred, frac = majority_vote([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6]])
    assert pred == 0 and frac.tolist() == pytest.approx([2 / 3, 1 / 3])
    # 2 votes each; mean probability of class 1 is higher (0.525 vs 0.475)
    pred, frac = majority_vote([[0.55, 0.45], [0.6, 0.4], [0.45, 0.55], [0.3, 0.7]])
    assert frac.tolist() == [0.5, 0.5]
    assert pred == 1
    # 2 votes each; mean probability of class 0 is higher (0.6375 vs 0.3625)
    pred, _ = majority_vote([[0.9, 0.1], [0.8, 0.2], [0.45, 0.55], [0.4, 0.6]])
    assert pred == 0
    # three classes, tie between 0 and 2, class 2 has the higher mean
    P = [[0.5, 0.2, 0.3], [0.2, 0.2, 0.6], [0.4, 0.35, 0.25], [0.1, 0.3, 0.6], [0.1, 0.8, 0.1]]
    pred, frac = majority_vote(P)
    assert frac.tolist() == pytest.approx([0.4, 0.2, 0.4]) and pred == 2
    # full tie (same mean too): lowest index
    pred, _ = majority_vote([[0.6, 0.4], [0.4, 0.6]])
    assert pred == 0


def test_mean_probability():
    pred, mean = mean_probability([[0.9, 0.05, 0.05], [0.1, 0.5, 0.4], [0.1, 0.3, 0.6]])
    assert pred == 0
    np.testing.assert_allclose(mean, [1.1 / 3, 0.85 / 3, 1.05 / 3])


# ---------------------------------------------------------------- metrics


def test_classification_metrics_hand_computed():
    m = classification_metrics([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0], n_classes=4)
    # per-class F1: c0 0.5, c1 0.8, c2 2/3, c3 0 (absent: zero_division=0)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3 + 0) / 4)
    assert m["weighted_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) * 2 / 6)
    assert m["confusion_matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    assert m["n"] == 6


def test_classification_metrics_errors():
    with pytest.raises(DataError):
        classification_metrics([], [], 2)
    with pytest.raises(DataError):
        classification_metrics([0, 1], [0], 2)


# ---------------------------------------------------------------- SVM


def _blobs(n_per_class, seed, n_classes=2, dim=3):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(3.0 * k, 0.5, size=(n_per_class, dim)) for k in range(n_classes)])
    y = np.repeat(np.arange(n_classes), n_per_class)
    return X, y


def test_svm_separable_and_deterministic():
    X, y = _blobs(15, seed=1)
    Xt, yt = _blobs(10, seed=2)
    a = SongSVM(random_state=3).fit(X, y)
    b = SongSVM(random_state=3).fit(X, y)
    assert [n for n, _ in a.estimator_.steps] == ["scaler", "svm"]
    assert (a.predict(Xt) == yt).all()
    np.testing.assert_array_equal(a.predict_proba(Xt), b.predict_proba(Xt))
    proba = a.predict_proba(Xt)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (proba.argmax(axis=1) == a.predict(Xt)).all()
    assert a.best_params_ == {"C": 1.0, "gamma": "scale"}


def test_grid_search_picks_from_grid_deterministically():
    X, y = _blobs(12, seed=4, n_classes=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 12 per class: no fallback warning expected
        a = SongSVM(grid_search=True, C_grid=(0.1, 10), gamma_grid=("scale", 0.1), random_state=0).fit(X, y)
    b = SongSVM(grid_search=True, C_grid=(0.1, 10), gamma_grid=("scale", 0.1), random_state=0).fit(X, y)
    assert a.best_params_["C"] in (0.1, 10) and a.best_params_["gamma"] in ("scale", 0.1)
    assert a.best_params_ == b.best_params_
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_grid_search_fewer_songs_than_folds():
    X, y = _blobs(3, seed=5)
    with pytest.warns(UserWarning, match="3 folds instead of 5"):
        clf = SongSVM(grid_search=True, C_grid=(1, 10), gamma_grid=("scale",)).fit(X, y)
    assert clf.predict(X).tolist() == y.tolist()


def test_grid_search_single_song_class():
    X, y = _blobs(6, seed=6)
    X, y = X[:7], y[:7]  # class 1 has one song
    with pytest.warns(UserWarning, match="grid search skipped"):
        with pytest.warns(UserWarning, match="calibrated on the training songs"):
            clf = SongSVM(grid_search=True).fit(X, y)
    assert clf.best_params_ == {"C": 1.0, "gamma": "scale"}
    assert clf.predict(X).tolist() == y.tolist()
    proba = clf.predict_proba(X)
    assert proba.shape == (7, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_one_class_training_constant_predictor():
    X, _ = _blobs(4, seed=7)
    with pytest.warns(UserWarning, match="constant predictor"):
        clf = SongSVM().fit(X, np.full(len(X), 2))
    assert isinstance(clf.estimator_, DummyClassifier)
    assert clf.classes_.tolist() == [2] and clf.best_params_ == {"constant": 2}
    assert clf.predict(X[:3]).tolist() == [2, 2, 2]
    np.testing.assert_array_equal(predict_song_proba(clf, X[:2], 4), [[0, 0, 1, 0], [0, 0, 1, 0]])


def test_fit_errors():
    with pytest.raises(DataError):
        SongSVM().fit(np.zeros((3, 2)), [0, 1])
    with pytest.raises(DataError):
        SongSVM().fit([[np.inf], [0.0]], [0, 1])
    with pytest.raises(ConfigError, match="cv_folds=1"):
        SongSVM(grid_search=True, cv_folds=1).fit(*_blobs(5, seed=0))


# ---------------------------------------------------------------- song_level_predictions


def _songs(n_train=16, n_test=6, n_classes=2, seed=0, n_seg=5):
    """Segment probabilities whose class-``y`` column is high for songs of class ``y``."""
    rng = np.random.default_rng(seed)
    probs, split, label = {}, {}, {}
    for i in range(n_train + n_test):
        y = i % n_classes
        logits = rng.normal(0, 1, size=(n_seg, n_classes))
        logits[:, y] += 2.5
        P = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        sid = f"song{i:02d}"
        probs[sid], label[sid] = P, y
        split[sid] = "train" if i < n_train else "test"
    return probs, split, label


def test_song_level_predictions_rows():
    probs, split, label = _songs()
    split["song03"] = "valid"
    out = song_level_predictions(probs, split, label, ["low", "high"], seed=0)
    assert len(out.rows) == 3 * len(probs)
    assert [r["aggregator"] for r in out.rows] == ["svm"] * 22 + ["majority"] * 22 + ["mean"] * 22
    fields = song_prediction_fieldnames(["low", "high"])
    for r in out.rows:
        assert list(r) == fields
        assert r["split"] == split[r["song_id"]] and r["label"] == label[r["song_id"]]
        assert r["p_low"] + r["p_high"] == pytest.approx(1.0)
        assert r["pred"] == int(r["p_high"] > r["p_low"]) or r["aggregator"] == "majority"
    mean_rows = [r for r in out.rows if r["aggregator"] == "mean"]
    for r in mean_rows:
        _, mean = mean_probability(probs[r["song_id"]])
        assert r["p_high"] == pytest.approx(mean[1])
    test_svm = [r for r in out.rows if r["aggregator"] == "svm" and r["split"] == "test"]
    assert sum(r["pred"] == r["label"] for r in test_svm) >= 5
    # the validation song is not a training song: scaler fitted on 15 songs
    train_ids = [s for s in probs if split[s] == "train"]
    assert len(train_ids) == 15
    train_feats = np.stack([song_features(probs[s]) for s in train_ids])
    scaler = out.classifier.estimator_.named_steps["scaler"]
    np.testing.assert_allclose(scaler.mean_, train_feats.mean(axis=0))
    assert out.params == {"C": 1.0, "gamma": "scale"}


def test_svm_never_sees_test_songs(monkeypatch):
    probs, split, label = _songs(n_train=20, n_test=6, n_classes=2, seed=1)
    seen = []
    real = song_classifier.GridSearchCV

    class SpyGrid(real):
        def fit(self, X, y=None, **kw):
            seen.append(np.asarray(X).copy())
            return super().fit(X, y, **kw)

    monkeypatch.setattr(song_classifier, "GridSearchCV", SpyGrid)
    kw = dict(grid_search=True, C_grid=(1, 10), gamma_grid=("scale", 0.1), seed=0)
    a = song_level_predictions(probs, split, label, ["low", "high"], **kw)
    train_ids = [s for s in probs if split[s] == "train"]
    train_feats = np.stack([song_features(probs[s]) for s in train_ids])
    assert len(seen) == 1 and seen[0].shape == train_feats.shape
    np.testing.assert_array_equal(seen[0], train_feats)
    np.testing.assert_allclose(a.classifier.estimator_.named_steps["scaler"].mean_, train_feats.mean(axis=0))

    # absurd test songs (all segments certain of the wrong class) change nothing for train songs
    probs2, label2 = dict(probs), dict(label)
    for sid in probs:
        if split[sid] == "test":
            probs2[sid] = np.tile([[1.0, 0.0]], (40, 1)) if label[sid] else np.tile([[0.0, 1.0]], (1, 1))
            label2[sid] = 1 - label[sid]
    b = song_level_predictions(probs2, split, label2, ["low", "high"], **kw)
    rows_a = [r for r in a.rows if r["split"] == "train"]
    rows_b = [r for r in b.rows if r["split"] == "train"]
    assert rows_a == rows_b
    assert a.params == b.params


def test_song_level_one_class_training():
    probs, split, label = _songs(n_train=6, n_test=2)
    for sid in probs:
        if split[sid] == "train":
            label[sid] = 1
    with pytest.warns(UserWarning, match="constant predictor"):
        out = song_level_predictions(probs, split, label, ["low", "high"])
    svm = [r for r in out.rows if r["aggregator"] == "svm"]
    assert all(r["pred"] == 1 and r["p_high"] == 1.0 and r["p_low"] == 0.0 for r in svm)


def test_song_level_missing_class_in_training():
    probs, split, label = _songs(n_train=12, n_test=4, n_classes=4, seed=2)
    for sid in list(probs):
        if split[sid] == "train" and label[sid] == 3:
            del probs[sid]
    out = song_level_predictions(probs, split, label, ["Q1", "Q2", "Q3", "Q4"])
    svm = [r for r in out.rows if r["aggregator"] == "svm"]
    assert all(r["p_Q4"] == 0.0 and r["pred"] != 3 for r in svm)
    assert all(sum(r[f"p_Q{k}"] for k in range(1, 5)) == pytest.approx(1.0) for r in svm)


def test_song_level_errors():
    probs, split, label = _songs(n_train=4, n_test=2)
    names = ["low", "high"]
    with pytest.raises(DataError, match="song05"):
        song_level_predictions(probs, split, {**label, "song05": 2}, names)
    with pytest.raises(DataError, match="song01"):
        song_level_predictions({**probs, "song01": np.ones((3, 3)) / 3}, split, label, names)
    with pytest.raises(DataError, match="no split"):
        song_level_predictions(probs, {k: v for k, v in split.items() if k != "song00"}, label, names)
    with pytest.raises(DataError, match="training split"):
        song_level_predictions(probs, {k: "test" for k in split}, label, names)
    with pytest.raises(ConfigError):
        song_level_predictions(probs, split, label, ["only"])


def test_write_song_predictions(tmp_path):
    probs, split, label = _songs(n_train=6, n_test=2)
    out = song_level_predictions(probs, split, label, ["low", "high"])
    path = tmp_path / "fold_0" / "song_predictions.csv"
    write_song_predictions(path, out.rows, ["low", "high"])
    back = read_csv_dicts(path)
    assert list(back[0]) == ["song_id", "split", "aggregator", "label", "pred", "p_low", "p_high"]
    assert len(back) == len(out.rows)
    assert float(back[0]["p_high"]) == out.rows[0]["p_high"]
