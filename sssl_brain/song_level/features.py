"""Stage 2 song statistics: the Eq. 10 features and the two baseline aggregators (docs/method.md, "Stage 2").

The segment classifier gives, for one song, a matrix ``P`` of shape
``(S, K)``: the class probabilities of its ``S`` segments. Eq. 10
(:func:`song_features`) turns it into a fixed-size vector of ``7 K``
statistics, which the song classifier
(:class:`sssl_brain.song_level.classifier.SongClassifier`) maps to the
song's class. Two simple baselines aggregate ``P`` without training: the
majority vote of the segment decisions (:func:`majority_vote`) and the mean
segment probability (:func:`mean_probability`).

Aggregators (the ``aggregator`` column of ``song_predictions.csv``, see
:mod:`sssl_brain.song_level.predictions`):

- ``svm``: Eq. 10 features -> StandardScaler -> RBF SVC with sigmoid
  (Platt) calibrated probabilities, trained on the training songs only;
  ``p_<class>`` are those probabilities and ``pred`` their argmax.
- ``majority``: most frequent segment argmax; ``p_<class>`` is the fraction
  of segments that vote for each class.
- ``mean``: argmax of the mean segment probability; ``p_<class>`` is that mean.

Everything here works on numpy arrays; nothing depends on torch.
"""

import numpy as np

from sssl_brain.utils.errors import DataError

SONG_STATS = ("max", "min", "q1", "median", "q3", "mean", "frac")
AGGREGATORS = ("svm", "majority", "mean")


def check_probs(P, name="P"):
    """Segment probabilities of one song as float64, checked: shape ``(S >= 1, K >= 1)``, finite values.

    Example
    -------
    >>> check_probs([[0.25, 0.75]]).dtype, check_probs([[0.25, 0.75]]).shape
    (dtype('float64'), (1, 2))
    """
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
    P = check_probs(P)
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
    P = check_probs(P)
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
    P = check_probs(P)
    mean = P.mean(axis=0)
    return int(np.argmax(mean)), mean
