"""Building blocks of SSSL stage 1: the paper's Eq. 3-9 except the mixture fit.

Every function is pure (no module state) and does one equation of the paper
"Semi-Supervised Self-Learning Enhanced Music Emotion Recognition" (see
docs/method.md, "Stage 1: SSSLBrain"):

- :func:`normalize_losses`: per-sample losses scaled to [0, 1] before the
  Gaussian mixture of Eq. 3 (the fit itself is in :mod:`sssl_brain.method.partition`);
- :func:`replace_unlabeled_targets`: the labels of U are erased and replaced
  by pseudo-labels (Eq. 4);
- :func:`sharpen`: the pseudo-labels, sharpened predictions (Eq. 5);
- :func:`mixup_weights`: delta ~ Beta(alpha, alpha), max(delta, 1 - delta),
  and the permutation that pairs the samples (Eq. 6-7);
- :func:`mix_pairs`: one mixup combination, for the inputs (Eq. 6) and the
  targets (Eq. 7) alike (``SSSLBrain.sssl_objective`` mixes the inputs, then
  the targets once U has its pseudo-labels);
- :func:`soft_cross_entropy`: L_MIX, the loss on the mixed batch;
- :func:`symmetric_kl`: L_KL, the R-Drop consistency loss (Eq. 8);
- :func:`sssl_loss`: the total loss (Eq. 9).

L_MIX split as DivideMix does, where the paper is silent (``unlabeled_loss``
in the yaml; ``joint`` is the paper's one mean over the batch):

- :func:`divided_mix_loss`: ``L_X + lambda_u * L_U``, each a mean over its own
  mixed samples; :func:`unlabeled_squared_error`: DivideMix's bounded L_U;
  :func:`unlabeled_rampup`: its linear ramp of lambda_u after the warm-up.

Guards against confirmation bias where the paper is silent (each off when its
yaml weight is 0, which gives the paper's recipe back):

- :func:`refine_labels`: DivideMix's label refinement of X, ``w y + (1 - w) p``;
- :func:`class_prior_penalty`: the class-balance regulariser of Tanaka et al.
  (2018, the paper's ref. [10]) that DivideMix adds to its loss;
- :func:`co_guess`: pseudo-label guess averaged over two predictions (DivideMix
  averages two networks; we average the current step with the epoch-start model).

Defaults of the hyperparameters (tau, T, alpha, lambda) live in the yaml; the
paper does not give them and we start from DivideMix's published values.
"""

import numpy as np
import torch
import torch.nn.functional as F

from sssl_brain.utils.errors import ConfigError, DataError


def normalize_losses(losses):
    """Min-max normalisation of per-sample losses to [0, 1] (input of Eq. 3).

    The Gaussian mixture of Eq. 3 is fitted to losses on a fixed scale, as in
    DivideMix: ``(l - min) / (max - min)``. If all losses are equal (or there
    are none), the result is all zeros, never NaN.

    Arguments
    ---------
    losses : numpy.ndarray or torch.Tensor
        Per-sample losses, any shape; all values must be finite.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Same type, shape and device as the input (floating point).

    Raises
    ------
    DataError
        If a loss is NaN or infinite.

    Example
    -------
    >>> normalize_losses(np.array([1.0, 2.0, 3.0]))
    array([0. , 0.5, 1. ])
    >>> normalize_losses(torch.tensor([2.0, 2.0]))
    tensor([0., 0.])
    """
    if isinstance(losses, torch.Tensor):
        x = losses.detach()
        if not torch.is_floating_point(x):
            x = x.double()
        if x.numel() == 0:
            return x.clone()
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise DataError(f"normalize_losses: {bad} of {x.numel()} per-sample losses are NaN or infinite")
        lo, hi = x.min(), x.max()
        span = hi - lo
        if float(span) <= 0.0:
            return torch.zeros_like(x)
        return ((x - lo) / span).clamp_(0.0, 1.0)
    x = np.asarray(losses)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    if x.size == 0:
        return x.copy()
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x)))
        raise DataError(f"normalize_losses: {bad} of {x.size} per-sample losses are NaN or infinite")
    # not sklearn minmax_scale: its x * (1/span) - lo/span is not bit-identical to (x - lo) / span
    lo, hi = x.min(), x.max()
    span = hi - lo
    if not span > 0:
        return np.zeros_like(x)
    return np.clip((x - lo) / span, 0.0, 1.0)


def replace_unlabeled_targets(targets, unlabeled, pseudo_labels):
    """The labels of the unlabeled set U are erased and replaced by pseudo-labels (Eq. 4).

    Rows of ``targets`` where ``unlabeled`` is True get the pseudo-labels (in
    SSSL the model's sharpened predictions, :func:`sharpen`), in order; the
    other rows (the labeled set X) keep theirs. ``targets`` is not changed.

    Arguments
    ---------
    targets : torch.Tensor
        Targets of the batch (one-hot inherited labels, or refined), shape (B, K).
    unlabeled : torch.Tensor
        Boolean mask of the U samples of the batch, shape (B,).
    pseudo_labels : torch.Tensor
        One distribution per U sample, shape (n_U, K).

    Returns
    -------
    torch.Tensor
        A new tensor, shape (B, K), dtype of ``targets``.

    Example
    -------
    >>> y = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> replace_unlabeled_targets(y, torch.tensor([False, True, False]), torch.tensor([[0.1, 0.9]]))
    tensor([[1.0000, 0.0000],
            [0.1000, 0.9000],
            [0.0000, 1.0000]])
    """
    n_u = int(unlabeled.sum())
    if unlabeled.shape != targets.shape[:1] or pseudo_labels.shape != (n_u, *targets.shape[1:]):
        raise DataError(
            f"replace_unlabeled_targets: targets {tuple(targets.shape)}, mask {tuple(unlabeled.shape)} "
            f"with {n_u} U samples and pseudo-labels {tuple(pseudo_labels.shape)} do not match"
        )
    out = targets.clone()
    out[unlabeled] = pseudo_labels.to(out.dtype)
    return out


def sharpen(probs, temperature):
    """Temperature sharpening of predicted distributions: pseudo-labels of U (Eq. 5).

    ``q_k = p_k^(1/T) / sum_j p_j^(1/T)`` row-wise. Computed in the log domain
    (``softmax(log(p) / T)``) so that small temperatures neither underflow to
    0/0 nor overflow; a probability of exactly 0 stays 0.

    Arguments
    ---------
    probs : torch.Tensor
        Probabilities, shape (N, K) (or (K,)), rows summing to 1.
    temperature : float
        T > 0; T < 1 sharpens, T = 1 is the identity, T > 1 flattens.

    Returns
    -------
    torch.Tensor
        Sharpened distributions, same shape; rows sum to 1.

    Example
    -------
    >>> sharpen(torch.tensor([[0.25, 0.75]]), 0.5)
    tensor([[0.1000, 0.9000]])
    >>> sharpen(torch.tensor([[0.0, 1.0]]), 0.1)
    tensor([[0., 1.]])
    """
    if not temperature > 0:
        raise ConfigError(f"temperature={temperature!r}: the sharpening temperature T must be > 0")
    if not torch.is_floating_point(probs):
        probs = probs.float()
    tiny = torch.finfo(probs.dtype).tiny
    logp = torch.log(probs.clamp_min(tiny))
    out = torch.softmax(logp / temperature, dim=-1)
    # Exact zeros stay zeros (clamping gave them a tiny but non-zero weight).
    return torch.where(probs > 0, out, torch.zeros_like(out))


def _draw_beta(alpha, generator):
    """One Beta(alpha, alpha) draw, deterministic given the torch generator."""
    device = generator.device if generator is not None else torch.device("cpu")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=device).item())
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mixup_weights(batch_size, alpha, generator=None, device=None):
    """The random part of mixup (Eq. 6-7): the mixing weight and the pairing of the samples.

    ``delta ~ Beta(alpha, alpha)``, ``delta = max(delta, 1 - delta)`` (so the
    mixed sample stays closer to the original, as in DivideMix), and a
    random permutation ``perm`` of the batch: sample i is mixed with sample
    ``perm[i]`` (:func:`mix_pairs`).

    The Beta draw, then the permutation, both come from ``generator`` (or
    from torch's global generator when None), so a fixed seed gives the same
    mix. ``alpha <= 0`` (or None) disables mixing: delta = 1, perm = identity,
    and nothing is drawn from the generator.

    Arguments
    ---------
    batch_size : int
        B.
    alpha : float
        Beta distribution parameter (DivideMix: 4).
    generator : torch.Generator, optional
        Source of randomness.
    device : torch.device or str, optional
        Where ``perm`` is returned (default: the CPU).

    Returns
    -------
    delta : float
        The mixing weight of the original samples, in [0.5, 1].
    perm : torch.Tensor
        The permutation, long, shape (B,).

    Example
    -------
    >>> delta, perm = mixup_weights(4, alpha=4.0, generator=torch.Generator().manual_seed(0))
    >>> 0.5 <= delta <= 1.0, sorted(perm.tolist())
    (True, [0, 1, 2, 3])
    >>> mixup_weights(3, alpha=0.0)
    (1.0, tensor([0, 1, 2]))
    """
    if alpha is None or not alpha > 0 or batch_size == 0:
        return 1.0, torch.arange(batch_size, device=device)
    delta = _draw_beta(float(alpha), generator)
    delta = max(delta, 1.0 - delta)
    source = generator.device if generator is not None else torch.device("cpu")
    perm = torch.randperm(batch_size, generator=generator, device=source).to(device or "cpu")
    return delta, perm


def mix_pairs(values, delta, perm):
    """One mixup combination: ``delta * v + (1 - delta) * v[perm]`` (Eq. 6 for inputs, Eq. 7 for targets).

    The inputs and the (one-hot or pseudo-label) targets of a batch are mixed
    with the same ``delta`` and ``perm`` (:func:`mixup_weights`). ``delta = 1``
    (mixing disabled) returns a copy of ``values``, the exact value of the
    formula.

    Arguments
    ---------
    values : torch.Tensor
        Inputs or soft targets of the batch, shape (B, ...).
    delta : float
        Weight of the original samples, in [0.5, 1].
    perm : torch.Tensor
        Permutation of the batch, shape (B,).

    Returns
    -------
    torch.Tensor
        Mixed values, same shape.

    Example
    -------
    >>> t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> mix_pairs(t, 0.75, torch.tensor([1, 0]))
    tensor([[0.7500, 0.2500],
            [0.2500, 0.7500]])
    """
    if perm.shape != values.shape[:1]:
        raise DataError(f"mix_pairs: a permutation of {perm.numel()} samples, a batch of {values.shape[0]}")
    if delta == 1.0:
        return values.clone()
    return delta * values + (1.0 - delta) * values[perm.to(values.device)]


def _empty_soft_batch(name, logits, soft_targets):
    """True for an empty batch; a DataError naming ``name`` when logits and targets differ in shape."""
    if logits.shape != soft_targets.shape:
        raise DataError(f"{name}: logits {tuple(logits.shape)} and targets "
                        f"{tuple(soft_targets.shape)} differ in shape")
    return logits.shape[0] == 0


def soft_cross_entropy(logits, soft_targets):
    """Cross-entropy with soft targets: L_MIX on the mixed batch (Eq. 9, first term).

    ``L = mean_i ( - sum_k t_ik * log softmax(z_i)_k )``. An empty batch gives
    a zero that still carries the graph of ``logits``.

    Arguments
    ---------
    logits : torch.Tensor
        Shape (N, K).
    soft_targets : torch.Tensor
        Shape (N, K), rows summing to 1.

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Example
    -------
    >>> z = torch.tensor([[0.0, 0.0]])
    >>> round(float(soft_cross_entropy(z, torch.tensor([[0.3, 0.7]]))), 4)  # log 2
    0.6931
    """
    if _empty_soft_batch("soft_cross_entropy", logits, soft_targets):
        return logits.sum() * 0.0
    # not F.cross_entropy(logits, soft_targets): the same value, but its forward differs in the last bit
    # on the CPU for about half of random batches, and results must stay byte-identical (issue 21)
    return -(soft_targets * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def symmetric_kl(logits_a, logits_b):
    """Symmetric KL divergence between two dropout passes: L_KL of R-Drop (Eq. 8).

    ``L = mean_i 0.5 * (KL(p_a || p_b) + KL(p_b || p_a))`` with
    ``KL(p || q) = sum_k p_k (log p_k - log q_k)``, the distributions being
    the softmax of the two passes' logits. Summed over classes, averaged
    over samples. An empty batch gives a zero connected to both inputs'
    graphs (so ``backward`` works).

    Arguments
    ---------
    logits_a : torch.Tensor
        Logits of the first pass, shape (N, K).
    logits_b : torch.Tensor
        Logits of the second pass, shape (N, K).

    Returns
    -------
    torch.Tensor
        Scalar loss, >= 0.

    Example
    -------
    >>> z = torch.tensor([[0.0, 0.0]])
    >>> float(symmetric_kl(z, z))
    0.0
    >>> za, zb = torch.log(torch.tensor([[0.5, 0.5]])), torch.log(torch.tensor([[0.25, 0.75]]))
    >>> round(float(symmetric_kl(za, zb)), 4)
    0.1373
    """
    if logits_a.shape != logits_b.shape:
        raise DataError(
            f"symmetric_kl: the two passes differ in shape: "
            f"{tuple(logits_a.shape)} vs {tuple(logits_b.shape)}"
        )
    if logits_a.shape[0] == 0:
        return logits_a.sum() * 0.0 + logits_b.sum() * 0.0
    # not F.kl_div(log_pb, log_pa, reduction="none", log_target=True): the same forward value, but its
    # gradients differ in the last bit on the CPU, and results must stay byte-identical (issue 21)
    log_pa = F.log_softmax(logits_a, dim=-1)
    log_pb = F.log_softmax(logits_b, dim=-1)
    kl_ab = (log_pa.exp() * (log_pa - log_pb)).sum(dim=-1)
    kl_ba = (log_pb.exp() * (log_pb - log_pa)).sum(dim=-1)
    return (0.5 * (kl_ab + kl_ba)).mean()


def unlabeled_squared_error(logits, soft_targets):
    """DivideMix's bounded loss on the mixed unlabeled samples: ``L_U = mean_i ||t_i - softmax(z_i)||^2``.

    Li et al. (2020), DivideMix, Sec. 3.3 (the squared L2 distance between the
    mixed pseudo-label and the prediction, averaged over the mixed samples
    of U). Unlike the cross-entropy of the paper's L_MIX it is bounded (at
    most 2 per sample), so a wrong pseudo-label cannot pull as hard as a
    right one. DivideMix's code averages over the classes too (its lambda_u
    of 25 at K = 10 is 2.5 here). An empty batch gives a zero that still
    carries the graph of ``logits``.

    Arguments
    ---------
    logits : torch.Tensor
        Shape (N, K).
    soft_targets : torch.Tensor
        Shape (N, K), rows summing to 1.

    Returns
    -------
    torch.Tensor
        Scalar loss in [0, 2].

    Example
    -------
    >>> z = torch.tensor([[0.0, 0.0]])
    >>> float(unlabeled_squared_error(z, torch.tensor([[1.0, 0.0]])))  # (1 - 0.5)^2 + (0 - 0.5)^2
    0.5
    """
    if _empty_soft_batch("unlabeled_squared_error", logits, soft_targets):
        return logits.sum() * 0.0
    return ((soft_targets - F.softmax(logits, dim=-1)) ** 2).sum(dim=-1).mean()


def unlabeled_rampup(epoch, warmup_epochs, rampup_epochs):
    """The weight ramp of L_U: ``clip((epoch - warmup) / rampup, 0, 1)`` [DivideMix's ``linear_rampup``].

    DivideMix ramps lambda_u up linearly over 16 epochs after its warm-up, so
    that the first guesses, from a model trained on noisy labels only, weigh
    little. Here the ramp moves per epoch; ``rampup_epochs = 0`` gives 1 from
    the first SSSL epoch.

    Arguments
    ---------
    epoch : int
        The current epoch, 1-based.
    warmup_epochs : int
        Epochs before the first partition.
    rampup_epochs : int
        Length of the ramp, >= 0.

    Returns
    -------
    float
        The factor in [0, 1] that multiplies lambda_u.

    Example
    -------
    >>> [unlabeled_rampup(e, 2, 4) for e in (2, 3, 4, 6, 9)]
    [0.0, 0.25, 0.5, 1.0, 1.0]
    >>> unlabeled_rampup(3, 2, 0)
    1.0
    """
    if rampup_epochs <= 0:
        return 1.0
    return float(min(max((epoch - warmup_epochs) / rampup_epochs, 0.0), 1.0))


def divided_mix_loss(logits, mixed_targets, unlabeled, weight, unlabeled_loss):
    """L_MIX split as in DivideMix: ``L_X + weight * L_U`` over the mixed batch.

    The mixed sample i keeps at least half of sample i (``delta >= 0.5``,
    :func:`mixup_weights`), so it counts in X or in U as sample i does
    (DivideMix mixes X' and U' the same way, and scores the first |X| mixed
    samples with L_X and the rest with L_U). ``L_X`` is the soft
    cross-entropy over the X rows; ``L_U`` is the soft cross-entropy
    (``cross_entropy``) or :func:`unlabeled_squared_error` (``squared_error``)
    over the U rows; each is a mean over its own rows. ``weight = 0`` trains
    on X only (U still enters the X rows as a mixing partner). The paper's
    L_MIX, one mean over the whole batch, is :func:`soft_cross_entropy`.

    Arguments
    ---------
    logits : torch.Tensor
        Logits of the mixed batch, shape (B, K).
    mixed_targets : torch.Tensor
        Its mixed targets (Eq. 7), shape (B, K).
    unlabeled : torch.Tensor
        Bool, shape (B,): sample i is in U.
    weight : float
        lambda_u (times its ramp, :func:`unlabeled_rampup`), >= 0.
    unlabeled_loss : str
        ``cross_entropy`` or ``squared_error``.

    Returns
    -------
    loss : torch.Tensor
        Scalar.
    l_u : torch.Tensor
        L_U alone (before its weight), for the logs.

    Example
    -------
    >>> z, t = torch.zeros(2, 2), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> loss, l_u = divided_mix_loss(z, t, torch.tensor([False, True]), 2.0, "squared_error")
    >>> round(float(loss), 4), float(l_u)  # log 2 + 2 * 0.5
    (1.6931, 0.5)
    """
    losses = {"cross_entropy": soft_cross_entropy, "squared_error": unlabeled_squared_error}
    if unlabeled_loss not in losses:
        raise ConfigError(f"unlabeled_loss={unlabeled_loss!r}: choose one of {', '.join(losses)}")
    if not weight >= 0:
        raise ConfigError(f"unlabeled_weight={weight!r}: must be >= 0")
    labeled = ~unlabeled
    l_x = soft_cross_entropy(logits[labeled], mixed_targets[labeled])
    l_u = losses[unlabeled_loss](logits[unlabeled], mixed_targets[unlabeled])
    return l_x + weight * l_u, l_u


def sssl_loss(l_mix, l_kl, lam, l_prior=0.0, prior_weight=0.0):
    """Total SSSL loss: ``L = L_MIX + lambda * L_KL`` (Eq. 9) ``+ beta * L_prior``.

    ``lam = 0`` is the ablation "Proposed*" (no R-Drop term). The optional
    class-prior term (:func:`class_prior_penalty`, weight beta) is not in the
    paper: ``prior_weight = 0`` is the paper's Eq. 9.

    Arguments
    ---------
    l_mix : torch.Tensor or float
        Mixup loss (:func:`soft_cross_entropy`).
    l_kl : torch.Tensor or float
        R-Drop loss (:func:`symmetric_kl`).
    lam : float
        Weight lambda >= 0.
    l_prior : torch.Tensor or float
        Class-prior penalty (:func:`class_prior_penalty`).
    prior_weight : float
        Its weight beta >= 0 (0: the paper's Eq. 9).

    Returns
    -------
    torch.Tensor or float

    Example
    -------
    >>> float(sssl_loss(torch.tensor(1.5), torch.tensor(0.5), 2.0))
    2.5
    >>> float(sssl_loss(torch.tensor(1.5), torch.tensor(0.5), 2.0, torch.tensor(0.25), 4.0))
    3.5
    """
    if not lam >= 0:
        raise ConfigError(f"lambda={lam!r}: the R-Drop weight must be >= 0")
    if not prior_weight >= 0:
        raise ConfigError(f"prior_weight={prior_weight!r}: the class-prior weight must be >= 0")
    loss = l_mix + lam * l_kl
    return loss + prior_weight * l_prior if prior_weight > 0 else loss


def refine_labels(targets, probs, clean_prob):
    """Label refinement of the labeled set X (DivideMix, Li et al. 2020, Alg. 1 line 15).

    ``y'_i = w_i * y_i + (1 - w_i) * p_i``: the inherited (one-hot) label is
    blended with the model's prediction by the clean posterior w_i of Eq. 3,
    so a segment the mixture trusts little leans on the prediction. The
    result is sharpened afterwards (Eq. 5) as DivideMix does.

    Arguments
    ---------
    targets : torch.Tensor
        One-hot (or soft) labels, shape (N, K).
    probs : torch.Tensor
        Predicted probabilities, shape (N, K).
    clean_prob : torch.Tensor
        w_i in [0, 1], shape (N,).

    Returns
    -------
    torch.Tensor
        Refined soft labels, shape (N, K), rows summing to 1.

    Example
    -------
    >>> y = torch.tensor([[1.0, 0.0]])
    >>> p = torch.tensor([[0.2, 0.8]])
    >>> refine_labels(y, p, torch.tensor([0.75]))
    tensor([[0.8000, 0.2000]])
    """
    if targets.shape != probs.shape or clean_prob.shape != targets.shape[:1]:
        raise DataError(
            f"refine_labels: targets {tuple(targets.shape)}, probs {tuple(probs.shape)} and "
            f"clean_prob {tuple(clean_prob.shape)} do not match"
        )
    w = clean_prob.to(targets.dtype).clamp(0.0, 1.0).unsqueeze(-1)
    return w * targets + (1.0 - w) * probs.to(targets.dtype)


def co_guess(probs_a, probs_b):
    """Pseudo-label guess from two predictions of the same samples (input of Eq. 5).

    DivideMix guesses the label of an unlabeled sample as the mean of two
    networks' predictions (co-guessing), which damps the feedback of a network
    on its own guesses. With one network we average the prediction of the
    current step with that of the model at the start of the epoch (the
    partition pass, eval mode) [ours]; ``(p_a + p_b) / 2``.

    Arguments
    ---------
    probs_a, probs_b : torch.Tensor
        Probabilities, shape (N, K).

    Returns
    -------
    torch.Tensor
        Their mean, shape (N, K).

    Example
    -------
    >>> co_guess(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]]))
    tensor([[0.7500, 0.2500]])
    """
    if probs_a.shape != probs_b.shape:
        raise DataError(f"co_guess: shapes differ: {tuple(probs_a.shape)} vs {tuple(probs_b.shape)}")
    return 0.5 * (probs_a + probs_b.to(probs_a.dtype))


def class_prior_penalty(logits, prior):
    """Class-balance regulariser: ``sum_k pi_k log(pi_k / mean_i p_ik)`` (Tanaka et al. 2018, Eq. 6).

    The KL divergence from the prior pi to the mean predicted distribution of
    the batch. Self-training on its own guesses can drift towards predicting
    one class for every sample (confirmation bias); this term is zero when
    the batch's mean prediction equals the prior and grows as predictions
    concentrate on fewer classes. DivideMix adds it with weight 1 and a
    uniform prior; here pi is the inherited-label prior of the training
    segments (uniform when the classes are balanced).

    Arguments
    ---------
    logits : torch.Tensor
        Shape (B, K).
    prior : torch.Tensor
        Class prior pi, shape (K,), positive, summing to 1.

    Returns
    -------
    torch.Tensor
        Scalar, >= 0 (0 for an empty batch, still connected to ``logits``).

    Example
    -------
    >>> z = torch.log(torch.tensor([[0.9, 0.1], [0.7, 0.3]]))
    >>> round(float(class_prior_penalty(z, torch.tensor([0.5, 0.5]))), 4)  # 0.5 ln(0.5/0.8) + 0.5 ln(0.5/0.2)
    0.2231
    >>> float(class_prior_penalty(torch.zeros(3, 2), torch.tensor([0.5, 0.5])))
    0.0
    """
    if logits.dim() != 2 or prior.shape != logits.shape[1:]:
        raise DataError(f"class_prior_penalty: logits {tuple(logits.shape)} and prior {tuple(prior.shape)}")
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    prior = prior.to(logits.device, logits.dtype)
    mean_p = torch.softmax(logits, dim=-1).mean(dim=0)
    tiny = torch.finfo(mean_p.dtype).tiny
    keep = prior > 0
    return (prior[keep] * (torch.log(prior[keep]) - torch.log(mean_p[keep].clamp_min(tiny)))).sum()
