"""Clean/noisy partition of the training segments (Eq. 3): losses -> normalise -> mixture -> X/U.

Each epoch after the warm-up, the per-segment losses of the current model are
normalised to [0, 1] once (:func:`sssl_brain.method.sssl.normalize_losses`),
a 2-component Gaussian mixture is fitted to them (EM, scikit-learn;
DivideMix's max_iter 10, tol 1e-2, reg_covar 5e-4), ``w_i`` is the posterior
of the component with the smaller mean, X = {i : w_i > tau} and U is the rest
(docs/method.md, "Eq. 3"). Where the split is not to be trusted, a named
fallback of :mod:`sssl_brain.method.fallbacks` (the table is there) makes the
partition all labeled or per class, with a logged warning.
"""

import functools
import logging
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from sssl_brain.method import fallbacks
from sssl_brain.method.checks import check_fallback_thresholds
from sssl_brain.method.partition_result import GMMParams, PartitionResult
from sssl_brain.method.sssl import normalize_losses

logger = logging.getLogger(__name__)


def fit_mixture(x, seed, max_iter, tol, reg_covar):
    """Eq. 3: the 2-component mixture of the normalised losses ``x`` and each one's clean posterior w_i.

    Returns ``(w, GMMParams)``: the posterior of the smaller-mean component and the fit, by ascending mean.

    Example
    -------
    >>> w, params = fit_mixture(np.array([0.0, 0.05, 0.1, 0.9, 0.95, 1.0]), 0, 10, 1e-2, 5e-4)
    >>> (w > 0.5).tolist(), [round(float(m), 2) for m in params.means]
    ([True, True, True, False, False, False], [0.05, 0.95])
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
    return post, GMMParams(weights=gmm.weights_.reshape(-1)[order].copy(), means=means[order].copy(),
                           variances=gmm.covariances_.reshape(-1)[order].copy())


def split_losses(x, tau, seed, fit, limits):
    """One mixture on ``x`` and the fallbacks that may reject it: ``(w, params or None, reason or None)``.

    On a reason, w is all ones (all labeled).
    """
    ones = np.ones(x.size, dtype=np.float64)
    reason = fallbacks.too_few_samples(x, limits) or fallbacks.degenerate_losses(x)
    if reason is not None:
        return ones, None, reason
    try:
        post, params = fit_mixture(x, seed, **fit)
    except ValueError as err:  # scikit-learn's own checks, e.g. an ill-defined covariance
        logger.warning("partition: the Gaussian mixture fit of %d losses failed: %s", x.size, err)
        return ones, None, fallbacks.Fallback("degenerate_mixture", f"gmm_fit_error ({err})")
    reason = (fallbacks.degenerate_mixture(post, params, limits)
              or fallbacks.clean_fraction_out_of_range(post, tau, limits))
    return (ones, params, reason) if reason is not None else (np.clip(post, 0.0, 1.0), params, None)


def partition_segments(losses, labels, n_classes, tau=0.5, per_class=False, seed=0, min_clean_frac=0.05,
                       max_clean_frac=0.98, min_mean_gap=0.05, bias_tolerance=0.25, min_class_share=0.25,
                       min_samples=10, max_iter=10, tol=1e-2, reg_covar=5e-4):
    """Splits the training segments into labeled X and unlabeled U (Eq. 3), with the fallbacks.

    ``losses``: raw per-segment losses (N,); ``labels``: inherited classes (N,) in [0, n_classes);
    ``seed``: the mixture's random state; ``min_clean_frac`` ... ``min_samples``: the fallback
    thresholds (the yaml's ``partition_*``; None turns the bias checks off); ``max_iter``, ``tol``,
    ``reg_covar``: EM settings. Global mode: one mixture; if X follows the classes, one per class
    (still biased: all labeled). ``per_class=True``: one mixture per class from the start.

    Returns
    -------
    PartitionResult
        Never NaN; the normalised losses in ``losses``.

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
    raw, labels = fallbacks.check_inputs(losses, labels, n_classes, tau)
    check_fallback_thresholds(min_clean_frac, max_clean_frac, min_mean_gap, bias_tolerance, min_class_share,
                              min_samples)
    limits = fallbacks.Limits(max(int(min_samples), 2), min_mean_gap, min_clean_frac, max_clean_frac,
                              bias_tolerance, min_class_share, max(int(min_samples), 1))
    x = normalize_losses(raw)
    mixture = functools.partial(split_losses, tau=tau, seed=seed, limits=limits,
                                fit={"max_iter": max_iter, "tol": tol, "reg_covar": reg_covar})
    mean_all = float(x.mean()) if x.size else 0.0
    if per_class:
        split = fallbacks.per_class_split(x, labels, n_classes, tau, mixture, limits, None, None,
                                          (mean_all, mean_all))
        return _result(split, x, labels, n_classes, tau, limits)
    w, gmm, reason = mixture(x)
    means = (mean_all, mean_all) if gmm is None else (float(gmm.means[0]), float(gmm.means[1]))
    split = fallbacks.Split(w, reason, False, means, gmm)
    biased, tv, trigger = ((False, 0.0, "") if reason is not None
                           else fallbacks.class_biased(w > tau, labels, n_classes, limits))
    if biased:
        logger.warning("partition: the clean set follows the classes (class distribution distance %.3f; %s); "
                       "refitting one mixture per class", tv, trigger)
        split = fallbacks.per_class_split(x, labels, n_classes, tau, mixture, limits,
                                          fallbacks.Fallback("class_bias_per_class", trigger), gmm, means)
    return _result(split, x, labels, n_classes, tau, limits)


def _result(split, x, labels, n_classes, tau, limits):
    """X = {w > tau}, U the rest: the PartitionResult of ``split`` (a fallback is logged)."""
    n = x.size
    w = np.nan_to_num(np.asarray(split.w, dtype=np.float64), nan=1.0)
    clean = w > tau
    tv = fallbacks.class_balance_shift(clean, labels, n_classes, limits.share_min_samples)[0] if n else 0.0
    fallback = None if split.fallback is None else str(split.fallback)
    trigger = fallbacks.trigger_of(split.fallback)
    if fallback is not None:
        logger.warning("partition fallback %s (trigger: %s): %d segments, %d labeled / %d unlabeled "
                       "(means %s)", fallback, trigger or "-", n, int(clean.sum()), int(n - clean.sum()),
                       split.means)
    return PartitionResult(
        clean_prob=w, clean=clean, means=split.means, n_clean=int(clean.sum()), n_noisy=int(n - clean.sum()),
        fallback=fallback, fallback_trigger=trigger, per_class=split.per_class, tau=float(tau), gmm=split.gmm,
        class_gmms=split.class_gmms, class_fallbacks=split.class_fallbacks,
        class_counts=np.bincount(labels, minlength=n_classes), class_tv=float(tv), losses=x)
