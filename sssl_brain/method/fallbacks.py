"""The partition's fallbacks: where the mixture split of Eq. 3 is not to be trusted.

:func:`sssl_brain.method.partition.partition_segments` fits the mixture and
asks the named functions below whether to keep its split. Each fallback makes
the epoch's partition all labeled (every segment in X, w = 1) or per class,
never NaN; the core logs a warning and records the name in
:attr:`~sssl_brain.method.partition_result.PartitionResult.fallback`
(``partition.csv``'s ``fallback`` column) and what set it off, measured
value against threshold, in ``fallback_trigger`` (column ``fallback_trigger``;
the third column below; a :class:`Fallback` carries it). The paper and DivideMix have none
of them; the thresholds are the yaml's ``partition_*`` [ours]
(:data:`sssl_brain.method.checks.FALLBACK_THRESHOLDS`).

============================  ===============================================  ==============================
``fallback``                  when (function), and what the partition becomes  ``fallback_trigger`` (e.g.)
============================  ===============================================  ==============================
``too_few_samples``           fewer than ``min_samples`` segments              ``n_samples=9<10``
                              (:func:`too_few_samples`): all labeled
``degenerate_losses``         fewer than 2 distinct loss values                ``distinct_losses=1<2``
                              (:func:`degenerate_losses`): all labeled
``degenerate_mixture``        the two means closer than ``min_mean_gap`` (on   ``mean_gap=0.020<0.05``,
                              the [0, 1] scale), a non-finite posterior        ``non_finite_posterior``,
                              (:func:`degenerate_mixture`), or a fit that      ``non_finite_mean``, or
                              fails (scikit-learn raises a ValueError): all    ``gmm_fit_error (<message>)``
                              labeled
``clean_too_small``           ``|X| / N < min_clean_frac``                     ``clean_frac=0.030<0.05``
                              (:func:`clean_fraction_out_of_range`): all
                              labeled (a nearly empty X means the losses
                              do not separate clean from noisy yet;
                              training on the inherited labels, the
                              paper's baseline, is the safe choice for that
                              epoch)
``clean_too_large``           ``|X| / N > max_clean_frac``: all labeled        ``clean_frac=0.990>0.98``
                              (what the mixture says anyway; it avoids a U
                              set too small to fill a batch)
``class_bias_per_class``      X follows the classes instead of the noise       ``class_tv=0.400>0.25`` and/or
                              (:func:`class_biased`): one mixture per          ``min_class_share=0.000<0.05
                              inherited class is used                          (class 8)``; then ``class <k>:
                              (:func:`per_class_split`)                        <trigger>`` for each class
                                                                               whose fit fell back
``class_bias_all_labeled``    the per-class partition is still biased: all     the global check's; then
                              labeled                                          ``per-class split: <t>``
``class_fallback:<k>=<why>``  ``per_class=True`` and some classes could not    ``class 2: n_samples=5<10``
                              be fitted (reasons as above): those classes      (several joined by ``; ``)
                              are all clean
============================  ===============================================  ==============================

Class bias: when the model predicts nearly one class, the loss of a segment
tracks its inherited label, the mixture separates the classes and X becomes
mostly one class. :func:`class_balance_shift` compares the class distribution
of X with that of the labels; the split is biased when the total variation
distance exceeds ``bias_tolerance`` (yaml: 0.25) or when a class (with at
least ``min_samples`` segments) keeps less than :func:`share_threshold` of its
expected share of X (its fraction in X divided by the overall fraction in X).
For reference, labels 50/50 with noise rates of 10 % and 60 % in the two
classes give a distance of only 0.19, while a split that keeps 90 % class 0
gives 0.40.

The share threshold scales with K: ``min_class_share * min(1, 2/K)`` (yaml
``min_class_share`` 0.25: 0.25 for K <= 2, as before, 0.167 for K = 3, 0.05 for
K = 10). The minimum of K class shares of a healthy split falls as K grows: on
the 10-class known-noise benchmark (benchmarks/bench_known_noise.py, digits, 20
and 40 % symmetric noise, seed 0, 25 epochs) the *per-class* splits kept every
class but one hard class at 0.12-0.18 of its share (distance 0.15-0.17), and the
unscaled 0.25 turned 2 of 20 epochs all labeled (``class_bias_all_labeled``);
with 2/K no epoch is. The *global* splits there left 1-3 classes with no
segment in X at all (share 0.00, distance 0.15-0.51): still caught, and rightly
(with the checks off, the test accuracy after 25 epochs fell from 64 % to 38 %
at 20 % noise and from 50 % to 37 % at 40 %). The distance is not rescaled: it
never fired alone there, and K = 2 keeps its meaning.
"""

from dataclasses import dataclass

import numpy as np

from sssl_brain.utils.errors import ConfigError, DataError


class Fallback(str):
    """A fallback's name (a ``str``: what ``partition.csv``'s ``fallback`` column writes) and its trigger.

    Arguments
    ---------
    name : str
        The fallback (the table above).
    trigger : str
        What set it off, measured value against threshold, e.g. ``clean_frac=0.030<0.05``
        (``partition.csv``'s ``fallback_trigger`` column).

    Example
    -------
    >>> f = Fallback("clean_too_small", "clean_frac=0.030<0.05")
    >>> f == "clean_too_small", f.trigger
    (True, 'clean_frac=0.030<0.05')
    """

    def __new__(cls, name, trigger=""):
        obj = super().__new__(cls, name)
        obj.trigger = str(trigger)
        return obj


def trigger_of(reason):
    """The trigger text of a fallback ``reason`` ('' for None or a plain name).

    Example
    -------
    >>> trigger_of(Fallback("degenerate_losses", "distinct_losses=1<2")), trigger_of(None)
    ('distinct_losses=1<2', '')
    """
    return getattr(reason, "trigger", "") if reason is not None else ""


def _below(name, value, threshold):
    """``name=value<threshold`` (value to 3 decimals, threshold to 3 digits), the text of a trigger."""
    return f"{name}={value:.3f}<{threshold:.3g}"


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
    if x.size < limits.min_samples:
        return Fallback("too_few_samples", f"n_samples={x.size}<{limits.min_samples}")
    return None


def degenerate_losses(x):
    """``degenerate_losses`` when ``x`` has fewer than 2 distinct values (checked before fitting)."""
    distinct = np.unique(x).size
    return Fallback("degenerate_losses", f"distinct_losses={distinct}<2") if distinct < 2 else None


def degenerate_mixture(post, params, limits):
    """``degenerate_mixture`` for a non-finite posterior or mean, or means closer than ``min_mean_gap``."""
    if not np.all(np.isfinite(post)):
        return Fallback("degenerate_mixture", "non_finite_posterior")
    if not np.all(np.isfinite(params.means)):
        return Fallback("degenerate_mixture", "non_finite_mean")
    gap = float(params.means[1] - params.means[0])
    if gap < limits.min_mean_gap:
        return Fallback("degenerate_mixture", _below("mean_gap", gap, limits.min_mean_gap))
    return None


def clean_fraction_out_of_range(post, tau, limits):
    """``clean_too_small`` / ``clean_too_large``: ``|X| / N`` outside [min_clean_frac, max_clean_frac]."""
    frac = float(np.mean(post > tau))
    if frac < limits.min_clean_frac:
        return Fallback("clean_too_small", _below("clean_frac", frac, limits.min_clean_frac))
    if frac > limits.max_clean_frac:
        return Fallback("clean_too_large", f"clean_frac={frac:.3f}>{limits.max_clean_frac:.3g}")
    return None


def _class_counts(clean, labels, n_classes):
    """``(counts, kept)``: segments per inherited class, overall and in X (float64, shape (K,))."""
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    kept = np.bincount(labels[np.asarray(clean, dtype=bool)], minlength=n_classes).astype(np.float64)
    return counts, kept


def class_shares(clean, labels, n_classes, min_samples=10):
    """Each class's share of its expected place in X (the class-bias check's ``min_share``, per class).

    Arguments
    ---------
    clean : numpy.ndarray
        Boolean mask of X, shape (N,).
    labels : numpy.ndarray
        Inherited class indices, shape (N,).
    n_classes : int
        K.
    min_samples : int
        Classes with fewer segments get NaN (left out of the share check).

    Returns
    -------
    numpy.ndarray
        Shape (K,): the class's fraction kept in X divided by the overall fraction kept (1.0 = the
        class keeps exactly its share; 0.0 for every class with X empty); NaN for the classes left out.

    Example
    -------
    >>> class_shares(np.array([True, True, True, False]), np.array([0, 0, 1, 1]), 3, min_samples=1)
    array([1.33333333, 0.66666667,        nan])
    """
    counts, kept = _class_counts(clean, labels, n_classes)
    shares = np.full(n_classes, np.nan)
    eligible = counts >= max(int(min_samples), 1)
    if kept.sum() == 0:
        shares[eligible] = 0.0
        return shares
    shares[eligible] = (kept[eligible] / counts[eligible]) / (kept.sum() / counts.sum())
    return shares


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
        (1.0 = the class keeps exactly its share; 1.0 if no class qualifies;
        :func:`class_shares` gives them all).

    Example
    -------
    >>> labels = np.array([0, 0, 1, 1])
    >>> tv, share = class_balance_shift(np.array([True, True, True, False]), labels, 2, min_samples=1)
    >>> round(tv, 4), round(share, 4)
    (0.1667, 0.6667)
    """
    counts, kept = _class_counts(clean, labels, n_classes)
    n_total, n_kept = counts.sum(), kept.sum()
    if n_total == 0:
        return 0.0, 1.0
    if n_kept == 0:
        return 1.0, 0.0
    tv = 0.5 * float(np.abs(kept / n_kept - counts / n_total).sum())
    shares = class_shares(clean, labels, n_classes, min_samples)
    if np.all(np.isnan(shares)):
        return tv, 1.0
    return tv, float(np.nanmin(shares))


def share_threshold(min_class_share, n_classes):
    """The share under which a class counts as starved in a K-class split: ``min_class_share * min(1, 2/K)``.

    ``min_class_share`` (yaml) is the threshold of a binary task; with K classes the smallest of K class
    shares of a healthy split is lower (one hard class the model has not learnt yet keeps 10-20 % of its
    place on the 10-class digits benchmark), so the threshold scales as 2 / K: the same for K <= 2, 0.05
    for K = 10 (a class with next to nothing in X). See the module docstring for the evidence.

    Arguments
    ---------
    min_class_share : float or None
        The yaml's ``partition_min_class_share`` (None: no share check).
    n_classes : int
        K.

    Returns
    -------
    float or None

    Example
    -------
    >>> [share_threshold(0.25, k) for k in (1, 2, 4, 10)], share_threshold(None, 10)
    ([0.25, 0.25, 0.125, 0.05], None)
    """
    if min_class_share is None:
        return None
    return float(min_class_share) * min(1.0, 2.0 / max(int(n_classes), 1))


def class_biased(clean, labels, n_classes, limits):
    """Whether X follows the classes: ``(biased, tv, trigger)``.

    Biased when the total variation distance ``tv`` exceeds ``bias_tolerance`` or a class keeps less
    than :func:`share_threshold` of its expected place in X (None = that check off). ``trigger`` names
    every criterion that fired with its value and threshold (e.g. ``class_tv=0.400>0.25`` or
    ``min_class_share=0.000<0.05 (class 8)``), '' when not biased.

    Arguments
    ---------
    clean : numpy.ndarray
        Boolean mask of X, shape (N,).
    labels : numpy.ndarray
        Inherited class indices, shape (N,).
    n_classes : int
        K.
    limits : Limits
        ``bias_tolerance``, ``min_class_share`` and ``share_min_samples`` are used.

    Returns
    -------
    (bool, float, str)

    Example
    -------
    >>> limits = Limits(2, 0.05, 0.05, 0.98, 0.25, 0.25, 1)
    >>> labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    >>> biased, tv, trigger = class_biased(np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=bool), labels, 2, limits)
    >>> biased, round(tv, 3), trigger
    (True, 0.5, 'class_tv=0.500>0.25; min_class_share=0.000<0.25 (class 1)')
    >>> class_biased(np.array([1, 1, 1, 0, 1, 1, 1, 0], dtype=bool), labels, 2, limits)
    (False, 0.0, '')
    """
    if limits.bias_tolerance is None and limits.min_class_share is None:
        return False, 0.0, ""
    tv, _ = class_balance_shift(clean, labels, n_classes, limits.share_min_samples)
    fired = []
    if limits.bias_tolerance is not None and tv > limits.bias_tolerance:
        fired.append(f"class_tv={tv:.3f}>{limits.bias_tolerance:.3g}")
    threshold = share_threshold(limits.min_class_share, n_classes)
    if threshold is not None:
        shares = class_shares(clean, labels, n_classes, limits.share_min_samples)
        if not np.all(np.isnan(shares)):
            k = int(np.nanargmin(shares))
            if shares[k] < threshold:
                fired.append(f"{_below('min_class_share', float(shares[k]), threshold)} (class {k})")
    return bool(fired), tv, "; ".join(fired)


def per_class_split(x, labels, n_classes, tau, mixture, limits, fallback, gmm, means):
    """One mixture per inherited class (``class_bias_per_class``, or ``per_class=True`` from the start).

    ``mixture(values)`` is the core's split of one set of losses (``(w, params, reason)``). A class
    whose fit falls back is all clean (``class_fallback:<k>=<why>`` unless ``fallback`` names the
    reason for the per-class fit); a per-class split that is still biased is all labeled
    (``class_bias_all_labeled``, with the global ``gmm`` and ``means``). The result's fallback is a
    :class:`Fallback` whose trigger adds, after that of ``fallback``, what the classes' fits and the
    bias check of the per-class split measured.
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
    head = [trigger_of(fallback)] if trigger_of(fallback) else []
    biased, _, bias_trigger = class_biased(w > tau, labels, n_classes, limits)
    if biased:
        trigger = "; ".join(head + [f"per-class split: {bias_trigger}"])
        return Split(np.ones(x.size), Fallback("class_bias_all_labeled", trigger), False, means, gmm, gmms,
                     [None if r is None else str(r) for r in reasons])
    failed = [(k, r) for k, r in enumerate(reasons) if r is not None]
    trigger = "; ".join(head + [f"class {k}: {trigger_of(r) or r}" for k, r in failed])
    if fallback is None and failed:
        fallback = "class_fallback:" + ",".join(f"{k}={r}" for k, r in failed)
    if fallback is not None:
        fallback = Fallback(fallback, trigger)
    return Split(w, fallback, True, class_means, gmm, gmms, [None if r is None else str(r) for r in reasons])
