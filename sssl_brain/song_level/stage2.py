"""Stage 2: the song-level decision (paper Eq. 10; docs/method.md, "Stage 2").

The segment classifier gives, for one song, a matrix ``P`` of shape
``(S, K)``: the class probabilities of its ``S`` segments. Eq. 10 turns it
into a fixed-size vector of ``7 K`` statistics, and an SVM trained on the
training songs maps that vector to the song's class. Two simple baselines
aggregate ``P`` without training: the majority vote of the segment
decisions and the mean segment probability.

Everything here works on numpy arrays; nothing depends on torch.

Aggregators (the ``aggregator`` column of ``song_predictions.csv``):

- ``svm``: Eq. 10 features -> StandardScaler -> RBF SVC with sigmoid
  (Platt) calibrated probabilities, trained on the training songs only;
  ``p_<class>`` are those probabilities and ``pred`` their argmax.
- ``majority``: most frequent segment argmax; ``p_<class>`` is the fraction
  of segments that vote for each class.
- ``mean``: argmax of the mean segment probability; ``p_<class>`` is that mean.
"""

import logging
import warnings
from typing import NamedTuple

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from sssl_brain.utils.errors import ConfigError, DataError
from sssl_brain.utils.io_utils import atomic_write_csv

logger = logging.getLogger(__name__)

SONG_STATS = ("max", "min", "q1", "median", "q3", "mean", "frac")
AGGREGATORS = ("svm", "majority", "mean")


def _check_probs(P, name="P"):
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] == 0 or P.shape[1] == 0:
        raise DataError(f"{name}: segment probabilities must have shape (S>=1, K>=1), got {P.shape}")
    if not np.all(np.isfinite(P)):
        raise DataError(f"{name}: segment probabilities hold non-finite values")
    return P


def song_features(P, theta=0.5):
    """Song-level statistics of the segment probabilities (paper Eq. 10).

    For each class ``k`` (in class order) 7 numbers of the column
    ``P[:, k]``: max, min, first quartile, median, third quartile, mean and
    the fraction of segments with ``P[:, k] > theta`` (strictly greater).
    Quartiles use ``numpy.percentile`` with its default linear
    interpolation (25th, 50th, 75th percentile). The vector is laid out
    class by class: ``[k0_max, k0_min, ..., k0_frac, k1_max, ...]``
    (names: :func:`song_feature_names`).

    Arguments
    ---------
    P : array-like
        Segment class probabilities of one song, shape ``(S, K)``, S >= 1.
    theta : float
        Probability threshold of the last statistic.

    Returns
    -------
    numpy.ndarray
        Shape ``(7 K,)``, float64.

    Example
    -------
    >>> P = [[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]]
    >>> song_features(P).round(3).tolist()
    [0.9, 0.3, 0.45, 0.6, 0.75, 0.6, 0.667, 0.7, 0.1, 0.25, 0.4, 0.55, 0.4, 0.333]
    """
    P = _check_probs(P)
    q1, med, q3 = np.percentile(P, [25, 50, 75], axis=0)
    stats = np.stack(
        [P.max(axis=0), P.min(axis=0), q1, med, q3, P.mean(axis=0), (P > theta).mean(axis=0)],
        axis=1,
    )  # (K, 7)
    return stats.reshape(-1)


def song_feature_names(class_names):
    """Names of the Eq. 10 features, in the order of :func:`song_features`.

    Example
    -------
    >>> song_feature_names(["low", "high"])[:3], len(song_feature_names(["Q1", "Q2", "Q3", "Q4"]))
    (['p_low_max', 'p_low_min', 'p_low_q1'], 28)
    """
    return [f"p_{name}_{stat}" for name in class_names for stat in SONG_STATS]


def make_song_classifier(C=1.0, gamma="scale", kernel="rbf", seed=0, calibration_folds=5):
    """The song-level classifier: StandardScaler, then an SVC with Platt-scaled probabilities.

    scikit-learn 1.9 deprecates ``SVC(probability=True)``; its replacement,
    ``CalibratedClassifierCV(SVC(), method="sigmoid", ensemble=False)``, is
    used: one SVC is fitted on all training songs and a sigmoid maps its
    decision values to probabilities, fitted on decision values predicted
    by a seeded, shuffled ``StratifiedKFold`` of the training songs.
    ``predict`` is the argmax of ``predict_proba``.

    Arguments
    ---------
    C : float
        SVM regularisation.
    gamma : float or str
        RBF kernel width (``"scale"`` is sklearn's default).
    kernel : str
        SVC kernel.
    seed : int
        Seed of the calibration folds (and ``random_state`` of the SVC).
    calibration_folds : int or None
        Folds of the probability calibration; ``None`` gives a plain SVC
        without ``predict_proba`` (used by the grid search).

    Returns
    -------
    sklearn.pipeline.Pipeline
        Steps ``scaler`` and ``svm``.

    Example
    -------
    >>> clf = make_song_classifier(C=10)
    >>> [name for name, _ in clf.steps], clf.named_steps["svm"].estimator.C
    (['scaler', 'svm'], 10)
    """
    svc = SVC(C=C, gamma=gamma, kernel=kernel, random_state=seed)
    if calibration_folds is None:
        return Pipeline([("scaler", StandardScaler()), ("svm", svc)])
    cv = StratifiedKFold(n_splits=int(calibration_folds), shuffle=True, random_state=seed)
    calibrated = CalibratedClassifierCV(svc, method="sigmoid", cv=cv, ensemble=False)
    return Pipeline([("scaler", StandardScaler()), ("svm", calibrated)])


class ConstantSongClassifier:
    """Predicts one class for every song (fallback when training has one class).

    Arguments
    ---------
    label : int
        The class predicted for every song.

    Example
    -------
    >>> clf = ConstantSongClassifier(1).fit([[0.0], [1.0]], [1, 1])
    >>> clf.predict([[5.0]]).tolist(), clf.predict_proba([[5.0]]).tolist()
    ([1], [[1.0]])
    """

    def __init__(self, label):
        self.label = int(label)
        self.classes_ = np.array([self.label])
        self.best_params_ = {"constant": self.label}

    def fit(self, X, y):
        return self

    def predict(self, X):
        return np.full(len(X), self.label, dtype=np.int64)

    def predict_proba(self, X):
        return np.ones((len(X), 1))


def _warn(msg):
    warnings.warn(msg, stacklevel=3)
    logger.warning(msg)


def fit_song_classifier(
    X,
    y,
    grid_search=False,
    C_grid=(0.1, 1, 10, 100),
    gamma_grid=("scale", 0.01, 0.1, 1),
    cv_folds=5,
    seed=0,
    C=1.0,
    gamma="scale",
    kernel="rbf",
    scoring="accuracy",
    calibration_folds=5,
):
    """Fits the song-level classifier on training songs, optionally tuning C and gamma.

    Only ``X, y`` are seen: pass the training songs only. With
    ``grid_search`` the grid ``C_grid x gamma_grid`` is scored by
    ``scoring`` over a seeded, shuffled ``StratifiedKFold`` of these songs
    (plain SVC, no calibration), then the best pair is refitted with
    calibrated probabilities (:func:`make_song_classifier`) on all of them.
    Fallbacks, each with a ``UserWarning`` and a log line:

    - fewer songs in the rarest class than ``cv_folds``: the number of
      folds drops to that count (same for ``calibration_folds``, logged
      only);
    - the rarest class has a single song: no grid search (``C``/``gamma``
      are used) and the sigmoid is fitted on the training decision values
      of the SVC fitted on all songs (optimistic probabilities);
    - only one class among the training songs: a
      :class:`ConstantSongClassifier` predicting that class.

    Arguments
    ---------
    X : array-like
        Training song features, shape ``(N, D)``.
    y : array-like
        Training song labels (ints), shape ``(N,)``.
    grid_search : bool
        Tune C and gamma by cross-validation on ``X, y``.
    C_grid, gamma_grid : sequence
        Candidate values.
    cv_folds : int
        Folds of the grid search.
    seed : int
        Seed of the CV splits and of the SVC.
    C, gamma, kernel : float, float or str, str
        Parameters when there is no grid search.
    scoring : str
        sklearn scorer of the grid search.
    calibration_folds : int
        Folds of the probability calibration.

    Returns
    -------
    fitted classifier
        Has ``predict``, ``predict_proba``, ``classes_`` and ``best_params_``
        (a dict of the parameters used).

    Example
    -------
    >>> X = [[0.0], [0.1], [0.2], [1.0], [1.1], [1.2]]
    >>> clf = fit_song_classifier(X, [0, 0, 0, 1, 1, 1], C=10)
    >>> clf.predict([[0.05], [1.15]]).tolist()
    [0, 1]
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or len(X) != len(y) or len(X) == 0:
        raise DataError(f"song classifier: need X (N, D) and y (N,) with N >= 1, got {X.shape} and {y.shape}")
    if not np.all(np.isfinite(X)):
        raise DataError("song classifier: training features hold non-finite values")
    for name, value in (("cv_folds", cv_folds), ("calibration_folds", calibration_folds)):
        if int(value) < 2:
            raise ConfigError(f"{name}={value!r}: needs at least 2 folds")
    classes, counts = np.unique(y, return_counts=True)
    rarest = int(counts.min())
    if len(classes) == 1:
        _warn(f"song classifier: all {len(y)} training songs have class {classes[0]}; "
              "using a constant predictor")
        return ConstantSongClassifier(classes[0])

    params = {"C": C, "gamma": gamma}
    if grid_search and rarest < 2:
        _warn(f"song classifier: the rarest training class has 1 song; grid search skipped, "
              f"using C={C}, gamma={gamma}")
    elif grid_search:
        n_splits = min(int(cv_folds), rarest)
        if n_splits < cv_folds:
            _warn(f"song classifier: the rarest training class has {rarest} songs; "
                  f"grid search uses {n_splits} folds instead of {cv_folds}")
        search = GridSearchCV(
            make_song_classifier(kernel=kernel, seed=seed, calibration_folds=None),
            {"svm__C": list(C_grid), "svm__gamma": list(gamma_grid)},
            cv=StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed),
            scoring=scoring,
            n_jobs=1,
        )
        search.fit(X, y)
        params = {"C": search.best_params_["svm__C"], "gamma": search.best_params_["svm__gamma"]}

    if rarest < 2:
        _warn("song classifier: the rarest training class has 1 song; "
              "probabilities calibrated on the training songs themselves")
        svm = make_song_classifier(C=params["C"], gamma=params["gamma"], kernel=kernel, seed=seed,
                                   calibration_folds=None).fit(X, y)
        everything = np.arange(len(y))  # one "split": decision values of the songs it was fitted on
        clf = CalibratedClassifierCV(FrozenEstimator(svm), method="sigmoid", cv=[(everything, everything)])
        clf.fit(X, y)
    else:
        n_cal = min(int(calibration_folds), rarest)
        if n_cal < calibration_folds:
            logger.info(f"song classifier: the rarest training class has {rarest} songs; "
                        f"probability calibration uses {n_cal} folds instead of {calibration_folds}")
        clf = make_song_classifier(C=params["C"], gamma=params["gamma"], kernel=kernel, seed=seed,
                                   calibration_folds=n_cal).fit(X, y)
    clf.best_params_ = params
    return clf


def predict_song_proba(clf, X, n_classes):
    """Class probabilities of a fitted song classifier over all ``n_classes``.

    Classes absent from the training songs get probability 0 (the
    classifier's columns follow ``clf.classes_``).

    Example
    -------
    >>> predict_song_proba(ConstantSongClassifier(2), [[0.0]], 3).tolist()
    [[0.0, 0.0, 1.0]]
    """
    X = np.asarray(X, dtype=np.float64)
    out = np.zeros((len(X), n_classes))
    out[:, np.asarray(clf.classes_, dtype=np.int64)] = clf.predict_proba(X)
    return out


def majority_vote(P):
    """Baseline aggregator: the most frequent segment decision.

    Each segment votes for its argmax class. Ties between the most voted
    classes go to the one with the higher mean probability (then to the
    lower class index).

    Arguments
    ---------
    P : array-like
        Segment class probabilities of one song, shape ``(S, K)``.

    Returns
    -------
    pred : int
        Predicted class.
    fractions : numpy.ndarray
        Shape ``(K,)``: the fraction of segments voting for each class.

    Example
    -------
    >>> pred, frac = majority_vote([[0.9, 0.1], [0.2, 0.8], [0.45, 0.55], [0.6, 0.4]])
    >>> int(pred), frac.tolist()
    (0, [0.5, 0.5])
    """
    P = _check_probs(P)
    votes = np.bincount(P.argmax(axis=1), minlength=P.shape[1])
    fractions = votes / P.shape[0]
    tied = np.flatnonzero(votes == votes.max())
    means = P.mean(axis=0)
    pred = int(tied[np.argmax(means[tied])])
    return pred, fractions


def mean_probability(P):
    """Baseline aggregator: argmax of the mean segment probability.

    Returns
    -------
    pred : int
        Predicted class.
    mean : numpy.ndarray
        Shape ``(K,)``: the mean probability of each class.

    Example
    -------
    >>> pred, mean = mean_probability([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]])
    >>> int(pred), mean.round(3).tolist()
    (1, [0.467, 0.533])
    """
    P = _check_probs(P)
    mean = P.mean(axis=0)
    return int(np.argmax(mean)), mean


def classification_metrics(y_true, y_pred, n_classes):
    """Accuracy, macro-F1, weighted-F1 and confusion matrix (fractions, not percent).

    F1 uses ``labels=range(n_classes)`` and ``zero_division=0``; the
    confusion matrix has true classes as rows and predicted classes as
    columns.

    Arguments
    ---------
    y_true, y_pred : array-like of int
        True and predicted class indices.
    n_classes : int
        Number of classes.

    Returns
    -------
    dict
        ``accuracy``, ``macro_f1``, ``weighted_f1`` (floats), ``confusion_matrix``
        (list of lists of int) and ``n``.

    Example
    -------
    >>> m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], 2)
    >>> m["accuracy"], round(m["macro_f1"], 4), m["confusion_matrix"], m["n"]
    (0.75, 0.7333, [[1, 1], [0, 2]], 4)
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if len(y_true) != len(y_pred):
        raise DataError(f"metrics: {len(y_true)} labels but {len(y_pred)} predictions")
    if len(y_true) == 0:
        raise DataError("metrics: no predictions to score")
    labels = list(range(int(n_classes)))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "n": int(len(y_true)),
    }


def song_prediction_fieldnames(class_names):
    """Columns of ``song_predictions.csv``.

    Example
    -------
    >>> song_prediction_fieldnames(["low", "high"])
    ['song_id', 'split', 'aggregator', 'label', 'pred', 'p_low', 'p_high']
    """
    return ["song_id", "split", "aggregator", "label", "pred"] + [f"p_{c}" for c in class_names]


class SongLevelOutput(NamedTuple):
    """Result of :func:`song_level_predictions`."""

    rows: list
    classifier: object
    params: dict


def _check_song_labels(song_ids, split_by_song, label_by_song, n_classes):
    """Labels (int) and splits (str) of the songs, checked: each song has a split and a class index."""
    labels, splits = {}, {}
    for sid in song_ids:
        if sid not in split_by_song:
            raise DataError(f"song {sid!r}: no split given")
        if sid not in label_by_song:
            raise DataError(f"song {sid!r}: no label given")
        label = label_by_song[sid]
        if not (isinstance(label, (int, np.integer)) and 0 <= label < n_classes):
            raise DataError(f"song {sid!r}: label={label!r} is not a class index in 0..{n_classes - 1}")
        labels[sid], splits[sid] = int(label), str(split_by_song[sid])
    return labels, splits


def _song_row(sid, split, label, aggregator, pred, p, class_names):
    out = {"song_id": sid, "split": split, "aggregator": aggregator, "label": label, "pred": int(pred)}
    out.update({f"p_{c}": float(v) for c, v in zip(class_names, p)})
    return out


def svm_song_predictions(
    features_by_song,
    split_by_song,
    label_by_song,
    class_names,
    grid_search=False,
    seed=0,
    train_splits=("train",),
    **svm_kwargs,
):
    """Song predictions of the song classifier (StandardScaler + SVM) over given song features.

    The classifier (:func:`fit_song_classifier`, with the grid search when
    ``grid_search``) is trained on the songs whose split is in
    ``train_splits`` (default: ``train`` only; never the test songs) and
    predicts every song. Stage 2 calls it with the Eq. 10 features of the
    segment probabilities (:func:`song_level_predictions`); the
    ``features_svm`` baseline with hand-crafted features
    (:mod:`sssl_brain.song_level.handcrafted`).

    Arguments
    ---------
    features_by_song : dict
        song_id -> feature vector ``(D,)`` (the same D for every song).
    split_by_song, label_by_song, class_names, grid_search, seed, train_splits, **svm_kwargs
        See :func:`song_level_predictions`.

    Returns
    -------
    SongLevelOutput
        ``rows``: one per song (aggregator ``svm``), in the order of
        ``features_by_song``; ``classifier``; ``params`` (its C/gamma).

    Example
    -------
    >>> feats = {f"s{i}": [float(i % 2) + 0.01 * i] for i in range(12)}
    >>> split = {s: ("test" if s in ("s0", "s1") else "train") for s in feats}
    >>> out = svm_song_predictions(feats, split, {f"s{i}": i % 2 for i in range(12)}, ["low", "high"])
    >>> [(r["song_id"], r["aggregator"], r["pred"]) for r in out.rows if r["split"] == "test"]
    [('s0', 'svm', 0), ('s1', 'svm', 1)]
    """
    n_classes = len(class_names)
    if n_classes < 2:
        raise ConfigError(f"class_names={class_names!r}: need at least 2 classes")
    song_ids = list(features_by_song)
    if not song_ids:
        raise DataError("song level: no songs")
    labels, splits = _check_song_labels(song_ids, split_by_song, label_by_song, n_classes)
    rows = []
    for sid in song_ids:
        x = np.asarray(features_by_song[sid], dtype=np.float64)
        if x.ndim != 1 or (rows and x.shape != rows[0].shape):
            raise DataError(f"song {sid!r}: feature vector of shape {x.shape}, expected "
                            f"{rows[0].shape if rows else '(D,)'}")
        if not np.all(np.isfinite(x)):
            raise DataError(f"song {sid!r}: feature vector holds non-finite values")
        rows.append(x)
    features = np.stack(rows)
    train = [i for i, sid in enumerate(song_ids) if splits[sid] in train_splits]
    if not train:
        raise DataError(f"song level: no song in the training split(s) {list(train_splits)}")
    y_train = np.array([labels[song_ids[i]] for i in train])
    clf = fit_song_classifier(features[train], y_train, grid_search=grid_search, seed=seed, **svm_kwargs)
    svm_pred = clf.predict(features)
    svm_proba = predict_song_proba(clf, features, n_classes)
    out = [_song_row(sid, splits[sid], labels[sid], "svm", svm_pred[i], svm_proba[i], class_names)
           for i, sid in enumerate(song_ids)]
    return SongLevelOutput(out, clf, dict(clf.best_params_))


def song_level_predictions(
    probs_by_song,
    split_by_song,
    label_by_song,
    class_names,
    theta=0.5,
    grid_search=False,
    seed=0,
    train_splits=("train",),
    **svm_kwargs,
):
    """Song predictions of the SVM (Eq. 10 features) and of the two baselines.

    The SVM is trained on the songs whose split is in ``train_splits``
    (default: ``train`` only; never the test songs) and predicts every song
    (:func:`svm_song_predictions`). The baselines need no training.

    Arguments
    ---------
    probs_by_song : dict
        song_id -> segment probabilities ``(S, K)`` (numpy array).
    split_by_song : dict
        song_id -> ``"train"``, ``"valid"`` or ``"test"``.
    label_by_song : dict
        song_id -> class index.
    class_names : list of str
        The K class names (column suffixes ``p_<class>``).
    theta : float
        Threshold of the Eq. 10 fraction statistic.
    grid_search : bool
        Tune C and gamma on the training songs (see :func:`fit_song_classifier`).
    seed : int
        Seed of the SVM and of the grid-search CV.
    train_splits : tuple of str
        Splits whose songs train the SVM.
    **svm_kwargs
        Passed to :func:`fit_song_classifier` (``C``, ``gamma``, ``C_grid``,
        ``gamma_grid``, ``cv_folds``, ``kernel``, ``scoring``).

    Returns
    -------
    SongLevelOutput
        ``rows``: dicts with the columns of :func:`song_prediction_fieldnames`
        (``aggregator`` in ``svm``, ``majority``, ``mean``; rows grouped by
        aggregator in that order, songs in the order of ``probs_by_song``);
        ``classifier``: the fitted song classifier; ``params``: its C/gamma.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> probs, split, label = {}, {}, {}
    >>> for i in range(12):
    ...     y = i % 2
    ...     p = np.clip(rng.normal(0.3 + 0.4 * y, 0.1, size=(5, 1)), 0, 1)
    ...     probs[f"s{i}"], split[f"s{i}"], label[f"s{i}"] = np.hstack([1 - p, p]), "train", y
    >>> split["s0"] = split["s1"] = "test"
    >>> out = song_level_predictions(probs, split, label, ["low", "high"])
    >>> len(out.rows), sorted({r["aggregator"] for r in out.rows})
    (36, ['majority', 'mean', 'svm'])
    >>> [(r["song_id"], r["label"], r["pred"]) for r in out.rows if r["split"] == "test"][:2]
    [('s0', 0, 0), ('s1', 1, 1)]
    """
    n_classes = len(class_names)
    if n_classes < 2:
        raise ConfigError(f"class_names={class_names!r}: need at least 2 classes")
    song_ids = list(probs_by_song)
    if not song_ids:
        raise DataError("song level: no songs")
    probs = {}
    for sid in song_ids:
        P = _check_probs(probs_by_song[sid], name=f"song {sid!r}")
        if P.shape[1] != n_classes:
            raise DataError(f"song {sid!r}: {P.shape[1]} probability columns but {n_classes} classes")
        probs[sid] = P
    labels, splits = _check_song_labels(song_ids, split_by_song, label_by_song, n_classes)
    features = {sid: song_features(probs[sid], theta=theta) for sid in song_ids}
    out = svm_song_predictions(features, splits, labels, class_names, grid_search=grid_search, seed=seed,
                               train_splits=train_splits, **svm_kwargs)
    rows = list(out.rows)
    for name, aggregate in (("majority", majority_vote), ("mean", mean_probability)):
        for sid in song_ids:
            pred, p = aggregate(probs[sid])
            rows.append(_song_row(sid, splits[sid], labels[sid], name, pred, p, class_names))
    return SongLevelOutput(rows, out.classifier, out.params)


def write_song_predictions(path, rows, class_names):
    """Writes ``song_predictions.csv`` atomically (columns: :func:`song_prediction_fieldnames`)."""
    atomic_write_csv(path, rows, song_prediction_fieldnames(class_names))
