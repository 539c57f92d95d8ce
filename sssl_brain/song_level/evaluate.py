"""Stage 2 of a fold from its segment predictions: song predictions, classifier, confusion matrix, metrics.

A fold folder holds, once stage 1 is done, ``segment_predictions.csv``
(``song_id, split, label, p_<class>`` ... one row per segment, probabilities
rounded to 6 decimals), ``segment_probs.npy`` (the same probabilities as the
segment classifier gave them, one row per row of the table) and
``fold_config.json`` (the fold's settings, among them ``song_theta``,
``seed`` and the SVM options ``svm_grid_search, svm_C, svm_gamma,
svm_C_grid, svm_gamma_grid``). :func:`evaluate_fold` builds the Eq. 10
features of every song, fits the song classifier on the fold's training
songs and writes::

    song_predictions.csv   svm, majority and mean decisions of every song
    song_classifier.skops  the fitted SongClassifier (theta inside)
    confusion_matrix.png   the SVM's decisions on the test songs
    metrics.json           metrics per split and aggregator (written last: the fold is finished)

Training calls it right after writing the two segment tables
(:func:`sssl_brain.song_level.fold_outputs.write_fold_outputs`), so a re-run on the
finished fold with the same settings gives the same bytes. The exact
probabilities of ``segment_probs.npy`` are used where it exists: 6 decimals
are not enough when a weak model's probabilities differ in the 5th (the
Eq. 10 features are standardised before the SVM); a
``segment_predictions.csv`` alone (e.g. written by another model) is
evaluated with the table's probabilities. :func:`evaluate_experiment`
re-runs stage 2 for every fold of an experiment and rewrites its
``results.md`` / ``results.csv`` (``recipes/evaluate.py``).
"""

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from sssl_brain.song_level.predictions import song_level_predictions, write_song_predictions
from sssl_brain.song_level.results import (
    class_names_from_header,
    collect_results,
    plot_confusion_matrix,
    write_fold_metrics,
    write_results,
)
from sssl_brain.utils.errors import ConfigError, DataError
from sssl_brain.utils.io_utils import read_csv_dicts
from sssl_brain.utils.model_io import save_song_classifier

logger = logging.getLogger(__name__)

SEGMENT_FILE = "segment_predictions.csv"
PROBS_FILE = "segment_probs.npy"
CONFIG_FILE = "fold_config.json"
METRICS_FILE = "metrics.json"
#: The per-fold outputs of stage 2 (metrics.json last).
OUTPUT_FILES = ("song_predictions.csv", "song_classifier.skops", "confusion_matrix.png", METRICS_FILE)
#: Settings of ``fold_config.json`` stage 2 uses (the yaml's names); each can be overridden.
SONG_LEVEL_OPTIONS = ("song_theta", "svm_grid_search", "svm_C", "svm_gamma", "svm_C_grid", "svm_gamma_grid",
                  "seed")
#: Fields of metrics.json that a re-evaluation recomputes; the others (method, fold, model selection...)
#: are kept as training wrote them.
_RECOMPUTED = ("class_names", "metrics", "svm_params", "song_level_overrides")


def _number(name, value, whole=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}={value!r}: must be a number")
    if whole and not float(value).is_integer():
        raise ConfigError(f"{name}={value!r}: must be a whole number")
    return int(value) if whole else float(value)


def _gamma(name, value):
    if value in ("scale", "auto"):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{name}={value!r}: must be 'scale', 'auto' or a positive number")
    return value


def song_level_options(config, overrides=None, source=CONFIG_FILE):
    """Keyword arguments of :func:`~sssl_brain.song_level.predictions.song_level_predictions` for a fold.

    Arguments
    ---------
    config : dict
        The fold's settings (``fold_config.json``, or the training hyperparameters).
    overrides : dict, optional
        Values of :data:`SONG_LEVEL_OPTIONS` that replace the config's.
    source : str
        Names the config in error messages.

    Returns
    -------
    dict
        ``theta``, ``grid_search``, ``seed``, ``C``, ``gamma``, ``C_grid``, ``gamma_grid``.

    Example
    -------
    >>> config = {"song_theta": 0.5, "svm_grid_search": True, "svm_C": 1.0, "svm_gamma": "scale",
    ...           "svm_C_grid": [1, 10], "svm_gamma_grid": ["scale", 0.1], "seed": 3}
    >>> opts = song_level_options(config, {"song_theta": 0.7})
    >>> opts["theta"], opts["grid_search"], opts["C_grid"], opts["seed"]
    (0.7, True, [1, 10], 3)
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(SONG_LEVEL_OPTIONS))
    if unknown:
        raise ConfigError(f"{', '.join(unknown)}: not a stage 2 option ({', '.join(SONG_LEVEL_OPTIONS)})")
    settings = {**config, **overrides}
    missing = [k for k in SONG_LEVEL_OPTIONS if k not in settings]
    if missing:
        raise ConfigError(f"{source}: missing stage 2 setting(s) {', '.join(missing)} "
                          "(pass them as overrides)")
    if not isinstance(settings["svm_grid_search"], bool):
        raise ConfigError(f"svm_grid_search={settings['svm_grid_search']!r}: must be true or false")
    grids = {}
    for name, check in (("svm_C_grid", _number), ("svm_gamma_grid", _gamma)):
        grid = settings[name]
        if not isinstance(grid, (list, tuple)) or not grid:
            raise ConfigError(f"{name}={grid!r}: must be a non-empty list")
        for value in grid:
            check(name, value)
        grids[name] = list(grid)
    return {"theta": _number("song_theta", settings["song_theta"]),
            "grid_search": settings["svm_grid_search"],
            "seed": _number("seed", settings["seed"], whole=True),
            "C": _number("svm_C", settings["svm_C"]),
            "gamma": _gamma("svm_gamma", settings["svm_gamma"]),
            "C_grid": grids["svm_C_grid"], "gamma_grid": grids["svm_gamma_grid"]}


def read_json(path):
    """A JSON file as a dict; a missing or bad file raises a DataError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    return data


def read_segment_predictions(path, class_names, probs_path=None):
    """Rows, probabilities, splits and labels of the songs of a ``segment_predictions.csv``.

    Arguments
    ---------
    path : str
        The table (columns ``song_id, split, label, p_<class>...``).
    class_names : list of str
        The fold's classes; the table's ``p_<class>`` columns must be these.
    probs_path : str, optional
        ``segment_probs.npy``: the unrounded probabilities of the table's
        rows (shape ``(rows, K)``), used instead of its ``p_<class>`` columns;
        they must round to them.

    Returns
    -------
    rows : list of dict
        The table's rows (strings).
    probs_by_song : dict
        song_id -> segment probabilities ``(S, K)``, songs in the order of their first row.
    split_by_song, label_by_song : dict
        song_id -> split (str) and class index (int).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: not found")
    rows = read_csv_dicts(path)
    if not rows:
        raise DataError(f"{path}: no segment rows")
    missing = [c for c in ("song_id", "split", "label") if c not in rows[0]]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    names = class_names_from_header(list(rows[0]), path)
    if names != list(class_names):
        raise DataError(f"{path}: probability columns of {names}, "
                        f"but the fold's classes are {list(class_names)}")
    columns = [f"p_{c}" for c in class_names]
    table, split, label, lines_of = [], {}, {}, {}
    for line, row in enumerate(rows, start=2):
        sid = row["song_id"]
        try:
            table.append([float(row[c]) for c in columns])
            y = int(row["label"])
        except (TypeError, ValueError) as err:
            raise DataError(f"{path}, line {line}: bad value ({err})") from None
        if sid in label and (label[sid] != y or split[sid] != row["split"]):
            raise DataError(f"{path}, line {line}: song {sid!r} has label {y} / split {row['split']!r} here, "
                            f"{label[sid]} / {split[sid]!r} above")
        lines_of.setdefault(sid, []).append(line - 2)
        split[sid], label[sid] = row["split"], y
    values = np.asarray(table)
    if probs_path is not None:
        exact = np.load(probs_path, allow_pickle=False)
        if exact.shape != values.shape:
            raise DataError(f"{probs_path}: shape {exact.shape}, but {path} has {values.shape[0]} rows of "
                            f"{values.shape[1]} probabilities")
        if not np.allclose(exact, values, rtol=0, atol=1e-6):
            raise DataError(f"{probs_path}: its probabilities do not round to those of {path}")
        values = exact
    return rows, {s: values[idx] for s, idx in lines_of.items()}, split, label


def write_confusion_matrix(folder, song_rows, class_names):
    """``confusion_matrix.png`` of the SVM's decisions on the fold's test songs (nothing without any)."""
    test = [r for r in song_rows if r["split"] == "test" and r["aggregator"] == "svm"]
    if test:
        cm = np.zeros((len(class_names),) * 2, dtype=int)
        for r in test:
            cm[r["label"], r["pred"]] += 1
        plot_confusion_matrix(cm, class_names, os.path.join(folder, "confusion_matrix.png"))


def plain_params(params):
    """SVM parameters with plain JSON values (numbers and strings as they are, anything else as text).

    Example
    -------
    >>> import numpy as np
    >>> plain_params({"C": 10, "gamma": "scale", "constant": np.int64(2)})
    {'C': 10, 'gamma': 'scale', 'constant': '2'}
    """
    return {k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in params.items()}


def write_song_level_outputs(folder, out, class_names, segment_rows=None, extra=None):
    """Writes a fold's stage 2 outputs (:data:`OUTPUT_FILES`), ``metrics.json`` last.

    Arguments
    ---------
    folder : str
        The fold's output folder.
    out : SongLevelOutput
        Song rows, fitted classifier and its parameters
        (:func:`~sssl_brain.song_level.predictions.song_level_predictions` or ``svm_song_predictions``).
    class_names : list of str
        The fold's classes.
    segment_rows : list of dict, optional
        Rows of ``segment_predictions.csv`` (segment metrics).
    extra : dict, optional
        Other fields of ``metrics.json`` (method, fold, model selection...);
        ``svm_params`` is added from ``out.params``.

    Returns
    -------
    dict
        The content of ``metrics.json``.
    """
    write_song_predictions(os.path.join(folder, "song_predictions.csv"), out.rows, class_names)
    save_song_classifier(out.classifier, os.path.join(folder, "song_classifier.skops"))
    write_confusion_matrix(folder, out.rows, class_names)
    extra = {**(extra or {}), "svm_params": plain_params(out.params)}
    return write_fold_metrics(folder, out.rows, segment_rows, extra=extra)


def _kept_fields(fold_dir, config):
    """The fields of the fold's metrics.json that stage 2 does not recompute (or, without one, the fold's)."""
    path = os.path.join(fold_dir, METRICS_FILE)
    if os.path.isfile(path):
        return {k: v for k, v in read_json(path).items() if k not in _RECOMPUTED}
    return {k: config[k] for k in ("method", "fold", "target") if k in config} | (
        {"seg_dur": float(config["seg_dur"])} if "seg_dur" in config else {})


def evaluate_fold(fold_dir, out_dir=None, overrides=None, extra=None):
    """Stage 2 of one fold: Eq. 10 features, SVM fitted on the training songs, outputs written.

    Reads ``fold_config.json`` (classes and :data:`SONG_LEVEL_OPTIONS`) and
    ``segment_predictions.csv`` of ``fold_dir`` (with ``segment_probs.npy``
    where it exists, :func:`read_segment_predictions`), fits the song
    classifier on the songs of the ``train`` split and writes
    :data:`OUTPUT_FILES` (:func:`write_song_level_outputs`).

    Arguments
    ---------
    fold_dir : str
        A fold folder with ``fold_config.json`` and ``segment_predictions.csv``.
    out_dir : str, optional
        Where the outputs go (default: ``fold_dir``). Another folder also
        gets a copy of the fold's ``fold_config.json`` and segment tables,
        so that it is a complete fold folder; ``fold_dir`` is left untouched.
    overrides : dict, optional
        Stage 2 settings replacing the fold's (e.g. ``{"song_theta": 0.6,
        "svm_grid_search": False}``); recorded as ``song_level_overrides`` in metrics.json.
    extra : dict, optional
        Fields of metrics.json besides the metrics and ``svm_params``;
        default: those of the fold's metrics.json (method, fold, model
        selection... as training wrote them), else method, fold, target and
        seg_dur from fold_config.json.

    Returns
    -------
    dict
        The content of the ``metrics.json`` written.
    """
    fold_dir = os.fspath(fold_dir)
    out_dir = fold_dir if out_dir is None else os.fspath(out_dir)
    config_path = os.path.join(fold_dir, CONFIG_FILE)
    config = read_json(config_path)
    if "class_names" not in config:
        raise DataError(f"{config_path}: missing key class_names")
    names = list(config["class_names"])
    options = song_level_options(config, overrides, source=config_path)
    probs_path = os.path.join(fold_dir, PROBS_FILE)
    seg_rows, probs, split, label = read_segment_predictions(
        os.path.join(fold_dir, SEGMENT_FILE), names, probs_path if os.path.isfile(probs_path) else None)
    out = song_level_predictions(probs, split, label, names, **options)
    extra = _kept_fields(fold_dir, config) if extra is None else dict(extra)
    if overrides:
        extra["song_level_overrides"] = dict(overrides)
    if os.path.abspath(out_dir) != os.path.abspath(fold_dir):
        os.makedirs(out_dir, exist_ok=True)
        for name in (CONFIG_FILE, SEGMENT_FILE, PROBS_FILE):
            if name != PROBS_FILE or os.path.isfile(probs_path):
                shutil.copyfile(os.path.join(fold_dir, name), os.path.join(out_dir, name))
    return write_song_level_outputs(out_dir, out, names, seg_rows, extra=extra)


def _fold_number(path):
    suffix = path.name[len("fold_"):]
    return (0, int(suffix), "") if suffix.isdigit() else (1, 0, suffix)


def find_folds(experiment_folder):
    """The fold folders ``<experiment>/<method>/fold_<k>/`` of an experiment, sorted by method and fold.

    Returns
    -------
    evaluable : list of pathlib.Path
        Folds with ``segment_predictions.csv`` and ``fold_config.json``.
    song_only : list of pathlib.Path
        Finished folds without segment predictions (the ``features_svm``
        baseline: hand-crafted song features, no segments); stage 2 cannot re-run there.
    """
    root = Path(experiment_folder)
    folds = sorted((p for p in root.glob("*/fold_*") if p.is_dir()),
                   key=lambda p: (p.parent.name, _fold_number(p)))
    evaluable = [p for p in folds if (p / SEGMENT_FILE).is_file() and (p / CONFIG_FILE).is_file()]
    song_only = [p for p in folds if p not in evaluable and (p / "song_predictions.csv").is_file()]
    return evaluable, song_only


def _title(experiment_folder, fold_dir):
    """The heading of the experiment's results.md, else one made from the fold's settings."""
    path = os.path.join(experiment_folder, "results.md")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            first = f.readline().rstrip("\n")
        if first.startswith("# "):
            return first[2:]
    config = read_json(os.path.join(fold_dir, CONFIG_FILE))
    seg_dur = float(config.get("seg_dur", 0))
    return f"{config.get('target')}, {seg_dur:g} s segments, seed {config.get('seed')}"


def evaluate_experiment(experiment_folder, out=None, overrides=None, progress=True, report=print):
    """Re-runs stage 2 (:func:`evaluate_fold`) for every fold of a finished experiment; writes the tables.

    Arguments
    ---------
    experiment_folder : str
        A finished experiment (``<experiment>/<method>/fold_<k>/``).
    out : str, optional
        Write the per-fold outputs and the tables into this folder
        (``<out>/<method>/fold_<k>/``) and leave the experiment untouched;
        the folds stage 2 cannot re-run (``features_svm``) are copied there
        as they are. Default: in place.
    overrides : dict, optional
        Stage 2 settings replacing each fold's (:data:`SONG_LEVEL_OPTIONS`).
    progress : bool
        Show a progress bar over the folds.
    report : callable
        Prints the messages (skipped folds, where the tables went).

    Returns
    -------
    list of dict
        The rows of results.csv.

    Raises
    ------
    DataError
        If the folder holds no fold with ``segment_predictions.csv`` (the message names it).
    """
    from tqdm import tqdm

    root = Path(experiment_folder)
    if not root.is_dir():
        raise DataError(f"{root}: experiment folder not found")
    evaluable, song_only = find_folds(root)
    if not evaluable:
        raise DataError(f"{root}: nothing to evaluate, no <method>/fold_<k>/ folder holds {SEGMENT_FILE} "
                        f"and {CONFIG_FILE} (is it the folder of a finished experiment?)")
    target = root if out is None else Path(out)
    if target.resolve() != root.resolve() and target.resolve().is_relative_to(root.resolve()):
        raise ConfigError(f"out={out}: must not be inside the experiment folder {root}")
    for fold in song_only:
        where = "kept as trained" if out is None else f"copied unchanged to {target}"
        report(f"{fold.relative_to(root)}: no {SEGMENT_FILE} (song-level features, no segments): "
               f"stage 2 not re-run, {where}")
        if out is not None:
            dst = target / fold.relative_to(root)
            dst.mkdir(parents=True, exist_ok=True)
            for name in (CONFIG_FILE,) + OUTPUT_FILES:
                if (fold / name).is_file():
                    shutil.copyfile(fold / name, dst / name)
    for fold in tqdm(evaluable, desc="stage 2", unit="fold", disable=not progress):
        evaluate_fold(fold, target / fold.relative_to(root), overrides=overrides)
    rows = collect_results(target)
    write_results(target, rows, title=_title(root, evaluable[0]))
    report(f"wrote {target / 'results.md'} and {target / 'results.csv'} "
           f"({len(evaluable)} folds re-evaluated)")
    return rows
