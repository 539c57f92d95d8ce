"""The whole experiment of one recipe: folds x methods, stage 1 and stage 2, results tables.

Each recipe's ``train.py`` prepares its songs table and calls
:func:`run_experiment`. Every fold is its own SpeechBrain experiment folder
(``<experiment_folder>/<method>/fold_<k>/``); a fold whose ``metrics.json``
exists is finished and not retrained, an unfinished fold resumes from its
last checkpoint.
"""

import dataclasses
import logging
import os
import re
import sys

import numpy as np
import speechbrain as sb
import torch
import yaml
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import if_main_process, run_on_main

from sssl_brain.dataio.dataset import build_segments, make_folds, segment_dataset
from sssl_brain.dataio.features import FeatureCache, FeatureConfig
from sssl_brain.dataio.labels import CLASS_NAMES, check_target
from sssl_brain.dataio.segments import segment_hop
from sssl_brain.dataio.songs import read_segment_truth, read_songs_table
from sssl_brain.inference.model_folder import FOLD_CONFIG_KEYS
from sssl_brain.method.brain import AFTER_WARMUP_HPARAMS, METHODS, SSSLBrain, check_sssl_hparams
from sssl_brain.song_level.handcrafted import HandcraftedCache, HandcraftedConfig, song_vectors
from sssl_brain.song_level.results import (
    collect_results,
    plot_confusion_matrix,
    write_fold_metrics,
    write_results,
)
from sssl_brain.song_level.stage2 import (
    song_level_predictions,
    svm_song_predictions,
    write_song_predictions,
)
from sssl_brain.utils.checkpoints import restore_warmup_snapshot
from sssl_brain.utils.errors import ConfigError, DataError, SSSLError
from sssl_brain.utils.io_utils import atomic_write_csv, atomic_write_json
from sssl_brain.utils.model_io import save_song_classifier

logger = logging.getLogger(__name__)

#: Song-level methods that train no segment classifier (beside the brain's METHODS): run by
#: :func:`run_features_svm_fold` instead of :func:`run_fold`, on the same folds.
SONG_METHODS = ("features_svm",)


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


def check_experiment_hparams(hp):
    """Start-up checks of the options that shape the data; errors name the option."""
    check_target(hp["target"])
    try:
        seg_dur = float(hp["seg_dur"])
    except (TypeError, ValueError):
        raise ConfigError(f"seg_dur={hp['seg_dur']!r}: must be a number of seconds") from None
    segment_hop(seg_dur, hp["seg_overlap"])
    check_sssl_hparams(hp)
    for method in hp["methods"]:
        if method not in METHODS + SONG_METHODS:
            raise ConfigError(f"methods: {method!r} is not one of {', '.join(METHODS + SONG_METHODS)}")
    if any(method in SONG_METHODS for method in hp["methods"]):
        HandcraftedConfig.from_hparams(hp)  # a bad hc_* value stops here, naming the option
    jobs = hp.get("fold_jobs", 1)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"fold_jobs={jobs!r}: must be a whole number >= 1")
    if jobs > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(f"fold_jobs={jobs}: does not combine with torchrun (DDP); use fold_jobs: 1")
    if int(hp["n_folds"]) < 2:
        raise ConfigError(f"n_folds={hp['n_folds']}: need at least 2")
    folds = hp["folds"]
    if folds is not None:
        bad = [k for k in folds if not 0 <= int(k) < int(hp["n_folds"])]
        if bad:
            raise ConfigError(f"folds={folds}: fold indices must be in 0..{int(hp['n_folds']) - 1}")


class Experiment:
    """Songs, features, segments and folds of one experiment (shared by all folds and methods).

    Arguments
    ---------
    hp : dict
        Loaded hyperparameters.
    songs_csv : str
        Canonical songs table.
    valence_threshold, arousal_threshold : float
        Thresholds of the binary labels (the recipe's defaults unless set in hp).
    truth_csv : str, optional
        Segment truth table, for diagnostics.
    """

    def __init__(self, hp, songs_csv, valence_threshold=0.5, arousal_threshold=0.5, truth_csv=None):
        self.hp = hp
        self.target = hp["target"]
        self.valence_threshold, self.arousal_threshold = valence_threshold, arousal_threshold
        self.class_names = CLASS_NAMES[self.target]
        self.songs = read_songs_table(songs_csv)
        self.config = FeatureConfig.from_hparams(hp)
        self.cache = FeatureCache(hp["feature_cache"], self.config)
        paths = [s["path"] for s in self.songs]
        run_on_main(self.cache.build, kwargs={"audio_paths": paths, "n_jobs": int(hp["feature_jobs"])})
        n_frames = {p: self.cache.n_frames(p) for p in paths}
        truth = read_segment_truth(truth_csv) if truth_csv and os.path.isfile(truth_csv) else None
        self.has_truth = truth is not None
        self.segments, self.too_short = build_segments(
            self.songs, n_frames, self.target, float(hp["seg_dur"]), self.config,
            overlap=hp["seg_overlap"], max_duration=hp["max_song_duration"],
            valence_threshold=valence_threshold, arousal_threshold=arousal_threshold, truth=truth)
        if not self.segments:
            raise DataError(f"no song is at least one segment long (seg_dur={hp['seg_dur']})")
        self.song_label = {}
        for seg in self.segments:
            self.song_label.setdefault(seg["song_id"], seg["label"])
        song_ids = list(self.song_label)
        self.folds = make_folds(song_ids, [self.song_label[s] for s in song_ids], int(hp["n_folds"]),
                                float(hp["valid_ratio"]), int(hp["seed"]))
        if if_main_process():
            rows = [{"song_id": s, "fold": k, "split": fold[s]} for k, fold in enumerate(self.folds)
                    for s in song_ids]
            atomic_write_csv(os.path.join(hp["experiment_folder"], "folds.csv"), rows,
                             ["song_id", "fold", "split"])
        logger.info("experiment: %d songs with segments (%d too short), %d segments, %d folds",
                    len(song_ids), len(self.too_short), len(self.segments), len(self.folds))

    def fold_segments(self, fold):
        """Segments of each split of a fold: dict split -> list of segment rows."""
        split_of = self.folds[fold]
        out = {"train": [], "valid": [], "test": []}
        for seg in self.segments:
            out[split_of[seg["song_id"]]].append(seg)
        return out


def fold_config(hp, exp):
    """Plain settings a trained fold needs for inference (written as ``fold_config.json``)."""
    values = {**hp, "class_names": list(exp.class_names), "valence_threshold": exp.valence_threshold,
              "arousal_threshold": exp.arousal_threshold}
    return {k: values[k] for k in FOLD_CONFIG_KEYS}


def feature_stats(cache, paths):
    """Mean and standard deviation per feature bin over every frame of the given songs.

    Arguments
    ---------
    cache : FeatureCache
        Holds the songs' features.
    paths : list of str
        Audio paths (the fold's training songs).

    Returns
    -------
    mean, std : numpy.ndarray
        Shape (n_mels,), float64; std is floored at 1e-3.
    """
    total = total_sq = None
    count = 0
    for path in sorted(set(paths)):
        feats = np.asarray(cache.load(path), dtype=np.float64)
        total = feats.sum(axis=0) if total is None else total + feats.sum(axis=0)
        total_sq = (feats ** 2).sum(axis=0) if total_sq is None else total_sq + (feats ** 2).sum(axis=0)
        count += feats.shape[0]
    mean = total / count
    return mean, np.sqrt(np.maximum(total_sq / count - mean ** 2, 1e-6))


def _plain(value):
    """``value`` if it is made of plain yaml types only (numbers, strings, lists, dicts), else None."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return items if all(i is not None or v is None for i, v in zip(items, value)) else None
    if isinstance(value, dict):
        items = {str(k): _plain(v) for k, v in value.items()}
        return items if all(items[str(k)] is not None or v is None for k, v in value.items()) else None
    return None


#: Left out of the warm-up key: per-method paths, the snapshot's own settings, the run's list of folds
#: and the folders that only say where outputs go (the snapshot lives in the experiment folder, so
#: renaming or linking it keeps its warm-up usable).
_NOT_IN_WARMUP_KEY = ("output_folder", "save_folder", "train_log", "warmup_snapshot", "warmup_key", "folds",
                      "experiment_folder", "results_folder")


def warmup_key(hp):
    """The settings that determine a fold's warm-up epochs, as a plain dict (see ``share_warmup``).

    Every plain value of the fold's hyperparameters (numbers, strings, lists:
    data, features, folds, model, optimiser, schedule, batch size, seed,
    selection metric, the fold index...) except the list of folds of the
    run, those that act only after the
    warm-up or in stage 2 (:data:`sssl_brain.method.brain.AFTER_WARMUP_HPARAMS`,
    the ``hc_*`` options of features_svm), the method's own paths and the
    experiment and results folders (where outputs go). Two
    methods of a fold with the same key train the same warm-up epochs.
    """
    skip = set(AFTER_WARMUP_HPARAMS) | set(_NOT_IN_WARMUP_KEY)
    key = {}
    for name, value in hp.items():
        plain = _plain(value)
        if name in skip or name.startswith(("hc_", "__")) or (plain is None and value is not None):
            continue
        key[name] = plain
    return key


def warmup_snapshot_folder(hp):
    """``<experiment_folder>/warmup/snapshot_fold_<k>``: the warm-up snapshot shared by a fold's methods."""
    return os.path.join(hp["experiment_folder"], "warmup", f"snapshot_fold_{int(hp['fold'])}")


def share_warmup(hp, run_opts=None):
    """Sets up the shared warm-up of a fold's method; True when it starts from another method's.

    With ``share_warmup`` (and ``warmup_epochs`` > 0) the method writes a
    snapshot of its checkpoints at the end of the warm-up
    (:func:`sssl_brain.utils.checkpoints.save_warmup_snapshot`), and, when it has
    no checkpoint of its own yet, starts from a snapshot another method of the
    fold wrote with the same :func:`warmup_key`: the results are those of a
    run from scratch, without training the warm-up twice.
    """
    if not hp.get("share_warmup") or int(hp["warmup_epochs"]) <= 0:
        return False
    # the thread count and the device change the floating-point results, so they are part of the key
    key = {**warmup_key(hp), "torch_threads": torch.get_num_threads(),
           "device": str((run_opts or {}).get("device", "cpu"))}
    hp["warmup_snapshot"], hp["warmup_key"] = warmup_snapshot_folder(hp), key
    restored = False
    if if_main_process():
        restored = restore_warmup_snapshot(hp["warmup_snapshot"], hp["save_folder"], hp["warmup_key"],
                                           train_log=hp["train_log"])
        if restored:
            with open(hp["train_log"], "a", encoding="utf-8") as log:
                log.write(f"# epochs 1-{int(hp['warmup_epochs'])} above: restored from the warm-up snapshot "
                          f"{hp['warmup_snapshot']} (same settings, identical results)\n")
            logger.info("%s fold %d: epochs 1-%d restored from the warm-up snapshot %s (same settings)",
                        hp["method"], int(hp["fold"]), int(hp["warmup_epochs"]), hp["warmup_snapshot"])
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
    return restored


def run_fold(hp, run_opts, exp):
    """Stage 1 (SSSLBrain) and stage 2 (song level) of one fold and method; writes its outputs."""
    fold, folder = int(hp["fold"]), hp["output_folder"]
    sb.create_experiment_directory(experiment_directory=folder, hyperparams_to_save=None)
    if if_main_process():
        atomic_write_json(os.path.join(folder, "fold_config.json"), fold_config(hp, exp))
    share_warmup(hp, run_opts)
    parts = exp.fold_segments(fold)
    train_ds = segment_dataset(parts["train"], exp.cache)
    valid_ds = segment_dataset(parts["valid"], exp.cache) if parts["valid"] else None
    hp["model"].set_input_normalization(*feature_stats(exp.cache, [seg["path"] for seg in parts["train"]]))
    brain = SSSLBrain(modules=hp["modules"], opt_class=hp["opt_class"], hparams=hp,
                      run_opts=run_opts, checkpointer=hp["checkpointer"])
    brain.fit(hp["epoch_counter"], train_ds, valid_ds,
              train_loader_kwargs=hp["train_dataloader_opts"],
              valid_loader_kwargs=hp["valid_dataloader_opts"])
    selection = brain.recover_selected()  # the checkpoint chosen on validation serves everything below
    if not if_main_process():
        return None
    every = parts["train"] + parts["valid"] + parts["test"]
    probs = brain.predict_probs(segment_dataset(every, exp.cache))
    return write_fold_outputs(hp, exp, fold, every, probs, selection=selection)


def write_confusion_matrix(folder, song_rows, class_names):
    """``confusion_matrix.png`` of the SVM's decisions on the fold's test songs (nothing without any)."""
    test = [r for r in song_rows if r["split"] == "test" and r["aggregator"] == "svm"]
    if test:
        cm = np.zeros((len(class_names),) * 2, dtype=int)
        for r in test:
            cm[r["label"], r["pred"]] += 1
        plot_confusion_matrix(cm, class_names, os.path.join(folder, "confusion_matrix.png"))


def fold_metrics_extra(hp, exp, fold, svm_params, **more):
    """What metrics.json records of a fold besides its metrics: method, fold, task, SVM params, more."""
    return {"method": hp["method"], "fold": fold, "target": exp.target, "seg_dur": float(hp["seg_dur"]),
            **more, "svm_params": {k: (v if isinstance(v, (int, float, str)) else str(v))
                                   for k, v in svm_params.items()}}


def write_fold_outputs(hp, exp, fold, segments, probs, selection=None):
    """Writes segment_predictions.csv, song_predictions.csv, a confusion matrix and metrics.json (last)."""
    folder, split_of, names = hp["output_folder"], exp.folds[fold], exp.class_names
    seg_rows, by_song = [], {}
    for seg, p in zip(segments, probs):
        row = {"song_id": seg["song_id"], "segment": seg["segment"], "start_s": seg["start_s"],
               "end_s": seg["end_s"], "split": split_of[seg["song_id"]], "label": seg["label"],
               "pred": int(np.argmax(p))}
        if exp.has_truth:
            row["truth"] = seg["truth"]
        row.update({f"p_{c}": round(float(v), 6) for c, v in zip(names, p)})
        seg_rows.append(row)
        by_song.setdefault(seg["song_id"], []).append(p)
    seg_cols = ["song_id", "segment", "start_s", "end_s", "split", "label", "pred"]
    seg_cols += (["truth"] if exp.has_truth else []) + [f"p_{c}" for c in names]
    atomic_write_csv(os.path.join(folder, "segment_predictions.csv"), seg_rows, seg_cols)
    out = song_level_predictions(
        {s: np.stack(v) for s, v in by_song.items()}, split_of, exp.song_label, names,
        theta=float(hp["song_theta"]), grid_search=bool(hp["svm_grid_search"]), seed=int(hp["seed"]),
        C=float(hp["svm_C"]), gamma=hp["svm_gamma"])
    write_song_predictions(os.path.join(folder, "song_predictions.csv"), out.rows, names)
    save_song_classifier(out.classifier, os.path.join(folder, "song_classifier.skops"))
    write_confusion_matrix(folder, out.rows, names)
    extra = fold_metrics_extra(hp, exp, fold, out.params, **(selection or {}))
    return write_fold_metrics(folder, out.rows, seg_rows, extra=extra)


def run_features_svm_fold(hp, exp):
    """The ``features_svm`` baseline on one fold: hand-crafted song features, StandardScaler + stage 2's SVM.

    Same folds as the other methods (``exp.folds``); the song classifier
    (:func:`sssl_brain.song_level.stage2.svm_song_predictions`: the stage 2 grid
    search, StandardScaler, calibrated SVM) is fitted on the fold's training
    songs only, as stage 2 is. Writes ``fold_config.json``,
    ``song_predictions.csv`` (aggregator ``svm``), ``song_classifier.skops``,
    ``confusion_matrix.png`` and ``metrics.json`` (last). Songs too short for
    a feature are left out, logged with their names and counted in
    ``metrics.json`` (``handcrafted_skipped``).
    """
    fold, folder, split_of = int(hp["fold"]), hp["output_folder"], exp.folds[int(hp["fold"])]
    config = HandcraftedConfig.from_hparams(hp)
    atomic_write_json(os.path.join(folder, "fold_config.json"),
                      {**fold_config(hp, exp), "handcrafted": dataclasses.asdict(config)})
    cache = HandcraftedCache(hp.get("hc_cache") or os.path.join(hp["prepare_folder"], "handcrafted"), config)
    vectors, skipped = song_vectors(cache, [s for s in exp.songs if s["song_id"] in split_of], split_of,
                                    n_jobs=int(hp["feature_jobs"]), what=f"features_svm fold {fold}")
    out = svm_song_predictions(vectors, split_of, exp.song_label, exp.class_names,
                               grid_search=bool(hp["svm_grid_search"]), seed=int(hp["seed"]),
                               C=float(hp["svm_C"]), gamma=hp["svm_gamma"])
    write_song_predictions(os.path.join(folder, "song_predictions.csv"), out.rows, exp.class_names)
    save_song_classifier(out.classifier, os.path.join(folder, "song_classifier.skops"))
    write_confusion_matrix(folder, out.rows, exp.class_names)
    extra = fold_metrics_extra(hp, exp, fold, out.params, n_features=cache.n_features,
                               handcrafted_skipped={"count": len(skipped), "items": skipped})
    return write_fold_metrics(folder, out.rows, extra=extra)


def load_experiment(hparams_file, overrides, songs_csv, valence_threshold, arousal_threshold, truth_csv):
    """The checked hyperparameters and the :class:`Experiment` of a run (thresholds: the yaml's win)."""
    hp = load_hparams(hparams_file, overrides)
    check_experiment_hparams(hp)
    if hp["valence_threshold"] is not None:
        valence_threshold = float(hp["valence_threshold"])
    if hp["arousal_threshold"] is not None:
        arousal_threshold = float(hp["arousal_threshold"])
    return hp, Experiment(hp, songs_csv, valence_threshold, arousal_threshold, truth_csv)


def train_folds(hparams_file, run_opts, overrides, exp, runs):
    """Trains each ``(method, fold)`` of ``runs`` in order; a finished fold (its metrics.json) is skipped."""
    for method, fold in runs:
        fold_hp = load_hparams(hparams_file, {**overrides, "method": method, "fold": fold})
        done = os.path.join(fold_hp["output_folder"], "metrics.json")
        if os.path.isfile(done):
            logger.info("%s fold %d: finished (%s exists), not retrained", method, fold, done)
            continue
        logger.info("%s fold %d: training in %s", method, fold, fold_hp["output_folder"])
        if method in SONG_METHODS:
            if if_main_process():
                run_features_svm_fold(fold_hp, exp)
        else:
            run_fold(fold_hp, run_opts, exp)
        if torch.distributed.is_initialized():
            torch.distributed.barrier()


def run_experiment(hparams_file, run_opts, overrides, songs_csv, valence_threshold=0.5,
                   arousal_threshold=0.5, truth_csv=None):
    """Runs every requested method and fold, then writes results.md / results.csv.

    Arguments
    ---------
    hparams_file : str
        The yaml (e.g. ``hparams/vgg16_sssl.yaml``).
    run_opts : dict
        SpeechBrain run options (device, distributed launch, debug...).
    overrides : dict or str
        Command-line overrides.
    songs_csv : str
        Canonical songs table written by the recipe's prepare step.
    valence_threshold, arousal_threshold : float
        The recipe's default thresholds; the yaml's values win when not null.
    truth_csv : str, optional
        ``truth/segment_truth.csv`` where it exists.

    Returns
    -------
    list of dict
        The rows of results.csv.
    """
    overrides = parse_overrides(overrides)
    hp, exp = load_experiment(hparams_file, overrides, songs_csv, valence_threshold, arousal_threshold,
                              truth_csv)
    folds = list(range(int(hp["n_folds"]))) if hp["folds"] is None else [int(k) for k in hp["folds"]]
    jobs = min(int(hp.get("fold_jobs", 1)), len(folds))
    if jobs > 1:
        run_fold_jobs(jobs, folds, (hparams_file, run_opts, overrides, songs_csv, valence_threshold,
                                    arousal_threshold, truth_csv))
    else:
        train_folds(hparams_file, run_opts, overrides, exp,
                    [(method, fold) for method in hp["methods"] for fold in folds])
    if not if_main_process():
        return None
    rows = collect_results(hp["experiment_folder"])
    title = f"{hp['dataset']}: {exp.target}, {float(hp['seg_dur']):g} s segments, seed {hp['seed']}"
    write_results(hp["experiment_folder"], rows, title=title)
    return rows


def _fold_job(threads, folds, args):
    """One process of ``fold_jobs``: every method of ``folds``, fold after fold, with ``threads`` threads."""
    torch.set_num_threads(threads)
    hparams_file, run_opts, overrides, *rest = args
    run_opts = {**run_opts, "noprogressbar": True}  # several jobs share the console
    hp, exp = load_experiment(hparams_file, overrides, *rest)
    # fold after fold: a stopped run has whole folds (every method) finished
    train_folds(hparams_file, run_opts, overrides, exp, [(m, k) for k in folds for m in hp["methods"]])


def fold_job_folds(folds, jobs):
    """The folds of each of ``jobs`` processes: round robin, so each job gets every ``jobs``-th fold.

    Example
    -------
    >>> fold_job_folds([0, 1, 2, 3, 4], 2)
    [[0, 2, 4], [1, 3]]
    """
    return [list(folds[i::jobs]) for i in range(jobs)]


def run_fold_jobs(jobs, folds, args):
    """Trains the folds in ``jobs`` processes side by side (``fold_jobs``), sharing the threads.

    Each process gets ``max(1, torch.get_num_threads() // jobs)`` torch threads
    and runs every method of its folds (:func:`fold_job_folds`) through
    :func:`train_folds`; on a 2-core CPU two one-thread processes train
    more segments per second than one process with two threads
    (``benchmarks/bench_epoch.py``). A fold's results depend on the thread
    count, not on the job layout: ``fold_jobs: 2`` with one thread each gives
    the numbers of a serial run with one thread. Not with DDP (``torchrun``
    already runs one process per device).

    Arguments
    ---------
    jobs : int
        Number of processes.
    folds : list of int
        Folds to train.
    args : tuple
        The arguments of :func:`run_experiment` (hparams file, run options, overrides, songs table,
        thresholds, truth table).
    """
    import multiprocessing  # (torchrun is refused at start-up: check_experiment_hparams)

    threads = max(1, torch.get_num_threads() // jobs)
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch thread pools
    procs = []
    for part in fold_job_folds(folds, jobs):
        logger.info("fold job: folds %s in a process with %d torch thread(s)", part, threads)
        proc = ctx.Process(target=_fold_job, args=(threads, part, args))
        proc.start()
        procs.append((part, proc))
    failed = []
    for part, proc in procs:
        proc.join()
        if proc.exitcode != 0:
            failed.append(f"folds {part} (exit code {proc.exitcode})")
    if failed:
        raise SSSLError(f"fold_jobs: the process of {', '.join(failed)} failed; its error is printed above, "
                        "the finished folds are kept and a new run resumes the others")


def recipe_main(argv, prepare, valence_threshold, arousal_threshold, dataset):
    """What every recipe's ``train.py`` does: parse, prepare, run the experiment.

    Bad options and bad data stop the run with a one-line message naming the
    option, file or row (exit status 2) instead of a traceback.

    Arguments
    ---------
    argv : list of str
        ``sys.argv[1:]``.
    prepare : callable
        ``prepare(data_folder, save_folder, skip_prep=...) -> songs.csv path``.
    valence_threshold, arousal_threshold : float
        The dataset's default thresholds.
    dataset : str
        Name used in the results folder.
    """
    try:
        return _recipe_main(argv, prepare, valence_threshold, arousal_threshold, dataset)
    except SSSLError as err:
        sys.stderr.write(f"error: {err}\n")
        sys.exit(2)
    except OSError as err:  # disk full, permissions: the message names the file
        if err.filename is None:
            raise
        sys.stderr.write(f"error: {err}\n")
        sys.exit(1)


def _recipe_main(argv, prepare, valence_threshold, arousal_threshold, dataset):
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    overrides = parse_overrides(overrides)
    overrides.setdefault("dataset", dataset)
    sb.utils.distributed.ddp_init_group(run_opts)  # no-op unless launched by torchrun
    hp = load_hparams(hparams_file, overrides)
    check_experiment_hparams(hp)
    sb.create_experiment_directory(experiment_directory=hp["experiment_folder"],
                                   hyperparams_to_save=hparams_file, overrides=overrides)
    songs_csv = os.path.join(hp["prepare_folder"], "songs.csv")
    run_on_main(prepare, kwargs={"data_folder": hp["data_folder"], "save_folder": hp["prepare_folder"],
                                 "skip_prep": hp["skip_prep"]})
    truth_csv = os.path.join(hp["prepare_folder"], "segment_truth.csv")  # copied there by the prepare step
    rows = run_experiment(hparams_file, run_opts, overrides, songs_csv, valence_threshold,
                          arousal_threshold, truth_csv=truth_csv)
    if rows is not None:
        with open(os.path.join(hp["experiment_folder"], "results.md"), encoding="utf-8") as f:
            sys.stdout.write(f.read())
    return rows
