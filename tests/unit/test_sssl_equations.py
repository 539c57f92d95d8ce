"""Unit tests of the SSSL stage-1 equations (sssl_brain.method.sssl) against hand-computed values."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sssl_brain.method.sssl import (
    class_prior_penalty,
    co_guess,
    mix_pairs,
    mixup_weights,
    normalize_losses,
    refine_labels,
    replace_unlabeled_targets,
    sharpen,
    soft_cross_entropy,
    sssl_loss,
    symmetric_kl,
)
from sssl_brain.utils.errors import ConfigError, DataError

# ---------------------------------------------------------------- normalize_losses


def test_normalize_numpy_hand_values():
    out = normalize_losses(np.array([2.0, 4.0, 6.0, 3.0]))
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, [0.0, 0.5, 1.0, 0.25])


def test_normalize_torch_keeps_type_and_dtype():
    x = torch.tensor([[1.0, 3.0], [5.0, 2.0]], dtype=torch.float32)
    out = normalize_losses(x)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (2, 2)
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.5], [1.0, 0.25]]))


def test_normalize_integer_input_is_made_float():
    out = normalize_losses(np.array([1, 3]))
    assert out.dtype.kind == "f"
    np.testing.assert_allclose(out, [0.0, 1.0])


@pytest.mark.parametrize("values", [[0.7, 0.7, 0.7], [5.0]])
def test_normalize_all_equal_gives_zeros_not_nan(values):
    out_np = normalize_losses(np.array(values))
    out_t = normalize_losses(torch.tensor(values))
    np.testing.assert_array_equal(out_np, np.zeros(len(values)))
    assert torch.equal(out_t, torch.zeros(len(values)))


def test_normalize_empty():
    assert normalize_losses(np.array([])).size == 0
    assert normalize_losses(torch.tensor([])).numel() == 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_normalize_non_finite_is_a_data_error(bad):
    with pytest.raises(DataError, match="NaN or infinite"):
        normalize_losses(np.array([0.1, bad]))
    with pytest.raises(DataError, match="NaN or infinite"):
        normalize_losses(torch.tensor([0.1, bad]))


# ---------------------------------------------------------------- sharpen (Eq. 4-5)


def test_sharpen_hand_values():
    # T = 0.5 squares the probabilities: 0.2^2 = 0.04, 0.8^2 = 0.64, sum 0.68.
    out = sharpen(torch.tensor([[0.2, 0.8], [0.1, 0.9]]), 0.5)
    expected = torch.tensor([[0.04 / 0.68, 0.64 / 0.68], [0.01 / 0.82, 0.81 / 0.82]])
    torch.testing.assert_close(out, expected)


def test_sharpen_three_classes_hand_values():
    # 0.1^2, 0.3^2, 0.6^2 = 0.01, 0.09, 0.36, sum 0.46.
    out = sharpen(torch.tensor([[0.1, 0.3, 0.6]]), 0.5)
    torch.testing.assert_close(out, torch.tensor([[0.01 / 0.46, 0.09 / 0.46, 0.36 / 0.46]]))


def test_sharpen_temperature_one_is_identity_and_two_flattens():
    p = torch.tensor([[0.25, 0.75]])
    torch.testing.assert_close(sharpen(p, 1.0), p)
    # T = 2: sqrt(0.25) = 0.5, sqrt(0.75) = 0.8660; sum 1.3660.
    s = math.sqrt(0.75)
    torch.testing.assert_close(sharpen(p, 2.0), torch.tensor([[0.5 / (0.5 + s), s / (0.5 + s)]]))


def test_sharpen_is_numerically_safe():
    p = torch.tensor([[1e-30, 1.0 - 1e-30], [0.0, 1.0], [0.5, 0.5], [0.4999, 0.5001]])
    out = sharpen(p, 0.01)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.sum(1), torch.ones(4))
    torch.testing.assert_close(out[:3], torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.5, 0.5]]))
    # 0.5001/0.4999 raised to 100 = 1.0408...: still a proper distribution, sharper than the input.
    assert out[3, 1] > 0.5001


def test_sharpen_bad_temperature():
    with pytest.raises(ConfigError, match="temperature"):
        sharpen(torch.tensor([[0.5, 0.5]]), 0.0)


# ---------------------------------------------------------------- mixup (Eq. 6-7)


def _batch():
    x = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    t = torch.eye(4)[:, :3].clone()
    t[3] = torch.tensor([0.2, 0.3, 0.5])  # a pseudo-label
    return x, t


def _mixup(x, t, alpha, generator=None):
    """Eq. 6-7 as ``SSSLBrain.sssl_objective`` does them: one draw, the same mix of inputs and targets."""
    delta, perm = mixup_weights(x.shape[0], alpha, generator)
    return mix_pairs(x, delta, perm), mix_pairs(t, delta, perm), delta, perm


def test_mixup_hand_check_of_one_pair():
    x, t = _batch()
    mx, mt, delta, perm = _mixup(x, t, alpha=4.0, generator=torch.Generator().manual_seed(3))
    assert 0.5 <= delta <= 1.0
    assert sorted(perm.tolist()) == [0, 1, 2, 3]
    # Row 0 of x is 0 so mixed row 0 is (1 - delta) * x[perm[0]].
    j = int(perm[0])
    torch.testing.assert_close(mx[0], (1.0 - delta) * x[j])
    # Mixed targets remain distributions.
    torch.testing.assert_close(mt.sum(1), torch.ones(4))
    # Row 1: 10*delta + (1-delta)*x[perm[1]] on the first coordinate.
    k = int(perm[1])
    assert float(mx[1, 0]) == pytest.approx(10.0 * delta + (1.0 - delta) * float(x[k, 0]), abs=1e-5)


def test_mixup_same_seed_same_mix_different_seeds_vary():
    x, t = _batch()
    a = _mixup(x, t, alpha=4.0, generator=torch.Generator().manual_seed(7))
    b = _mixup(x, t, alpha=4.0, generator=torch.Generator().manual_seed(7))
    assert a[2] == b[2] and torch.equal(a[3], b[3]) and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    deltas = {_mixup(x, t, alpha=4.0, generator=torch.Generator().manual_seed(s))[2] for s in range(20)}
    assert len(deltas) > 10
    assert all(0.5 <= d <= 1.0 for d in deltas)


def test_mixup_global_seed_is_deterministic_without_generator():
    x, t = _batch()
    torch.manual_seed(11)
    a = _mixup(x, t, alpha=4.0)
    torch.manual_seed(11)
    b = _mixup(x, t, alpha=4.0)
    assert a[2] == b[2] and torch.equal(a[3], b[3])


def test_mixup_small_alpha_keeps_delta_near_one():
    # Beta(0.05, 0.05) puts almost all mass near 0 and 1, so max(delta, 1-delta) is near 1.
    x, t = _batch()
    deltas = [_mixup(x, t, alpha=0.05, generator=torch.Generator().manual_seed(s))[2] for s in range(30)]
    assert np.median(deltas) > 0.95


@pytest.mark.parametrize("alpha", [0.0, -1.0])
def test_mixup_alpha_zero_means_no_mixing(alpha):
    x, t = _batch()
    mx, mt, delta, perm = _mixup(x, t, alpha=alpha)
    assert delta == 1.0 and perm.tolist() == [0, 1, 2, 3]
    assert torch.equal(mx, x) and torch.equal(mt, t)


def test_mix_pairs_hand_values_and_no_mixing():
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    out = mix_pairs(t, 0.75, torch.tensor([2, 0, 1]))
    torch.testing.assert_close(out, torch.tensor([[0.875, 0.125], [0.25, 0.75], [0.375, 0.625]]))
    x = torch.tensor([[1.0], [float("inf")]])
    same = mix_pairs(x, 1.0, torch.tensor([1, 0]))  # delta = 1: the samples as they are, a copy
    assert torch.equal(same, x) and same is not x
    with pytest.raises(DataError, match="permutation"):
        mix_pairs(t, 0.75, torch.tensor([0, 1]))


def test_mixup_weights_without_alpha_draw_nothing():
    g = torch.Generator().manual_seed(9)
    state = g.get_state()
    delta, perm = mixup_weights(3, 0.0, g)
    assert delta == 1.0 and perm.tolist() == [0, 1, 2] and mixup_weights(3, None)[0] == 1.0
    assert torch.equal(g.get_state(), state)
    assert mixup_weights(0, 4.0, g)[1].numel() == 0


# ---------------------------------------------------------------- L_MIX


def test_soft_cross_entropy_hand_values():
    # softmax([0, ln 3]) = [0.25, 0.75].
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])
    targets = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    sample0 = math.log(4.0)  # -ln 0.25
    sample1 = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert float(soft_cross_entropy(logits, targets)) == pytest.approx((sample0 + sample1) / 2, abs=1e-6)


def test_soft_cross_entropy_equals_hard_ce_on_one_hot():
    logits = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]])
    labels = torch.tensor([2, 0])
    torch.testing.assert_close(
        soft_cross_entropy(logits, F.one_hot(labels, 3).float()), F.cross_entropy(logits, labels)
    )


def test_soft_cross_entropy_empty_and_shape_error():
    logits = torch.zeros(0, 3, requires_grad=True)
    loss = soft_cross_entropy(logits, torch.zeros(0, 3))
    loss.backward()
    assert loss.item() == 0.0
    with pytest.raises(DataError, match="shape"):
        soft_cross_entropy(torch.zeros(2, 3), torch.zeros(2, 2))


# ---------------------------------------------------------------- L_KL (Eq. 8)


def test_symmetric_kl_hand_values():
    za = torch.log(torch.tensor([[0.5, 0.5]]))
    zb = torch.log(torch.tensor([[0.25, 0.75]]))
    kl_ab = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # 0.143841
    kl_ba = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)  # 0.130812
    expected = 0.5 * (kl_ab + kl_ba)  # 0.137327
    assert float(symmetric_kl(za, zb)) == pytest.approx(expected, abs=1e-6)
    assert float(symmetric_kl(zb, za)) == pytest.approx(expected, abs=1e-6)
    # Averaged over samples: a second, identical-pass sample halves it.
    both_a = torch.cat([za, za])
    both_b = torch.cat([zb, za])
    assert float(symmetric_kl(both_a, both_b)) == pytest.approx(expected / 2, abs=1e-6)


def test_symmetric_kl_is_zero_for_equal_passes_and_shift_invariant():
    z = torch.tensor([[1.0, 2.0, -1.0]])
    assert float(symmetric_kl(z, z)) == pytest.approx(0.0, abs=1e-7)
    assert float(symmetric_kl(z, z + 5.0)) == pytest.approx(0.0, abs=1e-6)


def test_symmetric_kl_gradients_reach_both_passes():
    za = torch.tensor([[0.3, -0.2]], requires_grad=True)
    zb = torch.tensor([[-0.5, 0.4]], requires_grad=True)
    symmetric_kl(za, zb).backward()
    assert za.grad.abs().sum() > 0 and zb.grad.abs().sum() > 0


def test_symmetric_kl_empty_batch_is_grad_safe_zero():
    za = torch.zeros(0, 4, requires_grad=True)
    zb = torch.zeros(0, 4, requires_grad=True)
    loss = symmetric_kl(za, zb)
    loss.backward()
    assert loss.item() == 0.0 and za.grad is not None and zb.grad is not None
    with pytest.raises(DataError, match="shape"):
        symmetric_kl(torch.zeros(2, 3), torch.zeros(3, 3))


# ---------------------------------------------------------------- Eq. 9


def test_sssl_loss_hand_values():
    assert float(sssl_loss(torch.tensor(1.5), torch.tensor(2.0), 0.25)) == pytest.approx(2.0)
    assert float(sssl_loss(torch.tensor(1.5), torch.tensor(2.0), 0.0)) == pytest.approx(1.5)  # Proposed*
    with pytest.raises(ConfigError, match="lambda"):
        sssl_loss(1.0, 1.0, -0.1)


# ---------------------------------------------------------------- guards against confirmation bias


def test_class_prior_penalty_hand_values():
    # mean prediction (0.6, 0.3, 0.1) against the prior (0.5, 0.25, 0.25)
    probs = torch.tensor([[0.8, 0.1, 0.1], [0.4, 0.5, 0.1]])
    prior = torch.tensor([0.5, 0.25, 0.25])
    expected = 0.5 * math.log(0.5 / 0.6) + 0.25 * math.log(0.25 / 0.3) + 0.25 * math.log(0.25 / 0.1)
    out = class_prior_penalty(torch.log(probs), prior)
    assert out.item() == pytest.approx(expected, rel=1e-5)


def test_class_prior_penalty_is_zero_at_the_prior_and_large_when_collapsed():
    prior = torch.tensor([0.25, 0.75])
    balanced = torch.log(torch.tensor([[0.5, 0.5], [0.0001, 0.9999]]))  # mean (0.25, 0.75)
    assert class_prior_penalty(balanced, prior).item() == pytest.approx(0.0, abs=1e-4)
    collapsed = torch.tensor([[10.0, -10.0]] * 4)  # every prediction is class 0
    assert class_prior_penalty(collapsed, prior).item() > 5.0


def test_class_prior_penalty_gradient_pushes_towards_the_prior():
    logits = torch.tensor([[3.0, 0.0], [2.0, 0.0]], requires_grad=True)  # leans to class 0
    class_prior_penalty(logits, torch.tensor([0.5, 0.5])).backward()
    assert (logits.grad[:, 0] > 0).all() and (logits.grad[:, 1] < 0).all()  # descent lowers class 0


def test_class_prior_penalty_empty_and_shape_error():
    z = torch.zeros(0, 2, requires_grad=True)
    out = class_prior_penalty(z, torch.tensor([0.5, 0.5]))
    out.backward()
    assert out.item() == 0.0
    with pytest.raises(DataError, match="prior"):
        class_prior_penalty(torch.zeros(2, 3), torch.tensor([0.5, 0.5]))


def test_refine_labels_hand_values_and_limits():
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    p = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]])
    out = refine_labels(y, p, torch.tensor([0.5, 1.0]))
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.15, 0.25], [0.0, 1.0, 0.0]]))
    torch.testing.assert_close(refine_labels(y, p, torch.zeros(2)), p)  # w = 0: the prediction
    torch.testing.assert_close(out.sum(1), torch.ones(2))
    with pytest.raises(DataError):
        refine_labels(y, p, torch.zeros(3))


def test_co_guess_is_the_mean_of_the_two_guesses():
    a, b = torch.tensor([[0.9, 0.1]]), torch.tensor([[0.3, 0.7]])
    torch.testing.assert_close(co_guess(a, b), torch.tensor([[0.6, 0.4]]))
    with pytest.raises(DataError):
        co_guess(a, torch.zeros(2, 2))


def test_sssl_loss_with_the_prior_term():
    assert float(sssl_loss(torch.tensor(1.0), torch.tensor(0.5), 1.0, torch.tensor(0.2), 0.0)) == 1.5
    loss = sssl_loss(torch.tensor(1.0), torch.tensor(0.5), 1.0, torch.tensor(0.2), 2.0)
    assert float(loss) == pytest.approx(1.9)
    with pytest.raises(ConfigError, match="prior"):
        sssl_loss(1.0, 0.0, 1.0, 0.1, -1.0)


# ---------------------------------------------------------------- Eq. 4


def test_replace_unlabeled_targets_erases_the_labels_of_u_only():
    y = torch.eye(3)
    unlabeled = torch.tensor([True, False, True])
    pseudo = torch.tensor([[0.2, 0.3, 0.5], [0.0, 0.0, 1.0]], dtype=torch.float64)
    out = replace_unlabeled_targets(y, unlabeled, pseudo)
    expected = torch.tensor([[0.2, 0.3, 0.5], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(out, expected)
    assert out.dtype == torch.float32
    assert torch.equal(y, torch.eye(3))  # the input is left as it was
    assert torch.equal(replace_unlabeled_targets(y, torch.zeros(3, dtype=torch.bool), pseudo[:0]), y)
    with pytest.raises(DataError, match="do not match"):
        replace_unlabeled_targets(y, unlabeled, pseudo[:1])
