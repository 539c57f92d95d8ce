"""Hyperparameters of a recipe run: command-line overrides, loading the yaml, the ``--debug`` limits."""

import os
import re

import yaml
from hyperpyyaml import load_hyperpyyaml

from sssl_brain.utils.errors import ConfigError


def parse_overrides(overrides):
    """Command-line overrides (a yaml string from ``sb.parse_arguments``) as a dict."""
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    parsed = yaml.safe_load(overrides)
    return dict(parsed or {})


def load_hparams(hparams_file, overrides):
    """Loads the yaml with overrides (a dict); a missing file raises a ConfigError."""
    if not os.path.isfile(hparams_file):
        raise ConfigError(f"{hparams_file}: hyperparameter file not found")
    with open(hparams_file, encoding="utf-8") as fin:
        try:
            return load_hyperpyyaml(fin, overrides)
        except ValueError as err:
            match = re.search(r"'(\w+)' is a !PLACEHOLDER", str(err))
            if match is None:
                raise
            name = match.group(1)
            raise ConfigError(f"{name}: required, pass --{name}=... (see README)") from None


def debug_overrides(run_opts, hparams_file, overrides):
    """What ``--debug`` changes so a smoke run exercises every stage in seconds.

    SpeechBrain's ``--debug`` runs ``debug_epochs`` epochs of ``debug_batches``
    batches. On top of that a debug run keeps ``debug_songs_per_class`` songs
    of each class (so feature extraction and the no-grad partition,
    validation and prediction passes are small too, see
    :func:`sssl_brain.dataio.experiment.debug_subset`), uses two
    folds and trains only the first fold of ``folds``, and ends the warm-up
    one epoch before the last debug epoch so an SSSL epoch (the partition)
    runs. Values given on the command line win.

    Arguments
    ---------
    run_opts : dict
        SpeechBrain run options (``debug``, ``debug_epochs``).
    hparams_file : str
        The yaml (read for ``warmup_epochs`` and ``folds``).
    overrides : dict
        Command-line overrides.

    Returns
    -------
    dict
        Overrides to apply before the command line's (empty without ``--debug``).
    """
    if not run_opts.get("debug"):
        return {}
    hp = load_hparams(hparams_file, overrides)
    epochs = int(run_opts.get("debug_epochs", 2))
    folds = hp["folds"] if hp["folds"] is not None else [0]
    return {"n_folds": 2, "folds": [min(int(folds[0]), 1)],
            "warmup_epochs": max(0, min(int(hp["warmup_epochs"]), epochs - 1))}
