"""Reading audio: formats, mono downmix, resampling, spans and bad files."""

import os

import numpy as np
import pytest
import soundfile as sf
from audio_fixtures import tone, write_audio

from sssl_brain.dataio.audio import audio_duration, load_audio
from sssl_brain.utils.errors import AudioError, DataError

SR = 22050


def dominant_frequency(y, sr):
    """Frequency (Hz) of the largest FFT bin of a signal."""
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    return np.argmax(spectrum) * sr / y.size


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "mp3"])
def test_reads_every_format(tmp_path, ext):
    path = write_audio(str(tmp_path / f"song.{ext}"), duration=2.0, sr=SR, freq=440.0)
    y = load_audio(path, sample_rate=SR)
    assert y.dtype == np.float32 and y.ndim == 1
    # MP3/OGG codecs may pad by a few ms; allow one hop (512 samples).
    assert abs(y.size - 2 * SR) <= 512
    assert abs(dominant_frequency(y, SR) - 440.0) < 2.0
    # The tone's amplitude is 0.3: lossy codecs keep it within a few percent.
    rms = np.sqrt(np.mean(y[SR // 2 : SR + SR // 2] ** 2))
    assert rms == pytest.approx(0.3 / np.sqrt(2), rel=0.05)
    assert audio_duration(path) == pytest.approx(2.0, abs=512 / SR)


def test_lossless_read_equals_written_samples(tmp_path):
    path = str(tmp_path / "song.flac")
    sf.write(path, tone(1.0, SR), SR, subtype="PCM_24")
    expected = sf.read(path, dtype="float32")[0]
    np.testing.assert_array_equal(load_audio(path, sample_rate=SR), expected)


def test_stereo_is_downmixed_to_the_mean_of_channels(tmp_path):
    path = str(tmp_path / "stereo.wav")
    stereo = tone(1.0, SR, channels=2)
    stereo[:, 1] = tone(1.0, SR, freq=1000.0, seed=1)  # two different channels
    sf.write(path, stereo, SR, subtype="FLOAT")
    y = load_audio(path, sample_rate=SR)
    np.testing.assert_allclose(y, stereo.mean(axis=1), atol=1e-7)
    assert not np.allclose(y, stereo[:, 0], atol=1e-3)


@pytest.mark.parametrize("native_sr", [44100, 48000])
def test_resampling_keeps_duration_and_pitch(tmp_path, native_sr):
    path = write_audio(str(tmp_path / f"song_{native_sr}.wav"), duration=3.0, sr=native_sr, freq=1000.0)
    y = load_audio(path, sample_rate=SR)
    assert abs(y.size - 3 * SR) < 512  # duration preserved within a frame
    assert abs(dominant_frequency(y, SR) - 1000.0) < 2.0


def test_span_reading_matches_slice_of_whole_file(tmp_path):
    path = write_audio(str(tmp_path / "song.wav"), duration=3.0, sr=SR)
    whole = load_audio(path, sample_rate=SR)
    part = load_audio(path, sample_rate=SR, start=1.0, stop=2.5)
    np.testing.assert_array_equal(part, whole[SR : SR * 5 // 2])
    np.testing.assert_array_equal(load_audio(path, sample_rate=SR, stop=0.5), whole[: SR // 2])
    # A stop past the end reads to the end.
    np.testing.assert_array_equal(load_audio(path, sample_rate=SR, start=2.0, stop=10.0), whole[2 * SR :])


@pytest.mark.parametrize(("start", "stop"), [(5.0, None), (-1.0, None), (2.0, 1.0), (1.0, 1.0)])
def test_bad_span_raises_naming_the_file(tmp_path, start, stop):
    path = write_audio(str(tmp_path / "song.wav"), duration=3.0, sr=SR)
    with pytest.raises(AudioError, match="song.wav"):
        load_audio(path, sample_rate=SR, start=start, stop=stop)


def write_random_bytes(path):
    with open(path, "wb") as f:
        f.write(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


def write_empty(path):
    open(path, "wb").close()
    return path


def write_nan_wav(path):
    y = tone(1.0, SR)
    y[100:110] = np.nan
    sf.write(path, y, SR, subtype="FLOAT")
    return path


def write_inf_wav(path):
    y = tone(1.0, SR)
    y[5] = np.inf
    sf.write(path, y, SR, subtype="FLOAT")
    return path


def write_zero_frames_wav(path):
    sf.write(path, np.zeros(0, dtype=np.float32), SR)  # a valid header with no samples
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (write_random_bytes, "cannot read audio"),
        (write_empty, "empty"),
        (write_zero_frames_wav, "no samples"),
        (write_nan_wav, "NaN"),
        (write_inf_wav, "infinite"),
        (lambda path: path, "not found"),
    ],
    ids=["random-bytes", "zero-length", "no-frames", "nan", "inf", "missing"],
)
def test_bad_file_raises_audio_error_naming_the_file(tmp_path, make, message):
    path = make(str(tmp_path / "bad_song.mp3" if make is write_random_bytes else tmp_path / "bad_song.wav"))
    with pytest.raises(AudioError, match=message) as info:
        load_audio(path, sample_rate=SR)
    assert path in str(info.value)
    assert isinstance(info.value, DataError)


@pytest.mark.parametrize("make", [write_random_bytes, write_empty, write_zero_frames_wav, lambda p: p])
def test_duration_of_bad_file_raises_naming_the_file(tmp_path, make):
    path = make(str(tmp_path / "bad_song.wav"))
    with pytest.raises(AudioError) as info:
        audio_duration(path)
    assert path in str(info.value)


def test_duration_is_read_from_header(tmp_path):
    for sr, seconds in [(SR, 1.5), (44100, 2.25), (48000, 0.75)]:
        path = write_audio(str(tmp_path / f"s{sr}.flac"), duration=seconds, sr=sr)
        assert audio_duration(path) == pytest.approx(seconds, abs=1e-6)
    assert os.path.getsize(path) > 0
