#!/usr/bin/env python3
"""Recipe: SSSL music emotion recognition with k-fold cross-validation over songs.

Shared by the dataset recipes: ``recipes/<dataset>/train.py`` links to this
file (as SpeechBrain's UrbanSound8k recipe shares files by symlink). What is
dataset-specific lives beside the link: the prepare module
(``<dataset>_prepare.py``) and the dataset's yaml ``hparams/<dataset>.yaml``
(its name, its prepare function and its binary-label thresholds), which is
read on top of the method's yaml given on the command line.

The pipeline, for every fold and method (sssl, proposed_star, inherit):
stage 1 trains the segment classifier (``SSSLBrain``: warm-up, then the
per-epoch clean/noisy partition, pseudo-labels, mixup and R-Drop); the
checkpoint chosen on validation predicts every segment; stage 2 fits the SVM
on the Eq. 10 statistics of the training songs (``recipes/evaluate.py``
re-runs stage 2 alone); docs/method.md, "One SSSL epoch, in call order"
(docs/method.md#one-sssl-epoch-in-call-order), lists the hooks and functions
of one epoch in the order they run. Each fold is its own experiment folder
(``<experiment_folder>/<method>/fold_<k>/``): a fold whose ``metrics.json``
exists is finished and skipped when its ``fold_settings.json`` holds the
same settings (other settings are refused by name), an unfinished one
resumes from its last checkpoint. The features_svm baseline (hand-crafted song features + the same
SVM) runs on the same folds.

Usage:
    python recipes/pmemo/train.py hparams/vgg16_sssl.yaml --data_folder=/path/to/PMEmo2019
    python recipes/4q/train.py hparams/vgg16_sssl.yaml --data_folder=... --target=quadrant --seg_dur=1
    torchrun --nproc_per_node=2 recipes/pmemo/train.py hparams/vgg16_sssl.yaml --data_folder=...
    python recipes/pmemo/train.py hparams/vgg16_sssl.yaml --data_folder=... --debug  # a smoke run

Bad options and bad data stop the run with a one-line message naming the
option, file or row (exit status 2).
"""

import functools
import json
import logging
import os
import sys
import time

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import if_main_process, run_on_main

# the dataset's folder: where the link recipes/<dataset>/train.py lives (abspath keeps the link's folder)
RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))
# the recipes folder: where this shared script itself lives (realpath follows the link)
RECIPES_ROOT = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, RECIPE_DIR)

from sssl_brain.dataio.dataset import segment_dataset, truth_as_labels  # noqa: E402
from sssl_brain.dataio.device_segments import DeviceSegments  # noqa: E402
from sssl_brain.dataio.experiment import Experiment, check_experiment_hparams, feature_stats  # noqa: E402
from sssl_brain.inference.model_folder import fold_config  # noqa: E402
from sssl_brain.method.brain import SSSLBrain  # noqa: E402
from sssl_brain.method.warmup import fold_settings, settings_differences, share_warmup  # noqa: E402
from sssl_brain.song_level.fold_outputs import run_features_svm_fold, write_fold_outputs  # noqa: E402
from sssl_brain.song_level.handcrafted import SONG_METHODS  # noqa: E402
from sssl_brain.song_level.results import collect_results, write_results  # noqa: E402
from sssl_brain.utils.errors import ConfigError, exit_on_error  # noqa: E402
from sssl_brain.utils.fold_jobs import run_fold_jobs  # noqa: E402
from sssl_brain.utils.hparams import debug_overrides, load_hparams, parse_overrides  # noqa: E402
from sssl_brain.utils.io_utils import atomic_write_json  # noqa: E402

logger = logging.getLogger(__name__)
#: A fold's settings (sssl_brain.method.warmup.fold_settings); a finished fold is reused with them only.
SETTINGS_FILE = "fold_settings.json"


def dataset_recipes(root=RECIPES_ROOT):
    """The dataset folders of ``root``: those with a ``train.py`` and a ``hparams/<dataset>.yaml``.

    Arguments
    ---------
    root : str
        The recipes folder.

    Returns
    -------
    list of str
        The folder names, sorted.

    Example
    -------
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> for name in ("csv", "notes"):
    ...     os.makedirs(os.path.join(root, name, "hparams"))
    ...     open(os.path.join(root, name, "train.py"), "w").close()
    >>> open(os.path.join(root, "csv", "hparams", "csv.yaml"), "w").close()
    >>> dataset_recipes(root)
    ['csv']
    """
    return sorted(name for name in os.listdir(root)
                  if os.path.isfile(os.path.join(root, name, "train.py"))
                  and os.path.isfile(os.path.join(root, name, "hparams", f"{name}.yaml")))


def _shown(path):
    """``path`` relative to the working folder when it lies below it, else absolute (for messages)."""
    rel = os.path.relpath(path)
    return path if rel.startswith(os.pardir) else rel


def load_dataset_hparams(recipe_dir=RECIPE_DIR):
    """The dataset's yaml ``<recipe_dir>/hparams/<dataset>.yaml``: its prepare function and its defaults.

    Arguments
    ---------
    recipe_dir : str
        The dataset's folder, where the link ``train.py`` to this script lives.

    Returns
    -------
    prepare : callable
        ``prepare(data_folder, save_folder, skip_prep=...)`` writing ``songs.csv``.
    defaults : dict
        The other keys (``dataset``, ``valence_threshold``, ``arousal_threshold``), applied before the
        command line's overrides.

    Raises
    ------
    ConfigError
        When ``recipe_dir`` has no dataset yaml: the shared script was run
        directly (or through a link outside a dataset folder); the message
        names the dataset links to run instead.
    """
    name = os.path.basename(recipe_dir)
    path = os.path.join(recipe_dir, "hparams", f"{name}.yaml")
    if not os.path.isfile(path):
        datasets = dataset_recipes()
        example = "csv" if "csv" in datasets else (datasets or ["<dataset>"])[0]
        rel = _shown(RECIPES_ROOT)
        raise ConfigError(
            f"{os.path.join(rel, 'sssl_train.py')} is shared by the dataset recipes: run it through a "
            f"dataset's link, e.g. `python {os.path.join(rel, example, 'train.py')} hparams/vgg16_sssl.yaml "
            f"--data_folder=...` (dataset folders: {', '.join(datasets) or 'none found'}; the link reads "
            f"the dataset's yaml, here {_shown(path)}, which does not exist)")
    with open(path, encoding="utf-8") as fin:
        defaults = load_hyperpyyaml(fin)
    if "prepare" not in defaults:
        raise ConfigError(f"{path}: needs a 'prepare: !name:<dataset>_prepare.prepare_<dataset>' entry")
    return defaults.pop("prepare"), defaults


def dataio_prepare(hparams, debug=False):
    """Songs, features (cached), segments and folds: the data every fold and method shares.

    The prepare step has written ``songs.csv`` (and, where the dataset has per-second truth,
    ``segment_truth.csv``) to ``prepare_folder``.
    """
    folder = hparams["feature_pack"] or hparams["prepare_folder"]  # a feature pack holds its songs table
    songs_csv = os.path.join(folder, "songs.csv")
    truth_csv = os.path.join(folder, "segment_truth.csv")
    return Experiment(hparams, songs_csv, truth_csv=truth_csv, debug=debug)


def train_fold(hparams, run_opts, exp):
    """Stage 1 (SSSLBrain) and stage 2 (song level) of one fold and method; writes the fold's outputs."""
    fold = int(hparams["fold"])
    if hparams["train_labels"] == "truth" and not exp.has_truth:
        raise ConfigError("train_labels=truth: the dataset has no truth/segment_truth.csv to train on")
    sb.create_experiment_directory(experiment_directory=hparams["output_folder"], hyperparams_to_save=None)
    if if_main_process():
        config_file = os.path.join(hparams["output_folder"], "fold_config.json")
        atomic_write_json(config_file, fold_config(hparams, exp))
    # start from another method's warm-up of this fold where it is the same; the Brain saves the snapshot
    warmup = share_warmup(hparams, run_opts)

    # --debug: debug_batches batches of every pass (training, partition, validation, prediction)
    limit = run_opts.get("debug_batches", 2) * hparams["batch_size"] if run_opts.get("debug") else None
    parts = exp.fold_segments(fold, max_per_split=limit)
    # device_features: a fold's features on the training device, batches cut there (the same batches)
    split_set = segment_dataset
    if hparams["device_features"]:
        device = run_opts.get("device") or sb.utils.distributed.infer_device()
        split_set = functools.partial(DeviceSegments, device=device)
    train_rows, valid_rows = parts["train"], parts["valid"]
    if hparams["train_labels"] == "truth":  # the clean-label ceiling, a diagnostic (outputs keep song labels)
        train_rows, valid_rows = truth_as_labels(train_rows), truth_as_labels(valid_rows)
    train_data = split_set(train_rows, exp.cache)
    valid_data = split_set(valid_rows, exp.cache) if valid_rows else None
    hparams["model"].set_input_normalization(*feature_stats(exp.cache, [s["path"] for s in parts["train"]]))

    brain = SSSLBrain(modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams,
                      run_opts=run_opts, checkpointer=hparams["checkpointer"], warmup_snapshot=warmup)
    start = time.perf_counter()
    brain.fit(hparams["epoch_counter"], train_data, valid_data,
              train_loader_kwargs=hparams["train_dataloader_opts"],
              valid_loader_kwargs=hparams["valid_dataloader_opts"])
    if if_main_process():  # throughput of this process's epochs (not part of the compared results)
        atomic_write_json(os.path.join(hparams["output_folder"], "timing.json"), {
            **brain.timing, "fit_seconds": time.perf_counter() - start, "n_train": len(parts["train"]),
            "n_valid": len(parts["valid"]), "device": str(brain.device), "precision": brain.precision,
            "device_features": bool(hparams["device_features"])})
    selection = brain.recover_selected()  # the checkpoint chosen on validation serves everything below

    if if_main_process():
        every = parts["train"] + parts["valid"] + parts["test"]
        probs = brain.predict_probs(split_set(every, exp.cache))
        write_fold_outputs(hparams, exp, fold, every, probs, selection=selection)


def train_folds(hparams_file, run_opts, overrides, exp, runs):
    """Trains each ``(method, fold)`` of ``runs`` in order; a finished fold (its metrics.json) is skipped."""
    for method, fold in runs:
        fold_hparams = load_hparams(hparams_file, {**overrides, "method": method, "fold": fold})
        done = os.path.join(fold_hparams["output_folder"], "metrics.json")
        finished = os.path.isfile(done)
        if finished or os.path.isfile(os.path.join(fold_hparams["output_folder"], SETTINGS_FILE)):
            check_fold_settings(fold_hparams, finished=finished)
        if finished:
            logger.info("%s fold %d: finished (%s exists, same settings), not retrained", method, fold, done)
            continue
        logger.info("%s fold %d: training in %s", method, fold, fold_hparams["output_folder"])
        if if_main_process():
            os.makedirs(fold_hparams["output_folder"], exist_ok=True)
            atomic_write_json(os.path.join(fold_hparams["output_folder"], SETTINGS_FILE),
                              fold_settings(fold_hparams))
        if method in SONG_METHODS:
            if if_main_process():
                run_features_svm_fold(fold_hparams, exp)
        else:
            train_fold(fold_hparams, run_opts, exp)
        if torch.distributed.is_initialized():
            torch.distributed.barrier()


def check_fold_settings(hp, finished):
    """Refuses a finished or started fold made with other settings (a ConfigError naming them)."""
    folder = hp["output_folder"]
    record = os.path.join(folder, SETTINGS_FILE)
    if not os.path.isfile(record):
        raise ConfigError(f"{folder} holds a finished fold without {SETTINGS_FILE} (made by an older "
                          "version), so its settings cannot be checked: delete the folder to retrain it, or "
                          "use another --results_folder")
    with open(record, encoding="utf-8") as f:
        old = json.load(f)
    new = fold_settings(hp)
    differ = settings_differences(old, new)
    if differ:
        shown = ", ".join(f"{k}: {old.get(k, '<absent>')!r} there, {new.get(k, '<absent>')!r} now"
                          for k in differ[:5])
        state = "finished" if finished else "started"
        more = "; ..." if len(differ) > 5 else ""
        raise ConfigError(f"{folder} holds a fold {state} with other settings ({shown}{more}): delete the "
                          "folder to retrain it, or use another --results_folder")


def fold_job(folds, hparams_file, run_opts, overrides):
    """One process of ``fold_jobs``: every method of ``folds``, fold after fold (so a stopped run has
    whole folds finished)."""
    hparams = load_hparams(hparams_file, overrides)
    exp = dataio_prepare(hparams, debug=bool(run_opts.get("debug")))
    run_opts = {**run_opts, "noprogressbar": True}  # several jobs share the console
    train_folds(hparams_file, run_opts, overrides, exp, [(m, k) for k in folds for m in hparams["methods"]])


def run_hparams(hparams_file, run_opts, overrides):
    """The run's hyperparameters: the method's yaml under the dataset's yaml defaults, the command
    line's overrides and the ``--debug`` limits.

    Arguments
    ---------
    hparams_file, run_opts, overrides
        What ``speechbrain.parse_arguments`` returns for the command line.

    Returns
    -------
    prepare : callable
        The dataset's prepare function (from its yaml).
    overrides : dict
        Every override the run uses (the folds' processes load the yaml again with them).
    hparams : dict
        The loaded hyperparameters (``experiment_folder`` names the run's folder).
    """
    prepare, dataset_defaults = load_dataset_hparams()
    overrides = {**dataset_defaults, **parse_overrides(overrides)}
    overrides = {**debug_overrides(run_opts, hparams_file, overrides), **overrides}
    return prepare, overrides, load_hparams(hparams_file, overrides)


def main(argv):
    """Parses the command line, prepares the data, trains every fold and method, writes the results."""
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    sb.utils.distributed.ddp_init_group(run_opts)  # no-op unless launched by torchrun

    prepare, overrides, hparams = run_hparams(hparams_file, run_opts, overrides)
    check_experiment_hparams(hparams, run_opts)
    sb.create_experiment_directory(experiment_directory=hparams["experiment_folder"],
                                   hyperparams_to_save=hparams_file, overrides=overrides)

    # the dataset's songs table (and segment truth where it exists), on the main process only;
    # a feature pack brings its own
    if not hparams["feature_pack"]:
        run_on_main(prepare, kwargs={"data_folder": hparams["data_folder"],
                                     "save_folder": hparams["prepare_folder"],
                                     "skip_prep": hparams["skip_prep"]})

    folds = list(range(int(hparams["n_folds"]))) if hparams["folds"] is None else list(hparams["folds"])
    jobs = min(int(hparams["fold_jobs"]), len(folds))
    if jobs > 1:
        run_fold_jobs(jobs, folds, fold_job, (hparams_file, run_opts, overrides))
    else:
        exp = dataio_prepare(hparams, debug=bool(run_opts.get("debug")))
        train_folds(hparams_file, run_opts, overrides, exp,
                    [(method, int(fold)) for method in hparams["methods"] for fold in folds])

    if if_main_process():
        rows = collect_results(hparams["experiment_folder"])
        title = (f"{hparams['dataset']}: {hparams['target']}, {float(hparams['seg_dur']):g} s segments, "
                 f"seed {hparams['seed']}")
        write_results(hparams["experiment_folder"], rows, title=title)
        with open(os.path.join(hparams["experiment_folder"], "results.md"), encoding="utf-8") as f:
            sys.stdout.write(f.read())
        return rows
    return None


if __name__ == "__main__":
    with exit_on_error():
        main(sys.argv[1:])
