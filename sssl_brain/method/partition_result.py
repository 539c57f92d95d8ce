"""What a partition of the training segments is: :class:`PartitionResult` and the fitted mixture.

:func:`sssl_brain.method.partition.partition_segments` returns a
:class:`PartitionResult`; its :meth:`~PartitionResult.summary` is the partition
part of a ``partition.csv`` row, :class:`GMMParams` draws the mixture in the
partition plots, and :func:`partition_precision_recall` scores X against the
segments whose inherited label is right (where the truth is known).
"""

from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import precision_score, recall_score

from sssl_brain.utils.errors import DataError


@dataclass
class GMMParams:
    """A fitted 2-component 1-D Gaussian mixture, components sorted by mean.

    Arguments
    ---------
    weights : numpy.ndarray
        Mixing weights, shape (2,).
    means : numpy.ndarray
        Component means, ascending, shape (2,).
    variances : numpy.ndarray
        Component variances, shape (2,).

    Example
    -------
    >>> g = GMMParams(np.array([0.5, 0.5]), np.array([0.0, 1.0]), np.array([0.01, 0.01]))
    >>> g.component_densities(np.array([0.0])).shape
    (2, 1)
    >>> round(float(g.clean_posterior(np.array([0.5]))[0]), 3)
    0.5
    """

    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray

    def component_densities(self, x):
        """Weighted component densities ``pi_k N(x; mu_k, var_k)``, shape (2, len(x))."""
        x = np.asarray(x, dtype=np.float64)[None, :]
        var = np.asarray(self.variances, dtype=np.float64)[:, None]
        mu = np.asarray(self.means, dtype=np.float64)[:, None]
        pi = np.asarray(self.weights, dtype=np.float64)[:, None]
        return pi * np.exp(-0.5 * (x - mu) ** 2 / var) / np.sqrt(2.0 * np.pi * var)

    def clean_posterior(self, x):
        """Posterior of the smaller-mean component (Eq. 3), computed stably in the log domain."""
        x = np.asarray(x, dtype=np.float64)[None, :]
        var = np.asarray(self.variances, dtype=np.float64)[:, None]
        mu = np.asarray(self.means, dtype=np.float64)[:, None]
        pi = np.asarray(self.weights, dtype=np.float64)[:, None]
        logp = np.log(pi) - 0.5 * (x - mu) ** 2 / var - 0.5 * np.log(2.0 * np.pi * var)
        logp -= logp.max(axis=0, keepdims=True)
        p = np.exp(logp)
        return p[0] / p.sum(axis=0)


@dataclass
class PartitionResult:
    """The clean/noisy partition of one epoch.

    Arguments
    ---------
    clean_prob : numpy.ndarray
        w_i of Eq. 3 per segment, shape (N,), in [0, 1] (1 where a fallback
        made a segment labeled).
    clean : numpy.ndarray
        Boolean mask of the labeled set X, shape (N,).
    means : tuple or list
        The two GMM means (ascending, normalised scale) of the global fit;
        with ``per_class`` a list with one such tuple per class (None where
        the class was not fitted). ``(m, m)`` when no mixture was fitted.
    n_clean : int
        |X|.
    n_noisy : int
        |U|.
    fallback : str or None
        None, or why the partition is not the plain mixture split (the table
        in :mod:`sssl_brain.method.fallbacks`).
    fallback_trigger : str
        What set the fallback off, measured value against threshold (e.g.
        ``clean_frac=0.030<0.05``, ``min_class_share=0.000<0.05 (class 8)``;
        several joined by ``; ``); '' when ``fallback`` is None.
    per_class : bool
        True if X comes from one mixture per inherited class.
    tau : float
        The threshold on w.
    gmm : GMMParams or None
        The global fit (kept even if a fallback rejected it), for plots.
    class_gmms : list or None
        Per-class fits (None entries for classes not fitted).
    class_fallbacks : list or None
        Per-class reason strings (None where the class was fitted normally).
    class_counts : numpy.ndarray
        Number of segments per inherited class, shape (K,).
    class_tv : float
        Total variation distance between the class distribution of X and
        that of the labels, for the final partition.
    losses : numpy.ndarray
        The normalised per-segment losses the mixture was fitted to, shape
        (N,), in [0, 1] (:func:`sssl_brain.method.sssl.normalize_losses`).
    """

    clean_prob: np.ndarray
    clean: np.ndarray
    means: object
    n_clean: int
    n_noisy: int
    fallback: object = None
    fallback_trigger: str = ""
    per_class: bool = False
    tau: float = 0.5
    gmm: object = None
    class_gmms: object = None
    class_fallbacks: object = None
    class_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    class_tv: float = 0.0
    losses: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))

    def summary(self):
        """Flat dict of scalars for a per-epoch table (e.g. ``partition.csv``).

        ``gmm_mean_low`` / ``gmm_mean_high`` are the global fit's means; for a
        per-class partition, the class-size weighted average of the fitted
        classes' means. Never NaN.

        Example
        -------
        >>> from sssl_brain.method.partition import partition_segments
        >>> r = partition_segments(np.r_[np.zeros(20), np.ones(5)], np.zeros(25, dtype=int), 1)
        >>> s = r.summary()
        >>> s["n_clean"], s["n_noisy"], s["fallback"], round(s["gmm_mean_low"], 6)
        (20, 5, '', 0.0)
        """
        if self.per_class and isinstance(self.means, list):
            lows, highs, sizes = [], [], []
            for k, m in enumerate(self.means):
                if m is not None:
                    lows.append(m[0])
                    highs.append(m[1])
                    sizes.append(float(self.class_counts[k]) if k < len(self.class_counts) else 1.0)
            if sizes and sum(sizes) > 0:
                low = float(np.average(lows, weights=sizes))
                high = float(np.average(highs, weights=sizes))
            else:
                low = high = 0.0
        else:
            low, high = float(self.means[0]), float(self.means[1])
        total = self.n_clean + self.n_noisy
        return {
            "n_clean": int(self.n_clean),
            "n_noisy": int(self.n_noisy),
            "clean_frac": float(self.n_clean / total) if total else 0.0,
            "gmm_mean_low": low,
            "gmm_mean_high": high,
            "per_class": bool(self.per_class),
            "fallback": self.fallback or "",
            "fallback_trigger": self.fallback_trigger or "",
            "class_tv": float(self.class_tv),
        }


def partition_precision_recall(clean_mask, correct_mask):
    """Precision and recall of X at finding the segments whose inherited label is right.

    ``precision = |X & correct| / |X|``, ``recall = |X & correct| / |correct|``
    (``sklearn.metrics.precision_score`` / ``recall_score``, positive class: correct);
    None where the denominator is 0 (undefined), never NaN.

    Arguments
    ---------
    clean_mask : array-like of bool
        Segments in X, shape (N,).
    correct_mask : array-like of bool
        Segments whose inherited label matches the segment truth, shape (N,).

    Returns
    -------
    (float or None, float or None)

    Example
    -------
    >>> partition_precision_recall([True, True, False, False], [True, False, True, False])
    (0.5, 0.5)
    >>> partition_precision_recall([False, False], [True, False])
    (None, 0.0)
    """
    clean = np.asarray(clean_mask, dtype=bool)
    correct = np.asarray(correct_mask, dtype=bool)
    if clean.shape != correct.shape:
        raise DataError(
            f"partition_precision_recall: masks differ in shape: {clean.shape} vs {correct.shape}"
        )
    if clean.size == 0:  # sklearn refuses empty input; both ratios are undefined
        return None, None
    truth, found = correct.ravel(), clean.ravel()
    # zero_division=nan marks the undefined ratios (no warning); they are returned as None
    precision = float(precision_score(truth, found, zero_division=np.nan))
    recall = float(recall_score(truth, found, zero_division=np.nan))
    return (None if np.isnan(precision) else precision), (None if np.isnan(recall) else recall)
