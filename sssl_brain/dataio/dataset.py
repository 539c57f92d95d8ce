"""Segment tables, folds over songs and SpeechBrain datasets of segments.

A segment is a fixed-length slice of its song's cached log-mel frames
(``sssl_brain.dataio.features``); it inherits the song's label (the noisy label the
method is robust to) and, where ``truth/segment_truth.csv`` exists, carries
its true label for diagnostics.
"""

import collections
import functools
import logging

import numpy as np
import speechbrain as sb
import torch
from sklearn.model_selection import StratifiedKFold, train_test_split

from sssl_brain.dataio.device_segments import DeviceSegments
from sssl_brain.dataio.labels import CLASS_NAMES, song_class
from sssl_brain.dataio.segments import frames_per_segment, song_segments
from sssl_brain.utils.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

SEGMENT_KEYS = ("seg_id", "song_id", "segment", "start_s", "end_s", "start_frame", "label", "truth")


def segment_truth_label(truth_seconds, start_s, seg_dur, target):
    """True label of a segment: the most frequent per-second label it covers.

    Ties go to the label of the segment's middle second.

    Arguments
    ---------
    truth_seconds : dict
        ``{second: {"valence": 0/1, "arousal": 0/1, "quadrant": "Qn"}}`` of one song.
    start_s, seg_dur : float
        Segment start and duration in seconds.
    target : str
        Task.

    Returns
    -------
    int or None
        Class index, or None when no covered second has a truth row.

    Example
    -------
    >>> t = {0: {"valence": 1}, 1: {"valence": 0}, 2: {"valence": 0}}
    >>> segment_truth_label(t, 0.0, 3.0, "valence"), segment_truth_label(t, 0.0, 1.0, "valence")
    (0, 1)
    """
    seconds = range(int(np.floor(start_s + 1e-9)), int(np.ceil(start_s + seg_dur - 1e-9)))
    labels = []
    for sec in seconds:
        row = truth_seconds.get(sec)
        if row is not None:
            value = row[target]
            labels.append(CLASS_NAMES["quadrant"].index(value) if target == "quadrant" else int(value))
    if not labels:
        return None
    counts = collections.Counter(labels).most_common()
    best = [lab for lab, c in counts if c == counts[0][1]]
    if len(best) == 1:
        return best[0]
    middle = labels[len(labels) // 2]
    return middle if middle in best else best[0]


def build_segments(songs, n_frames_of, target, seg_dur, feature_config, overlap=None, max_duration=None,
                   valence_threshold=0.5, arousal_threshold=0.5, truth=None):
    """Cuts every song into segments that inherit the song's label.

    Arguments
    ---------
    songs : list of dict
        Rows of the canonical songs table.
    n_frames_of : dict
        ``{path: number of cached feature frames}`` of every song.
    target : str
        ``valence``, ``arousal`` or ``quadrant``.
    seg_dur : float
        Segment duration (s).
    feature_config : FeatureConfig
        Gives sample rate and hop length (frames per second).
    overlap, max_duration : float, optional
        See :func:`sssl_brain.dataio.segments.segment_starts`. A song's segments
        are those of :func:`sssl_brain.dataio.segments.song_segments` (the
        rule the prepare step's summary uses too).
    valence_threshold, arousal_threshold : float
        Thresholds of the binary labels.
    truth : dict, optional
        ``{song_id: {second: row}}`` segment truth.

    Returns
    -------
    segments : list of dict
        One row per segment with the keys of ``SEGMENT_KEYS`` plus ``path``
        and ``n_frames``; ``truth`` is -1 where unknown.
    too_short : list of str
        Songs shorter than one segment (they yield no segment).
    """
    sr, hop = feature_config.sample_rate, feature_config.hop_length
    n_seg_frames = frames_per_segment(seg_dur, sr, hop)
    segments, too_short = [], []
    for song in songs:
        label = song_class(song, target, valence_threshold, arousal_threshold)
        n_song_frames = n_frames_of[song["path"]]
        song_segs = song_segments(n_song_frames, seg_dur, sr, hop, overlap, max_duration,
                                  duration=float(song["duration"]))
        if not song_segs:
            too_short.append(song["song_id"])
            continue
        song_truth = (truth or {}).get(song["song_id"])
        for k, seg in enumerate(song_segs):
            true_label = -1
            if song_truth is not None:
                value = segment_truth_label(song_truth, seg.start_s, seg_dur, target)
                true_label = -1 if value is None else value
            segments.append({
                "seg_id": f"{song['song_id']}__{k:04d}",
                "song_id": song["song_id"],
                "segment": k,
                "start_s": seg.start_s,
                "end_s": seg.end_s,
                "start_frame": seg.start_frame,
                "n_frames": n_seg_frames,
                "path": song["path"],
                "label": label,
                "truth": true_label,
            })
    if too_short:
        names = ", ".join(too_short[:10]) + (" ..." if len(too_short) > 10 else "")
        logger.warning("%d song(s) shorter than one %.3g s segment yield no segment and are left out: %s",
                       len(too_short), seg_dur, names)
    return segments, too_short


def make_folds(song_ids, labels, n_folds=10, valid_ratio=0.1, seed=0):
    """Stratified folds over songs, with a validation split carved from training songs.

    A song (and so all its segments) is in exactly one split of each fold.

    Arguments
    ---------
    song_ids : list of str
        Songs.
    labels : list of int
        Song labels used for stratification.
    n_folds : int
        Number of folds (>= 2).
    valid_ratio : float
        Fraction of a fold's training songs kept for validation (0 for none).
    seed : int
        Seed of the shuffles.

    Returns
    -------
    list of dict
        For each fold ``{song_id: "train" | "valid" | "test"}``.

    Example
    -------
    >>> ids = [f"s{i}" for i in range(20)]
    >>> folds = make_folds(ids, [i % 2 for i in range(20)], n_folds=4, valid_ratio=0.2, seed=1)
    >>> sorted(collections.Counter(folds[0].values()).items())
    [('test', 5), ('train', 12), ('valid', 3)]
    """
    if n_folds < 2:
        raise ConfigError(f"n_folds={n_folds}: cross-validation needs at least 2 folds")
    if not 0 <= valid_ratio < 1:
        raise ConfigError(f"valid_ratio={valid_ratio}: must be in [0, 1)")
    song_ids, labels = np.asarray(song_ids), np.asarray(labels)
    counts = collections.Counter(labels.tolist())
    if min(counts.values()) < n_folds:
        raise DataError(f"cannot make {n_folds} stratified folds: class counts over songs are {dict(counts)}")
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = []
    for k, (train_idx, test_idx) in enumerate(skf.split(song_ids, labels)):
        split = {sid: "test" for sid in song_ids[test_idx]}
        train_ids = song_ids[train_idx]
        if valid_ratio > 0:
            train_lab = labels[train_idx]
            n_valid = int(np.ceil(valid_ratio * len(train_ids)))
            counts = collections.Counter(train_lab.tolist())
            # stratify when every class can appear in both parts; tiny data sets fall back to a plain split
            strat = train_lab if min(counts.values()) >= 2 and n_valid >= len(counts) else None
            train_ids, valid_ids = train_test_split(
                train_ids, test_size=valid_ratio, random_state=seed + k, stratify=strat)
            split.update({sid: "valid" for sid in valid_ids})
        split.update({sid: "train" for sid in train_ids})
        folds.append({str(s): split[s] for s in song_ids})
    return folds


#: What a segment is trained on: its song's label (the method's setting) or its per-second truth.
TRAIN_LABELS = ("inherited", "truth")


def truth_as_labels(segments):
    """Segments whose training label is their per-second truth: the clean-label ceiling.

    A diagnostic for datasets with ``truth/segment_truth.csv`` (the demo): a
    model trained this way shows what the model could learn from clean
    segment labels, the ceiling that inherit and SSSL are read against.

    Arguments
    ---------
    segments : list of dict
        Rows from :func:`build_segments`.

    Returns
    -------
    list of dict
        Copies with ``label`` set to ``truth``; the inputs are unchanged.

    Raises
    ------
    DataError
        Naming the first segment without a truth label (``truth`` -1).

    Example
    -------
    >>> truth_as_labels([{"seg_id": "a_0", "label": 2, "truth": 1}])
    [{'seg_id': 'a_0', 'label': 1, 'truth': 1}]
    """
    missing = [seg["seg_id"] for seg in segments if seg["truth"] < 0]
    if missing:
        raise DataError(f"train_labels=truth: {len(missing)} segment(s) have no truth label, the first "
                        f"{missing[0]}; truth/segment_truth.csv must cover every second the segments use")
    return [{**seg, "label": seg["truth"]} for seg in segments]


@functools.lru_cache(maxsize=64)
def _open_features(entry_path):
    return np.load(entry_path, mmap_mode="r", allow_pickle=False)


def segment_dataset(segments, cache):
    """A SpeechBrain ``DynamicItemDataset`` of segments read from the feature cache.

    Each item provides ``idx`` (position in ``segments``), ``seg_id``,
    ``song_id``, ``feats`` (frames x mels float tensor), ``label`` (inherited)
    and ``truth`` (-1 where unknown).

    Arguments
    ---------
    segments : list of dict
        Rows from :func:`build_segments`.
    cache : FeatureCache
        Cache holding every song's features.

    Returns
    -------
    speechbrain.dataio.dataset.DynamicItemDataset
    """
    entry_of = {}
    for seg in segments:
        if seg["path"] not in entry_of:
            entry_of[seg["path"]] = cache.entry_path(seg["path"])
    data = {
        seg["seg_id"]: {
            "idx": i,
            "song_id": seg["song_id"],
            "entry": entry_of[seg["path"]],
            "start_frame": seg["start_frame"],
            "n_frames": seg["n_frames"],
            "label_int": seg["label"],
            "truth_int": seg["truth"],
        }
        for i, seg in enumerate(segments)
    }
    dataset = sb.dataio.dataset.DynamicItemDataset(data)

    @sb.utils.data_pipeline.takes("entry", "start_frame", "n_frames")
    @sb.utils.data_pipeline.provides("feats")
    def feats_pipeline(entry, first, count):
        frames = _open_features(entry)[first:first + count]
        return torch.from_numpy(np.array(frames, dtype=np.float32))

    @sb.utils.data_pipeline.takes("label_int", "truth_int", "idx")
    @sb.utils.data_pipeline.provides("label", "truth", "index")
    def label_pipeline(label, truth, idx):
        yield torch.LongTensor([label])
        yield torch.LongTensor([truth])
        yield torch.LongTensor([idx])

    sb.dataio.dataset.add_dynamic_item([dataset], feats_pipeline)
    sb.dataio.dataset.add_dynamic_item([dataset], label_pipeline)
    sb.dataio.dataset.set_output_keys([dataset], ["id", "song_id", "feats", "label", "truth", "index"])
    return dataset


def segment_labels(dataset):
    """The inherited labels and the truth of every segment of a dataset, in dataset order.

    Arguments
    ---------
    dataset : DeviceSegments or speechbrain.dataio.dataset.DynamicItemDataset
        A training split (:func:`segment_dataset`, whose items carry ``label_int`` / ``truth_int``, or
        :class:`~sssl_brain.dataio.device_segments.DeviceSegments`).

    Returns
    -------
    tuple of numpy.ndarray
        ``(labels, truth)``, int arrays (N,); truth -1 where the segment has none.

    Example
    -------
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> ds = DynamicItemDataset({"a_0": {"label_int": 1, "truth_int": -1},
    ...                          "a_1": {"label_int": 0, "truth_int": 0}})
    >>> [x.tolist() for x in segment_labels(ds)]
    [[1, 0], [-1, 0]]
    """
    if isinstance(dataset, DeviceSegments):
        return dataset.labels_np, dataset.truth_np
    rows = [dataset.data[i] for i in dataset.data_ids]
    return np.array([r["label_int"] for r in rows]), np.array([r["truth_int"] for r in rows])

