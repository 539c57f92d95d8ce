"""One segment-count rule: the prepare step's Table-1 summary equals the segments training builds.

The summary runs before any feature exists; it predicts each song's feature
frames from its decoded sample count (librosa's resampled length, then
centred frames) and cuts them with the rule training uses
(:func:`sssl_brain.dataio.segments.song_segments`); inference cuts a song's
features with the same rule.
"""

import contextlib
import io
import json
import os

import numpy as np
import pytest
import soundfile as sf
from audio_fixtures import write_audio
from model_fixtures import fold_by_hand

from sssl_brain.dataio.audio import audio_duration, audio_samples, load_audio
from sssl_brain.dataio.dataset import build_segments
from sssl_brain.dataio.features import FeatureCache, FeatureConfig
from sssl_brain.dataio.prepare import REPORT_FILE, SUMMARY_DURATIONS, segment_summary, write_songs_table
from sssl_brain.dataio.segments import n_feature_frames, n_feature_frames_of_duration, resampled_length
from sssl_brain.dataio.songs import read_songs_table
from sssl_brain.inference.export import export_fold
from sssl_brain.inference.recognizer import EmotionRecognizer
from sssl_brain.utils.errors import AudioError

# Durations away from whole seconds, rates that resample by odd ratios, and whole-second songs
# (where the frame grid drops the last segment), in formats whose sample counts come from the
# header (WAV, FLAC) or from decoding (MP3, OGG).
CLIPS = [("a.wav", 7.3, 16000), ("b.wav", 10.77, 44100), ("c.wav", 10.77, 16000), ("d.flac", 7.3, 44100),
         ("e.wav", 6.0, 22050), ("f.wav", 5.0, 16000), ("g.mp3", 7.3, 44100), ("h.ogg", 4.62, 48000),
         ("i.wav", 3.999, 32000), ("j.wav", 1.02, 11025), ("k.wav", 0.9, 44100)]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("segment_count")
    entries = []
    for k, (name, duration, sr) in enumerate(CLIPS):
        path = write_audio(str(root / "audio" / name), duration=duration, sr=sr, seed=k)
        entries.append({"song_id": os.path.splitext(name)[0], "path": path, "valence": "0.7",
                        "arousal": "0.2", "source": f"ann.csv:{k + 2}"})
    with contextlib.redirect_stdout(io.StringIO()):
        songs_csv = write_songs_table(entries, None, str(root / "save"), "toy", (0, 1))
    report = json.loads((root / "save" / REPORT_FILE).read_text())
    config = FeatureConfig()
    cache = FeatureCache(str(root / "features"), config)
    n_frames = cache.build([e["path"] for e in entries], n_jobs=1, progress=False)
    return read_songs_table(songs_csv), report["segment_summary"]["rows"], n_frames, config


def test_predicted_frames_equal_the_cached_frames(prepared):
    songs, _, n_frames, config = prepared
    for song in songs:
        n, rate = audio_samples(song["path"])
        frames = n_frames[song["path"]]
        assert n == sf.SoundFile(song["path"]).read(dtype="float32").shape[0]  # what load_audio decodes
        y = load_audio(song["path"], config.sample_rate)
        assert resampled_length(n, rate, config.sample_rate) == y.size
        assert n_feature_frames(n, config.sample_rate, config.hop_length, native_rate=rate) == frames
        # from the full-precision duration of songs.csv too
        assert song["duration"] == audio_duration(song["path"]) == n / rate
        assert n_feature_frames_of_duration(song["duration"], config.sample_rate, config.hop_length) == frames


def test_summary_counts_equal_the_segments_training_builds(prepared):
    songs, summary, n_frames, config = prepared
    assert [row["seg_dur"] for row in summary] == list(SUMMARY_DURATIONS)
    for row in summary:
        segments, too_short = build_segments(songs, n_frames, "valence", row["seg_dur"], config)
        assert row["segments"] == len(segments)
        assert row["short_song_ids"] == too_short
    # the same from songs.csv alone (durations only), and with other segment settings
    for kwargs in ({}, {"overlap": 0.0}, {"max_duration": 6.5}, {"overlap": 0.5, "max_duration": 9.0}):
        for row in segment_summary(songs, **kwargs):
            segments, _ = build_segments(songs, n_frames, "valence", row["seg_dur"], config, **{
                "overlap": kwargs.get("overlap"), "max_duration": kwargs.get("max_duration")})
            assert row["segments"] == len(segments), (kwargs, row)


@pytest.mark.filterwarnings("ignore:song classifier")
@pytest.mark.parametrize("seg_dur, max_duration", [(1.0, None), (3.0, None), (3.0, 6.5)])
def test_training_summary_and_inference_cut_the_same_segments(prepared, tmp_path, seg_dur, max_duration):
    """The three users of the segment rule: training's rows, the summary's counts, inference's segments."""
    songs, _, n_frames, config = prepared
    export_fold(fold_by_hand(tmp_path / "fold", seg_dur=seg_dur, max_song_duration=max_duration),
                tmp_path / "model")
    # inference uses the whole file unless capped: cap it as training did
    model = EmotionRecognizer.from_hparams(source=str(tmp_path / "model"), run_opts={"device": "cpu"},
                                           max_duration=max_duration)
    summary = segment_summary(songs, (seg_dur,), max_duration=max_duration)[0]
    total = 0
    for song in songs:
        rows, _ = build_segments([song], n_frames, "valence", seg_dur, config, max_duration=max_duration)
        try:
            result = model.classify_file(song["path"])
            starts, ends = result.segment_starts.tolist(), result.segment_ends.tolist()
        except AudioError as err:
            assert "shorter than one segment" in str(err)
            starts = ends = []
        assert [r["start_s"] for r in rows] == starts, song["song_id"]
        assert [r["end_s"] for r in rows] == ends, song["song_id"]
        assert (song["song_id"] in summary["short_song_ids"]) == (not rows)
        total += len(rows)
    assert summary["segments"] == total > 0
    # hand-counted: b (10.77 s) has 10 one-second segments, 8 of 3 s, 4 of 3 s in its first 6.5 s
    b = next(s for s in songs if s["song_id"] == "b")
    expected = {(1.0, None): 10, (3.0, None): 8, (3.0, 6.5): 4}[(seg_dur, max_duration)]
    rows, _ = build_segments([b], n_frames, "valence", seg_dur, config, max_duration=max_duration)
    assert len(rows) == expected


def test_whole_second_songs_lose_the_last_segment_to_the_frame_grid(prepared):
    """6.0 s at 22,050 Hz: 259 frames span 6.0 - 23 ms, so 5 one-second segments (training's count)."""
    songs, summary, n_frames, config = prepared
    song = next(s for s in songs if s["song_id"] == "e")
    segments, _ = build_segments([song], n_frames, "valence", 1.0, config)
    assert n_frames[song["path"]] == 259 and len(segments) == 5
    assert summary[0]["segments"] == sum(
        len(build_segments([s], n_frames, "valence", 1.0, config)[0]) for s in songs)


def test_mp3_durations_are_decoded_not_read_from_the_header(tmp_path):
    path = write_audio(str(tmp_path / "clip.mp3"), duration=3.3, sr=44100)
    n, rate = audio_samples(path)
    with sf.SoundFile(path) as f:
        decoded = f.read(dtype="float32").shape[0]
    assert (n, rate) == (decoded, 44100)
    assert np.isclose(audio_duration(path), 3.3, atol=0.1)
