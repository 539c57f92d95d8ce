"""Per-fold song predictions of stage 2: the rows of ``song_predictions.csv`` and their metrics.

For one fold, :func:`song_level_predictions` fits the stage 2 classifier
(:class:`sssl_brain.song_level.classifier.SongClassifier`) on the training
songs' segment probabilities and predicts every song; the baselines of
:mod:`sssl_brain.song_level.features` add their decisions. The
``features_svm`` baseline uses :func:`svm_song_predictions`, the same SVM
(:class:`~sssl_brain.song_level.classifier.SongSVM`) over hand-crafted song
features. Rows are written by :func:`write_song_predictions` and scored by
:func:`classification_metrics`.
"""

from typing import NamedTuple

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from sssl_brain.song_level.classifier import SongClassifier, SongSVM, predict_song_proba
from sssl_brain.song_level.features import check_probs, majority_vote, mean_probability
from sssl_brain.utils.errors import ConfigError, DataError
from sssl_brain.utils.io_utils import atomic_write_csv


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
    """Result of :func:`song_level_predictions` and :func:`svm_song_predictions`."""

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


def fit_and_predict(classifier, songs_by_id, split_by_song, label_by_song, class_names,
                    train_splits=("train",)):
    """Fits a song classifier on the training songs and predicts every song (aggregator ``svm``).

    Arguments
    ---------
    classifier : SongSVM or SongClassifier
        An unfitted song classifier; it is fitted here (on the songs whose
        split is in ``train_splits``, never the test songs).
    songs_by_id : dict
        song_id -> what the classifier takes for one song (a feature vector
        for :class:`SongSVM`, a segment-probability matrix for :class:`SongClassifier`).
    split_by_song, label_by_song, class_names, train_splits
        See :func:`song_level_predictions`.

    Returns
    -------
    SongLevelOutput
        ``rows``: one per song (aggregator ``svm``), in the order of
        ``songs_by_id``; ``classifier`` (fitted); ``params`` (its ``best_params_``).
    """
    n_classes = len(class_names)
    song_ids = list(songs_by_id)
    labels, splits = _check_song_labels(song_ids, split_by_song, label_by_song, n_classes)
    train = [sid for sid in song_ids if splits[sid] in train_splits]
    if not train:
        raise DataError(f"song level: no song in the training split(s) {list(train_splits)}")
    classifier.fit([songs_by_id[sid] for sid in train], np.array([labels[sid] for sid in train]))
    every = [songs_by_id[sid] for sid in song_ids]
    pred = classifier.predict(every)
    proba = predict_song_proba(classifier, every, n_classes)
    rows = [_song_row(sid, splits[sid], labels[sid], "svm", pred[i], proba[i], class_names)
            for i, sid in enumerate(song_ids)]
    return SongLevelOutput(rows, classifier, dict(classifier.best_params_))


def _check_classes(class_names):
    if len(class_names) < 2:
        raise ConfigError(f"class_names={class_names!r}: need at least 2 classes")


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
    """Song predictions of the song SVM (:class:`SongSVM`) over given song feature vectors.

    The classifier (with the grid search when ``grid_search``) is trained on
    the songs whose split is in ``train_splits`` (default: ``train`` only;
    never the test songs) and predicts every song (:func:`fit_and_predict`).
    The ``features_svm`` baseline calls it with hand-crafted features
    (:mod:`sssl_brain.song_level.handcrafted`); stage 2 uses
    :func:`song_level_predictions` on the segment probabilities.

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
        ``features_by_song``; ``classifier``: the fitted :class:`SongSVM`; ``params``: its C/gamma.

    Example
    -------
    >>> feats = {f"s{i}": [float(i % 2) + 0.01 * i] for i in range(12)}
    >>> split = {s: ("test" if s in ("s0", "s1") else "train") for s in feats}
    >>> out = svm_song_predictions(feats, split, {f"s{i}": i % 2 for i in range(12)}, ["low", "high"])
    >>> [(r["song_id"], r["aggregator"], r["pred"]) for r in out.rows if r["split"] == "test"]
    [('s0', 'svm', 0), ('s1', 'svm', 1)]
    """
    _check_classes(class_names)
    if not features_by_song:
        raise DataError("song level: no songs")
    vectors, shape = {}, None
    for sid, x in features_by_song.items():
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 1 or (shape is not None and x.shape != shape):
            raise DataError(f"song {sid!r}: feature vector of shape {x.shape}, expected {shape or '(D,)'}")
        if not np.all(np.isfinite(x)):
            raise DataError(f"song {sid!r}: feature vector holds non-finite values")
        vectors[sid], shape = x, x.shape
    classifier = SongSVM(grid_search=grid_search, random_state=seed, **svm_kwargs)
    return fit_and_predict(classifier, vectors, split_by_song, label_by_song, class_names, train_splits)


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
    """Song predictions of the stage 2 classifier (Eq. 10 features + SVM) and of the two baselines.

    The classifier (:class:`SongClassifier`) is trained on the songs whose
    split is in ``train_splits`` (default: ``train`` only; never the test
    songs) and predicts every song (:func:`fit_and_predict`). The baselines
    need no training.

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
        Threshold of the Eq. 10 fraction statistic (a parameter of the classifier).
    grid_search : bool
        Tune C and gamma on the training songs (see :class:`~sssl_brain.song_level.classifier.SongSVM`).
    seed : int
        Seed of the SVM and of the grid-search CV (the classifier's ``random_state``).
    train_splits : tuple of str
        Splits whose songs train the SVM.
    **svm_kwargs
        Other parameters of :class:`SongClassifier` (``C``, ``gamma``, ``C_grid``,
        ``gamma_grid``, ``cv_folds``, ``kernel``, ``scoring``, ``calibration_folds``).

    Returns
    -------
    SongLevelOutput
        ``rows``: dicts with the columns of :func:`song_prediction_fieldnames`
        (``aggregator`` in ``svm``, ``majority``, ``mean``; rows grouped by
        aggregator in that order, songs in the order of ``probs_by_song``);
        ``classifier``: the fitted :class:`SongClassifier`; ``params``: its C/gamma.

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
    _check_classes(class_names)
    n_classes = len(class_names)
    song_ids = list(probs_by_song)
    if not song_ids:
        raise DataError("song level: no songs")
    probs = {}
    for sid in song_ids:
        P = check_probs(probs_by_song[sid], name=f"song {sid!r}")
        if P.shape[1] != n_classes:
            raise DataError(f"song {sid!r}: {P.shape[1]} probability columns but {n_classes} classes")
        probs[sid] = P
    labels, splits = _check_song_labels(song_ids, split_by_song, label_by_song, n_classes)
    classifier = SongClassifier(theta=theta, grid_search=grid_search, random_state=seed,
                                **svm_kwargs)
    out = fit_and_predict(classifier, probs, splits, labels, class_names, train_splits)
    rows = list(out.rows)
    for name, aggregate in (("majority", majority_vote), ("mean", mean_probability)):
        for sid in song_ids:
            pred, p = aggregate(probs[sid])
            rows.append(_song_row(sid, splits[sid], labels[sid], name, pred, p, class_names))
    return SongLevelOutput(rows, out.classifier, out.params)


def write_song_predictions(path, rows, class_names):
    """Writes ``song_predictions.csv`` atomically (columns: :func:`song_prediction_fieldnames`)."""
    atomic_write_csv(path, rows, song_prediction_fieldnames(class_names))
