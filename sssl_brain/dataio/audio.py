"""Reading audio files: MP3, WAV, FLAC, OGG; mono downmix; resampling.

soundfile (libsndfile) reads all four formats; librosa resamples. Every
failure is an :class:`AudioError` that names the file.
"""

import os

import librosa
import numpy as np
import soundfile as sf

from sssl_brain.utils.errors import AudioError, ConfigError


def _check_file(path):
    """Raises AudioError if ``path`` is not an existing, non-empty file."""
    if not os.path.isfile(path):
        raise AudioError(f"{path}: audio file not found")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: audio file is empty (0 bytes)")


#: Formats whose header sample count can differ from what decoding gives (libsndfile's MP3 and
#: Ogg readers estimate it): their samples are counted by decoding, as :func:`load_audio` reads them.
DECODE_TO_COUNT = ("MP3", "OGG")


def audio_samples(path):
    """Number of samples :func:`load_audio` reads from a file (before resampling) and its rate.

    WAV, FLAC and the like give the count of their header. For MP3 and Ogg
    the header count is an estimate that can be off by a tenth of a second
    (265 of the 900 MP3s of the 4Q dataset: up to 0.5 s longer than their
    audio), so the file is decoded exactly as :func:`load_audio` decodes it
    and the samples are counted.

    Arguments
    ---------
    path : str
        Audio file.

    Returns
    -------
    n_samples, sample_rate : int

    Raises
    ------
    AudioError
        If the file is missing, unreadable or holds no samples.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> sf.write(path, np.zeros(33075, dtype=np.float32), 22050)
    >>> audio_samples(path)
    (33075, 22050)
    """
    path = os.fspath(path)
    _check_file(path)
    try:
        with sf.SoundFile(path) as f:
            n_samples, rate = f.frames, f.samplerate
            if n_samples > 0 and rate > 0 and f.format in DECODE_TO_COUNT:
                # what load_audio's f.read(frames=-1) returns; int16 keeps the buffer small
                n_samples = f.read(frames=-1, dtype="int16", always_2d=True).shape[0]
    except Exception as err:  # libsndfile raises several types
        raise AudioError(f"{path}: cannot read audio ({err})") from None
    if n_samples <= 0 or rate <= 0:
        raise AudioError(f"{path}: audio file holds no samples")
    return int(n_samples), int(rate)


def audio_duration(path):
    """Duration of an audio file in seconds: the samples :func:`load_audio` reads over the rate.

    See :func:`audio_samples` (MP3 and Ogg files are decoded to count their
    samples; other formats give the count of their header).

    Arguments
    ---------
    path : str
        Audio file.

    Returns
    -------
    float

    Raises
    ------
    AudioError
        If the file is missing, unreadable or holds no samples.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> sf.write(path, np.zeros(33075, dtype=np.float32), 22050)
    >>> audio_duration(path)
    1.5
    """
    n_samples, rate = audio_samples(path)
    return n_samples / rate


def load_audio(path, sample_rate=22050, start=None, stop=None):
    """Reads an audio file as mono float32 at ``sample_rate``.

    Several channels are averaged (mono downmix); another native rate is
    resampled with librosa (soxr_hq).

    Arguments
    ---------
    path : str
        Audio file (MP3, WAV, FLAC, OGG, ...).
    sample_rate : int
        Target sample rate; other rates are resampled with librosa (soxr_hq).
    start, stop : float, optional
        Read only this span, in seconds of the file (a stop past the end
        reads to the end).

    Returns
    -------
    numpy.ndarray
        Shape (samples,), float32.

    Raises
    ------
    AudioError
        If the file is missing, unreadable, empty or holds NaN/inf samples,
        or the span is empty or starts past the end; the message names the file.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> sf.write(path, np.full((44100, 2), 0.25, dtype=np.float32), 44100)
    >>> y = load_audio(path, sample_rate=22050)
    >>> y.shape, y.dtype, round(float(y[1000]), 3)
    ((22050,), dtype('float32'), 0.25)
    >>> load_audio(path, sample_rate=22050, start=0.5, stop=1.0).shape
    (11025,)
    """
    path = os.fspath(path)
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ConfigError(f"sample_rate={sample_rate!r}: must be a positive integer (Hz)")
    if start is not None and not start >= 0:
        raise AudioError(f"{path}: cannot read from start={start!r} s (must be >= 0)")
    if stop is not None and not stop > (start or 0):
        raise AudioError(f"{path}: empty span start={start!r} s, stop={stop!r} s")
    _check_file(path)
    try:
        with sf.SoundFile(path) as f:
            native_sr = f.samplerate
            if f.frames <= 0:
                raise AudioError(f"{path}: audio file holds no samples")
            first = int(round(start * native_sr)) if start else 0
            if first >= f.frames:
                raise AudioError(
                    f"{path}: start={start} s is past the end of the file ({f.frames / native_sr:.3f} s)"
                )
            if first:
                f.seek(first)
            count = -1 if stop is None else max(0, int(round(stop * native_sr)) - first)
            y = f.read(frames=count, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as err:  # libsndfile raises several types
        raise AudioError(f"{path}: cannot read audio ({err})") from None
    if y.size == 0:
        raise AudioError(f"{path}: audio file holds no samples")
    y = y.mean(axis=1) if y.shape[1] > 1 else y[:, 0]
    if not np.all(np.isfinite(y)):
        raise AudioError(f"{path}: audio holds NaN or infinite samples")
    if native_sr != sample_rate:
        y = librosa.resample(y, orig_sr=native_sr, target_sr=sample_rate, res_type="soxr_hq")
    return np.ascontiguousarray(y, dtype=np.float32)
