"""The data of one experiment: songs, features, segments and folds, shared by every fold and method."""

import logging
import os

import numpy as np
from speechbrain.utils.distributed import if_main_process, run_on_main

from sssl_brain.dataio.dataset import TRAIN_LABELS, build_segments, make_folds
from sssl_brain.dataio.features import FeatureCache, FeatureConfig
from sssl_brain.dataio.labels import CLASS_NAMES, check_target, song_class
from sssl_brain.dataio.pack import PackedFeatures
from sssl_brain.dataio.segments import segment_hop
from sssl_brain.dataio.songs import read_segment_truth, read_songs_table
from sssl_brain.method.checks import METHODS, check_sssl_hparams
from sssl_brain.song_level.handcrafted import SONG_METHODS, HandcraftedConfig
from sssl_brain.utils.errors import ConfigError, DataError
from sssl_brain.utils.io_utils import atomic_write_csv

logger = logging.getLogger(__name__)


def check_experiment_hparams(hp, run_opts=None):
    """Start-up checks of the options (``run_opts``: SpeechBrain's run options); errors name the option."""
    check_target(hp["target"])
    try:
        seg_dur = float(hp["seg_dur"])
    except (TypeError, ValueError):
        raise ConfigError(f"seg_dur={hp['seg_dur']!r}: must be a number of seconds") from None
    segment_hop(seg_dur, hp["seg_overlap"])
    check_sssl_hparams(hp, run_opts)
    if hp["train_labels"] not in TRAIN_LABELS:
        raise ConfigError(f"train_labels={hp['train_labels']!r}: must be one of {', '.join(TRAIN_LABELS)}")
    for method in hp["methods"]:
        if method not in METHODS + SONG_METHODS:
            raise ConfigError(f"methods: {method!r} is not one of {', '.join(METHODS + SONG_METHODS)}")
    if any(method in SONG_METHODS for method in hp["methods"]):
        HandcraftedConfig.from_hparams(hp)  # a bad hc_* value stops here, naming the option
    jobs = hp.get("fold_jobs", 1)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"fold_jobs={jobs!r}: must be a whole number >= 1")
    if bool(hp["device_features"]) and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("device_features=True: not under torchrun (DDP) (its batches are not sharded "
                          "across ranks); use device_features: False")
    if jobs > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(f"fold_jobs={jobs}: does not combine with torchrun (DDP); use fold_jobs: 1")
    if int(hp["n_folds"]) < 2:
        raise ConfigError(f"n_folds={hp['n_folds']}: need at least 2")
    folds = hp["folds"]
    if folds is not None:
        bad = [k for k in folds if not 0 <= int(k) < int(hp["n_folds"])]
        if bad:
            raise ConfigError(f"folds={folds}: fold indices must be in 0..{int(hp['n_folds']) - 1}")


def debug_subset(songs, target, per_class, valence_threshold, arousal_threshold):
    """The first ``per_class`` songs of each class, in table order (what ``--debug`` trains on).

    Arguments
    ---------
    songs : list of dict
        Rows of the songs table.
    target : str
        ``valence``, ``arousal`` or ``quadrant``.
    per_class : int
        Songs kept per class.
    valence_threshold, arousal_threshold : float
        Thresholds of the binary labels.

    Returns
    -------
    list of dict
        The kept rows, in table order.

    Example
    -------
    >>> rows = [{"song_id": f"s{i}", "valence": str(i / 10)} for i in range(10)]
    >>> [s["song_id"] for s in debug_subset(rows, "valence", 2, 0.5, 0.5)]
    ['s0', 's1', 's5', 's6']
    """
    kept, count = [], {}
    for song in songs:
        label = song_class(song, target, valence_threshold, arousal_threshold)
        if count.get(label, 0) < per_class:
            count[label] = count.get(label, 0) + 1
            kept.append(song)
    return kept


class Experiment:
    """Songs, features, segments and folds of one experiment (shared by all folds and methods).

    Builds the feature cache of every song (on the main process), cuts the
    songs into segments that inherit their labels and makes the folds
    (written as ``<experiment_folder>/folds.csv``).

    Arguments
    ---------
    hp : dict
        Loaded hyperparameters; the binary-label thresholds ``valence_threshold`` and
        ``arousal_threshold`` come from the recipe's dataset yaml (``recipes/<dataset>/hparams/``).
    songs_csv : str
        Canonical songs table.
    truth_csv : str, optional
        Segment truth table, for diagnostics.
    debug : bool
        Keep ``debug_songs_per_class`` songs of each class (:func:`debug_subset`), for ``--debug``.
    """

    def __init__(self, hp, songs_csv, truth_csv=None, debug=False):
        self.hp = hp
        self.target = hp["target"]
        for name in ("valence_threshold", "arousal_threshold"):
            if hp.get(name) is None:
                raise ConfigError(f"{name}: not set; the recipe's hparams/<dataset>.yaml sets it "
                                  f"(or pass --{name}=...)")
        self.valence_threshold = float(hp["valence_threshold"])
        self.arousal_threshold = float(hp["arousal_threshold"])
        self.class_names = CLASS_NAMES[self.target]
        self.songs = read_songs_table(songs_csv)
        if debug:
            self.songs = debug_subset(self.songs, self.target, int(hp["debug_songs_per_class"]),
                                      self.valence_threshold, self.arousal_threshold)
            logger.info("--debug: %d songs (%d per class)", len(self.songs), int(hp["debug_songs_per_class"]))
        self.config = FeatureConfig.from_hparams(hp)
        if hp["feature_pack"]:  # an unpacked feature pack: its features, no audio read
            self.cache = PackedFeatures(hp["feature_pack"])
            if self.cache.config != self.config:
                raise ConfigError(f"feature_pack={hp['feature_pack']}: its features were computed with "
                                  f"{self.cache.config}, the hyperparameters ask for {self.config}")
        else:
            self.cache = FeatureCache(hp["feature_cache"], self.config)
        paths = [s["path"] for s in self.songs]
        run_on_main(self.cache.build, kwargs={"audio_paths": paths, "n_jobs": int(hp["feature_jobs"])})
        n_frames = {p: self.cache.n_frames(p) for p in paths}
        truth = read_segment_truth(truth_csv) if truth_csv and os.path.isfile(truth_csv) else None
        self.has_truth = truth is not None
        self.segments, self.too_short = build_segments(
            self.songs, n_frames, self.target, float(hp["seg_dur"]), self.config,
            overlap=hp["seg_overlap"], max_duration=hp["max_song_duration"],
            valence_threshold=self.valence_threshold, arousal_threshold=self.arousal_threshold, truth=truth)
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

    def fold_segments(self, fold, max_per_split=None):
        """Segments of each split of a fold: dict split -> list of segment rows.

        ``max_per_split`` keeps the first segments of each split only (``--debug``: a few batches of
        every pass -- training, partition, validation and prediction).
        """
        split_of = self.folds[fold]
        out = {"train": [], "valid": [], "test": []}
        for seg in self.segments:
            out[split_of[seg["song_id"]]].append(seg)
        if max_per_split is not None:
            out = {split: rows[:max_per_split] for split, rows in out.items()}
        return out




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
