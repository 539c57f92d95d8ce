"""SSSLBrain: the noise-robust segment classifier (stage 1 of SSSL).

Per training epoch after ``warmup_epochs``:

1. ``on_stage_start`` computes the cross-entropy of every training segment
   (eval mode, no grad); :func:`sssl_brain.method.partition.partition_segments`
   normalises it to [0, 1] and fits a 2-component Gaussian mixture (Eq. 3):
   X = {w_i > tau} are labeled, U the rest. Under
   DDP each rank computes the losses of its shard, all are gathered, rank 0
   fits the mixture and broadcasts the partition, so every rank holds the
   identical partition.
2. ``fit_batch`` replaces the labels of U by sharpened predictions (Eq. 4-5),
   mixes inputs and targets (Eq. 6-7), adds the R-Drop symmetric KL of two
   dropout passes of U (Eq. 8) and minimises L_MIX + lambda * L_KL (Eq. 9),
   keeping everything SpeechBrain's ``fit_batch`` does (gradient
   accumulation, ``no_sync``, ``training_ctx``, the grad scaler,
   ``optimizers_step``).

``method`` selects ``sssl``, ``proposed_star`` (lambda = 0) or ``inherit``
(plain cross-entropy on inherited labels, no partition).
"""

import logging
import os
import time

import numpy as np
import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from speechbrain.utils.distributed import if_main_process

from sssl_brain.dataio.device_segments import DeviceSegments
from sssl_brain.method.partition import (
    FALLBACK_THRESHOLDS,
    check_fallback_thresholds,
    partition_precision_recall,
    partition_segments,
)
from sssl_brain.method.sssl import (
    class_prior_penalty,
    co_guess,
    mix_pairs,
    mixup_weights,
    refine_labels,
    replace_unlabeled_targets,
    sharpen,
    soft_cross_entropy,
    sssl_loss,
    symmetric_kl,
)
from sssl_brain.utils.checkpoints import save_warmup_snapshot
from sssl_brain.utils.errors import ConfigError, SSSLError
from sssl_brain.utils.io_utils import atomic_write_csv

logger = logging.getLogger(__name__)

METHODS = ("sssl", "proposed_star", "inherit")
PARTITION_COLUMNS = [
    "epoch", "n_clean", "n_noisy", "clean_frac", "gmm_mean_low", "gmm_mean_high", "per_class", "fallback",
    "class_tv", "clean_precision", "clean_recall", "train_seg_acc_truth", "train_seg_acc_label",
    "train_pred_dist", "train_collapse", "u_label_acc_truth", "u_guess_acc_truth", "u_refined_acc_truth",
]
#: One row per epoch and method (``epoch_stats.csv``): what the model predicts, on which data.
EPOCH_COLUMNS = [
    "epoch", "method", "sssl", "lr", "train_loss", "train_pred_dist", "valid_loss", "valid_acc",
    "valid_acc_truth", "valid_song_acc", "valid_pred_dist", "valid_collapse",
]
PSEUDO_LABEL_SOURCES = ("step", "co_guess", "epoch")
RDROP_REDUCTIONS = ("unlabeled", "batch")
#: What U's target is built from: the sharpened guess (the paper) or the guess refined by the inherited label.
UNLABELED_TARGETS = ("guess", "refined")
#: ``selection_metric`` -> (its key in the validation stats and the checkpoint meta, direction);
#: ``last``: no selection.
SELECTION_METRICS = {"valid_acc": ("acc_inherited", "max"), "valid_song_acc": ("song_acc", "max"),
                     "valid_loss": ("loss", "min"), "last": (None, None)}
#: Settings that act only after the warm-up (the SSSL step) or only in stage 2: the warm-up epochs of
#: a fold are the same for every method whatever their values (see ``share_warmup``).
AFTER_WARMUP_HPARAMS = (
    "method", "methods", "tau", "sharpen_temperature", "mixup_alpha", "rdrop_lambda", "gmm_max_iter",
    "gmm_tol", "gmm_reg_covar", "gmm_per_class", *(f"partition_{k}" for k in FALLBACK_THRESHOLDS),
    "plot_partition", "prior_weight", "refine_labels",
    "pseudo_labels", "rdrop_reduction", "unlabeled_targets", "song_theta", "svm_grid_search", "svm_C",
    "svm_gamma", "svm_C_grid", "svm_gamma_grid", "share_warmup", "fold_jobs",
)
#: Every key the Brain reads from its hyperparameters. Each one is set in ``hparams/vgg16_sssl.yaml``,
#: the one source of their values: a missing key is a ConfigError naming it (:func:`check_sssl_hparams`),
#: never a value from the code.
BRAIN_HPARAMS = (
    "method", "n_classes", "seed", "warmup_epochs", "epoch_counter", "tau", "sharpen_temperature",
    "mixup_alpha", "rdrop_lambda", "gmm_max_iter", "gmm_tol", "gmm_reg_covar", "gmm_per_class",
    *(f"partition_{k}" for k in FALLBACK_THRESHOLDS), "partition_batch_size", "plot_partition",
    "prior_weight", "refine_labels", "pseudo_labels", "rdrop_reduction", "unlabeled_targets",
    "collapse_margin", "selection_metric",
)
#: The optional objects the Brain uses when they are given (see :class:`SSSLBrain`).
OPTIONAL_BRAIN_HPARAMS = ("partition_state", "train_logger", "output_folder", "lr_annealing",
                          "warmup_snapshot", "warmup_key", "train_log")


def check_sssl_hparams(hparams, run_opts=None, environ=None):
    """Checks the SSSL options at start-up; a wrong value raises a ConfigError naming it.

    Arguments
    ---------
    hparams : dict
        The loaded hyperparameters.
    run_opts : dict, optional
        SpeechBrain's run options (``device``, ``distributed_launch``), for
        :func:`check_distributed_batch_norm`.
    environ : mapping, optional
        The process environment (default ``os.environ``), idem.

    Raises
    ------
    ConfigError
        Naming the missing keys of :data:`BRAIN_HPARAMS`, or the first wrong option.
    """
    missing = [key for key in BRAIN_HPARAMS if key not in hparams]
    if missing:
        raise ConfigError(f"{', '.join(missing)}: missing from the hyperparameters "
                          f"(see hparams/vgg16_sssl.yaml)")
    method = hparams["method"]
    if method not in METHODS:
        raise ConfigError(f"method={method!r}: choose one of {', '.join(METHODS)}")
    if not 0.0 < float(hparams["tau"]) < 1.0:
        raise ConfigError(f"tau={hparams['tau']!r}: the clean-probability threshold must be in (0, 1)")
    if not float(hparams["sharpen_temperature"]) > 0:
        raise ConfigError(f"sharpen_temperature={hparams['sharpen_temperature']!r}: must be > 0")
    if float(hparams["mixup_alpha"]) < 0:
        raise ConfigError(f"mixup_alpha={hparams['mixup_alpha']!r}: must be >= 0")
    if float(hparams["rdrop_lambda"]) < 0:
        raise ConfigError(f"rdrop_lambda={hparams['rdrop_lambda']!r}: must be >= 0")
    if int(hparams["warmup_epochs"]) < 0:
        raise ConfigError(f"warmup_epochs={hparams['warmup_epochs']!r}: must be >= 0")
    if float(hparams["prior_weight"]) < 0:
        raise ConfigError(f"prior_weight={hparams['prior_weight']!r}: must be >= 0")
    choices = (("pseudo_labels", PSEUDO_LABEL_SOURCES), ("rdrop_reduction", RDROP_REDUCTIONS),
               ("unlabeled_targets", UNLABELED_TARGETS),
               ("selection_metric", tuple(SELECTION_METRICS)))
    for key, allowed in choices:
        if hparams[key] not in allowed:
            raise ConfigError(f"{key}={hparams[key]!r}: choose one of {', '.join(allowed)}")
    if not 0.0 <= float(hparams["collapse_margin"]) <= 1.0:
        raise ConfigError(f"collapse_margin={hparams['collapse_margin']!r}: must be in [0, 1]")
    check_fallback_thresholds(**partition_fallback_options(hparams), prefix="partition_")
    check_distributed_batch_norm(hparams, run_opts, environ)


def partition_fallback_options(hparams):
    """The ``partition_*`` thresholds of the hyperparameters, as keyword arguments of ``partition_segments``.

    Raises
    ------
    ConfigError
        When one is missing (every one is set in ``hparams/vgg16_sssl.yaml``).

    Example
    -------
    >>> hp = {f"partition_{k}": 0.1 for k in FALLBACK_THRESHOLDS}
    >>> partition_fallback_options(hp)["min_mean_gap"]
    0.1
    """
    missing = [f"partition_{k}" for k in FALLBACK_THRESHOLDS if f"partition_{k}" not in hparams]
    if missing:
        raise ConfigError(f"{', '.join(missing)}: missing from the hyperparameters "
                          f"(the partition fallback thresholds; see hparams/vgg16_sssl.yaml)")
    return {k: hparams[f"partition_{k}"] for k in FALLBACK_THRESHOLDS}


def check_distributed_batch_norm(hparams, run_opts=None, environ=None):
    """Refuses batch norm in a distributed (torchrun) run on the CPU device, naming ``batch_norm``.

    Under DDP SpeechBrain converts every BatchNorm layer to ``SyncBatchNorm``
    (``Brain._wrap_distributed``), whose training forward runs on
    accelerators only: on the CPU the first batch would crash. The run is
    distributed when ``WORLD_SIZE > 1``, when ``RANK`` and ``LOCAL_RANK`` are
    set (how SpeechBrain detects torchrun) or when ``run_opts`` says
    ``distributed_launch``. The model has batch norm when the
    hyperparameters say ``batch_norm: True`` or a module of ``model`` /
    ``modules`` is a BatchNorm layer. The device is ``run_opts["device"]``
    or, without it, SpeechBrain's guess (``infer_device``).

    Arguments
    ---------
    hparams : dict
        The hyperparameters.
    run_opts : dict, optional
        SpeechBrain's run options.
    environ : mapping, optional
        The process environment (default ``os.environ``).

    Raises
    ------
    ConfigError
        For batch norm in a distributed run on the CPU.

    Example
    -------
    >>> check_distributed_batch_norm({"batch_norm": True}, {"device": "cpu"}, environ={})
    >>> check_distributed_batch_norm({"batch_norm": True}, {"device": "cpu"},
    ...                              environ={"WORLD_SIZE": "2"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sssl_brain.utils.errors.ConfigError: batch_norm=True: ...
    """
    environ = os.environ if environ is None else environ
    run_opts = run_opts or {}
    try:
        world = int(environ.get("WORLD_SIZE", "1"))
    except ValueError:
        world = 1
    distributed = (world > 1 or bool(run_opts.get("distributed_launch"))
                   or (environ.get("RANK") is not None and environ.get("LOCAL_RANK") is not None))
    if not distributed:
        return
    device = run_opts.get("device") or sb.utils.distributed.infer_device()
    if torch.device(device).type != "cpu" or not _has_batch_norm(hparams):
        return
    raise ConfigError(
        "batch_norm=True: under torchrun (DDP) SpeechBrain turns batch norm into SyncBatchNorm, which "
        "does not run on the CPU device; pass --batch_norm=False, or train in one process "
        "(python instead of torchrun), or on GPUs"
    )


def _has_batch_norm(hparams):
    if bool(hparams.get("batch_norm", False)):
        return True
    modules = [hparams.get("model"), *dict(hparams.get("modules") or {}).values()]
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
               for module in modules if isinstance(module, torch.nn.Module) for m in module.modules())


class SSSLForward(torch.nn.Module):
    """Runs everything one SSSL step needs in a single forward call.

    A single call keeps DDP's gradient reduction correct (every parameter is
    used through the wrapped module). The two R-Drop passes share one pass
    through the convolutional trunk: the trunk has no dropout, so in train
    mode both passes would compute the same trunk output for the same batch.

    Arguments
    ---------
    model : torch.nn.Module
        A model with ``trunk(x)`` and ``head(h)`` (e.g. :class:`sssl_brain.lobes.vgg16.VGG16`).
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, u_x=None, rdrop=True):
        """Logits of ``x``; with ``u_x``, also the U predictions and R-Drop logits.

        Arguments
        ---------
        x : torch.Tensor
            (Mixed) batch, (B, T, F).
        u_x : torch.Tensor, optional
            The unmixed U samples of the batch.
        rdrop : bool
            Compute the two dropout passes of U (lambda > 0).

        Returns
        -------
        torch.Tensor or dict
            Logits of ``x`` alone, or a dict with ``logits``, ``u_probs``
            (no grad, dropout off), ``u_logits_a`` and ``u_logits_b``.
        """
        if u_x is None:
            return self.model(x)
        if not rdrop:
            with torch.no_grad():  # the model's prediction in eval mode (no dropout, running BN stats)
                was_training = self.model.training
                self.model.eval()
                u_probs = torch.softmax(self.model(u_x).float(), dim=-1)
                self.model.train(was_training)
            return {"logits": self.model(x), "u_probs": u_probs, "u_logits_a": None, "u_logits_b": None}
        # one trunk pass over the mixed batch and the U samples (a single batch,
        # so batch norm never sees a lone sample), then the head per use
        h = self.model.trunk(torch.cat([x, u_x]))
        h_x, h_u = h[: x.shape[0]], h[x.shape[0]:]
        with torch.no_grad():
            u_probs = _eval_head_probs(self.model, h_u.detach())
        return {"logits": self.model.head(h_x), "u_probs": u_probs,
                "u_logits_a": self.model.head(h_u), "u_logits_b": self.model.head(h_u)}


def _eval_head_probs(model, h):
    """Class probabilities of the head with its dropout switched off (no grad)."""
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    states = [m.training for m in dropouts]
    for m in dropouts:
        m.eval()
    try:
        return torch.softmax(model.head(h).float(), dim=-1)
    finally:
        for m, s in zip(dropouts, states):
            m.train(s)


@register_checkpoint_hooks
class PartitionState:
    """The partition of the current epoch and the per-epoch history, checkpointed.

    Saved with ``torch.save`` of tensors and plain types only and loaded with
    ``weights_only=True``, so a resumed run keeps its partition history (and
    reuses the partition if it resumes inside an epoch).
    """

    def __init__(self):
        self.epoch = 0
        self.clean = None
        self.clean_prob = None
        self.probs = None  # (N, K) eval-mode probabilities of the partition pass
        self.history = []
        self.epoch_stats = []

    @mark_as_saver
    def save(self, path):
        """Writes the state (checkpoint hook)."""
        torch.save({
            "epoch": self.epoch,
            "clean": self.clean,
            "clean_prob": self.clean_prob,
            "probs": self.probs,
            "history": self.history,
            "epoch_stats": self.epoch_stats,
        }, path)

    @mark_as_loader
    def load(self, path, end_of_epoch=True):
        """Reads the state (checkpoint hook), without executing code from the file."""
        state = torch.load(path, weights_only=True)
        self.epoch, self.clean = state["epoch"], state["clean"]
        self.clean_prob, self.history = state["clean_prob"], list(state["history"])
        self.probs, self.epoch_stats = state.get("probs"), list(state.get("epoch_stats", []))


class SSSLBrain(sb.Brain):
    """SpeechBrain Brain for SSSL stage 1 (see the module docstring).

    Requires in ``hparams`` every key of :data:`BRAIN_HPARAMS` (``method``,
    ``n_classes``, ``warmup_epochs``, ``tau``, ``sharpen_temperature``,
    ``mixup_alpha``, ``rdrop_lambda``, the ``gmm_*`` settings, the fallback
    thresholds ``partition_<name>`` for each name of
    :data:`sssl_brain.method.partition.FALLBACK_THRESHOLDS`,
    ``partition_batch_size``, ``plot_partition``, ``prior_weight``,
    ``refine_labels``, ``pseudo_labels``, ``rdrop_reduction``,
    ``unlabeled_targets``, ``collapse_margin``, ``selection_metric``, ``seed``,
    ``epoch_counter``), with the values of ``hparams/vgg16_sssl.yaml``: the code
    has no defaults, and a missing key is a ConfigError naming it at
    construction. Optional objects (:data:`OPTIONAL_BRAIN_HPARAMS`), each
    used only when given:

    - ``partition_state``: the checkpointed :class:`PartitionState` (default: a new one);
    - ``train_logger``: SpeechBrain's train logger (default: no log file);
    - ``output_folder``: where ``partition.csv``, ``epoch_stats.csv`` and the
      partition plots go (default: none written);
    - ``lr_annealing``: the per-epoch learning-rate schedule (default: the
      optimiser's rate throughout);
    - ``warmup_snapshot``, ``warmup_key`` and ``train_log``: set by
      :func:`sssl_brain.method.warmup.share_warmup` (default: no snapshot of the warm-up).

    The model module is ``modules["model"]`` with ``trunk``/``head`` methods.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        hparams = {**vars(self.hparams), "modules": self.modules}
        check_sssl_hparams(hparams, {"device": self.device, "distributed_launch": self.distributed_launch})
        self.modules["model"] = SSSLForward(self.modules["model"]).to(self.device)
        self.state = getattr(self.hparams, "partition_state", None) or PartitionState()
        if self.checkpointer is not None and "partition_state" not in self.checkpointer.recoverables:
            self.checkpointer.add_recoverable("partition_state", self.state)
        self.clean_mask = None
        self.clean_prob = None
        self.epoch_probs = None
        self.label_share = None  # class shares of the inherited training labels (set by fit)
        self.train_dataset = None
        self.mix_generator = torch.Generator()
        #: wall seconds of the training steps (partition pass, validation and checkpoints excluded), the
        #: training segments they saw and the epochs this process ran; for throughput (timing.json)
        self.timing = {"train_step_seconds": 0.0, "train_segments_seen": 0, "epochs_run": 0}

    # ------------------------------------------------------------ training set
    def fit(self, epoch_counter, train_set, valid_set=None, **kwargs):
        """Same as ``Brain.fit``; keeps the training dataset for the partition pass.

        ``train_set`` / ``valid_set`` are segment datasets
        (:func:`sssl_brain.dataio.dataset.segment_dataset`) or, with
        ``device_features``, :class:`~sssl_brain.dataio.device_segments.DeviceSegments`
        (batches cut on the device; the same batches and order).
        """
        self.train_dataset = train_set
        if isinstance(train_set, DeviceSegments):
            self.train_labels, self.train_truth = train_set.labels_np, train_set.truth_np
            opts = dict(kwargs.pop("train_loader_kwargs", None) or {})
            train_set = train_set.loader(opts["batch_size"], shuffle=bool(opts.get("shuffle", False)))
            self.train_sampler = train_set.dataset.sampler  # Brain.fit sets its epoch, as make_dataloader's
            if isinstance(valid_set, DeviceSegments):
                opts = dict(kwargs.pop("valid_loader_kwargs", None) or {})
                valid_set = valid_set.loader(opts["batch_size"])
        else:
            data = train_set.data
            ids = train_set.data_ids
            self.train_labels = np.array([data[i]["label_int"] for i in ids])
            self.train_truth = np.array([data[i]["truth_int"] for i in ids])
        known = self.train_truth >= 0
        self.train_correct = (self.train_truth == self.train_labels) if known.all() and known.size else None
        k = int(self.hparams.n_classes)
        counts = np.bincount(self.train_labels, minlength=k).astype(np.float64)
        self.label_share = counts / max(1.0, counts.sum())
        self.class_prior = torch.as_tensor(self.label_share, dtype=torch.float32, device=self.device)
        self._no_valid = valid_set is None
        return super().fit(epoch_counter, train_set, valid_set, **kwargs)

    @property
    def method(self):
        return self.hparams.method

    def uses_partition(self, epoch):
        """True when this epoch trains with SSSL (after the warm-up, not the baseline)."""
        return self.method != "inherit" and epoch > int(self.hparams.warmup_epochs)

    # ------------------------------------------------------------ forward/loss
    def compute_forward(self, batch, stage):
        """Logits of a batch of segments."""
        feats = batch.feats.data.to(self.device)
        return self.modules.model(feats)

    def compute_objectives(self, predictions, batch, stage):
        """Cross-entropy against the inherited labels (warm-up, baseline, validation)."""
        labels = batch.label.data[:, 0].to(self.device)
        loss = F.cross_entropy(predictions.float(), labels)
        pred = predictions.detach().argmax(dim=-1)
        self.stage_pred_counts += torch.bincount(pred, minlength=int(self.hparams.n_classes))  # on the device
        if stage != sb.Stage.TRAIN:
            self.stage_correct += int((pred == labels).sum())
            self.stage_count += int(labels.numel())
            truth = batch.truth.data[:, 0].to(self.device)
            known = truth >= 0
            self.stage_truth_correct += int((pred[known] == truth[known]).sum())
            self.stage_truth_count += int(known.sum())
            probs = torch.softmax(predictions.detach().float(), dim=-1).cpu().numpy()
            for sid, lab, p in zip(batch.song_id, labels.cpu().tolist(), probs):
                entry = self.stage_song_probs.setdefault(sid, [lab, np.zeros_like(p, dtype=np.float64), 0])
                entry[1] += p
                entry[2] += 1
        return loss

    def sssl_objective(self, batch):
        """Loss of Eq. 9 (plus the optional class-prior term) for one batch, with its parts.

        Targets: X keeps its inherited one-hot label, or with
        ``refine_labels`` the sharpened DivideMix refinement ``w y + (1 - w) p``
        (p from the epoch-start partition pass); U gets the sharpened guess of
        ``pseudo_labels`` (``step``: this step's prediction, the paper;
        ``co_guess``: its mean with the epoch-start prediction; ``epoch``: the
        epoch-start prediction alone); with ``unlabeled_targets: refined`` the
        guess is first blended with U's inherited label by the clean posterior
        (``w y + (1 - w) p``, :func:`sssl_brain.method.sssl.refine_labels`), then sharpened.

        Returns
        -------
        loss : torch.Tensor
        parts : dict
            ``l_mix``, ``l_kl``, ``l_prior`` and ``n_u`` (number of U samples).
        """
        hp = self.hparams
        temperature = float(hp.sharpen_temperature)
        feats = batch.feats.data.to(self.device)
        labels = batch.label.data[:, 0].to(self.device)
        index = batch.index.data[:, 0].to(self.device)
        noisy = ~self.clean_mask[index]
        n_u = int(noisy.sum())
        targets = F.one_hot(labels, int(hp.n_classes)).float()
        epoch_probs = self.epoch_probs[index] if self.epoch_probs is not None else None
        if self.hparams.refine_labels and epoch_probs is not None:
            refined = sharpen(refine_labels(targets, epoch_probs, self.clean_prob[index]), temperature)
            targets = torch.where(noisy.unsqueeze(-1), targets, refined)
        delta, perm = mixup_weights(feats.shape[0], float(hp.mixup_alpha), self.mix_generator, feats.device)
        mixed_x = mix_pairs(feats, delta, perm)  # Eq. 6; the targets are mixed below, once U has its guesses
        lam = float(hp.rdrop_lambda) if self.method == "sssl" else 0.0
        source = self.hparams.pseudo_labels
        if epoch_probs is None:
            source = "step"
        l_kl = None
        if n_u == 0 or (source == "epoch" and lam == 0):
            logits = self.modules.model(mixed_x)
            step_probs = None
        else:
            out = self.modules.model(mixed_x, u_x=feats[noisy], rdrop=lam > 0)
            logits, step_probs = out["logits"], out["u_probs"]
            if lam > 0:
                l_kl = symmetric_kl(out["u_logits_a"].float(), out["u_logits_b"].float())
                if self.hparams.rdrop_reduction == "batch":
                    l_kl = l_kl * (n_u / feats.shape[0])  # a U sample weighs as much as any sample
        if n_u:
            guess = {"step": lambda: step_probs, "epoch": lambda: epoch_probs[noisy],
                     "co_guess": lambda: co_guess(step_probs, epoch_probs[noisy])}[source]()
            if self.hparams.unlabeled_targets == "refined":
                guess = refine_labels(targets[noisy], guess, self.clean_prob[index][noisy])
            targets = replace_unlabeled_targets(targets, noisy, sharpen(guess, temperature))  # Eq. 4-5
        if l_kl is None:
            l_kl = logits.new_zeros(())
        mixed_targets = mix_pairs(targets, delta, perm)  # Eq. 7
        l_mix = soft_cross_entropy(logits.float(), mixed_targets)
        prior_weight = float(self.hparams.prior_weight)
        l_prior = logits.new_zeros(())
        if prior_weight > 0:
            l_prior = class_prior_penalty(logits.float(), self.class_prior)
        loss = sssl_loss(l_mix, l_kl, lam, l_prior, prior_weight)
        return loss, {"l_mix": float(l_mix.detach()), "l_kl": float(l_kl.detach()),
                      "l_prior": float(l_prior.detach()), "n_u": n_u}

    def fit_batch(self, batch):
        """One SSSL step; before/without the partition, SpeechBrain's own ``fit_batch``."""
        if self.clean_mask is None:
            return super().fit_batch(batch)
        should_step = (self.step % self.grad_accumulation_factor) == 0
        self.on_fit_batch_start(batch, should_step)
        with self.no_sync(not should_step):
            with self.training_ctx:
                loss, _ = self.sssl_objective(batch)
            scaled_loss = self.scaler.scale(loss / self.grad_accumulation_factor)
            self.check_loss_isfinite(scaled_loss)
            scaled_loss.backward()
        if should_step:
            self.optimizers_step()
        self.on_fit_batch_end(batch, None, loss, should_step)
        return loss.detach().cpu()

    # ------------------------------------------------------------ partition
    def segment_losses(self, dataset):
        """Per-segment cross-entropy and probabilities (eval mode, no grad, no augmentation).

        Under DDP each rank computes a strided shard and the results are
        gathered, so every rank returns the losses of all segments in order.

        Returns
        -------
        losses : numpy.ndarray
            (N,) cross-entropy against the inherited labels.
        probs : numpy.ndarray
            (N, K) class probabilities.
        """
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        rank = torch.distributed.get_rank() if world > 1 else 0
        n = len(dataset)
        positions = list(range(rank, n, world))
        if isinstance(dataset, DeviceSegments):
            passes = self._eval_logits(dataset, positions=positions)
        else:
            passes = self._eval_logits(torch.utils.data.Subset(dataset, positions))
        losses, probs, order = [], [], []
        for batch, logits in passes:
            labels = batch.label.data[:, 0].to(self.device)
            losses.append(F.cross_entropy(logits, labels, reduction="none").cpu())
            probs.append(torch.softmax(logits, dim=-1).cpu())
            order.append(batch.index.data[:, 0].cpu())
        losses = torch.cat(losses) if losses else torch.zeros(0)
        probs = torch.cat(probs) if probs else torch.zeros(0, int(self.hparams.n_classes))
        order = torch.cat(order) if order else torch.zeros(0, dtype=torch.long)
        if world > 1:
            gathered = [None] * world
            torch.distributed.all_gather_object(gathered, (order, losses, probs))
            order = torch.cat([g[0] for g in gathered])
            losses = torch.cat([g[1] for g in gathered])
            probs = torch.cat([g[2] for g in gathered])
        full_losses = np.zeros(n, dtype=np.float64)
        full_probs = np.zeros((n, int(self.hparams.n_classes)), dtype=np.float64)
        full_losses[order.numpy()] = losses.double().numpy()
        full_probs[order.numpy()] = probs.double().numpy()
        return full_losses, full_probs

    def compute_partition(self, epoch):
        """Runs the partition pass of this epoch (Eq. 3) and logs it; returns the PartitionResult."""
        hp = self.hparams
        losses, probs = self.segment_losses(self.train_dataset)
        result = failure = None
        if if_main_process():
            try:
                result = partition_segments(
                    losses, self.train_labels, int(hp.n_classes), tau=float(hp.tau),
                    per_class=bool(hp.gmm_per_class), seed=int(hp.seed) + epoch,
                    **{k: getattr(hp, "gmm_" + k) for k in ("max_iter", "tol", "reg_covar")},
                    **partition_fallback_options(vars(hp)),
                )
            except SSSLError as err:  # e.g. a NaN loss: every rank stops, not rank 0 alone
                failure = err
        if torch.distributed.is_initialized():
            box = [(result, failure)]
            torch.distributed.broadcast_object_list(box, src=0)
            result, failure = box[0]
        if failure is not None:
            raise failure
        norm = result.losses  # normalised to [0, 1] by partition_segments
        self._log_partition(epoch, norm, probs, result)
        self.last_losses, self.last_partition = norm, result  # for diagnostics and tests
        self.last_probs = probs
        return result

    def _log_partition(self, epoch, norm, probs, result):
        pred = probs.argmax(axis=1)
        row = {"epoch": epoch, **result.summary()}
        row = {k: (_fmt(v) if isinstance(v, float) else v) for k, v in row.items()}
        dist = np.bincount(pred, minlength=int(self.hparams.n_classes)) / max(1, pred.size)
        collapsed = self._collapsed(dist, f"epoch {epoch}, training segments at the start of the epoch")
        row.update(clean_precision="", clean_recall="", train_seg_acc_truth="", u_label_acc_truth="",
                   u_guess_acc_truth="", u_refined_acc_truth="",
                   train_seg_acc_label=_fmt((pred == self.train_labels).mean()),
                   train_pred_dist=format_distribution(dist), train_collapse=int(collapsed))
        if self.train_correct is not None:
            prec, rec = partition_precision_recall(result.clean, self.train_correct)
            row.update(clean_precision=_fmt(prec), clean_recall=_fmt(rec))
            row["train_seg_acc_truth"] = _fmt((pred == self.train_truth).mean())
            noisy = ~np.asarray(result.clean, dtype=bool)
            if noisy.any():  # can relabelling U help? its inherited labels vs. the model's guesses
                row["u_label_acc_truth"] = _fmt(self.train_correct[noisy].mean())
                row["u_guess_acc_truth"] = _fmt((pred[noisy] == self.train_truth[noisy]).mean())
                onehot = F.one_hot(torch.as_tensor(self.train_labels[noisy]), probs.shape[1]).double()
                refined = refine_labels(onehot, torch.as_tensor(probs[noisy]),
                                        torch.as_tensor(np.asarray(result.clean_prob)[noisy])).argmax(1)
                row["u_refined_acc_truth"] = _fmt((refined.numpy() == self.train_truth[noisy]).mean())
        self.state.history = [h for h in self.state.history if int(h["epoch"]) < epoch] + [row]
        msg = ", ".join(f"{k}={v}" for k, v in row.items() if v != "")
        logger.info("partition: %s", msg)
        folder = getattr(self.hparams, "output_folder", None)
        if folder and if_main_process():
            atomic_write_csv(os.path.join(folder, "partition.csv"), self.state.history, PARTITION_COLUMNS)
            if self.hparams.plot_partition:
                from sssl_brain.utils.plots import plot_partition_histogram

                path = os.path.join(folder, "partition_plots", f"epoch_{epoch:03d}.png")
                plot_partition_histogram(norm, result, path, epoch)

    # ------------------------------------------------------------ stage hooks
    def on_stage_start(self, stage, epoch=None):
        """Seeds the epoch, sets its learning rate and, after the warm-up, computes the partition."""
        self.stage_correct, self.stage_count = 0, 0
        self.stage_truth_correct, self.stage_truth_count = 0, 0
        k = int(self.hparams.n_classes)
        self.stage_pred_counts = torch.zeros(k, dtype=torch.long, device=self.device)
        self.stage_song_probs = {}
        if stage != sb.Stage.TRAIN:
            return
        self._start_train_epoch(epoch)
        self._train_started = self._clock()  # the training steps of the epoch start now (timing.json)

    def _clock(self):
        """``time.perf_counter()`` once the device's queued work is done (timing of the training steps)."""
        if self.device_type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _start_train_epoch(self, epoch):
        """Seeds the epoch, sets its learning rate and, after the warm-up, computes the partition."""
        seed = int(self.hparams.seed) * 1000 + int(epoch)
        torch.manual_seed(seed)
        self.mix_generator.manual_seed(seed)
        self.epoch_lr = self._set_epoch_lr(epoch)
        if not self.uses_partition(epoch):
            self.clean_mask = self.clean_prob = self.epoch_probs = None
            return
        if self.state.epoch == epoch and self.state.clean is not None:
            clean = self.state.clean  # resumed inside this epoch: keep its partition
        else:
            result = self.compute_partition(epoch)
            clean = torch.as_tensor(np.asarray(result.clean, dtype=bool))
            self.state.epoch, self.state.clean = epoch, clean
            self.state.clean_prob = torch.as_tensor(np.asarray(result.clean_prob, dtype=np.float32))
            self.state.probs = torch.as_tensor(np.asarray(self.last_probs, dtype=np.float32))
        self.clean_mask = clean.to(self.device)
        self.clean_prob = self.state.clean_prob.to(self.device)
        self.epoch_probs = self.state.probs.to(self.device) if self.state.probs is not None else None

    def _set_epoch_lr(self, epoch):
        """The learning rate of this epoch from ``lr_annealing`` (SpeechBrain's LinearScheduler), if any.

        The value depends on the epoch index alone, so a resumed run uses the
        same rate as an uninterrupted one.
        """
        scheduler = getattr(self.hparams, "lr_annealing", None)
        if scheduler is None or self.optimizer is None:
            return float(self.optimizer.param_groups[0]["lr"]) if self.optimizer is not None else None
        lr, _ = scheduler(int(epoch))
        sb.nnet.schedulers.update_learning_rate(self.optimizer, lr)
        return float(lr)

    def _collapsed(self, dist, where):
        """True (and a logged warning) when one class takes far more predictions than its label share."""
        margin = float(self.hparams.collapse_margin)
        if self.label_share is None:
            return False
        excess = np.asarray(dist) - self.label_share
        k = int(np.argmax(excess))
        if excess[k] > margin:
            logger.warning("prediction collapse (%s): %.1f %% of the predictions are class %d, "
                           "whose share of the inherited labels is %.1f %% (collapse_margin %.2f)",
                           where, 100 * dist[k], k, 100 * self.label_share[k], margin)
            return True
        return False

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs the stage and saves a checkpoint at the end of each epoch."""
        if stage == sb.Stage.TRAIN:
            self.timing["train_step_seconds"] += self._clock() - self._train_started
            self.timing["train_segments_seen"] += len(self.train_labels)
            self.timing["epochs_run"] += 1
            self.train_loss = stage_loss
            counts = self.stage_pred_counts.cpu().numpy()
            # training predictions of the plain CE epochs (unmixed inputs, train mode); SSSL epochs: the
            # partition pass of partition.csv
            self.train_pred_dist = counts / counts.sum() if counts.sum() else None
            self.state.epoch = epoch  # the partition of a finished epoch is never reused
            self.state.clean = None
            if self.valid_is_absent:
                self._end_of_epoch(epoch, {})
            return
        stats = {"loss": stage_loss, "acc_inherited": self.stage_correct / max(1, self.stage_count)}
        if stage == sb.Stage.VALID:
            stats.update(self._valid_diagnostics(epoch))
            self._end_of_epoch(epoch, stats)
        elif getattr(self.hparams, "train_logger", None) is not None:
            self.hparams.train_logger.log_stats({"Epoch loaded": self.hparams.epoch_counter.current},
                                                test_stats=stats)

    def _valid_diagnostics(self, epoch):
        """Accuracy against the truth, song-level accuracy (mean probability) and collapse check of VALID."""
        out = {}
        if self.stage_truth_count:
            out["acc_truth"] = self.stage_truth_correct / self.stage_truth_count
        if self.stage_song_probs:
            hits = [int(np.argmax(total) == lab) for lab, total, _ in self.stage_song_probs.values()]
            out["song_acc"] = float(np.mean(hits))
        counts = self.stage_pred_counts.cpu().numpy()
        self.valid_pred_dist = counts / max(1, counts.sum())
        self.valid_collapse = self._collapsed(self.valid_pred_dist, f"epoch {epoch}, validation segments")
        return out

    def _write_epoch_stats(self, epoch, valid_stats):
        train_dist = getattr(self, "train_pred_dist", None)  # None in SSSL epochs: see partition.csv
        row = {"epoch": epoch, "method": self.method, "sssl": int(self.uses_partition(epoch)),
               "lr": _fmt(getattr(self, "epoch_lr", None)), "train_loss": _fmt(self.train_loss),
               "train_pred_dist": "" if train_dist is None else format_distribution(train_dist),
               "valid_loss": _fmt(valid_stats.get("loss")),
               "valid_acc": _fmt(valid_stats.get("acc_inherited")),
               "valid_acc_truth": _fmt(valid_stats.get("acc_truth")),
               "valid_song_acc": _fmt(valid_stats.get("song_acc")),
               "valid_pred_dist": format_distribution(self.valid_pred_dist) if valid_stats else "",
               "valid_collapse": int(getattr(self, "valid_collapse", False)) if valid_stats else ""}
        # rows of earlier epochs (a warm-up restored from another method's snapshot is this method's too)
        earlier = [{**r, "method": self.method} for r in self.state.epoch_stats if int(r["epoch"]) < epoch]
        self.state.epoch_stats = earlier + [row]
        if valid_stats:
            logger.info("epoch %d: valid acc %.4f, predicted class shares %s (label shares %s)", epoch,
                        valid_stats["acc_inherited"], row["valid_pred_dist"],
                        format_distribution(self.label_share if self.label_share is not None else []))
        folder = getattr(self.hparams, "output_folder", None)
        if folder and if_main_process():
            atomic_write_csv(os.path.join(folder, "epoch_stats.csv"), self.state.epoch_stats, EPOCH_COLUMNS)

    def _end_of_epoch(self, epoch, valid_stats):
        self._write_epoch_stats(epoch, valid_stats)
        train_stats = {"loss": self.train_loss}
        last = self.state.history[-1] if self.state.history else None
        if last is not None and int(last["epoch"]) == epoch:
            train_stats.update(n_clean=last["n_clean"], n_noisy=last["n_noisy"])
            if last["clean_precision"] != "":
                train_stats["clean_precision"] = last["clean_precision"]
        if getattr(self.hparams, "train_logger", None) is not None:
            epoch_info = {"epoch": epoch, "method": self.method, "sssl": self.uses_partition(epoch)}
            if getattr(self, "epoch_lr", None) is not None:
                epoch_info["lr"] = self.epoch_lr
            self.hparams.train_logger.log_stats(epoch_info, train_stats=train_stats,
                                                valid_stats=valid_stats or None)
        if self.checkpointer is not None:
            meta = {"epoch": epoch, **valid_stats}
            selection = self._selection(meta)
            keys = {f"{selection[1]}_keys": [selection[0]]} if selection else {}
            self.checkpointer.save_and_keep_only(meta=meta, num_to_keep=1, **keys)
            snapshot = getattr(self.hparams, "warmup_snapshot", None)
            if snapshot and epoch == int(self.hparams.warmup_epochs) and if_main_process():
                save_warmup_snapshot(str(self.checkpointer.checkpoints_dir), snapshot,
                                     self.hparams.warmup_key, getattr(self.hparams, "train_log", None))

    def _selection(self, meta=None):
        """(meta key, ``max``/``min``) of ``selection_metric``; None for ``last``, without validation
        or when ``meta`` lacks the key."""
        key, direction = SELECTION_METRICS[self.hparams.selection_metric]
        if direction is None or self.valid_is_absent or (meta is not None and key not in meta):
            return None
        return key, direction

    def recover_selected(self):
        """Loads the checkpoint chosen by ``selection_metric`` on validation (after ``fit``).

        SpeechBrain's recipes test the checkpoint with the best validation
        score; every method (sssl, proposed_star, inherit) is selected the
        same way. ``last`` (or no validation set) keeps the last epoch.

        Returns
        -------
        dict
            ``selection_metric``, ``selected_epoch``, ``selected_value`` and, for
            the SSSL methods, ``selected_in_warmup`` (for metrics.json; the
            checkpoint's folder name holds a wall-clock time, so it is not
            recorded: the epoch identifies it).
        """
        selection = self._selection()
        out = {"selection_metric": self.hparams.selection_metric if selection else "last",
               "selected_epoch": None, "selected_value": None}
        if self.checkpointer is None:
            return out
        find = {f"{selection[1]}_key": selection[0]} if selection else {}
        ckpt = self.checkpointer.find_checkpoint(**find)
        if ckpt is None:
            return out
        self.checkpointer.load_checkpoint(ckpt)
        value = ckpt.meta.get(selection[0]) if selection else None
        epoch = ckpt.meta.get("epoch")
        out.update(selected_epoch=epoch, selected_value=None if value is None else float(value))
        if self.method != "inherit" and epoch is not None:
            # a warm-up checkpoint is plain cross-entropy: the SSSL epochs did not reach the outputs
            out["selected_in_warmup"] = int(epoch) <= int(self.hparams.warmup_epochs)
            if out["selected_in_warmup"]:
                logger.warning("%s: the selected checkpoint is warm-up epoch %s (plain cross-entropy), "
                               "not an SSSL epoch", self.method, epoch)
        logger.info("selected checkpoint %s (epoch %s, %s = %s)", os.path.basename(str(ckpt.path)),
                    out["selected_epoch"], out["selection_metric"], out["selected_value"])
        return out

    @property
    def valid_is_absent(self):
        """True when ``fit`` got no validation set (checkpoints are then saved after training)."""
        return getattr(self, "_no_valid", False)

    # ------------------------------------------------------------ inference
    def _eval_logits(self, dataset, batch_size=None, positions=None):
        """Yields ``(batch, logits)`` over ``dataset`` in order: eval mode, no grad, no augmentation.

        ``positions`` (a :class:`DeviceSegments` only): the segments to run, in this order.
        """
        batch_size = int(batch_size or self.hparams.partition_batch_size)
        if isinstance(dataset, DeviceSegments):
            loader = dataset.loader(batch_size, positions=positions)
        else:
            loader = sb.dataio.dataloader.make_dataloader(
                dataset, batch_size=batch_size, shuffle=False, collate_fn=sb.dataio.batch.PaddedBatch)
        was_training = self.modules.training
        self.modules.eval()
        try:
            with torch.inference_mode(), self.evaluation_ctx:
                for batch in loader:
                    yield batch, self.modules.model(batch.feats.data.to(self.device)).float()
        finally:
            self.modules.train(was_training)

    def predict_probs(self, dataset, batch_size=None):
        """Class probabilities of every segment of ``dataset``, in dataset order (eval mode)."""
        out = [torch.softmax(logits, -1).cpu() for _, logits in self._eval_logits(dataset, batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, int(self.hparams.n_classes)))


def _fmt(value):
    return "" if value is None else round(float(value), 6)


def format_distribution(shares):
    """Class shares as one compact string, e.g. for ``epoch_stats.csv``.

    Example
    -------
    >>> format_distribution([0.25, 0.75])
    '0.250/0.750'
    """
    return "/".join(f"{float(v):.3f}" for v in shares)
