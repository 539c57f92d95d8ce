"""Segments of a song and their frame slices (DESIGN.md sections 1 and 4).

A song of ``d`` seconds is cut into segments of ``seg_dur`` seconds with a
hop of ``seg_dur - overlap`` seconds (the paper: overlap = duration - 1 s,
so the hop is 1 s). There is no padding: a song shorter than one segment
yields no segment. Optionally only the first ``max_duration`` seconds of a
song are used.
"""

import math

from .errors import ConfigError


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
