"""Start-up checks of the SSSL settings: every option the Brain reads, and its allowed values.

The yaml (``hparams/vgg16_sssl.yaml``) is the one source of every value:
:func:`check_sssl_hparams` refuses a missing key by name, and a wrong value
with a ConfigError naming the option. The lists here say which keys the Brain
reads (:data:`BRAIN_HPARAMS`), which act only after the warm-up
(:data:`AFTER_WARMUP_HPARAMS`, for the shared warm-up) and the partition's
fallback thresholds (:data:`FALLBACK_THRESHOLDS`, :func:`check_fallback_thresholds`).
"""

import os

import numpy as np
import speechbrain as sb
import torch

from sssl_brain.utils.errors import ConfigError

#: The fallback thresholds of :func:`sssl_brain.method.partition.partition_segments` (the yaml names them
#: ``partition_<name>``; :mod:`sssl_brain.method.fallbacks` says what each does).
FALLBACK_THRESHOLDS = ("min_clean_frac", "max_clean_frac", "min_mean_gap", "bias_tolerance",
                       "min_class_share", "min_samples")


def check_fallback_thresholds(min_clean_frac, max_clean_frac, min_mean_gap, bias_tolerance, min_class_share,
                              min_samples, prefix=""):
    """Checks the fallback thresholds of ``partition_segments``; errors name the option.

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


#: The methods of stage 1 (paper Table 3).
METHODS = ("sssl", "proposed_star", "inherit")
PSEUDO_LABEL_SOURCES = ("step", "co_guess", "epoch")
RDROP_REDUCTIONS = ("unlabeled", "batch")
#: What U's target is built from: the sharpened guess (the paper) or the guess refined by the inherited label.
UNLABELED_TARGETS = ("guess", "refined")
#: How U's mixed samples enter L_MIX: ``joint`` (the paper: one mean over the batch), ``none`` (X's rows
#: only), or DivideMix's ``L_X + lambda_u * L_U`` with L_U a cross-entropy or a squared error.
UNLABELED_LOSSES = ("joint", "none", "cross_entropy", "squared_error")
#: ``selection_metric`` -> (its key in the validation stats and the checkpoint meta, direction);
#: ``last``: no selection.
SELECTION_METRICS = {"valid_acc": ("acc_inherited", "max"), "valid_song_acc": ("song_acc", "max"),
                     "valid_loss": ("loss", "min"), "last": (None, None)}
#: Which epochs an SSSL method is selected among: all, or its SSSL epochs after the warm-up.
SELECTION_SCOPES = ("all", "post_warmup")
#: Settings that act only after the warm-up (the SSSL step) or only in stage 2: the warm-up epochs of
#: a fold are the same for every method whatever their values (see ``share_warmup``).
AFTER_WARMUP_HPARAMS = (
    "method", "methods", "tau", "sharpen_temperature", "mixup_alpha", "rdrop_lambda", "gmm_max_iter",
    "gmm_tol", "gmm_reg_covar", "gmm_per_class", *(f"partition_{k}" for k in FALLBACK_THRESHOLDS),
    "plot_partition", "prior_weight", "refine_labels",
    "pseudo_labels", "rdrop_reduction", "unlabeled_targets", "unlabeled_loss", "unlabeled_weight",
    "unlabeled_rampup_epochs", "song_theta", "svm_grid_search", "svm_C",
    "svm_gamma", "svm_C_grid", "svm_gamma_grid", "share_warmup", "fold_jobs", "selection_scope", "co_divide",
)
#: Every key the Brain reads from its hyperparameters. Each one is set in ``hparams/vgg16_sssl.yaml``,
#: the one source of their values: a missing key is a ConfigError naming it (:func:`check_sssl_hparams`),
#: never a value from the code.
BRAIN_HPARAMS = (
    "method", "n_classes", "seed", "warmup_epochs", "epoch_counter", "tau", "sharpen_temperature",
    "mixup_alpha", "rdrop_lambda", "gmm_max_iter", "gmm_tol", "gmm_reg_covar", "gmm_per_class",
    *(f"partition_{k}" for k in FALLBACK_THRESHOLDS), "partition_batch_size", "plot_partition",
    "prior_weight", "refine_labels", "pseudo_labels", "rdrop_reduction", "unlabeled_targets",
    "unlabeled_loss", "unlabeled_weight", "unlabeled_rampup_epochs", "collapse_margin", "selection_metric",
    "selection_scope", "ema_decay", "warmup_mixup", "co_divide",
)
#: The optional objects :class:`sssl_brain.method.brain.SSSLBrain` uses when they are given:
#: ``partition_state`` (the checkpointed :class:`~sssl_brain.method.selection.PartitionState`),
#: ``train_logger``, ``output_folder`` (``partition.csv``, ``epoch_stats.csv``, the plots) and
#: ``lr_annealing`` (the per-epoch learning rate).
OPTIONAL_BRAIN_HPARAMS = ("partition_state", "train_logger", "output_folder", "lr_annealing")


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
    if not isinstance(hparams["warmup_mixup"], bool):
        raise ConfigError(f"warmup_mixup={hparams['warmup_mixup']!r}: must be True or False")
    if not isinstance(hparams["co_divide"], bool):
        raise ConfigError(f"co_divide={hparams['co_divide']!r}: must be True or False")
    if float(hparams["rdrop_lambda"]) < 0:
        raise ConfigError(f"rdrop_lambda={hparams['rdrop_lambda']!r}: must be >= 0")
    if int(hparams["warmup_epochs"]) < 0:
        raise ConfigError(f"warmup_epochs={hparams['warmup_epochs']!r}: must be >= 0")
    if float(hparams["prior_weight"]) < 0:
        raise ConfigError(f"prior_weight={hparams['prior_weight']!r}: must be >= 0")
    choices = (("pseudo_labels", PSEUDO_LABEL_SOURCES), ("rdrop_reduction", RDROP_REDUCTIONS),
               ("unlabeled_targets", UNLABELED_TARGETS), ("unlabeled_loss", UNLABELED_LOSSES),
               ("selection_metric", tuple(SELECTION_METRICS)), ("selection_scope", SELECTION_SCOPES))
    for key, allowed in choices:
        if hparams[key] not in allowed:
            raise ConfigError(f"{key}={hparams[key]!r}: choose one of {', '.join(allowed)}")
    if float(hparams["unlabeled_weight"]) < 0:
        raise ConfigError(f"unlabeled_weight={hparams['unlabeled_weight']!r}: must be >= 0")
    if int(hparams["unlabeled_rampup_epochs"]) < 0:
        raise ConfigError(f"unlabeled_rampup_epochs={hparams['unlabeled_rampup_epochs']!r}: must be >= 0")
    if hparams["unlabeled_loss"] in ("joint", "none") and (float(hparams["unlabeled_weight"]) != 1.0
                                                           or int(hparams["unlabeled_rampup_epochs"]) != 0):
        raise ConfigError(f"unlabeled_weight={hparams['unlabeled_weight']!r}, unlabeled_rampup_epochs="
                          f"{hparams['unlabeled_rampup_epochs']!r} with unlabeled_loss="
                          f"{hparams['unlabeled_loss']}: it has no lambda_u; set unlabeled_loss to "
                          f"cross_entropy or squared_error, or the weight to 1 and the ramp to 0")
    decay = hparams["ema_decay"]
    if decay is not None and (isinstance(decay, bool) or not isinstance(decay, (int, float))
                              or not 0.0 <= float(decay) < 1.0):
        raise ConfigError(f"ema_decay={decay!r}: must be in [0, 1), or null (no mean teacher)")
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
