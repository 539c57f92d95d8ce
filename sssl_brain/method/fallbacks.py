"""The partition's fallbacks: where the mixture split of Eq. 3 is not to be trusted.

:func:`sssl_brain.method.partition.partition_segments` fits the mixture and
asks the named functions below whether to keep its split. Each fallback makes
the epoch's partition all labeled (every segment in X, w = 1) or per class,
never NaN; the core logs a warning and records the name in
:attr:`~sssl_brain.method.partition_result.PartitionResult.fallback`
(``partition.csv``'s ``fallback`` column). The paper and DivideMix have none
of them; the thresholds are the yaml's ``partition_*`` [ours]
(:data:`sssl_brain.method.checks.FALLBACK_THRESHOLDS`).

============================  ==============================================
``fallback``                  when (function), and what the partition becomes
============================  ==============================================
``too_few_samples``           fewer than ``min_samples`` segments
                              (:func:`too_few_samples`): all labeled
``degenerate_losses``         fewer than 2 distinct loss values
                              (:func:`degenerate_losses`): all labeled
``degenerate_mixture``        the two means closer than ``min_mean_gap`` (on
                              the [0, 1] scale), a non-finite posterior
                              (:func:`degenerate_mixture`), or a fit that
                              fails (scikit-learn raises a ValueError): all
                              labeled
``clean_too_small``           ``|X| / N < min_clean_frac``
                              (:func:`clean_fraction_out_of_range`): all
                              labeled (a nearly empty X means the losses do
                              not separate clean from noisy yet; training on
                              the inherited labels, the paper's baseline, is
                              the safe choice for that epoch)
``clean_too_large``           ``|X| / N > max_clean_frac``: all labeled (what
                              the mixture says anyway; it avoids a U set too
                              small to fill a batch)
``class_bias_per_class``      X follows the classes instead of the noise
                              (:func:`class_biased`): one mixture per
                              inherited class is used (:func:`per_class_split`)
``class_bias_all_labeled``    the per-class partition is still biased: all
                              labeled
``class_fallback:<k>=<why>``  ``per_class=True`` and some classes could not
                              be fitted (reasons as above): those classes are
                              all clean
============================  ==============================================

Class bias: when the model predicts nearly one class, the loss of a segment
tracks its inherited label, the mixture separates the classes and X becomes
mostly one class. :func:`class_balance_shift` compares the class distribution
of X with that of the labels; the split is biased when the total variation
distance exceeds ``bias_tolerance`` (yaml: 0.25) or when a class (with at
least ``min_samples`` segments) keeps less than ``min_class_share`` (yaml:
0.25) of its expected share of X (its fraction in X divided by the overall
fraction in X). For reference, labels 50/50 with noise rates of 10 % and 60 %
in the two classes give a distance of only 0.19, while a split that keeps
90 % class 0 gives 0.40.
"""

from dataclasses import dataclass

import numpy as np

from sssl_brain.utils.errors import ConfigError, DataError


@dataclass(frozen=True)
class Limits:
    """The fallback thresholds as ``partition_segments`` applies them.

    ``min_samples``: fewest segments to fit a mixture (at least 2);
    ``share_min_samples``: fewest segments for a class to count in the share check (at least 1).
    """

    min_samples: int
    min_mean_gap: float
    min_clean_frac: float
    max_clean_frac: float
    bias_tolerance: object
    min_class_share: object
    share_min_samples: int


@dataclass
class Split:
    """A partition before its X/U threshold: w, the fallback's name and the fits behind it."""

    w: np.ndarray
    fallback: object
    per_class: bool
    means: object
    gmm: object = None
    class_gmms: object = None
    class_fallbacks: object = None


def check_inputs(losses, labels, n_classes, tau):
    """The raw losses (float64) and the labels (int64) of ``partition_segments``, checked.

    Raises
    ------
    DataError
        For non-finite losses or labels that are not class indices in [0, n_classes).
    ConfigError
        For a bad ``n_classes`` or ``tau``.
    """
    raw = np.asarray(losses, dtype=np.float64)
    if raw.ndim != 1:
        raise DataError(f"per-sample losses must be 1-D (N,), got shape {raw.shape}")
    if not np.all(np.isfinite(raw)):
        bad = int(np.sum(~np.isfinite(raw)))
        raise DataError(f"{bad} of {raw.size} per-sample losses are NaN or infinite")
    labels = np.asarray(labels)
    if labels.shape != raw.shape:
        raise DataError(f"partition_segments: {raw.size} losses but labels of shape {labels.shape}")
    if not (isinstance(n_classes, (int, np.integer)) and n_classes >= 1):
        raise ConfigError(f"n_classes={n_classes!r}: must be a positive integer")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"partition_segments: labels must be class indices (integers), got {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(
            f"partition_segments: label values must be in [0, {n_classes}), "
            f"got [{labels.min()}, {labels.max()}]"
        )
    if not 0.0 <= tau < 1.0:
        raise ConfigError(f"tau={tau!r}: the partition threshold must be in [0, 1)")
    return raw, labels


def too_few_samples(x, limits):
    """``too_few_samples`` when ``x`` has fewer than ``min_samples`` values (checked before fitting)."""
    return "too_few_samples" if x.size < limits.min_samples else None


def degenerate_losses(x):
    """``degenerate_losses`` when ``x`` has fewer than 2 distinct values (checked before fitting)."""
    return "degenerate_losses" if np.unique(x).size < 2 else None


def degenerate_mixture(post, params, limits):
    """``degenerate_mixture`` for a non-finite posterior or mean, or means closer than ``min_mean_gap``."""
    if not np.all(np.isfinite(post)) or not np.all(np.isfinite(params.means)):
        return "degenerate_mixture"
    if params.means[1] - params.means[0] < limits.min_mean_gap:
        return "degenerate_mixture"
    return None


def clean_fraction_out_of_range(post, tau, limits):
    """``clean_too_small`` / ``clean_too_large``: ``|X| / N`` outside [min_clean_frac, max_clean_frac]."""
    frac = float(np.mean(post > tau))
    if frac < limits.min_clean_frac:
        return "clean_too_small"
    if frac > limits.max_clean_frac:
        return "clean_too_large"
    return None


def class_balance_shift(clean, labels, n_classes, min_samples=10):
    """How far the class balance of X is from that of the labels (the class-bias check).

    Arguments
    ---------
    clean : numpy.ndarray
        Boolean mask of X, shape (N,).
    labels : numpy.ndarray
        Inherited class indices, shape (N,).
    n_classes : int
        K.
    min_samples : int
        Classes with fewer segments are left out of the share check.

    Returns
    -------
    tv : float
        Total variation distance ``0.5 * sum_k |P(k | X) - P(k)|`` in [0, 1]
        (1.0 when X is empty).
    min_share : float
        Smallest ratio, over classes with at least ``min_samples`` segments,
        of the class's fraction kept in X to the overall fraction kept
        (1.0 = the class keeps exactly its share; 1.0 if no class qualifies).

    Example
    -------
    >>> labels = np.array([0, 0, 1, 1])
    >>> tv, share = class_balance_shift(np.array([True, True, True, False]), labels, 2, min_samples=1)
    >>> round(tv, 4), round(share, 4)
    (0.1667, 0.6667)
    """
    clean = np.asarray(clean, dtype=bool)
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    kept = np.bincount(labels[clean], minlength=n_classes).astype(np.float64)
    n_total, n_kept = counts.sum(), kept.sum()
    if n_total == 0:
        return 0.0, 1.0
    if n_kept == 0:
        return 1.0, 0.0
    tv = 0.5 * float(np.abs(kept / n_kept - counts / n_total).sum())
    overall = n_kept / n_total
    eligible = counts >= max(int(min_samples), 1)
    if not eligible.any():
        return tv, 1.0
    shares = (kept[eligible] / counts[eligible]) / overall
    return tv, float(shares.min())


def class_biased(clean, labels, n_classes, limits):
    """``(biased, tv)``: X follows the classes (``bias_tolerance`` / ``min_class_share``; None = off)."""
    if limits.bias_tolerance is None and limits.min_class_share is None:
        return False, 0.0
    tv, share = class_balance_shift(clean, labels, n_classes, limits.share_min_samples)
    biased = (limits.bias_tolerance is not None and tv > limits.bias_tolerance) or (
        limits.min_class_share is not None and share < limits.min_class_share
    )
    return biased, tv


def per_class_split(x, labels, n_classes, tau, mixture, limits, fallback, gmm, means):
    """One mixture per inherited class (``class_bias_per_class``, or ``per_class=True`` from the start).

    ``mixture(values)`` is the core's split of one set of losses (``(w, params, reason)``). A class
    whose fit falls back is all clean (``class_fallback:<k>=<why>`` unless ``fallback`` names the
    reason for the per-class fit); a per-class split that is still biased is all labeled
    (``class_bias_all_labeled``, with the global ``gmm`` and ``means``).
    """
    w = np.ones(x.size, dtype=np.float64)
    gmms, reasons, class_means = [], [], []
    for k in range(n_classes):
        idx = np.flatnonzero(labels == k)
        if idx.size == 0:
            gmms.append(None)
            reasons.append(None)
            class_means.append(None)
            continue
        wk, params, reason = mixture(x[idx])
        w[idx] = wk
        gmms.append(params)
        reasons.append(reason)
        class_means.append(None if params is None else (float(params.means[0]), float(params.means[1])))
    if class_biased(w > tau, labels, n_classes, limits)[0]:
        return Split(np.ones(x.size), "class_bias_all_labeled", False, means, gmm, gmms, reasons)
    failed = [f"{k}={r}" for k, r in enumerate(reasons) if r is not None]
    if fallback is None and failed:
        fallback = "class_fallback:" + ",".join(failed)
    return Split(w, fallback, True, class_means, gmm, gmms, reasons)
