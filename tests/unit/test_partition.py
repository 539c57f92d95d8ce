"""Tests of the clean/noisy partition (Eq. 3), its fallbacks, and the partition plots."""

import logging

import numpy as np
import pytest

from sssl_brain.method import fallbacks
from sssl_brain.method.checks import check_fallback_thresholds
from sssl_brain.method.fallbacks import class_balance_shift
from sssl_brain.method.partition import partition_segments
from sssl_brain.method.partition_result import PartitionResult, partition_precision_recall
from sssl_brain.method.sssl import normalize_losses
from sssl_brain.utils.errors import ConfigError, DataError
from sssl_brain.utils.plots import plot_clean_precision, plot_partition_histogram

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _clusters(spec, seed=0):
    """Concatenated normal clusters: spec = [(mean, std, count), ...]."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(m, s, n) for m, s, n in spec])


def _check_no_nan(result, n):
    assert isinstance(result, PartitionResult)
    assert result.clean_prob.shape == (n,) and result.clean.shape == (n,)
    assert np.all(np.isfinite(result.clean_prob))
    assert np.all((result.clean_prob >= 0) & (result.clean_prob <= 1))
    assert result.n_clean + result.n_noisy == n
    assert result.n_clean == int(result.clean.sum())
    summary = result.summary()
    assert all(not (isinstance(v, float) and np.isnan(v)) for v in summary.values())


# ---------------------------------------------------------------- partition_segments: normal split


def test_bimodal_losses_split_correctly():
    # Raw losses (not normalised): 80 clean around 0.3, 20 noisy around 2.4.
    losses = _clusters([(0.3, 0.05, 80), (2.4, 0.1, 20)])
    labels = np.arange(100) % 2
    r = partition_segments(losses, labels, n_classes=2)
    _check_no_nan(r, 100)
    assert r.fallback is None and not r.per_class
    assert r.clean[:80].all() and not r.clean[80:].any()
    assert (r.n_clean, r.n_noisy) == (80, 20)
    assert 0.0 <= r.means[0] < 0.1 and 0.9 < r.means[1] <= 1.0
    assert r.gmm is not None and r.gmm.means[0] < r.gmm.means[1]
    assert r.gmm.weights == pytest.approx([0.8, 0.2], abs=0.01)


def test_tau_moves_the_threshold():
    # Overlapping clusters: a higher tau can only shrink X.
    losses = _clusters([(0.2, 0.1, 70), (0.6, 0.1, 30)], seed=1)
    labels = np.arange(100) % 2
    low = partition_segments(losses, labels, 2, tau=0.2)
    high = partition_segments(losses, labels, 2, tau=0.8)
    assert np.all(high.clean <= low.clean) and high.n_clean < low.n_clean


def test_same_seed_same_partition():
    losses = _clusters([(0.2, 0.1, 70), (0.6, 0.15, 30)], seed=2)
    labels = np.arange(100) % 2
    a = partition_segments(losses, labels, 2, seed=5)
    b = partition_segments(losses, labels, 2, seed=5)
    np.testing.assert_array_equal(a.clean_prob, b.clean_prob)
    assert a.means == b.means


# ---------------------------------------------------------------- fallbacks


def test_all_equal_losses_fall_back_to_all_labeled(caplog):
    with caplog.at_level(logging.WARNING, logger="sssl_brain.method.partition"):
        r = partition_segments(np.full(50, 0.42), np.arange(50) % 2, 2)
    _check_no_nan(r, 50)
    assert r.fallback == "degenerate_losses"
    assert r.clean.all() and np.all(r.clean_prob == 1.0)
    assert r.means == (0.0, 0.0)
    assert "degenerate_losses" in caplog.text


def test_too_few_samples_fall_back():
    r = partition_segments(np.array([0.1, 0.9, 0.2]), np.array([0, 1, 0]), 2)
    _check_no_nan(r, 3)
    assert r.fallback == "too_few_samples" and r.clean.all()


def test_empty_input_is_handled():
    r = partition_segments(np.array([]), np.array([], dtype=int), 2)
    assert r.n_clean == 0 and r.n_noisy == 0 and r.fallback == "too_few_samples"


def test_nearly_empty_clean_set_falls_back_to_all_labeled(caplog):
    # 2 of 100 losses at 0, the rest around 0.8: the low component holds 2 % of the segments.
    losses = np.r_[np.zeros(2), _clusters([(0.8, 0.05, 98)])]
    with caplog.at_level(logging.WARNING, logger="sssl_brain.method.partition"):
        r = partition_segments(losses, np.arange(100) % 2, 2)
    _check_no_nan(r, 100)
    assert r.fallback == "clean_too_small"
    assert r.clean.all()
    assert "clean_too_small" in caplog.text


def test_nearly_everything_clean_falls_back_to_all_labeled():
    losses = np.r_[_clusters([(0.1, 0.02, 99)]), [1.0]]
    r = partition_segments(losses, np.arange(100) % 2, 2)
    _check_no_nan(r, 100)
    assert r.fallback == "clean_too_large" and r.clean.all()


def test_close_means_are_a_degenerate_mixture():
    losses = np.r_[np.linspace(0.0, 0.15, 40), np.linspace(0.85, 1.0, 10)]
    r = partition_segments(losses, np.arange(50) % 2, 2, min_mean_gap=0.95)
    _check_no_nan(r, 50)
    assert r.fallback == "degenerate_mixture" and r.clean.all()
    assert r.gmm is not None  # the rejected fit is kept for the plot


def test_a_failing_mixture_fit_is_a_degenerate_mixture(monkeypatch, caplog):
    # scikit-learn raises a ValueError, e.g. for an ill-defined covariance: the fallback, not a crash
    from sklearn.mixture import GaussianMixture

    def fail(self, x):
        raise ValueError("Fitting the mixture model failed because some components have ill-defined "
                         "empirical covariance")

    monkeypatch.setattr(GaussianMixture, "fit", fail)
    losses = np.r_[np.linspace(0.0, 0.1, 30), np.linspace(0.9, 1.0, 10)]
    labels = np.tile([0, 1], 20)
    with caplog.at_level(logging.WARNING, logger="sssl_brain.method.partition"):
        r = partition_segments(losses, labels, 2)
    _check_no_nan(r, 40)
    assert r.fallback == "degenerate_mixture" and r.clean.all() and r.gmm is None
    assert r.summary()["fallback"] == "degenerate_mixture"
    assert "ill-defined empirical covariance" in caplog.text
    r = partition_segments(losses, labels, 2, per_class=True)  # each class's fit fails the same way
    _check_no_nan(r, 40)
    assert r.fallback == "class_fallback:0=degenerate_mixture,1=degenerate_mixture" and r.clean.all()


def test_the_losses_are_normalised_once_and_returned():
    raw = np.r_[np.linspace(2.0, 2.5, 30), np.linspace(6.0, 7.0, 10)]
    labels = np.tile([0, 1], 20)
    r = partition_segments(raw, labels, 2)
    np.testing.assert_array_equal(r.losses, normalize_losses(raw))
    assert r.losses.min() == 0.0 and r.losses.max() == 1.0
    # normalised losses are their own normalisation: the same partition, bit for bit
    again = partition_segments(r.losses, labels, 2)
    np.testing.assert_array_equal(again.losses, r.losses)
    np.testing.assert_array_equal(again.clean_prob, r.clean_prob)
    assert partition_segments(np.full(12, 3.0), labels[:12], 2).losses.tolist() == [0.0] * 12


def test_the_fallback_thresholds_change_the_partition():
    losses = np.r_[np.linspace(0.0, 0.1, 30), np.linspace(0.9, 1.0, 10)]  # X would hold 75 %
    labels = np.tile([0, 1], 20)
    assert partition_segments(losses, labels, 2).fallback is None
    assert partition_segments(losses, labels, 2, min_clean_frac=0.8, max_clean_frac=0.9).fallback == (
        "clean_too_small")
    assert partition_segments(losses, labels, 2, max_clean_frac=0.7).fallback == "clean_too_large"
    assert partition_segments(losses, labels, 2, min_samples=41).fallback == "too_few_samples"
    assert partition_segments(losses, labels, 2, min_mean_gap=0.9).fallback == "degenerate_mixture"


def test_wrong_fallback_thresholds_name_the_option():
    good = {"min_clean_frac": 0.05, "max_clean_frac": 0.98, "min_mean_gap": 0.05, "bias_tolerance": 0.25,
            "min_class_share": 0.25, "min_samples": 10}
    check_fallback_thresholds(**good)
    check_fallback_thresholds(**{**good, "bias_tolerance": None, "min_class_share": None})
    for key, value in (("min_clean_frac", -0.1), ("max_clean_frac", 0.01), ("min_mean_gap", -1),
                       ("bias_tolerance", 1.5), ("min_class_share", -0.5), ("min_samples", 0),
                       ("min_samples", True), ("min_mean_gap", float("nan")), ("bias_tolerance", "x")):
        with pytest.raises(ConfigError, match=f"partition_{key}="):
            check_fallback_thresholds(**{**good, key: value}, prefix="partition_")
        with pytest.raises(ConfigError, match=rf"(^|, ){key}="):  # partition_segments: its own argument
            partition_segments(np.linspace(0, 1, 20), np.arange(20) % 2, 2, **{**good, key: value})


def _class_biased_case():
    """Labels 50/50; class 0 losses are low and class 1 losses high, whatever the noise.

    Within each class, 80 segments are clean and 20 noisy (a little higher loss).
    """
    c0 = _clusters([(0.10, 0.02, 80), (0.30, 0.02, 20)], seed=3)
    c1 = _clusters([(0.70, 0.02, 80), (0.95, 0.02, 20)], seed=4)
    losses = np.r_[c0, c1]
    labels = np.r_[np.zeros(100, dtype=int), np.ones(100, dtype=int)]
    truth = np.tile(np.r_[np.ones(80, dtype=bool), np.zeros(20, dtype=bool)], 2)
    return losses, labels, truth


def test_class_biased_split_is_detected_and_refitted_per_class(caplog):
    losses, labels, truth = _class_biased_case()
    # The plain global mixture (bias check disabled) separates the classes: X is class 0.
    plain = partition_segments(losses, labels, 2, bias_tolerance=None, min_class_share=None)
    assert plain.fallback is None
    assert np.all(labels[plain.clean] == 0)
    tv, share = class_balance_shift(plain.clean, labels, 2)
    assert tv == pytest.approx(0.5) and share == 0.0
    # With the check: detected, per-class fit, balanced X that finds the clean segments.
    with caplog.at_level(logging.WARNING, logger="sssl_brain.method.partition"):
        r = partition_segments(losses, labels, 2)
    _check_no_nan(r, 200)
    assert r.fallback == "class_bias_per_class" and r.per_class
    assert "follows the classes" in caplog.text
    assert np.sum(r.clean & (labels == 0)) == 80 and np.sum(r.clean & (labels == 1)) == 80
    assert r.class_tv == pytest.approx(0.0)
    np.testing.assert_array_equal(r.clean, truth)
    assert len(r.means) == 2 and r.means[0][0] < r.means[0][1] and r.means[1][0] < r.means[1][1]


def test_still_biased_after_per_class_falls_back_to_all_labeled():
    c0 = _clusters([(0.10, 0.02, 80), (0.30, 0.02, 20)], seed=3)
    c1 = _clusters([(0.10, 0.02, 10), (0.90, 0.02, 90)], seed=5)  # class 1 mostly "noisy"
    labels = np.r_[np.zeros(100, dtype=int), np.ones(100, dtype=int)]
    r = partition_segments(np.r_[c0, c1], labels, 2)
    _check_no_nan(r, 200)
    assert r.fallback == "class_bias_all_labeled" and r.clean.all() and not r.per_class


def _imbalanced_case():
    """900 / 100 / 5 segments; the minority class has higher losses overall."""
    c0 = _clusters([(0.05, 0.02, 720), (0.40, 0.03, 180)], seed=6)
    c1 = _clusters([(0.55, 0.02, 80), (0.95, 0.02, 20)], seed=7)
    c2 = np.array([0.2, 0.5, 0.9, 0.1, 0.3])
    labels = np.r_[np.zeros(900, dtype=int), np.ones(100, dtype=int), np.full(5, 2)]
    return np.r_[c0, c1, c2], labels


def test_per_class_option_for_class_imbalance():
    losses, labels = _imbalanced_case()
    r = partition_segments(losses, labels, 3, per_class=True)
    _check_no_nan(r, 1005)
    assert r.per_class
    # Class 2 has fewer than min_samples segments: all clean, recorded.
    assert r.fallback == "class_fallback:2=too_few_samples"
    assert r.class_fallbacks == [None, None, "too_few_samples"] and r.means[2] is None
    assert r.clean[labels == 2].all()
    # Each fitted class keeps its own clean 80 %.
    assert np.sum(r.clean & (labels == 0)) == 720 and np.sum(r.clean & (labels == 1)) == 80
    tv, share = class_balance_shift(r.clean, labels, 3)
    assert tv < 0.01 and share > 0.95


def test_imbalance_global_fit_starves_the_minority_and_falls_back():
    losses, labels = _imbalanced_case()
    r = partition_segments(losses, labels, 3)
    _check_no_nan(r, 1005)
    assert r.fallback == "class_bias_per_class" and r.per_class
    assert np.sum(r.clean & (labels == 1)) == 80


def _limits(**kw):
    """The yaml's fallback thresholds (= partition_segments' defaults) as Limits."""
    values = {"min_samples": 10, "min_mean_gap": 0.05, "min_clean_frac": 0.05, "max_clean_frac": 0.98,
              "bias_tolerance": 0.25, "min_class_share": 0.25, "share_min_samples": 10, **kw}
    return fallbacks.Limits(**values)


def _ten_class_noise_case(hard_kept=12):
    """10 classes x 100 segments, symmetric noise 40 %: 60 clean (low loss) and 40 noisy (high) per class.

    Class 8 is hard: only ``hard_kept`` of its 60 clean segments have a low loss, the rest look noisy.
    """
    losses, truth = [], []
    for k in range(10):
        n_low = hard_kept if k == 8 else 60
        losses.append(_clusters([(0.10, 0.03, n_low), (0.80, 0.05, 100 - n_low)], seed=20 + k))
        truth.append(np.r_[np.ones(60, dtype=bool), np.zeros(40, dtype=bool)])
    return np.concatenate(losses), np.repeat(np.arange(10), 100), np.concatenate(truth)


def test_healthy_ten_class_split_with_one_hard_class_is_not_class_bias():
    losses, labels, truth = _ten_class_noise_case()
    r = partition_segments(losses, labels, 10)
    assert r.fallback is None and r.fallback_trigger == "" and not r.per_class
    tv, share = class_balance_shift(r.clean, labels, 10)
    # the hard class keeps ~22 % of its place: under the yaml's binary threshold (0.25, the check before
    # it scaled with K), above the 10-class one (0.25 * 2 / 10 = 0.05); X is far from one class
    assert 0.15 < share < 0.25 and tv < 0.1
    assert fallbacks.share_threshold(0.25, 10) == pytest.approx(0.05)
    assert np.sum(r.clean & (labels == 8)) == 12 and np.sum(r.clean & (labels == 0)) == 60


def test_ten_class_collapse_onto_two_classes_is_class_bias():
    labels = np.repeat(np.arange(10), 100)
    clean = (labels <= 1) | ((labels == 2) & (np.arange(1000) % 100 < 5))  # X: classes 0 and 1, 5 of 2
    biased, tv, trigger = fallbacks.class_biased(clean, labels, 10, _limits())
    assert biased and tv > 0.7
    assert trigger.startswith(f"class_tv={tv:.3f}>0.25; min_class_share=0.000<0.05 (class 3)")
    # through partition_segments: classes 0 and 1 have low losses whatever the noise
    losses = np.where(labels <= 1, 0.1, 0.8) + np.random.default_rng(0).normal(0, 0.02, 1000)
    r = partition_segments(losses, labels, 10)
    assert r.fallback == "class_bias_per_class"
    assert r.fallback_trigger.startswith("class_tv=0.800>0.25; min_class_share=0.000<0.05 (class ")


def test_ten_class_split_that_starves_one_class_is_class_bias():
    losses, labels, _ = _ten_class_noise_case(hard_kept=0)  # class 8: nothing in X
    biased, tv, trigger = fallbacks.class_biased(losses < 0.5, labels, 10, _limits())
    assert biased and tv < 0.25 and trigger == "min_class_share=0.000<0.05 (class 8)"


def test_binary_share_threshold_is_the_yaml_value():
    assert fallbacks.share_threshold(0.25, 2) == 0.25 and fallbacks.share_threshold(0.3, 1) == 0.3
    labels = np.repeat([0, 1], 100)
    clean = (labels == 0) | (np.arange(200) < 120)  # class 1 keeps 20 of 100: share 0.2 / 0.6 = 0.33
    assert not fallbacks.class_biased(clean, labels, 2, _limits(bias_tolerance=None))[0]
    clean = (labels == 0) | (np.arange(200) < 110)  # 10 of 100: 0.1 / 0.55 = 0.18 < 0.25
    assert fallbacks.class_biased(clean, labels, 2, _limits(bias_tolerance=None)) == (
        True, pytest.approx(0.4090909), "min_class_share=0.182<0.25 (class 1)")


def test_every_fallback_records_its_trigger(caplog):
    labels = np.arange(100) % 2
    with caplog.at_level(logging.WARNING, logger="sssl_brain.method.partition"):
        r = partition_segments(np.r_[np.zeros(2), _clusters([(0.8, 0.05, 98)])], labels, 2)
    assert r.fallback == "clean_too_small" and r.fallback_trigger == "clean_frac=0.020<0.05"
    assert "trigger: clean_frac=0.020<0.05" in caplog.text
    assert r.summary()["fallback_trigger"] == "clean_frac=0.020<0.05"
    assert type(r.fallback) is str  # the plain name, as before
    r = partition_segments(np.full(30, 0.5), np.arange(30) % 2, 2)
    assert (r.fallback, r.fallback_trigger) == ("degenerate_losses", "distinct_losses=1<2")
    r = partition_segments(np.array([0.1, 0.2]), np.array([0, 1]), 2)
    assert (r.fallback, r.fallback_trigger) == ("too_few_samples", "n_samples=2<10")
    losses = _clusters([(0.3, 0.05, 60), (0.7, 0.05, 40)])
    r = partition_segments(losses, labels, 2, max_clean_frac=0.5)
    assert (r.fallback, r.fallback_trigger) == ("clean_too_large", "clean_frac=0.600>0.5")
    r = partition_segments(losses, labels, 2, min_mean_gap=0.9)
    assert r.fallback == "degenerate_mixture" and r.fallback_trigger.startswith("mean_gap=0.")
    assert r.fallback_trigger.endswith("<0.9")
    # per class: the class that could not be fitted, with its reason's trigger
    imb_losses, imb_labels = _imbalanced_case()
    r = partition_segments(imb_losses, imb_labels, 3, per_class=True)
    assert r.fallback == "class_fallback:2=too_few_samples"
    assert r.fallback_trigger == "class 2: n_samples=5<10"
    # the class-bias fallbacks: the global check's trigger, then the per-class split's
    r = partition_segments(imb_losses, imb_labels, 3)
    assert r.fallback == "class_bias_per_class"
    assert r.fallback_trigger.startswith("min_class_share=0.000<0.167 (class 1); class 2: n_samples=5<10")
    c0 = _clusters([(0.10, 0.02, 80), (0.30, 0.02, 20)], seed=3)
    c1 = _clusters([(0.10, 0.02, 10), (0.90, 0.02, 90)], seed=5)
    r = partition_segments(np.r_[c0, c1], np.repeat([0, 1], 100), 2)
    assert r.fallback == "class_bias_all_labeled"
    assert "; per-class split: " in r.fallback_trigger and "(class 1)" in r.fallback_trigger
    assert partition_segments(np.r_[np.zeros(30), np.ones(10)], np.tile([0, 1], 20), 2).fallback_trigger == ""


# ---------------------------------------------------------------- bad input


def test_bad_inputs_raise_typed_errors():
    losses = np.linspace(0, 1, 20)
    labels = np.arange(20) % 2
    with pytest.raises(DataError, match="labels"):
        partition_segments(losses, labels[:10], 2)
    with pytest.raises(DataError, match=r"\[0, 2\)"):
        partition_segments(losses, labels + 1, 2)
    with pytest.raises(DataError, match="integers"):
        partition_segments(losses, labels.astype(float), 2)
    with pytest.raises(DataError, match="NaN"):
        partition_segments(np.r_[losses[:-1], np.inf], labels, 2)
    with pytest.raises(DataError, match="1-D"):
        partition_segments(losses.reshape(10, 2), labels, 2)
    with pytest.raises(ConfigError, match="tau"):
        partition_segments(losses, labels, 2, tau=1.0)
    with pytest.raises(ConfigError, match="min_clean_frac"):
        partition_segments(losses, labels, 2, min_clean_frac=0.9, max_clean_frac=0.5)
    with pytest.raises(ConfigError, match="n_classes"):
        partition_segments(losses, labels, 0)


# ---------------------------------------------------------------- diagnostics


def test_class_balance_shift_hand_values():
    labels = np.array([0, 0, 1, 1])
    # X = {0, 1, 2}: P(k|X) = (2/3, 1/3) vs (1/2, 1/2): tv = 1/6; class 1 keeps 1/2 vs overall 3/4.
    tv, share = class_balance_shift(np.array([True, True, True, False]), labels, 2, min_samples=1)
    assert tv == pytest.approx(1 / 6) and share == pytest.approx(2 / 3)
    assert class_balance_shift(np.zeros(4, dtype=bool), labels, 2) == (1.0, 0.0)
    # Classes under min_samples are left out of the share check.
    assert class_balance_shift(np.array([True, True, False, False]), labels, 2, min_samples=3)[1] == 1.0


def test_precision_recall_hand_values():
    clean = [True, True, True, False, False]
    correct = [True, True, False, True, False]
    assert partition_precision_recall(clean, correct) == pytest.approx((2 / 3, 2 / 3))
    assert partition_precision_recall([True, False, False, False], [True, True, True, False]) == (1.0, 1 / 3)


def test_precision_recall_undefined_is_none():
    assert partition_precision_recall([False, False], [True, False]) == (None, 0.0)
    assert partition_precision_recall([True, False], [False, False]) == (0.0, None)
    assert partition_precision_recall([], []) == (None, None)
    with pytest.raises(DataError, match="shape"):
        partition_precision_recall([True], [True, False])


# ---------------------------------------------------------------- plots


def _assert_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]


def _fallback_cases():
    losses, labels, _ = _class_biased_case()
    imb_losses, imb_labels = _imbalanced_case()
    return {
        "normal": (_clusters([(0.3, 0.05, 80), (2.4, 0.1, 20)]), np.arange(100) % 2, 2, {}),
        "all_equal": (np.full(30, 0.5), np.arange(30) % 2, 2, {}),
        "too_few": (np.array([0.1, 0.2]), np.array([0, 1]), 2, {}),
        "clean_too_small": (np.r_[np.zeros(2), _clusters([(0.8, 0.05, 98)])], np.arange(100) % 2, 2, {}),
        "class_bias": (losses, labels, 2, {}),
        "per_class": (imb_losses, imb_labels, 3, {"per_class": True}),
    }


@pytest.mark.parametrize("case", list(_fallback_cases()))
def test_partition_histogram_is_a_png_for_every_case(tmp_path, case):
    losses, labels, n_classes, kw = _fallback_cases()[case]
    result = partition_segments(losses, labels, n_classes, **kw)
    path = tmp_path / "plots" / f"partition_{case}.png"
    plot_partition_histogram(losses, result, str(path), epoch=4, title=case)
    _assert_png(path)


def test_partition_histogram_rejects_mismatched_result(tmp_path):
    result = partition_segments(np.linspace(0, 1, 20), np.arange(20) % 2, 2)
    with pytest.raises(DataError, match="partition of 20"):
        plot_partition_histogram(np.linspace(0, 1, 10), result, str(tmp_path / "x.png"), epoch=1)
    assert not (tmp_path / "x.png").exists()


def test_clean_precision_plot(tmp_path):
    path = tmp_path / "precision.png"
    plot_clean_precision([1, 2, 3, 4], [0.7, None, 0.8, 0.85], [0.6, 0.65, None, 0.7], str(path))
    _assert_png(path)
    empty = tmp_path / "none.png"
    plot_clean_precision([1, 2], [None, None], [None, None], str(empty))
    _assert_png(empty)
    with pytest.raises(DataError, match="epochs"):
        plot_clean_precision([1, 2], [0.5], [0.5, 0.6], str(tmp_path / "bad.png"))
