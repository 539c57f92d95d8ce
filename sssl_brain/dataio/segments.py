"""Segments of a song and their frame slices (docs/method.md, "Labels and segments").

A song of ``d`` seconds is cut into segments of ``seg_dur`` seconds with a
hop of ``seg_dur - overlap`` seconds (the paper: overlap = duration - 1 s,
so the hop is 1 s). There is no padding: a song shorter than one segment
yields no segment. Optionally only the first ``max_duration`` seconds of a
song are used.

**One rule.** Training (:func:`sssl_brain.dataio.dataset.build_segments`),
inference (:meth:`sssl_brain.inference.recognizer.EmotionRecognizer.classify_file`)
and the prepare step's Table-1 summary
(:func:`sssl_brain.dataio.prepare.segment_summary`) all cut a song with
:func:`song_segments`, from the song's number of feature frames. Training
reads that number from the feature cache, inference from the song's
features; the prepare step, which runs before any feature exists, predicts
it exactly from the song's decoded sample count and rate with
:func:`n_feature_frames` (librosa's resampled length, then centred framing).
"""

import math
from typing import NamedTuple

import numpy as np

from sssl_brain.utils.errors import ConfigError


def segment_hop(seg_dur, overlap=None):
    """Hop between segment starts, in seconds (default overlap: seg_dur - 1 s).

    Example
    -------
    >>> segment_hop(3.0), segment_hop(1.0), segment_hop(2.0, overlap=0.0)
    (1.0, 1.0, 2.0)
    """
    if not seg_dur > 0:
        raise ConfigError(f"seg_dur={seg_dur!r}: the segment duration must be a positive number of seconds")
    if overlap is None:
        overlap = max(seg_dur - 1.0, 0.0)
    if not 0 <= overlap < seg_dur:
        raise ConfigError(f"overlap={overlap!r}: must be >= 0 and smaller than seg_dur={seg_dur}")
    return seg_dur - overlap


def segment_starts(duration, seg_dur, overlap=None, max_duration=None):
    """Start times (s) of the segments of a song; empty if the song is too short.

    Arguments
    ---------
    duration : float
        Song duration in seconds.
    seg_dur : float
        Segment duration in seconds.
    overlap : float, optional
        Overlap in seconds (default ``seg_dur - 1``).
    max_duration : float, optional
        Use only the first ``max_duration`` seconds of the song.

    Returns
    -------
    list of float

    Example
    -------
    >>> segment_starts(4.5, 3.0)
    [0.0, 1.0]
    >>> segment_starts(2.0, 3.0)
    []
    >>> len(segment_starts(30.0, 1.0)), len(segment_starts(40.0, 5.0, max_duration=30))
    (30, 26)
    """
    hop = segment_hop(seg_dur, overlap)
    if max_duration is not None:
        duration = min(duration, max_duration)
    if duration + 1e-9 < seg_dur:
        return []
    count = int(math.floor((duration - seg_dur) / hop + 1e-9)) + 1
    return [round(k * hop, 6) for k in range(count)]


def frames_per_segment(seg_dur, sample_rate, hop_length):
    """Fixed frame count of a segment: what a centred STFT gives for its samples.

    Example
    -------
    >>> frames_per_segment(1.0, 22050, 512), frames_per_segment(3.0, 22050, 512)
    (44, 130)
    """
    return int(math.floor(round(seg_dur * sample_rate) / hop_length)) + 1


def start_frame(start_s, sample_rate, hop_length, n_song_frames, n_seg_frames):
    """First frame of a segment in its song's frames, kept inside the song.

    Example
    -------
    >>> start_frame(1.0, 22050, 512, 1000, 44)
    43
    >>> start_frame(10.0, 22050, 512, 450, 44)
    406
    """
    first = int(round(start_s * sample_rate / hop_length))
    return max(0, min(first, n_song_frames - n_seg_frames))


def resampled_length(n_samples, orig_sr, target_sr):
    """Number of samples :func:`librosa.resample` returns (what
    :func:`sssl_brain.dataio.audio.load_audio` gives).

    librosa (every ``res_type``, soxr included) fixes the output length to
    ``ceil(n_samples * (target_sr / orig_sr))`` computed in floating point;
    this repeats that computation so the result is bit-identical.

    Example
    -------
    >>> resampled_length(44100, 44100, 22050), resampled_length(7, 44100, 22050)
    (22050, 4)
    >>> resampled_length(5, 16000, 16000)
    5
    """
    n_samples, orig_sr, target_sr = int(n_samples), int(orig_sr), int(target_sr)
    if orig_sr == target_sr:
        return n_samples
    return int(np.ceil(n_samples * (float(target_sr) / orig_sr)))


def n_feature_frames(n_samples, sample_rate, hop_length, native_rate=None):
    """Frames of the centred log-mel of a song (:func:`sssl_brain.dataio.features.log_mel`).

    Arguments
    ---------
    n_samples : int
        Decoded samples of the song at ``native_rate``.
    sample_rate : int
        Feature sample rate (the song is resampled to it).
    hop_length : int
        Feature hop in samples.
    native_rate : int, optional
        The file's sample rate (default: ``sample_rate``, no resampling).

    Returns
    -------
    int
        ``1 + resampled_length(...) // hop_length``, librosa's centred framing.

    Example
    -------
    >>> n_feature_frames(22050, 22050, 512), n_feature_frames(2 * 44100, 22050, 512, native_rate=44100)
    (44, 87)
    """
    rate = sample_rate if native_rate is None else native_rate
    return 1 + resampled_length(n_samples, rate, sample_rate) // int(hop_length)


def n_feature_frames_of_duration(duration, sample_rate, hop_length):
    """Frames of the centred log-mel of ``duration`` seconds at ``sample_rate``.

    For a duration ``n / rate`` computed in double precision, the exact
    resampled length ``ceil(n * sample_rate / rate)`` is recovered (a
    fraction of a sample of at least ``1 / rate`` is never lost to rounding);
    prefer :func:`n_feature_frames` with the sample count where it is known,
    as it repeats librosa's own floating-point rounding.

    Example
    -------
    >>> n_feature_frames_of_duration(1.0, 22050, 512), n_feature_frames_of_duration(7.3, 16000, 512)
    (44, 229)
    """
    n_samples = int(math.ceil(float(duration) * sample_rate - 1e-6))
    return 1 + max(n_samples, 0) // int(hop_length)


class Segment(NamedTuple):
    """One segment of a song (what :func:`song_segments` returns)."""

    start_s: float
    end_s: float
    start_frame: int


def song_segments(n_frames, seg_dur, sample_rate, hop_length, overlap=None, max_duration=None, duration=None):
    """The segments of a song: THE rule of training, inference and the Table-1 summary.

    The song's frames cover ``(n_frames - 1) * hop_length / sample_rate``
    seconds (centred frames); the segments of that span are those of
    :func:`segment_starts`, a song with fewer frames than one segment
    (:func:`frames_per_segment`) has none, and each segment is the slice of
    :func:`frames_per_segment` frames from :func:`start_frame`.

    Arguments
    ---------
    n_frames : int
        Feature frames of the song (from the cache, or :func:`n_feature_frames`).
    seg_dur : float
        Segment duration (s).
    sample_rate, hop_length : int
        Feature settings.
    overlap, max_duration : float, optional
        See :func:`segment_starts`.
    duration : float, optional
        The audio's duration (s): the span used never exceeds it.

    Returns
    -------
    list of Segment
        ``(start_s, end_s, start_frame)`` of each segment, in order; empty if
        the song is shorter than one segment.

    Example
    -------
    >>> [tuple(seg) for seg in song_segments(140, 1.0, 22050, 512)]
    [(0.0, 1.0, 0), (1.0, 2.0, 43), (2.0, 3.0, 86)]
    >>> song_segments(n_feature_frames(30 * 22050 + 100, 22050, 512), 1.0, 22050, 512)[-1].start_s
    29.0
    >>> song_segments(30, 1.0, 22050, 512)
    []
    """
    n_frames = int(n_frames)
    n_seg_frames = frames_per_segment(seg_dur, sample_rate, hop_length)
    if n_frames < n_seg_frames:
        return []
    span = (n_frames - 1) * hop_length / sample_rate
    if duration is not None:
        span = min(span, float(duration))
    return [Segment(start, round(start + seg_dur, 6),
                    start_frame(start, sample_rate, hop_length, n_frames, n_seg_frames))
            for start in segment_starts(span, seg_dur, overlap, max_duration)]
