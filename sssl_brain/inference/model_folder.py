"""The exported model folder: its format, and reading it back safely.

A model folder holds everything inference needs and nothing that runs code
when loaded::

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

``hyperparams.yaml`` is made from a trained fold's ``fold_config.json``
(:data:`FOLD_CONFIG_KEYS`, :func:`hparams_from_fold_config`); a fold is
exported by :func:`sssl_brain.inference.export.export_fold`.
"""

import dataclasses
import json
import os
from typing import NamedTuple

import numpy as np
import torch
import yaml

from sssl_brain.dataio.features import FeatureConfig
from sssl_brain.dataio.labels import CLASS_NAMES
from sssl_brain.dataio.segments import segment_hop
from sssl_brain.lobes.vgg16 import VGG16
from sssl_brain.song_level.classifier import SongClassifier
from sssl_brain.utils.errors import ConfigError, ModelFolderError
from sssl_brain.utils.model_io import load_song_classifier, sha256_file

FORMAT = "sssl-brain-model"
FORMAT_VERSION = 1
HPARAMS_FILE = "hyperparams.yaml"
WEIGHTS_FILE = "model.ckpt"
CLASSIFIER_FILE = "song_classifier.skops"
README_FILE = "README.md"
MANIFEST_FILE = "manifest.json"
#: Files a model folder must hold (besides the manifest itself).
REQUIRED_FILES = (HPARAMS_FILE, WEIGHTS_FILE, CLASSIFIER_FILE)

#: Keys of a trained fold's ``fold_config.json``, in the order written
#: (:func:`fold_config`): the recipe's hyperparameters
#: inference needs, then the class names and label thresholds of the experiment.
FOLD_CONFIG_KEYS = (
    "target", "seg_dur", "seg_overlap", "max_song_duration", "sample_rate", "n_fft", "hop_length", "n_mels",
    "mel_power_ref", "n_classes", "width_mult", "classifier_dim", "batch_norm", "dropout", "channels_last",
    "song_theta", "svm_grid_search", "svm_C", "svm_gamma", "svm_C_grid", "svm_gamma_grid", "method", "fold",
    "seed", "class_names", "valence_threshold", "arousal_threshold",
)
#: Of :data:`FOLD_CONFIG_KEYS`, those ``hyperparams.yaml`` records as its ``training`` provenance.
TRAINING_KEYS = ("method", "fold", "seed", "valence_threshold", "arousal_threshold")


def fold_config(hp, exp):
    """Plain settings a trained fold needs for inference and for stage 2 (its ``fold_config.json``).

    Arguments
    ---------
    hp : dict
        The fold's hyperparameters.
    exp : sssl_brain.dataio.experiment.Experiment
        Gives the class names and the label thresholds.

    Returns
    -------
    dict
        The values of :data:`FOLD_CONFIG_KEYS`, in that order.
    """
    values = {**hp, "class_names": list(exp.class_names), "valence_threshold": exp.valence_threshold,
              "arousal_threshold": exp.arousal_threshold}
    return {k: values[k] for k in FOLD_CONFIG_KEYS}


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
        Content of ``fold_config.json`` (:func:`fold_config`).
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
    ...           "dropout": 0.5, "channels_last": False, "song_theta": 0.5, "svm_grid_search": True,
    ...           "svm_C": 1.0, "svm_gamma": "scale", "svm_C_grid": [1, 10], "svm_gamma_grid": ["scale"],
    ...           "method": "sssl", "fold": 0,
    ...           "seed": 1986, "class_names": ["low", "high"], "valence_threshold": 0.5,
    ...           "arousal_threshold": 0.5}
    >>> hp = hparams_from_fold_config(config)
    >>> hp["class_names"], hp["segments"]["seg_dur"], hp["features"]["n_mels"], hp["model"]["n_classes"]
    (['low', 'high'], 3.0, 128, 2)
    >>> hparams_from_fold_config({k: v for k, v in config.items() if k != "seed"})
    Traceback (most recent call last):
    ...
    sssl_brain.utils.errors.ModelFolderError: fold_config.json: missing key(s) seed
    """
    missing = [k for k in FOLD_CONFIG_KEYS if k not in config]
    if missing:
        raise ModelFolderError(f"{source}: missing key(s) {', '.join(missing)}")
    try:
        features = FeatureConfig.from_hparams(config)
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
        "training": {k: config[k] for k in TRAINING_KEYS},
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
    if not isinstance(hp["features"], dict):
        raise ModelFolderError(f"{source}: features={hp['features']!r}: expected a mapping")
    try:
        FeatureConfig(**hp["features"])
        seg = hp["segments"]
        segment_hop(float(seg["seg_dur"]), seg.get("seg_overlap"))
        float(hp["song_level"]["theta"])
    except (ConfigError, KeyError, TypeError, ValueError) as err:
        raise ModelFolderError(f"{source}: bad setting ({type(err).__name__}: {err})") from None
    return hp


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
    try:
        return VGG16(n_classes=int(m["n_classes"]), in_channels=int(m["in_channels"]),
                     batch_norm=bool(m["batch_norm"]), width_mult=float(m["width_mult"]),
                     classifier_dim=int(m["classifier_dim"]), dropout=float(m["dropout"]),
                     adaptive_pool=tuple(m["adaptive_pool"]),
                     n_mels=None if m["n_mels"] is None else int(m["n_mels"]),
                     channels_last=bool(channels_last))
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
        load_weights(model, state, path)
    return state


def load_weights(model, state, path, source=HPARAMS_FILE):
    """Loads ``state`` into ``model`` (strict); weights that do not fit raise a ModelFolderError."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelFolderError(f"{path}: the weights do not fit the model of {source} ({err})") from None


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
        An exported model folder (:func:`sssl_brain.inference.export.export_fold`).

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
