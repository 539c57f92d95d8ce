"""Tests of the stage 2 song classifier as a scikit-learn estimator (SongClassifier, SongSVM)."""

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.dummy import DummyClassifier
from sklearn.exceptions import NotFittedError

from sssl_brain.song_level.classifier import (
    DEFAULT_C_GRID,
    DEFAULT_GAMMA_GRID,
    SongClassifier,
    SongSVM,
    predict_song_proba,
)
from sssl_brain.song_level.features import song_features
from sssl_brain.utils.errors import ConfigError, DataError
from sssl_brain.utils.model_io import load_song_classifier, save_song_classifier

PARAMS = {"theta": 0.6, "C": 10.0, "gamma": 0.1, "kernel": "rbf", "grid_search": True, "C_grid": [1, 10],
          "gamma_grid": ["scale", 0.1], "cv_folds": 3, "scoring": "accuracy", "calibration_folds": 3,
          "random_state": 7}


def _songs(n_per_class=6, n_classes=2, seed=0):
    """Songs as segment-probability matrices (3-6 segments), class-``y`` column high for class ``y``."""
    rng = np.random.default_rng(seed)
    songs, labels = [], []
    for i in range(n_per_class * n_classes):
        y = i % n_classes
        logits = rng.normal(0, 1, size=(int(rng.integers(3, 7)), n_classes))
        logits[:, y] += 2.0
        songs.append(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True))
        labels.append(y)
    return songs, np.array(labels)


def test_params_are_stored_unchanged_and_get_set_params_clone_work():
    clf = SongClassifier(**PARAMS)
    assert clf.get_params() == PARAMS
    assert clf.C_grid is PARAMS["C_grid"]  # stored as given, not copied or converted
    assert set(vars(clf)) == set(PARAMS)  # __init__ sets the parameters and nothing else
    assert SongClassifier().get_params()["C_grid"] == DEFAULT_C_GRID == (0.1, 1, 10, 100)
    assert SongClassifier().get_params()["gamma_grid"] == DEFAULT_GAMMA_GRID == ("scale", 0.01, 0.1, 1)
    assert clf.set_params(theta=0.3, C=2.0) is clf and (clf.theta, clf.C) == (0.3, 2.0)
    copy = clone(clf)
    assert copy is not clf and copy.get_params() == clf.get_params()
    assert set(SongSVM().get_params()) == set(PARAMS) - {"theta"}


def test_fitted_state_is_in_attributes_ending_with_underscore():
    songs, y = _songs()
    clf = SongClassifier(theta=0.5, calibration_folds=3)
    with pytest.raises(NotFittedError):
        clf.predict(songs)
    before = set(vars(clf))
    assert clf.fit(songs, y) is clf
    added = set(vars(clf)) - before
    assert added == {"estimator_", "classes_", "best_params_", "n_features_in_"}
    assert all(name.endswith("_") for name in added)
    assert clf.get_params() == SongClassifier(theta=0.5, calibration_folds=3).get_params()  # params untouched
    assert clf.classes_.tolist() == [0, 1] and clf.n_features_in_ == 14
    assert clf.best_params_ == {"C": 1.0, "gamma": "scale"}
    refit = clone(clf)
    assert not hasattr(refit, "estimator_")  # clone gives an unfitted copy
    np.testing.assert_array_equal(refit.fit(songs, y).predict_proba(songs), clf.predict_proba(songs))
    assert clf.score(songs, y) == np.mean(clf.predict(songs) == y)  # ClassifierMixin


def test_one_training_class_gives_a_dummy_classifier():
    songs, _ = _songs(n_per_class=3)
    with pytest.warns(UserWarning, match="constant predictor"):
        clf = SongClassifier().fit(songs, np.full(len(songs), 3))
    assert isinstance(clf.estimator_, DummyClassifier)
    assert clf.classes_.tolist() == [3] and clf.best_params_ == {"constant": 3}
    assert clf.predict(songs[:2]).tolist() == [3, 3]
    np.testing.assert_array_equal(predict_song_proba(clf, songs[:1], 4), [[0.0, 0.0, 0.0, 1.0]])


def test_theta_inside_the_model_sets_the_fraction_statistic():
    # class 0 column 0.9, 0.55, 0.3: above 0.5 for 2 of 3 segments, above 0.6 for 1 of 3
    song = np.array([[0.9, 0.1], [0.55, 0.45], [0.3, 0.7]])
    low, high = SongClassifier(theta=0.5).song_vectors([song]), SongClassifier(theta=0.6).song_vectors([song])
    assert low.shape == (1, 14)
    assert low[0, 6] == pytest.approx(2 / 3) and high[0, 6] == pytest.approx(1 / 3)  # k0_frac
    assert low[0, 13] == pytest.approx(1 / 3) and high[0, 13] == pytest.approx(1 / 3)  # k1_frac: 0.7 only
    np.testing.assert_array_equal(np.delete(low, [6, 13], axis=1), np.delete(high, [6, 13], axis=1))


def test_song_classifier_is_the_svm_over_eq10_features_with_its_theta(tmp_path):
    songs, y = _songs(seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = SongClassifier(theta=0.7, random_state=2, calibration_folds=3).fit(songs, y)
        X = np.stack([song_features(P, theta=0.7) for P in songs])
        svm = SongSVM(random_state=2, calibration_folds=3).fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(songs), svm.predict_proba(X))
    other = SongClassifier(theta=0.2, random_state=2, calibration_folds=3).fit(songs, y)
    assert not np.array_equal(other.song_vectors(songs), clf.song_vectors(songs))
    # saved and loaded, the model still applies its own theta
    save_song_classifier(clf, tmp_path / "song_classifier.skops")
    loaded = load_song_classifier(tmp_path / "song_classifier.skops")
    assert type(loaded) is SongClassifier and loaded.theta == 0.7
    np.testing.assert_array_equal(loaded.predict_proba(songs), svm.predict_proba(X))


def test_bad_input_and_parameters_name_the_problem():
    songs, y = _songs()
    with pytest.raises(ConfigError, match="theta='high'"):
        SongClassifier(theta="high").fit(songs, y)
    with pytest.raises(ConfigError, match="calibration_folds=1"):
        SongClassifier(calibration_folds=1).fit(songs, y)
    with pytest.raises(DataError, match="pass a list of songs"):
        SongClassifier().fit(songs[0], [0] * len(songs[0]))
    with pytest.raises(DataError, match="different numbers of classes"):
        SongClassifier().fit([songs[0], np.ones((2, 3)) / 3], [0, 1])
    with pytest.raises(DataError, match="labels of shape"):
        SongClassifier().fit(songs, y[:-1])
    clf = SongClassifier(calibration_folds=3).fit(songs, y)
    with pytest.raises(DataError, match="fitted on 14"):
        clf.predict([np.ones((2, 3)) / 3])


def test_keyword_only_parameters_and_classification_targets():
    with pytest.raises(TypeError):
        SongClassifier(0.5)  # keyword-only, as scikit-learn's estimators
    with pytest.raises(TypeError):
        SongSVM(1.0)
    songs, y = _songs()
    with pytest.raises(DataError, match="labels must be classes"):
        SongClassifier().fit(songs, y + 0.5)  # continuous targets: check_classification_targets
    with pytest.raises(DataError, match="song features"):
        SongSVM().fit([[0.0, 1.0], [1.0]], [0, 1])  # validate_data: not a 2-D feature matrix


def test_a_classifier_saved_with_seed_loads_with_it_as_random_state(tmp_path):
    songs, y = _songs()
    clf = SongClassifier(theta=0.5, random_state=4, calibration_folds=3).fit(songs, y)
    clf.seed = vars(clf).pop("random_state")  # as saved before the rename
    save_song_classifier(clf, tmp_path / "song_classifier.skops")
    loaded = load_song_classifier(tmp_path / "song_classifier.skops")
    assert "seed" not in vars(loaded) and loaded.get_params()["random_state"] == 4
    np.testing.assert_array_equal(loaded.predict_proba(songs), clf.predict_proba(songs))
