"""Export a trained fold as a self-contained model folder, and read such a folder back safely.

An exported folder holds everything inference needs and nothing that runs
code when loaded::

    <model>/
        hyperparams.yaml       plain settings (yaml.safe_load): target, class names,
                               feature, segment, model and song-level settings
        model.ckpt             VGG16 state_dict (torch.save; read with weights_only=True)
        song_classifier.skops  stage 2 classifier, Eq. 10 theta inside (skops, explicit type allowlist;
                               no pickle)
        README.md              what the model is, how to use it, its test metrics
        manifest.json          format, version, and the size and SHA-256 of every other file

Loading (:func:`load_model_folder`) checks the manifest first: every file it
lists must exist and match its checksum, and the three model files must be
listed; any problem raises :class:`~sssl_brain.utils.errors.ModelFolderError`
naming the file. Neither the training data nor network access is needed.

The folder is written atomically: it is built in a temporary folder next to
the target and renamed into place, so an interrupted export leaves no
half-written model.

Command line (also the ``sssl-export`` console script)::

    python -m sssl_brain.inference.export FOLD_DIR OUT_DIR [--checkpoint CKPT+...] [--refit_song_classifier]
                                [--overwrite]
"""

import argparse
import dataclasses
import datetime
import inspect
import json
import logging
import os
import shutil
import sys
import tempfile
from typing import NamedTuple

import numpy as np
import torch
import yaml

from sssl_brain import __version__
from sssl_brain.dataio.features import FeatureConfig
from sssl_brain.dataio.labels import CLASS_NAMES
from sssl_brain.dataio.segments import frames_per_segment, segment_hop
from sssl_brain.lobes.vgg16 import VGG16
from sssl_brain.song_level.classifier import SongClassifier
from sssl_brain.utils.errors import ConfigError, DataError, ModelFolderError, SSSLError
from sssl_brain.utils.io_utils import atomic_write_bytes, atomic_write_json, atomic_write_text, read_csv_dicts
from sssl_brain.utils.model_io import dumps_song_classifier, load_song_classifier, sha256_file

logger = logging.getLogger(__name__)

FORMAT = "sssl-brain-model"
FORMAT_VERSION = 1
HPARAMS_FILE = "hyperparams.yaml"
WEIGHTS_FILE = "model.ckpt"
CLASSIFIER_FILE = "song_classifier.skops"
README_FILE = "README.md"
MANIFEST_FILE = "manifest.json"
#: Files a model folder must hold (besides the manifest itself).
REQUIRED_FILES = (HPARAMS_FILE, WEIGHTS_FILE, CLASSIFIER_FILE)
#: Name of the song classifier in a trained fold folder.
FOLD_CLASSIFIER_FILE = "song_classifier.skops"

_FOLD_KEYS = ("target", "seg_dur", "seg_overlap", "max_song_duration", "sample_rate", "n_fft", "hop_length",
              "n_mels", "n_classes", "width_mult", "classifier_dim", "batch_norm", "dropout",
              "song_theta", "class_names")

_TRAINING_KEYS = ("method", "fold", "seed", "valence_threshold", "arousal_threshold")
# fold_config.json key of the fixed dB reference (older folds: ref_db)
_REF_KEYS = ("mel_power_ref", "ref_db")


class ModelFolder(NamedTuple):
    """What :func:`load_model_folder` returns."""

    folder: str
    hparams: dict
    state_dict: dict
    classifier: object
    manifest: dict


# --------------------------------------------------------------------------- settings
def hparams_from_fold_config(config, source="fold_config.json"):
    """The exported ``hyperparams.yaml`` content (plain types) from a fold's ``fold_config.json``.

    Arguments
    ---------
    config : dict
        Content of ``fold_config.json`` (:func:`sssl_brain.experiment.fold_config`).
    source : str
        Names the config in error messages.

    Returns
    -------
    dict

    Example
    -------
    >>> config = {"target": "valence", "seg_dur": 3, "seg_overlap": None, "max_song_duration": None,
    ...           "sample_rate": 22050, "n_fft": 1024, "hop_length": 512, "n_mels": 128, "mel_power_ref": 1.0,
    ...           "n_classes": 2, "width_mult": 1.0, "classifier_dim": 4096, "batch_norm": False,
    ...           "dropout": 0.5, "song_theta": 0.5, "class_names": ["low", "high"]}
    >>> hp = hparams_from_fold_config(config)
    >>> hp["class_names"], hp["segments"]["seg_dur"], hp["features"]["n_mels"], hp["model"]["n_classes"]
    (['low', 'high'], 3.0, 128, 2)
    """
    missing = [k for k in _FOLD_KEYS if k not in config]
    ref_key = next((k for k in _REF_KEYS if k in config), None)
    if ref_key is None:
        missing.append(_REF_KEYS[0])
    if missing:
        raise ModelFolderError(f"{source}: missing key(s) {', '.join(missing)}")
    try:
        features = FeatureConfig(sample_rate=config["sample_rate"], n_fft=config["n_fft"],
                                 hop_length=config["hop_length"], n_mels=config["n_mels"],
                                 ref=config[ref_key])
    except ConfigError as err:
        raise ModelFolderError(f"{source}: bad feature setting ({err})") from None
    hp = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "target": str(config["target"]),
        "class_names": [str(c) for c in config["class_names"]],
        "features": dataclasses.asdict(features),
        "segments": {
            "seg_dur": float(config["seg_dur"]),
            "seg_overlap": None if config["seg_overlap"] is None else float(config["seg_overlap"]),
            "max_song_duration": (None if config["max_song_duration"] is None
                                  else float(config["max_song_duration"])),
        },
        "model": {
            "architecture": "VGG16",
            "n_classes": int(config["n_classes"]),
            "in_channels": 1,
            "width_mult": float(config["width_mult"]),
            "classifier_dim": int(config["classifier_dim"]),
            "batch_norm": bool(config["batch_norm"]),
            "dropout": float(config["dropout"]),
            "adaptive_pool": [7, 7],
            "n_mels": None,  # bins of the input normalisation (None: one global mean/std), from the weights
        },
        "song_level": {"theta": float(config["song_theta"]), "aggregators": ["svm", "majority", "mean"]},
        "training": {k: config[k] for k in _TRAINING_KEYS if k in config},
    }
    check_hparams(hp, source)
    return hp


def check_hparams(hp, source=HPARAMS_FILE):
    """Checks the content of ``hyperparams.yaml``; a bad value raises ModelFolderError naming the key.

    Returns
    -------
    dict
        ``hp`` itself.
    """
    if not isinstance(hp, dict):
        raise ModelFolderError(f"{source}: expected a mapping of settings, got {type(hp).__name__}")
    if hp.get("format") != FORMAT:
        raise ModelFolderError(f"{source}: format={hp.get('format')!r}, expected {FORMAT!r}")
    if not isinstance(hp.get("format_version"), int) or hp["format_version"] > FORMAT_VERSION:
        raise ModelFolderError(f"{source}: format_version={hp.get('format_version')!r} is not supported "
                               f"(this sssl-brain reads version <= {FORMAT_VERSION})")
    for key in ("target", "class_names", "features", "segments", "model", "song_level"):
        if key not in hp:
            raise ModelFolderError(f"{source}: missing key {key!r}")
    names, model = hp["class_names"], hp["model"]
    if not (isinstance(names, list) and len(names) >= 2 and all(isinstance(c, str) for c in names)):
        raise ModelFolderError(f"{source}: class_names={names!r} must be a list of at least 2 names")
    if hp["target"] in CLASS_NAMES and list(CLASS_NAMES[hp["target"]]) != names:
        raise ModelFolderError(f"{source}: class_names={names} do not match target={hp['target']!r}")
    if not isinstance(model, dict) or model.get("architecture") != "VGG16":
        raise ModelFolderError(f"{source}: model.architecture must be 'VGG16'")
    if model.get("n_classes") != len(names):
        raise ModelFolderError(f"{source}: model.n_classes={model.get('n_classes')!r} but "
                               f"{len(names)} class names")
    try:
        feature_config(hp)
        seg = hp["segments"]
        segment_hop(float(seg["seg_dur"]), seg.get("seg_overlap"))
        float(hp["song_level"]["theta"])
    except (ConfigError, KeyError, TypeError, ValueError) as err:
        raise ModelFolderError(f"{source}: bad setting ({type(err).__name__}: {err})") from None
    return hp


def feature_config(hp):
    """The :class:`~sssl_brain.dataio.features.FeatureConfig` of an exported model's hyperparameters."""
    features = hp["features"]
    if not isinstance(features, dict):
        raise ConfigError(f"features={features!r}: expected a mapping")
    return FeatureConfig(**features)


def segment_frames(hp):
    """Frames of one segment of an exported model (:func:`sssl_brain.dataio.segments.frames_per_segment`)."""
    features = feature_config(hp)
    return frames_per_segment(float(hp["segments"]["seg_dur"]), features.sample_rate, features.hop_length)


def _vgg16_arguments():
    return set(inspect.signature(VGG16.__init__).parameters) - {"self"}


def build_model(hp, source=HPARAMS_FILE, channels_last=False):
    """An untrained :class:`~sssl_brain.lobes.vgg16.VGG16` shaped as ``hp['model']`` says.

    Arguments
    ---------
    hp : dict
        Content of ``hyperparams.yaml``.
    source : str
        Names the settings in error messages.
    channels_last : bool
        Memory layout of the convolutions (same numbers), if this VGG16 supports it.

    Returns
    -------
    VGG16
    """
    m = hp["model"]
    accepted = _vgg16_arguments()
    try:
        kwargs = {"n_classes": int(m["n_classes"]), "in_channels": int(m.get("in_channels", 1)),
                  "batch_norm": bool(m["batch_norm"]), "width_mult": float(m["width_mult"]),
                  "classifier_dim": int(m["classifier_dim"]), "dropout": float(m["dropout"]),
                  "adaptive_pool": tuple(m.get("adaptive_pool", (7, 7)))}
        if m.get("n_mels") is not None:
            if "n_mels" not in accepted:
                raise ConfigError("model.n_mels is set but this VGG16 has no input normalisation")
            kwargs["n_mels"] = int(m["n_mels"])
        if "channels_last" in accepted:
            kwargs["channels_last"] = bool(channels_last)
        return VGG16(**kwargs)
    except (ConfigError, KeyError, TypeError, ValueError) as err:
        raise ModelFolderError(f"{source}: cannot build the model ({type(err).__name__}: {err})") from None


# --------------------------------------------------------------------------- safe reading
def read_weights(path, model=None):
    """Reads a state_dict saved with ``torch.save``, with ``weights_only=True`` (no code runs).

    Arguments
    ---------
    path : str
        The weights file.
    model : torch.nn.Module, optional
        If given, the weights are loaded into it (strict: same keys and shapes).

    Returns
    -------
    dict
        The state_dict (name -> tensor).

    Raises
    ------
    ModelFolderError
        Missing file, a file that is not a plain state_dict (e.g. a pickle of
        arbitrary objects) or weights that do not fit ``model``; the message names the file.
    """
    if not os.path.isfile(path):
        raise ModelFolderError(f"{path}: model weights not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError for anything but tensors and plain types
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ModelFolderError(f"{path}: refused to load, not a plain torch state_dict saved with torch.save "
                               f"({type(err).__name__}: {first})") from None
    if not (isinstance(state, dict) and state
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise ModelFolderError(f"{path}: not a state_dict (a mapping of parameter names to tensors)")
    if model is not None:
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ModelFolderError(
                f"{path}: the weights do not fit the model of {HPARAMS_FILE} ({err})") from None
    return state


def read_hparams(path):
    """Reads ``hyperparams.yaml`` with ``yaml.safe_load`` (plain types only) and checks it."""
    try:
        with open(path, encoding="utf-8") as f:
            hp = yaml.safe_load(f)
    except FileNotFoundError:
        raise ModelFolderError(f"{path}: hyperparameter file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0]
        raise ModelFolderError(f"{path}: not a plain YAML file of settings (tags such as !new or "
                               f"!!python are refused): {first}") from None
    return check_hparams(hp, source=path)


def read_manifest(folder):
    """Reads and checks ``manifest.json`` of a model folder (format, version, file list)."""
    path = os.path.join(folder, MANIFEST_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise ModelFolderError(f"{path}: not found; {folder} is not an exported sssl-brain model "
                               "(create one with `sssl-export FOLD_DIR OUT_DIR`)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFolderError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFolderError(f"{path}: not an sssl-brain model manifest (format must be {FORMAT!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFolderError(f"{path}: format_version={version!r} is not supported "
                               f"(this sssl-brain reads version <= {FORMAT_VERSION})")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise ModelFolderError(f"{path}: 'files' must map file names to their sha256")
    for name, entry in files.items():
        plain = isinstance(name, str) and name == os.path.basename(name)
        if not plain or name in ("", ".", "..", MANIFEST_FILE):
            raise ModelFolderError(f"{path}: bad file name {name!r} (plain names inside the folder only)")
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)):
            raise ModelFolderError(f"{path}: entry of {name!r} lacks its sha256")
    for name in REQUIRED_FILES:
        if name not in files:
            raise ModelFolderError(f"{path}: does not list the required file {name}")
    return manifest


def verify_model_folder(folder):
    """Checks a model folder against its manifest: every listed file present with its checksum.

    Arguments
    ---------
    folder : str
        An exported model folder.

    Returns
    -------
    dict
        The manifest.

    Raises
    ------
    ModelFolderError
        Not a folder, no or bad manifest, a missing file or a checksum mismatch (naming the file).
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ModelFolderError(f"{folder}: model folder not found")
    manifest = read_manifest(folder)
    for name, entry in manifest["files"].items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise ModelFolderError(f"{path}: missing file (listed in {MANIFEST_FILE})")
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            raise ModelFolderError(f"{path}: checksum mismatch (sha256 {digest[:16]}..., {MANIFEST_FILE} "
                                   f"says {entry['sha256'][:16]}...): the file was changed or damaged")
    return manifest


def load_model_folder(folder):
    """Verifies and reads an exported model folder; nothing from the folder is executed.

    Arguments
    ---------
    folder : str
        An exported model folder (:func:`export_fold`).

    Returns
    -------
    ModelFolder
        ``folder``, ``hparams`` (dict), ``state_dict``, ``classifier`` and ``manifest``.

    Raises
    ------
    ModelFolderError
        Anything missing, changed or unsafe; the message names the file.
    """
    folder = os.path.abspath(os.fspath(folder))
    manifest = verify_model_folder(folder)
    hp = read_hparams(os.path.join(folder, HPARAMS_FILE))
    model = build_model(hp, source=os.path.join(folder, HPARAMS_FILE))
    state = read_weights(os.path.join(folder, WEIGHTS_FILE), model)
    classifier = load_song_classifier(os.path.join(folder, CLASSIFIER_FILE))
    check_classifier_fits(classifier, hp, os.path.join(folder, CLASSIFIER_FILE))
    return ModelFolder(folder, hp, state, classifier, manifest)


def check_classifier_fits(classifier, hp, source=CLASSIFIER_FILE):
    """Checks that a song classifier serves a model of ``hp``: a SongClassifier, same theta, class indices.

    Raises
    ------
    ModelFolderError
        If it is not a :class:`~sssl_brain.song_level.classifier.SongClassifier` (it takes the
        segment probabilities), its ``theta`` differs from ``song_level.theta`` or its classes are
        not class indices of ``class_names``; the message names ``source``.
    """
    if not isinstance(classifier, SongClassifier):
        raise ModelFolderError(f"{source}: a {type(classifier).__name__}, not a SongClassifier over the "
                               "segment probabilities (a features_svm fold cannot be exported)")
    theta = float(hp["song_level"]["theta"])
    if float(classifier.theta) != theta:
        raise ModelFolderError(f"{source}: the classifier's theta={classifier.theta!r} differs from "
                               f"song_level.theta={theta!r} of {HPARAMS_FILE}")
    classes = np.asarray(getattr(classifier, "classes_", []))
    n_classes = len(hp["class_names"])
    if classes.size == 0 or classes.min() < 0 or classes.max() >= n_classes:
        raise ModelFolderError(f"{source}: classes {classes.tolist()} are not "
                               f"class indices 0..{n_classes - 1}")


# --------------------------------------------------------------------------- export
def find_checkpoint(fold_dir, checkpoint=None):
    """The ``save/CKPT+*`` folder of a trained fold holding ``model.ckpt``.

    Arguments
    ---------
    fold_dir : str
        A trained fold folder.
    checkpoint : str, optional
        Name of one checkpoint folder; default: the one selected on
        validation (the checkpoint of ``selected_epoch`` in the fold's
        ``metrics.json``, the model that wrote ``segment_predictions.csv``),
        else the most recent one (its ``CKPT.yaml`` ``unixtime``, else its name).

    Returns
    -------
    str
    """
    save = os.path.join(fold_dir, "save")
    selected_epoch = None
    if checkpoint is None:
        try:
            with open(os.path.join(fold_dir, "metrics.json"), encoding="utf-8") as f:
                selected_epoch = json.load(f).get("selected_epoch")
        except (OSError, ValueError, AttributeError):
            selected_epoch = None
    if checkpoint is not None:
        path = checkpoint if os.path.isabs(checkpoint) else os.path.join(save, checkpoint)
        if not os.path.isfile(os.path.join(path, "model.ckpt")):
            raise ModelFolderError(f"{path}: no model.ckpt in this checkpoint")
        return path
    found = []
    if os.path.isdir(save):
        for name in sorted(os.listdir(save)):
            path = os.path.join(save, name)
            if name.startswith("CKPT+") and os.path.isfile(os.path.join(path, "model.ckpt")):
                when, epoch = 0.0, None
                try:
                    with open(os.path.join(path, "CKPT.yaml"), encoding="utf-8") as f:
                        meta = yaml.safe_load(f) or {}
                    when, epoch = float(meta.get("unixtime", 0.0)), meta.get("epoch")
                except (OSError, yaml.YAMLError, TypeError, ValueError, AttributeError):
                    pass
                found.append((when, name, path, epoch))
    if not found:
        raise ModelFolderError(
            f"{save}: no checkpoint with a model.ckpt; is {fold_dir} a trained fold folder?")
    if selected_epoch is not None:
        chosen = [f for f in found if f[3] == selected_epoch]
        if not chosen:
            raise ModelFolderError(f"{save}: no checkpoint of the selected epoch {selected_epoch} "
                                   f"(metrics.json); pass the checkpoint's name")
        return max(chosen)[2]
    return max(found)[2]


def _fold_model(hp, weights_path, source):
    """The fold's trained VGG16; records in ``hp`` the input normalisation size its weights hold.

    Weights saved before the model had input normalisation buffers load with
    the identity normalisation (mean 0, std 1), which is what they were trained with.
    """
    state = read_weights(weights_path)
    mean = state.get("input_mean")
    hp["model"]["n_mels"] = int(mean.numel()) if mean is not None and mean.numel() > 1 else None
    model = build_model(hp, source=source)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise ModelFolderError(
            f"{weights_path}: the weights do not fit the model of {source} ({err})") from None
    missing = set(missing) - {"input_mean", "input_std"}
    if missing or unexpected:
        raise ModelFolderError(f"{weights_path}: the weights do not fit the model of {source} "
                               f"(missing: {sorted(missing)}, unexpected: {sorted(unexpected)})")
    return model


def refit_song_classifier(fold_dir, hp):
    """Refits the fold's song classifier from its ``segment_predictions.csv`` (training songs only).

    For folds trained before the classifier was saved. Uses the C and gamma
    recorded in ``metrics.json`` (``svm_params``; no new grid search) and the
    segment probabilities as written (rounded to 6 decimals), so the result
    matches the original classifier closely but not bit for bit.
    """
    seg_csv = os.path.join(fold_dir, "segment_predictions.csv")
    if not os.path.isfile(seg_csv):
        raise ModelFolderError(f"{seg_csv}: not found; cannot refit the song classifier")
    names = hp["class_names"]
    columns = [f"p_{c}" for c in names]
    probs, labels = {}, {}
    for line, row in enumerate(read_csv_dicts(seg_csv), start=2):
        if row.get("split") != "train":
            continue
        try:
            probs.setdefault(row["song_id"], []).append([float(row[c]) for c in columns])
            labels[row["song_id"]] = int(row["label"])
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"{seg_csv}, line {line}: bad row ({type(err).__name__}: {err})") from None
    if not probs:
        raise ModelFolderError(f"{seg_csv}: no training segment; cannot refit the song classifier")
    params = {}
    metrics_json = os.path.join(fold_dir, "metrics.json")
    if os.path.isfile(metrics_json):
        with open(metrics_json, encoding="utf-8") as f:
            params = json.load(f).get("svm_params") or {}
    kwargs = {}
    if "C" in params:
        kwargs["C"] = float(params["C"])
    if "gamma" in params:
        gamma = params["gamma"]
        kwargs["gamma"] = gamma if gamma in ("scale", "auto") else float(gamma)
    songs = list(probs)
    seed = int(hp.get("training", {}).get("seed", 0))
    theta = float(hp["song_level"]["theta"])
    classifier = SongClassifier(theta=theta, grid_search=False, seed=seed, **kwargs)
    return classifier.fit([np.asarray(probs[s]) for s in songs], np.array([labels[s] for s in songs]))


def _readme(hp, files, fold_dir, checkpoint, metrics, refitted):
    names = ", ".join(hp["class_names"])
    seg, feat, model = hp["segments"], hp["features"], hp["model"]
    lines = [
        f"# sssl-brain model: {hp['target']} ({names})",
        "",
        "Music emotion recognition with semi-supervised self-learning (SSSL): a VGG16 segment classifier",
        "(stage 1) and an SVM over the Eq. 10 statistics of the segment probabilities (stage 2).",
        "",
        "## Use",
        "",
        "```bash",
        "sssl-classify THIS_FOLDER song.mp3 other_songs/ --csv predictions.csv --plot song.png",
        "```",
        "",
        "```python",
        "from sssl_brain.inference.recognizer import EmotionRecognizer",
        "model = EmotionRecognizer.from_hparams(source=\"THIS_FOLDER\")",
        "result = model.classify_file(\"song.mp3\")",
        "print(result.label, result.probs)",
        "```",
        "",
        "Loading needs neither the training data nor network access and runs no code from this folder:",
        "settings are plain YAML (`yaml.safe_load`), weights are read with `torch.load(weights_only=True)`,",
        "the song classifier with skops and an explicit type allowlist; every file is checked against",
        f"its SHA-256 in `{MANIFEST_FILE}`.",
        "",
        "## Settings",
        "",
        f"- target: {hp['target']}; classes: {names}",
        f"- segments: {seg['seg_dur']:g} s, "
        + ("hop 1 s" if seg["seg_overlap"] is None else f"overlap {seg['seg_overlap']:g} s")
        + ("" if seg["max_song_duration"] is None else f", first {seg['max_song_duration']:g} s of a song"),
        f"- features: {feat['n_mels']}-bin log-mel, {feat['window']} window {feat['n_fft']}, hop "
        f"{feat['hop_length']}, {feat['sample_rate']} Hz, dB re {feat['ref']}",
        f"- model: VGG16, width x{model['width_mult']:g}, classifier {model['classifier_dim']}, "
        f"batch norm {model['batch_norm']}",
        f"- song level: Eq. 10 with theta {hp['song_level']['theta']:g}, SVM"
        + (" (refitted at export from segment_predictions.csv)" if refitted else ""),
        "",
        "## Source",
        "",
        f"- fold folder: `{fold_dir}`",
        f"- checkpoint: `{os.path.basename(checkpoint)}`",
        f"- training: {json.dumps(hp.get('training', {}), sort_keys=True)}",
        f"- exported by sssl-brain {__version__} on {datetime.date.today().isoformat()}",
    ]
    test = (metrics or {}).get("metrics", {})
    rows = [(agg, split_metrics["test"]) for agg, split_metrics in sorted(test.items())
            if isinstance(split_metrics, dict) and isinstance(split_metrics.get("test"), dict)]
    if rows:
        lines += ["", "## Test metrics of the fold", "", "| aggregator | accuracy | macro F1 | songs |",
                  "|---|---:|---:|---:|"]
        for agg, m in rows:
            lines.append(f"| {agg} | {100 * m.get('accuracy', float('nan')):.2f} | "
                         f"{100 * m.get('macro_f1', float('nan')):.2f} | {m.get('n', '')} |")
    lines += ["", "## Files", "", "| file | bytes | sha256 |", "|---|---:|---|"]
    lines += [f"| {name} | {entry['bytes']} | `{entry['sha256']}` |" for name, entry in files.items()]
    return "\n".join(lines) + "\n"


def _file_entry(path):
    return {"sha256": sha256_file(path), "bytes": os.path.getsize(path)}


def export_fold(fold_dir, out_dir, checkpoint=None, refit=False, overwrite=False):
    """Packages a trained fold into a self-contained model folder (written atomically).

    Arguments
    ---------
    fold_dir : str
        A trained fold folder (``fold_config.json``, ``save/CKPT+*/model.ckpt``,
        ``song_classifier.skops``).
    out_dir : str
        The model folder to create.
    checkpoint : str, optional
        Checkpoint folder name (default: the most recent, see :func:`find_checkpoint`).
    refit : bool
        If the fold has no ``song_classifier.skops`` (trained before it was
        saved), refit it from ``segment_predictions.csv`` (:func:`refit_song_classifier`).
    overwrite : bool
        Replace an existing ``out_dir``.

    Returns
    -------
    dict
        The manifest written.

    Raises
    ------
    ModelFolderError
        If the fold folder is incomplete or ``out_dir`` exists (without ``overwrite``).
    """
    fold_dir = os.path.abspath(os.fspath(fold_dir))
    out_dir = os.path.abspath(os.fspath(out_dir))
    if not os.path.isdir(fold_dir):
        raise ModelFolderError(f"{fold_dir}: fold folder not found")
    if os.path.exists(out_dir) and not overwrite:
        raise ModelFolderError(f"{out_dir}: already exists (pass overwrite=True / --overwrite to replace it)")
    config_path = os.path.join(fold_dir, "fold_config.json")
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        raise ModelFolderError(f"{config_path}: not found; is {fold_dir} a trained fold folder?") from None
    except json.JSONDecodeError as err:
        raise ModelFolderError(f"{config_path}: not valid JSON ({err})") from None
    hp = hparams_from_fold_config(config, source=config_path)
    ckpt = find_checkpoint(fold_dir, checkpoint)
    model = _fold_model(hp, os.path.join(ckpt, "model.ckpt"), config_path)

    clf_path = os.path.join(fold_dir, FOLD_CLASSIFIER_FILE)
    refitted = False
    if os.path.isfile(clf_path):
        classifier = load_song_classifier(clf_path)
        check_classifier_fits(classifier, hp, clf_path)
        classifier_bytes = dumps_song_classifier(classifier)
    elif refit:
        logger.warning("%s not found: refitting the song classifier from segment_predictions.csv", clf_path)
        classifier_bytes = dumps_song_classifier(refit_song_classifier(fold_dir, hp))
        refitted = True
    else:
        raise ModelFolderError(
            f"{clf_path}: not found (folds trained before the classifier was saved lack it); pass "
            "refit=True / --refit_song_classifier to refit it from segment_predictions.csv")
    metrics = None
    metrics_path = os.path.join(fold_dir, "metrics.json")
    if os.path.isfile(metrics_path):
        try:
            with open(metrics_path, encoding="utf-8") as f:
                metrics = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError):
            logger.warning("%s: not valid JSON; the README lists no metrics", metrics_path)

    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".tmp-{os.path.basename(out_dir)}-")
    try:
        header = ("# sssl-brain exported model: plain settings, read with yaml.safe_load (no tags).\n"
                  f"# Files and checksums: {MANIFEST_FILE}; usage: {README_FILE}.\n")
        atomic_write_text(os.path.join(tmp, HPARAMS_FILE),
                          header + yaml.safe_dump(hp, sort_keys=False, default_flow_style=None))
        buf = _state_dict_bytes(model)
        atomic_write_bytes(os.path.join(tmp, WEIGHTS_FILE), buf)
        atomic_write_bytes(os.path.join(tmp, CLASSIFIER_FILE), classifier_bytes)
        files = {name: _file_entry(os.path.join(tmp, name)) for name in REQUIRED_FILES}
        readme = _readme(hp, files, fold_dir, ckpt, metrics, refitted)
        atomic_write_text(os.path.join(tmp, README_FILE), readme)
        files[README_FILE] = _file_entry(os.path.join(tmp, README_FILE))
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "sssl_brain_version": __version__,
                    "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "source": {"fold_dir": fold_dir, "checkpoint": os.path.basename(ckpt),
                               "song_classifier": "refitted" if refitted else FOLD_CLASSIFIER_FILE},
                    "files": files}
        atomic_write_json(os.path.join(tmp, MANIFEST_FILE), manifest)
        _make_readable(tmp)
        _replace_folder(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _make_readable(folder):
    """Temporary files are private (0600); a model folder is meant to be shared: 0755/0644 less umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o755 & ~umask)
    for name in os.listdir(folder):
        os.chmod(os.path.join(folder, name), 0o644 & ~umask)


def _state_dict_bytes(model):
    import io

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, buf)
    return buf.getvalue()


def _replace_folder(tmp, out_dir):
    """Renames ``tmp`` to ``out_dir``; an existing ``out_dir`` is moved aside first and then removed."""
    old = None
    if os.path.exists(out_dir):
        old = tempfile.mkdtemp(dir=os.path.dirname(out_dir), prefix=f".old-{os.path.basename(out_dir)}-")
        os.rmdir(old)
        os.replace(out_dir, old)
    try:
        os.replace(tmp, out_dir)
    except BaseException:
        if old is not None:
            os.replace(old, out_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- command line
def main(argv=None):
    """``sssl-export FOLD_DIR OUT_DIR``: exports a trained fold and prints what it wrote."""
    parser = argparse.ArgumentParser(
        prog="sssl-export", description="Export a trained sssl-brain fold as a self-contained model folder.")
    parser.add_argument("fold_dir", help="trained fold folder, e.g. results/<dataset>/<exp>/sssl/fold_0")
    parser.add_argument("out_dir", help="model folder to create")
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint folder name (default: the most recent)")
    parser.add_argument("--refit_song_classifier", "--refit-song-classifier", action="store_true",
                        help="refit the song classifier from segment_predictions.csv if the fold lacks "
                             f"{FOLD_CLASSIFIER_FILE}")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        manifest = export_fold(args.fold_dir, args.out_dir, checkpoint=args.checkpoint,
                               refit=args.refit_song_classifier, overwrite=args.overwrite)
    except SSSLError as err:
        print(f"sssl-export: error: {err}", file=sys.stderr)
        return 1
    out = os.path.abspath(args.out_dir)
    source = manifest["source"]
    print(f"exported {source['fold_dir']} (checkpoint {source['checkpoint']}) to {out}:")
    written = [*manifest["files"].items(), (MANIFEST_FILE, _file_entry(os.path.join(out, MANIFEST_FILE)))]
    for name, entry in written:
        print(f"  {name:<24} {entry['bytes']:>10} bytes  sha256 {entry['sha256'][:16]}")
    print(f"use it: sssl-classify {out} SONG_OR_FOLDER ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
