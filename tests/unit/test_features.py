"""Log-mel features and the per-song feature cache."""

import os
import warnings

import librosa
import numpy as np
import pytest
import soundfile as sf
from audio_fixtures import tone, write_audio

from sssl_brain.dataio.audio import load_audio
from sssl_brain.dataio.features import FeatureCache, FeatureConfig, extract_file, log_mel
from sssl_brain.dataio.segments import frames_per_segment, segment_starts, start_frame
from sssl_brain.utils.errors import AudioError, ConfigError, DataError

SR = 22050


def librosa_reference(y, config):
    """The paper's recipe, spelled out with librosa."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns when n_fft > len(y)
        mel = librosa.feature.melspectrogram(
            y=y,
            sr=config.sample_rate,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            window=config.window,
            n_mels=config.n_mels,
            power=2.0,
            center=True,
        )
    return librosa.power_to_db(mel, ref=config.ref, amin=config.amin, top_db=config.top_db).T


def music_like(duration, sr=SR, seed=0):
    """Harmonic notes changing every 0.5 s, a smooth loudness envelope and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(duration * sr))) / sr
    notes = rng.choice([196.0, 220.0, 262.0, 330.0, 392.0, 494.0], size=int(np.ceil(duration * 2)) + 1)
    f0 = notes[(t * 2).astype(int)]
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.2 * (1.2 + np.sin(2 * np.pi * 0.7 * t))  # about 20 dB of loudness change
    y = envelope * y + 1e-3 * rng.standard_normal(t.size)
    return y.astype(np.float32)


def write_song(path, duration=4.0, sr=SR, seed=0):
    sf.write(path, music_like(duration, sr, seed), sr, subtype="FLOAT")
    return str(path)


# ---------------------------------------------------------------------------- log_mel


@pytest.mark.parametrize(
    "signal",
    [
        pytest.param(lambda: music_like(3.1), id="music"),
        pytest.param(lambda: tone(1.0, SR, amplitude=0.9), id="loud-tone"),
        pytest.param(lambda: 1e-4 * tone(1.0, SR), id="quiet"),
        pytest.param(lambda: np.concatenate([np.zeros(5000, np.float32), tone(0.3, SR)]), id="silence"),
        pytest.param(lambda: tone(300 / SR, SR), id="shorter-than-window"),
        pytest.param(lambda: np.random.default_rng(3).uniform(-1, 1, 10007).astype(np.float32), id="noise"),
    ],
)
def test_log_mel_equals_librosa_reference(signal):
    y = signal()
    config = FeatureConfig()
    feats = log_mel(y, config)
    expected = librosa_reference(y, config)
    assert feats.shape == expected.shape == (1 + y.size // 512, 128)
    assert feats.dtype == np.float32
    np.testing.assert_allclose(feats, expected, rtol=0, atol=1e-3)


@pytest.mark.parametrize(
    "settings",
    [
        {"n_mels": 64, "hop_length": 256},
        {"n_fft": 2048, "window": "hamming", "sample_rate": 16000},
        {"ref": 1e-3, "top_db": 80.0},
        {"amin": 1e-5, "n_fft": 512, "hop_length": 160, "n_mels": 40},
    ],
)
def test_log_mel_equals_librosa_for_other_settings(settings):
    config = FeatureConfig(**settings)
    y = music_like(1.3, sr=config.sample_rate, seed=2)
    np.testing.assert_allclose(log_mel(y, config), librosa_reference(y, config), rtol=0, atol=1e-3)


def test_loudness_is_kept_against_a_fixed_reference():
    # ref is fixed (not the song's max): twice the amplitude is +6.02 dB everywhere.
    config = FeatureConfig()
    y = music_like(1.0)
    difference = log_mel(2 * y, config) - log_mel(y, config)
    np.testing.assert_allclose(difference, 20 * np.log10(2), atol=1e-3)


def test_log_mel_rejects_bad_signals():
    config = FeatureConfig()
    with pytest.raises(DataError, match="empty"):
        log_mel(np.zeros(0, dtype=np.float32), config)
    with pytest.raises(DataError, match="mono"):
        log_mel(np.zeros((100, 2), dtype=np.float32), config)
    with pytest.raises(DataError, match="NaN"):
        log_mel(np.array([0.0, np.nan, 0.0], dtype=np.float32), config)


def test_extract_file_reads_and_computes(tmp_path):
    path = write_audio(str(tmp_path / "song.flac"), duration=1.5, sr=44100)
    config = FeatureConfig()
    np.testing.assert_array_equal(extract_file(path, config), log_mel(load_audio(path, SR), config))
    with pytest.raises(AudioError, match="missing.wav"):
        extract_file(str(tmp_path / "missing.wav"), config)


# ---------------------------------------------------------------- segments as slices


@pytest.mark.parametrize("seg_dur", [1.0, 3.0])
def test_segment_slice_equals_features_of_segment_audio(tmp_path, seg_dur):
    """With hop-aligned segment starts, a segment's slice of its song's features is exact.

    16384 Hz / 512 = 32 frames per second, so every whole-second start falls
    on a frame; only the first and last frame of the segment differ (they
    see zero padding instead of the neighbouring audio).
    """
    config = FeatureConfig(sample_rate=16384)
    path = write_song(tmp_path / "song.wav", duration=6.0, sr=16384)
    song = extract_file(path, config)
    n_seg = frames_per_segment(seg_dur, config.sample_rate, config.hop_length)
    starts = segment_starts(6.0, seg_dur)
    assert len(starts) == 7 - int(seg_dur)
    for start in starts:
        first = start_frame(start, config.sample_rate, config.hop_length, song.shape[0], n_seg)
        audio = load_audio(path, config.sample_rate, start=start, stop=start + seg_dur)
        segment = log_mel(audio, config)
        assert segment.shape[0] == n_seg
        sliced = song[first : first + n_seg]
        assert sliced.shape == segment.shape
        np.testing.assert_allclose(sliced[1:-1], segment[1:-1], atol=1e-3)
        # The comparison can fail: a slice one frame off does not match.
        off = first + 1 if first + 1 + n_seg <= song.shape[0] else first - 1
        shifted = song[off : off + n_seg]
        assert np.abs(shifted[1:-1] - segment[1:-1]).max() > 1.0


@pytest.mark.parametrize("seg_dur", [1.0, 3.0])
def test_segment_slice_approximates_segment_audio_at_paper_settings(tmp_path, seg_dur):
    """At 22050 Hz a whole-second start is up to half a hop off the frame grid: close, not exact."""
    config = FeatureConfig()
    path = write_song(tmp_path / "song.wav", duration=6.0)
    song = extract_file(path, config)
    n_seg = frames_per_segment(seg_dur, SR, config.hop_length)
    for start in segment_starts(6.0, seg_dur):
        first = start_frame(start, SR, config.hop_length, song.shape[0], n_seg)
        segment = log_mel(load_audio(path, SR, start=start, stop=start + seg_dur), config)
        assert segment.shape[0] == n_seg == song[first : first + n_seg].shape[0]
        loud = segment[1:-1] > segment.max() - 60  # bins that carry the music
        error = np.abs(song[first : first + n_seg][1:-1] - segment[1:-1])[loud]
        # Frames where a note changes differ most; typical frames differ by a fraction of a dB.
        assert np.median(error) < 0.5
        # The comparison can fail: a slice two frames off is much further away.
        off = first + 2 if first + 2 + n_seg <= song.shape[0] else first - 2
        shifted = np.abs(song[off : off + n_seg][1:-1] - segment[1:-1])[loud]
        assert shifted.mean() > 2 * error.mean()


# ------------------------------------------------------------------------ config


def test_config_key_is_stable_and_covers_every_setting():
    config = FeatureConfig()
    # Equal in every session (changing FORMAT_VERSION or a default changes it on purpose).
    assert config.key() == FeatureConfig(ref=1, hop_length=512.0).key() == "87ae5592ef5fa693"
    changed = [
        FeatureConfig(sample_rate=16000),
        FeatureConfig(n_fft=2048),
        FeatureConfig(hop_length=256),
        FeatureConfig(n_mels=64),
        FeatureConfig(window="hamming"),
        FeatureConfig(ref=2.0),
        FeatureConfig(amin=1e-5),
        FeatureConfig(top_db=80),
        FeatureConfig(dtype="float16"),
    ]
    assert len({c.key() for c in changed} | {config.key()}) == len(changed) + 1


def test_config_from_hparams_takes_only_known_keys():
    config = FeatureConfig.from_hparams({"n_mels": 64, "hop_length": 256, "seg_dur": 3.0, "lr": 1e-3})
    assert config == FeatureConfig(n_mels=64, hop_length=256)
    # the yaml's name of the dB reference is mel_power_ref; a key named like the field is not read
    assert FeatureConfig.from_hparams({"mel_power_ref": 4, "ref": 9.0}) == FeatureConfig(ref=4.0)


@pytest.mark.parametrize(
    "settings",
    [
        {"n_mels": 0},
        {"n_fft": 1024.5},
        {"n_fft": float("nan")},
        {"n_mels": float("inf")},
        {"sample_rate": "22050"},
        {"hop_length": True},
        {"hop_length": 2048},
        {"window": "no-such-window"},
        {"dtype": "int16"},
        {"dtype": "nonsense"},
        {"ref": 0.0},
        {"amin": -1.0},
        {"top_db": -5.0},
    ],
)
def test_config_rejects_bad_values_naming_the_option(settings):
    name = next(iter(settings))
    with pytest.raises(ConfigError, match=name):
        FeatureConfig(**settings)


# ------------------------------------------------------------------------- cache


@pytest.fixture
def songs(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    return [write_song(folder / f"song{i}.wav", duration=1.0 + 0.5 * i, seed=i) for i in range(4)]


def test_cache_build_load_and_skip_on_second_build(tmp_path, songs):
    config = FeatureConfig()
    cache = FeatureCache(tmp_path / "cache", config)
    result = cache.build(songs, n_jobs=1, progress=False)
    assert result.computed == songs and result.skipped == []
    for path in songs:
        expected = extract_file(path, config)
        assert result[path] == expected.shape[0] == cache.n_frames(path) == 1 + len(load_audio(path)) // 512
        loaded = cache.load(path)
        assert isinstance(loaded, np.memmap) and not loaded.flags.writeable
        np.testing.assert_array_equal(loaded, expected)
        np.testing.assert_array_equal(cache.load(path, mmap=False), expected)
        assert os.path.dirname(cache.entry_path(path)) == str(tmp_path / "cache" / config.key())
    assert os.path.isfile(tmp_path / "cache" / config.key() / "config.json")
    mtimes = [os.stat(cache.entry_path(p)).st_mtime_ns for p in songs]

    again = cache.build(songs, n_jobs=2, progress=False)
    assert again.computed == []
    assert dict(again) == dict(result)
    assert [os.stat(cache.entry_path(p)).st_mtime_ns for p in songs] == mtimes


def test_changed_audio_file_is_recomputed(tmp_path, songs):
    config = FeatureConfig()
    cache = FeatureCache(tmp_path / "cache", config)
    cache.build(songs, n_jobs=1, progress=False)
    old_entry = cache.entry_path(songs[1])

    # Touch: same content, new mtime -> new entry.
    stat = os.stat(songs[1])
    os.utime(songs[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert not cache.has(songs[1]) and cache.entry_path(songs[1]) != old_entry
    with pytest.raises(DataError, match="no feature cache entry"):
        cache.load(songs[1])
    assert cache.build(songs, n_jobs=1, progress=False).computed == [songs[1]]

    # New content of the same size -> recomputed with the new audio.
    sf.write(songs[2], music_like(2.0, seed=9), SR, subtype="FLOAT")
    stat = os.stat(songs[2])
    os.utime(songs[2], ns=(stat.st_atime_ns, stat.st_mtime_ns + 2 * 10**9))
    assert cache.build(songs, n_jobs=1, progress=False).computed == [songs[2]]
    np.testing.assert_array_equal(cache.load(songs[2]), log_mel(music_like(2.0, seed=9), config))


def test_changed_config_is_recomputed(tmp_path, songs):
    FeatureCache(tmp_path / "cache", FeatureConfig()).build(songs, n_jobs=1, progress=False)
    for config in (FeatureConfig(n_mels=64), FeatureConfig(top_db=80.0)):
        cache = FeatureCache(tmp_path / "cache", config)
        assert not any(cache.has(p) for p in songs)
        assert cache.build(songs, n_jobs=1, progress=False).computed == songs
        assert cache.load(songs[0]).shape[1] == config.n_mels
        np.testing.assert_array_equal(cache.load(songs[0]), extract_file(songs[0], config))


def corrupt_truncate(entry):
    data = open(entry, "rb").read()
    with open(entry, "wb") as f:
        f.write(data[: len(data) // 2])


def corrupt_garbage(entry):
    with open(entry, "wb") as f:
        f.write(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())


def corrupt_empty(entry):
    open(entry, "wb").close()


def corrupt_wrong_shape(entry):
    np.save(entry, np.zeros((10, 64), dtype=np.float32))


def corrupt_wrong_dtype(entry):
    np.save(entry, np.zeros((10, 128), dtype=np.float64))


def corrupt_pickle(entry):
    np.save(entry, np.array([{"a": 1}], dtype=object), allow_pickle=True)


def corrupt_trailing_bytes(entry):
    with open(entry, "ab") as f:
        f.write(b"\0" * 64)


@pytest.mark.parametrize(
    "corrupt",
    [
        corrupt_truncate,
        corrupt_garbage,
        corrupt_empty,
        corrupt_wrong_shape,
        corrupt_wrong_dtype,
        corrupt_pickle,
        corrupt_trailing_bytes,
    ],
)
def test_corrupt_entry_is_detected_and_rebuilt(tmp_path, songs, corrupt):
    cache = FeatureCache(tmp_path / "cache", FeatureConfig())
    cache.build(songs, n_jobs=1, progress=False)
    entry = cache.entry_path(songs[0])
    expected = np.load(entry)
    corrupt(entry)
    for read in (cache.load, lambda p: cache.load(p, mmap=False), cache.n_frames):
        with pytest.raises(DataError, match="corrupt feature cache entry") as info:
            read(songs[0])
        assert entry in str(info.value)
    result = cache.build(songs, n_jobs=1, progress=False)
    assert result.computed == [songs[0]]
    np.testing.assert_array_equal(cache.load(songs[0]), expected)


def test_get_computes_missing_or_corrupt_entries(tmp_path, songs):
    cache = FeatureCache(tmp_path / "cache", FeatureConfig())
    expected = extract_file(songs[0], cache.config)
    np.testing.assert_array_equal(cache.get(songs[0]), expected)
    corrupt_garbage(cache.entry_path(songs[0]))
    np.testing.assert_array_equal(cache.get(songs[0]), expected)
    with pytest.raises(AudioError, match="nope.wav"):
        cache.get(str(tmp_path / "nope.wav"))


def test_leftover_temp_file_is_never_read_as_an_entry(tmp_path, songs):
    """A write killed before its rename leaves only a temp file: the entry stays missing."""
    cache = FeatureCache(tmp_path / "cache", FeatureConfig())
    entry = cache.entry_path(songs[0])
    os.makedirs(os.path.dirname(entry))
    # What io_utils.atomic_write_bytes leaves behind when killed: a complete-looking temp file.
    leftover = os.path.join(os.path.dirname(entry), ".tmp-k1ll3d" + os.path.basename(entry))
    np.save(leftover, np.full((44, 128), 7.0, dtype=np.float32))
    assert not cache.has(songs[0])
    with pytest.raises(DataError, match="no feature cache entry"):
        cache.load(songs[0])
    assert cache.build(songs[:1], n_jobs=1, progress=False).computed == [songs[0]]
    np.testing.assert_array_equal(cache.load(songs[0]), extract_file(songs[0], cache.config))


def test_interrupted_write_leaves_no_entry(tmp_path, songs, monkeypatch):
    cache = FeatureCache(tmp_path / "cache", FeatureConfig())

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr("sssl_brain.utils.io_utils.os.replace", interrupted)
        with pytest.raises(KeyboardInterrupt):
            cache.build(songs, n_jobs=1, progress=False)
    assert not any(cache.has(p) for p in songs)
    assert [n for n in os.listdir(cache.folder) if n.endswith(".npy")] == []
    assert cache.build(songs, n_jobs=1, progress=False).computed == songs


def test_parallel_build_equals_serial_build(tmp_path, songs):
    serial = FeatureCache(tmp_path / "serial", FeatureConfig())
    parallel = FeatureCache(tmp_path / "parallel", FeatureConfig())
    result_serial = serial.build(songs, n_jobs=1, progress=False)
    result_parallel = parallel.build(songs + [songs[0]], n_jobs=2, progress=True)
    assert list(result_parallel.items()) == list(result_serial.items())
    assert result_parallel.computed == songs
    for path in songs:
        np.testing.assert_array_equal(parallel.load(path), serial.load(path))


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_unreadable_song_raises_or_is_skipped(tmp_path, songs, n_jobs):
    bad = str(tmp_path / "audio" / "broken.mp3")
    with open(bad, "wb") as f:
        f.write(os.urandom(3000))
    missing = str(tmp_path / "audio" / "missing.wav")
    cache = FeatureCache(tmp_path / "cache", FeatureConfig())
    with pytest.raises(AudioError, match="broken.mp3"):
        cache.build([songs[0], bad, songs[1]], n_jobs=n_jobs, progress=False)
    with pytest.raises(AudioError, match="missing.wav"):
        cache.build([songs[0], missing], n_jobs=n_jobs, progress=False)
    result = cache.build([songs[0], bad, songs[1], missing], n_jobs=n_jobs, progress=False, on_error="skip")
    assert list(result) == [songs[0], songs[1]]
    assert [path for path, _ in result.skipped] == [bad, missing]
    assert all(path in message for path, message in result.skipped)
    assert not os.path.exists(tmp_path / "cache" / FeatureConfig().key() / "broken.npy")


def test_build_rejects_bad_options(tmp_path, songs):
    cache = FeatureCache(tmp_path / "cache", FeatureConfig())
    with pytest.raises(ConfigError, match="on_error"):
        cache.build(songs, on_error="ignore")
    with pytest.raises(ConfigError, match="n_jobs"):
        cache.build(songs, n_jobs=0)
