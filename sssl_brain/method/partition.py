"""Clean/noisy partition of the training segments (Eq. 3) with its fallbacks.

Each epoch after the warm-up, the per-segment losses of the current model
are normalised to [0, 1] and a 2-component Gaussian mixture is fitted to
them (EM, scikit-learn). ``w_i`` is the posterior of the component with the
smaller mean; the labeled set X is ``{i : w_i > tau}`` and the rest is the
unlabeled set U (docs/method.md, "Eq. 3: the clean/noisy partition"). Mixture settings default to
DivideMix's (max_iter 10, tol 1e-2, reg_covar 5e-4). The losses are
normalised here, once (:func:`partition_segments` takes the raw losses and
returns the normalised ones in :attr:`PartitionResult.losses`).

Public implementations break on a few edges; :func:`partition_segments`
handles them, never returns NaN, logs a warning and records the reason in
:attr:`PartitionResult.fallback`:

============================  ==============================================
``fallback``                  when, and what the partition becomes
============================  ==============================================
``too_few_samples``           fewer than ``min_samples`` segments:
                              all labeled (every segment in X, w = 1)
``degenerate_losses``         fewer than 2 distinct loss values: all labeled
``degenerate_mixture``        the two means closer than ``min_mean_gap`` (on
                              the [0, 1] scale), a non-finite posterior, or
                              a fit that fails (scikit-learn raises a
                              ValueError): all labeled
``clean_too_small``           ``|X| / N < min_clean_frac``: all labeled (a
                              nearly empty X means the losses do not separate
                              clean from noisy yet, e.g. an uncertain model;
                              training on the inherited labels, the paper's
                              baseline, is the safe choice for that epoch)
``clean_too_large``           ``|X| / N > max_clean_frac``: all labeled (what
                              the mixture says anyway; it avoids a U set too
                              small to fill a batch)
``class_bias_per_class``      X follows the classes instead of the noise (see
                              below): one mixture per inherited class is used
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
distance exceeds ``bias_tolerance`` (default 0.25) or when a class (with at
least ``min_samples`` segments) keeps less than ``min_class_share`` (default
0.25) of its expected share of X (its fraction in X divided by the overall
fraction in X). For reference, labels 50/50 with noise rates of 10 % and 60 %
in the two classes give a distance of only 0.19, while a split that keeps
90 % class 0 gives 0.40.

The thresholds' defaults below are those of ``hparams/vgg16_sssl.yaml``
(``partition_<name>``, all [ours]: DivideMix has no such fallbacks), where
:class:`sssl_brain.method.brain.SSSLBrain` reads them.
"""

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from sssl_brain.method.sssl import normalize_losses
from sssl_brain.utils.errors import ConfigError, DataError

logger = logging.getLogger(__name__)


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
        None, or why the partition is not the plain mixture split (see the
        module docstring).
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
            "class_tv": float(self.class_tv),
        }


def _fit_gmm(x, seed, max_iter, tol, reg_covar):
    """Eq. 3: the 2-component Gaussian mixture of the losses and each sample's clean posterior w_i.

    Fits the mixture with EM (scikit-learn ``GaussianMixture``,
    ``random_state=seed``) to the losses, already normalised to [0, 1]
    (:func:`sssl_brain.method.sssl.normalize_losses`), and returns the
    posterior of the component with the smaller mean. :func:`partition_segments`
    calls it (globally, or once per class) and handles the edge cases around it.

    Arguments
    ---------
    x : numpy.ndarray
        Normalised per-sample losses, shape (N,), finite, at least 2 distinct values.
    seed : int
        Random state of the mixture's initialisation.
    max_iter, tol, reg_covar
        EM settings (the yaml's ``gmm_*``, DivideMix's 10, 1e-2, 5e-4).

    Returns
    -------
    w : numpy.ndarray
        Posterior of the low-loss ("clean") component, shape (N,).
    params : GMMParams
        The weights, means and variances of the two components, by ascending mean.

    Example
    -------
    >>> losses = np.array([0.0, 0.05, 0.1, 0.9, 0.95, 1.0])
    >>> w, params = _fit_gmm(losses, seed=0, max_iter=10, tol=1e-2, reg_covar=5e-4)
    >>> (w > 0.5).tolist()
    [True, True, True, False, False, False]
    >>> [round(float(m), 2) for m in params.means]
    [0.05, 0.95]
    """
    gmm = GaussianMixture(n_components=2, max_iter=max_iter, tol=tol, reg_covar=reg_covar, random_state=seed)
    data = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    with warnings.catch_warnings():
        # max_iter=10 (DivideMix) often stops before sklearn's tolerance: expected, not news.
        warnings.simplefilter("ignore", ConvergenceWarning)
        gmm.fit(data)
    means = gmm.means_.reshape(-1)
    order = np.argsort(means, kind="stable")
    post = gmm.predict_proba(data)[:, order[0]]
    params = GMMParams(
        weights=gmm.weights_.reshape(-1)[order].copy(),
        means=means[order].copy(),
        variances=gmm.covariances_.reshape(-1)[order].copy(),
    )
    return post, params


def _check_losses(losses):
    x = np.asarray(losses, dtype=np.float64)
    if x.ndim != 1:
        raise DataError(f"per-sample losses must be 1-D (N,), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x)))
        raise DataError(f"{bad} of {x.size} per-sample losses are NaN or infinite")
    return x


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


def _is_biased(clean, labels, n_classes, bias_tolerance, min_class_share, min_samples):
    if bias_tolerance is None and min_class_share is None:
        return False, 0.0
    tv, share = class_balance_shift(clean, labels, n_classes, min_samples)
    biased = (bias_tolerance is not None and tv > bias_tolerance) or (
        min_class_share is not None and share < min_class_share
    )
    return biased, tv


def _split_one(x, tau, seed, fit_kw, min_samples, min_mean_gap, min_clean_frac, max_clean_frac):
    """One mixture on ``x`` with the degenerate checks.

    Returns (w, params or None, reason or None); on a reason, w is all ones.
    """
    ones = np.ones(x.size, dtype=np.float64)
    if x.size < min_samples:
        return ones, None, "too_few_samples"
    if np.unique(x).size < 2:
        return ones, None, "degenerate_losses"
    try:
        post, params = _fit_gmm(x, seed, **fit_kw)
    except ValueError as err:  # scikit-learn's own checks, e.g. an ill-defined covariance
        logger.warning("partition: the Gaussian mixture fit of %d losses failed: %s", x.size, err)
        return ones, None, "degenerate_mixture"
    if not np.all(np.isfinite(post)) or not np.all(np.isfinite(params.means)):
        return ones, params, "degenerate_mixture"
    if params.means[1] - params.means[0] < min_mean_gap:
        return ones, params, "degenerate_mixture"
    frac = float(np.mean(post > tau))
    if frac < min_clean_frac:
        return ones, params, "clean_too_small"
    if frac > max_clean_frac:
        return ones, params, "clean_too_large"
    return np.clip(post, 0.0, 1.0), params, None


#: The fallback thresholds of :func:`partition_segments` (the yaml names them ``partition_<name>``).
FALLBACK_THRESHOLDS = ("min_clean_frac", "max_clean_frac", "min_mean_gap", "bias_tolerance",
                       "min_class_share", "min_samples")


def check_fallback_thresholds(min_clean_frac, max_clean_frac, min_mean_gap, bias_tolerance, min_class_share,
                              min_samples, prefix=""):
    """Checks the fallback thresholds of :func:`partition_segments`; errors name the option.

    Arguments
    ---------
    min_clean_frac, max_clean_frac : float
        Need ``0 <= min_clean_frac < max_clean_frac <= 1``.
    min_mean_gap : float
        Need >= 0.
    bias_tolerance : float or None
        In [0, 1], or None (check off).
    min_class_share : float or None
        >= 0, or None (check off).
    min_samples : int
        A whole number >= 1.
    prefix : str
        Put before each name in the messages (``"partition_"``: the yaml's names).

    Raises
    ------
    ConfigError
        Naming the first wrong option.

    Example
    -------
    >>> check_fallback_thresholds(0.05, 0.98, 0.05, 0.25, None, 10)
    >>> check_fallback_thresholds(0.05, 0.98, 0.05, 1.5, 0.25, 10, prefix="partition_")
    Traceback (most recent call last):
    ...
    sssl_brain.utils.errors.ConfigError: partition_bias_tolerance=1.5: must be in [0, 1], or null (no check)
    """
    names = {k: prefix + k for k in FALLBACK_THRESHOLDS}
    fracs = {}
    for key, value in (("min_clean_frac", min_clean_frac), ("max_clean_frac", max_clean_frac),
                       ("min_mean_gap", min_mean_gap)):
        fracs[key] = _number(names[key], value)
    if not 0.0 <= fracs["min_clean_frac"] < fracs["max_clean_frac"] <= 1.0:
        raise ConfigError(
            f"{names['min_clean_frac']}={min_clean_frac!r}, {names['max_clean_frac']}={max_clean_frac!r}: "
            f"need 0 <= min < max <= 1"
        )
    if fracs["min_mean_gap"] < 0:
        raise ConfigError(f"{names['min_mean_gap']}={min_mean_gap!r}: must be >= 0")
    if bias_tolerance is not None and not 0.0 <= _number(names["bias_tolerance"], bias_tolerance) <= 1.0:
        raise ConfigError(
            f"{names['bias_tolerance']}={bias_tolerance!r}: must be in [0, 1], or null (no check)"
        )
    if min_class_share is not None and not _number(names["min_class_share"], min_class_share) >= 0.0:
        raise ConfigError(
            f"{names['min_class_share']}={min_class_share!r}: must be >= 0, or null (no check)"
        )
    if isinstance(min_samples, bool) or not isinstance(min_samples, (int, np.integer)) or min_samples < 1:
        raise ConfigError(f"{names['min_samples']}={min_samples!r}: must be a whole number >= 1")


def _number(name, value):
    if isinstance(value, bool):
        raise ConfigError(f"{name}={value!r}: must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r}: must be a number") from None
    if not np.isfinite(number):
        raise ConfigError(f"{name}={value!r}: must be a finite number")
    return number


def _split_per_class(x, labels, n_classes, tau, seed, fit_kw, checks):
    w = np.ones(x.size, dtype=np.float64)
    gmms, reasons, means = [], [], []
    for k in range(n_classes):
        idx = np.flatnonzero(labels == k)
        if idx.size == 0:
            gmms.append(None)
            reasons.append(None)
            means.append(None)
            continue
        wk, params, reason = _split_one(x[idx], tau, seed, fit_kw, *checks)
        w[idx] = wk
        gmms.append(params)
        reasons.append(reason)
        means.append(None if params is None else (float(params.means[0]), float(params.means[1])))
    return w, gmms, reasons, means


def partition_segments(
    losses,
    labels,
    n_classes,
    tau=0.5,
    per_class=False,
    seed=0,
    min_clean_frac=0.05,
    max_clean_frac=0.98,
    min_mean_gap=0.05,
    bias_tolerance=0.25,
    min_class_share=0.25,
    min_samples=10,
    max_iter=10,
    tol=1e-2,
    reg_covar=5e-4,
):
    """Splits the training segments into labeled X and unlabeled U (Eq. 3), with fallbacks.

    The losses are min-max normalised over all segments (one scale for the
    global and the per-class fits, so ``min_mean_gap`` means the same for
    both), the mixture of Eq. 3 gives w_i, and X = {i : w_i > tau}. The
    edge cases listed in the module docstring fall back to a safe partition
    with a logged warning and the reason in ``fallback``; the result never
    holds NaN. The normalised losses are returned in ``losses``.

    Order of the checks (global mode): too few samples / fewer than 2
    distinct losses / means closer than ``min_mean_gap`` -> all labeled;
    clean fraction outside [min_clean_frac, max_clean_frac] -> all labeled;
    class bias -> per-class fit; still biased -> all labeled. With
    ``per_class=True`` one mixture is fitted per inherited class from the
    start (for strong class imbalance); a class that fails the checks above
    (including having fewer than ``min_samples`` segments) is all clean;
    if the result is still biased, all labeled.

    Arguments
    ---------
    losses : array-like
        Per-segment losses (raw), shape (N,).
    labels : array-like
        Inherited class index of each segment, shape (N,), in [0, n_classes).
    n_classes : int
        K.
    tau : float
        Threshold on w (DivideMix: 0.5), in [0, 1).
    per_class : bool
        Fit one mixture per inherited class.
    seed : int
        Random state of the mixture (same seed, same losses => same split).
    min_clean_frac, max_clean_frac : float
        Bounds on |X| / N (per class in per-class mode); default 0.05, 0.98
        (these and the thresholds below: the yaml's ``partition_*`` values).
    min_mean_gap : float
        Smallest distance of the two means, normalised scale; default 0.05.
    bias_tolerance : float or None
        Largest total variation distance between the class distributions of
        X and of the labels; default 0.25; None disables this check.
    min_class_share : float or None
        Smallest share of its expected place in X a class may keep; default
        0.25; None disables this check.
    min_samples : int
        Fewest segments to fit a mixture (globally or for a class; at least 2
        are fitted) and for a class to count in the share check; default 10.
    max_iter, tol, reg_covar
        EM settings (DivideMix: 10, 1e-2, 5e-4).

    Returns
    -------
    PartitionResult

    Example
    -------
    >>> losses = np.r_[np.linspace(0.0, 0.1, 30), np.linspace(0.9, 1.0, 10)]
    >>> labels = np.tile([0, 1], 20)
    >>> r = partition_segments(losses, labels, n_classes=2)
    >>> r.n_clean, r.n_noisy, r.fallback, bool(r.clean[:30].all())
    (30, 10, None, True)
    >>> r = partition_segments(np.full(40, 0.7), labels, n_classes=2)
    >>> r.n_clean, r.fallback
    (40, 'degenerate_losses')
    """
    raw = _check_losses(losses)
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
    check_fallback_thresholds(min_clean_frac, max_clean_frac, min_mean_gap, bias_tolerance, min_class_share,
                              min_samples)

    x = normalize_losses(raw)
    n = x.size
    counts = np.bincount(labels, minlength=n_classes)
    fit_kw = {"max_iter": max_iter, "tol": tol, "reg_covar": reg_covar}
    checks = (max(int(min_samples), 2), min_mean_gap, min_clean_frac, max_clean_frac)
    bias_args = (bias_tolerance, min_class_share, max(int(min_samples), 1))
    mean_all = float(x.mean()) if n else 0.0

    def result(w, fallback, is_per_class, means, gmm=None, class_gmms=None, class_fallbacks=None):
        w = np.nan_to_num(np.asarray(w, dtype=np.float64), nan=1.0)
        clean = w > tau
        tv, _ = class_balance_shift(clean, labels, n_classes, bias_args[2]) if n else (0.0, 1.0)
        if fallback is not None:
            logger.warning(
                "partition fallback %s: %d segments, %d labeled / %d unlabeled (means %s)",
                fallback,
                n,
                int(clean.sum()),
                int(n - clean.sum()),
                means,
            )
        return PartitionResult(
            clean_prob=w,
            clean=clean,
            means=means,
            n_clean=int(clean.sum()),
            n_noisy=int(n - clean.sum()),
            fallback=fallback,
            per_class=is_per_class,
            tau=float(tau),
            gmm=gmm,
            class_gmms=class_gmms,
            class_fallbacks=class_fallbacks,
            class_counts=counts,
            class_tv=float(tv),
            losses=x,
        )

    def per_class_result(prefix):
        w, gmms, reasons, means = _split_per_class(x, labels, n_classes, tau, seed, fit_kw, checks)
        clean = w > tau
        biased, _ = _is_biased(clean, labels, n_classes, *bias_args)
        if biased:
            return result(
                np.ones(n),
                "class_bias_all_labeled",
                False,
                global_means,
                gmm=global_gmm,
                class_gmms=gmms,
                class_fallbacks=reasons,
            )
        fallback = prefix
        failed = [f"{k}={r}" for k, r in enumerate(reasons) if r is not None]
        if fallback is None and failed:
            fallback = "class_fallback:" + ",".join(failed)
        return result(w, fallback, True, means, gmm=global_gmm, class_gmms=gmms, class_fallbacks=reasons)

    global_gmm = None
    global_means = (mean_all, mean_all)
    if per_class:
        return per_class_result(None)

    w, global_gmm, reason = _split_one(x, tau, seed, fit_kw, *checks)
    if global_gmm is not None:
        global_means = (float(global_gmm.means[0]), float(global_gmm.means[1]))
    if reason is not None:
        return result(w, reason, False, global_means, gmm=global_gmm)
    biased, tv = _is_biased(w > tau, labels, n_classes, *bias_args)
    if biased:
        logger.warning(
            "partition: the clean set follows the classes (class distribution distance %.3f); "
            "refitting one mixture per class",
            tv,
        )
        return per_class_result("class_bias_per_class")
    return result(w, None, False, global_means, gmm=global_gmm)


def partition_precision_recall(clean_mask, correct_mask):
    """Precision and recall of X at finding the segments whose inherited label is right.

    ``precision = |X & correct| / |X|``, ``recall = |X & correct| / |correct|``;
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
    hits = int(np.sum(clean & correct))
    n_clean, n_correct = int(clean.sum()), int(correct.sum())
    precision = hits / n_clean if n_clean else None
    recall = hits / n_correct if n_correct else None
    return precision, recall
