"""Log-mel features, computed once per song and cached (docs/method.md, "Input features").

The paper's input (section 4 of the paper): a 128-bin log-mel spectrogram,
Hann window of 1024 samples, hop of 512, computed with librosa at 22050 Hz.
Values are in dB against a *fixed* reference (``ref=1.0``), not against the
song's maximum, so the absolute loudness of a song (a cue for arousal) is
kept. Arrays are time first: shape ``(frames, n_mels)``.

Each song's features are computed once and stored as one ``.npy`` file in a
cache folder; a segment's features are a slice of its song's array (see
:mod:`sssl_brain.dataio.segments`). A cache entry is keyed by the audio file's
absolute path, size and modification time and by :meth:`FeatureConfig.key`,
so a changed file or a changed setting gives a new entry. Entries are written
atomically (temporary file + rename) and checked on reading (header, dtype,
shape, file size): a damaged entry raises :class:`~sssl_brain.utils.errors.DataError`
naming the cache file, and :meth:`FeatureCache.build` recomputes it.
"""

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import re
from dataclasses import dataclass

import librosa
import numpy as np
import scipy.fft
import scipy.signal
import scipy.sparse

from sssl_brain.dataio.audio import load_audio
from sssl_brain.utils.errors import AudioError, ConfigError, DataError
from sssl_brain.utils.io_utils import atomic_save_npy, atomic_write_json
from sssl_brain.utils.parallel import check_jobs, map_songs

logger = logging.getLogger(__name__)

#: Bumped whenever the computation or the stored layout changes; part of every cache key.
FORMAT_VERSION = 1

# Frames transformed at once by log_mel: about 1 MB of temporaries, which stay in
# the CPU cache (4x faster than one block per song) and bound memory for long files.
_BLOCK_FRAMES = 128



def settings_key(config, format_version):
    """Stable short hash of a settings dataclass and a format version: the folder name of a cache.

    Arguments
    ---------
    config : dataclass instance
        Every field is part of the key.
    format_version : int
        Bumped when the cached computation changes.

    Returns
    -------
    str
        16 hexadecimal characters; equal settings give equal keys in every session.
    """
    settings = dict(dataclasses.asdict(config), format_version=format_version)
    blob = json.dumps(settings, sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def cache_entry_path(folder, audio_path, key):
    """``<folder>/<name>-<hash>.npy``: a cache entry of an audio file in its current state.

    The hash covers the file's absolute path, size, modification time and
    ``key`` (the settings), so a changed file or setting gets a new entry.
    Used by the log-mel cache and the hand-crafted feature cache.

    Raises
    ------
    AudioError
        If the file does not exist or cannot be read.
    """
    path = os.path.abspath(os.fspath(audio_path))
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise AudioError(f"{audio_path}: audio file not found") from None
    except OSError as err:
        raise AudioError(f"{audio_path}: cannot read audio file ({err})") from None
    ident = f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0{key}"
    digest = hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()[:20]
    stem = os.path.splitext(os.path.basename(path))[0]
    stem = re.sub(r"[^A-Za-z0-9_.+-]", "_", stem)[:48].lstrip(".") or "audio"
    return os.path.join(folder, f"{stem}-{digest}.npy")

@dataclass(frozen=True)
class FeatureConfig:
    """Settings of the log-mel features (defaults: the paper's settings).

    Arguments
    ---------
    sample_rate : int
        Audio is resampled to this rate (Hz).
    n_fft : int
        FFT size and window length, in samples.
    hop_length : int
        Hop between frames, in samples.
    n_mels : int
        Number of mel bands (librosa's Slaney mel scale, fmin 0, fmax sr/2).
    window : str
        Window name, as :func:`scipy.signal.get_window` knows it.
    ref : float
        Fixed reference power of 0 dB (``librosa.power_to_db(ref=...)``).
    amin : float
        Smallest power before the logarithm.
    top_db : float or None
        If set, clip each song at ``max - top_db`` dB (the paper: None).
    dtype : str
        Floating point type of the stored arrays.

    Example
    -------
    >>> config = FeatureConfig()
    >>> config.n_mels, config.hop_length, len(config.key())
    (128, 512, 16)
    >>> FeatureConfig(n_mels=64).key() == config.key()
    False
    """

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 128
    window: str = "hann"
    ref: float = 1.0
    amin: float = 1e-10
    top_db: float | None = None
    dtype: str = "float32"

    def __post_init__(self):
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels"):
            value = getattr(self, name)
            try:
                valid = not isinstance(value, bool) and isinstance(value, (int, np.integer, float))
                valid = valid and value == int(value) and int(value) > 0
            except (ValueError, OverflowError):  # nan, inf
                valid = False
            if not valid:
                raise ConfigError(f"{name}={value!r}: must be a positive integer")
            object.__setattr__(self, name, int(value))
        for name in ("ref", "amin"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value > 0:
                raise ConfigError(f"{name}={value!r}: must be a positive number")
            object.__setattr__(self, name, float(value))
        if self.top_db is not None:
            if isinstance(self.top_db, bool) or not isinstance(self.top_db, (int, float, np.number)):
                raise ConfigError(f"top_db={self.top_db!r}: must be None or a number >= 0")
            if not self.top_db >= 0:
                raise ConfigError(f"top_db={self.top_db!r}: must be None or a number >= 0")
            object.__setattr__(self, "top_db", float(self.top_db))
        if not isinstance(self.window, str):
            raise ConfigError(f"window={self.window!r}: must be a window name such as 'hann'")
        try:
            scipy.signal.get_window(self.window, 8)
        except Exception as err:
            raise ConfigError(f"window={self.window!r}: unknown window ({err})") from None
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype is None or dtype.kind != "f":
            raise ConfigError(f"dtype={self.dtype!r}: must be a floating point type such as 'float32'")
        object.__setattr__(self, "dtype", dtype.name)
        if self.hop_length > self.n_fft:
            raise ConfigError(f"hop_length={self.hop_length} must not exceed n_fft={self.n_fft}")

    def key(self):
        """Stable short hash of every setting and of :data:`FORMAT_VERSION`.

        Returns
        -------
        str
            16 hexadecimal characters; equal settings give equal keys in every session.
        """
        return settings_key(self, FORMAT_VERSION)

    @classmethod
    def from_hparams(cls, hparams):
        """The config of a recipe's hyperparameters (the yaml, a fold's ``fold_config.json``).

        Each setting is read from the key of its own name, except ``ref``,
        which the yaml calls ``mel_power_ref``; other keys are ignored and a
        setting the hyperparameters lack keeps its default.

        Arguments
        ---------
        hparams : dict
            For instance the dict loaded from the yaml.

        Returns
        -------
        FeatureConfig

        Example
        -------
        >>> config = FeatureConfig.from_hparams({"n_mels": 64, "mel_power_ref": 2.0, "lr": 0.1})
        >>> config.n_mels, config.ref, config.hop_length
        (64, 2.0, 512)
        """
        values = {}
        for field in dataclasses.fields(cls):
            key = HPARAM_NAMES.get(field.name, field.name)
            if key in hparams:
                values[field.name] = hparams[key]
        return cls(**values)


#: Hyperparameter names of the :class:`FeatureConfig` settings named otherwise in the yaml.
HPARAM_NAMES = {"ref": "mel_power_ref"}


@functools.lru_cache(maxsize=16)
def _mel_basis_t(sample_rate, n_fft, n_mels):
    """librosa's mel filterbank, transposed to (n_fft // 2 + 1, n_mels), float32, sparse.

    The filterbank is about 98% zeros; a sparse product is faster than BLAS
    here and, unlike a multi-threaded BLAS, gives the same bits whatever the
    number of threads (so parallel and serial cache builds are identical).
    """
    basis = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, dtype=np.float32)
    return scipy.sparse.csc_matrix(basis.T)


@functools.lru_cache(maxsize=16)
def _window(window, n_fft):
    """librosa's analysis window (periodic), float64 as in ``librosa.stft``."""
    win = librosa.filters.get_window(window, n_fft, fftbins=True).astype(np.float64)
    win.setflags(write=False)
    return win


def log_mel(y, config):
    """Log-mel spectrogram in dB against a fixed reference, time first.

    Computes ``10 log10(max(amin, M |STFT(y)|^2)) - 10 log10(max(amin, ref))``
    with ``M`` librosa's mel filterbank and a centred, zero-padded STFT. It
    equals ``librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr,
    n_fft=n_fft, hop_length=hop_length, window=window, n_mels=n_mels,
    power=2.0, center=True), ref=ref, amin=amin, top_db=top_db).T`` to within
    float32 rounding (about 1e-5 dB), and is faster (benchmarks/bench_features.py):
    cache-sized blocks of frames, a cached sparse filterbank. Unlike librosa's
    BLAS product, the result does not depend on the number of threads.

    Arguments
    ---------
    y : numpy.ndarray
        Mono signal at ``config.sample_rate``, shape (samples,).
    config : FeatureConfig
        Feature settings.

    Returns
    -------
    numpy.ndarray
        Shape ``(1 + samples // hop_length, n_mels)``, dtype ``config.dtype``.

    Example
    -------
    >>> config = FeatureConfig()
    >>> feats = log_mel(np.zeros(22050, dtype=np.float32), config)
    >>> feats.shape, feats.dtype, round(float(feats.max()), 3)
    ((44, 128), dtype('float32'), -100.0)
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"log_mel expects a mono signal of shape (samples,), got shape {y.shape}")
    if y.size == 0:
        raise DataError("log_mel got an empty signal")
    y = y.astype(np.float32, copy=False)
    if not np.all(np.isfinite(y)):
        raise DataError("log_mel got a signal with NaN or infinite samples")
    n_fft, hop = config.n_fft, config.hop_length
    padded = np.pad(y, n_fft // 2, mode="constant")
    frames = librosa.util.frame(padded, frame_length=n_fft, hop_length=hop, axis=0)
    window = _window(config.window, n_fft)
    basis_t = _mel_basis_t(config.sample_rate, n_fft, config.n_mels)
    mel = np.empty((frames.shape[0], config.n_mels), dtype=np.float32)
    for first in range(0, frames.shape[0], _BLOCK_FRAMES):
        # Like librosa.stft: the float64 window makes the FFT float64 (accurate
        # to ~1e-5 dB); the power and the mel projection are float32.
        spec = scipy.fft.rfft(frames[first : first + _BLOCK_FRAMES] * window, axis=-1)
        squares = spec.view(np.float64) ** 2  # re^2, im^2 interleaved: faster than spec.real**2
        power = (squares[:, 0::2] + squares[:, 1::2]).astype(np.float32)
        mel[first : first + _BLOCK_FRAMES] = power @ basis_t
    db = 10.0 * np.log10(np.maximum(np.float32(config.amin), mel))
    db -= np.float32(10.0 * np.log10(max(config.amin, config.ref)))
    if config.top_db is not None:
        db = np.maximum(db, db.max() - np.float32(config.top_db))
    return db.astype(config.dtype, copy=False)


def extract_file(path, config):
    """Reads an audio file and returns its log-mel features (:func:`log_mel`).

    Arguments
    ---------
    path : str
        Audio file.
    config : FeatureConfig
        Feature settings (``config.sample_rate`` is the reading rate).

    Returns
    -------
    numpy.ndarray
        Shape (frames, n_mels).

    Raises
    ------
    AudioError
        If the file cannot be read (the message names the file).
    """
    return log_mel(load_audio(os.fspath(path), sample_rate=config.sample_rate), config)


def _compute_entry(audio_path, entry, config):
    """Worker: computes one song's features and writes its entry atomically.

    Returns ``(audio_path, n_frames, None)`` or ``(audio_path, None, message)``
    when the audio file cannot be read.
    """
    try:
        feats = extract_file(audio_path, config)
    except AudioError as err:
        return audio_path, None, str(err)
    atomic_save_npy(entry, feats)
    return audio_path, int(feats.shape[0]), None


def _corrupt(entry, reason):
    return DataError(f"{entry}: corrupt feature cache entry ({reason}); FeatureCache.build recomputes it")


class BuildResult(dict):
    """What :meth:`FeatureCache.build` returns: ``{audio_path: n_frames}``.

    Attributes
    ----------
    computed : list of str
        The songs whose entry was computed by this call (the rest were cached).
    skipped : list of (str, str)
        With ``on_error="skip"``: unreadable songs and why; they are not keys.
    """

    def __init__(self):
        super().__init__()
        self.computed = []
        self.skipped = []


class FeatureCache:
    """Per-song log-mel features stored as ``.npy`` files in a folder.

    Layout: ``<cache_dir>/<config.key()>/<name>-<hash>.npy`` where the hash
    covers the audio file's absolute path, size, modification time (ns) and
    the config key; ``<cache_dir>/<config.key()>/config.json`` records the
    settings for people reading the folder.

    Arguments
    ---------
    cache_dir : str
        Cache folder (created when needed).
    config : FeatureConfig
        Feature settings.

    Example
    -------
    >>> import tempfile, os, soundfile
    >>> folder = tempfile.mkdtemp()
    >>> wav = os.path.join(folder, "song.wav")
    >>> soundfile.write(wav, np.zeros(22050 * 2, dtype=np.float32), 22050)
    >>> cache = FeatureCache(os.path.join(folder, "cache"), FeatureConfig())
    >>> cache.has(wav)
    False
    >>> result = cache.build([wav], n_jobs=1, progress=False)
    >>> result[wav], result.computed == [wav], cache.has(wav)
    (87, True, True)
    >>> cache.load(wav).shape, cache.n_frames(wav)
    ((87, 128), 87)
    >>> cache.build([wav], progress=False).computed
    []
    """

    def __init__(self, cache_dir, config):
        if not isinstance(config, FeatureConfig):
            raise ConfigError(f"config={config!r}: expected a FeatureConfig")
        self.cache_dir = os.path.abspath(os.fspath(cache_dir))
        self.config = config
        self.folder = os.path.join(self.cache_dir, config.key())

    # ----------------------------------------------------------------- paths
    def entry_path(self, audio_path):
        """Path of the cache entry of an audio file in its current state.

        Arguments
        ---------
        audio_path : str
            Audio file; it must exist (its size and mtime are part of the key).

        Returns
        -------
        str
        """
        return cache_entry_path(self.folder, audio_path, self.config.key())

    # ------------------------------------------------------------ reading
    def _check_entry(self, entry):
        """Validates an entry from its header and size; returns its frame count.

        Raises DataError naming the entry if it is missing, truncated or not
        an array of this config's dtype and shape (frames, n_mels).
        """
        try:
            with open(entry, "rb") as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
                header_end = f.tell()
                size = os.fstat(f.fileno()).st_size
        except FileNotFoundError:
            raise
        except Exception as err:
            raise _corrupt(entry, err) from None
        if dtype != np.dtype(self.config.dtype) or fortran:
            raise _corrupt(entry, f"dtype {dtype}, expected {self.config.dtype}")
        if len(shape) != 2 or shape[1] != self.config.n_mels or shape[0] < 1:
            raise _corrupt(entry, f"shape {shape}, expected (frames, {self.config.n_mels})")
        expected = header_end + math.prod(shape) * dtype.itemsize
        if size != expected:
            raise _corrupt(entry, f"{size} bytes, expected {expected}")
        return int(shape[0])

    def has(self, audio_path):
        """Whether an entry exists for the audio file in its current state.

        Only the entry's existence is checked; :meth:`load` validates it. A
        missing audio file raises :class:`~sssl_brain.utils.errors.AudioError`.
        """
        return os.path.isfile(self.entry_path(audio_path))

    def _missing(self, audio_path, entry):
        return DataError(
            f"{entry}: no feature cache entry for {audio_path} (new or changed file, or new settings); "
            "run FeatureCache.build first"
        )

    def n_frames(self, audio_path):
        """Frame count of a cached song, read from the ``.npy`` header only.

        Raises
        ------
        DataError
            If the entry is missing or damaged (the message names the cache file).
        """
        entry = self.entry_path(audio_path)
        try:
            return self._check_entry(entry)
        except FileNotFoundError:
            raise self._missing(audio_path, entry) from None

    def load(self, audio_path, mmap=True):
        """Cached features of a song, shape (frames, n_mels).

        Arguments
        ---------
        audio_path : str
            Audio file.
        mmap : bool
            Memory-map the entry read-only instead of reading it into memory.

        Returns
        -------
        numpy.ndarray

        Raises
        ------
        DataError
            If the entry is missing or damaged (the message names the cache
            file; :meth:`build` or :meth:`get` recompute it).
        """
        entry = self.entry_path(audio_path)
        try:
            self._check_entry(entry)
            return np.load(entry, mmap_mode="r" if mmap else None, allow_pickle=False)
        except FileNotFoundError:
            raise self._missing(audio_path, entry) from None
        except DataError:
            raise
        except Exception as err:
            raise _corrupt(entry, err) from None

    def get(self, audio_path, mmap=True):
        """Like :meth:`load`, but computes a missing or damaged entry first."""
        try:
            return self.load(audio_path, mmap=mmap)
        except AudioError:
            raise
        except DataError:
            self.build([audio_path], n_jobs=1, progress=False)
            return self.load(audio_path, mmap=mmap)

    # ------------------------------------------------------------ building
    def build(self, audio_paths, n_jobs=2, progress=True, on_error="raise"):
        """Computes the entries that are missing or damaged, in parallel over songs.

        Arguments
        ---------
        audio_paths : iterable of str
            Audio files.
        n_jobs : int
            Worker processes (-1: one per CPU core; 1: in this process).
        progress : bool
            Show a tqdm progress bar.
        on_error : str
            ``"raise"``: an unreadable audio file raises its AudioError (which
            names the file); entries already written stay valid.
            ``"skip"``: unreadable files are logged, left out of the result
            and listed in ``result.skipped``.

        Returns
        -------
        BuildResult
            ``{audio_path: n_frames}`` for every readable song, with
            ``.computed`` and ``.skipped`` lists.
        """
        if on_error not in ("raise", "skip"):
            raise ConfigError(f"on_error={on_error!r}: must be 'raise' or 'skip'")
        n_jobs = check_jobs(n_jobs)
        result = BuildResult()

        def fail(audio_path, message):
            if on_error == "raise":
                raise AudioError(message)
            logger.warning("skipping %s", message)
            result.skipped.append((audio_path, message))

        todo = []
        order = {}
        for audio_path in audio_paths:
            audio_path = os.fspath(audio_path)
            if audio_path in order:
                continue
            order[audio_path] = len(order)
            try:
                entry = self.entry_path(audio_path)
            except AudioError as err:
                fail(audio_path, str(err))
                continue
            try:
                result[audio_path] = self._check_entry(entry)
            except FileNotFoundError:
                todo.append((audio_path, entry))
            except DataError as err:
                logger.warning("recomputing %s", err)
                todo.append((audio_path, entry))
        if not todo:
            result.skipped.sort(key=lambda item: order[item[0]])
            return result

        os.makedirs(self.folder, exist_ok=True)
        config_file = os.path.join(self.folder, "config.json")
        if not os.path.isfile(config_file):
            atomic_write_json(
                config_file, dict(dataclasses.asdict(self.config), format_version=FORMAT_VERSION)
            )
        tasks = [(path, entry, self.config) for path, entry in todo]
        outputs = map_songs(_compute_entry, tasks, n_jobs, "log-mel features", progress)
        with contextlib.closing(outputs):
            for audio_path, n_frames, message in outputs:
                if message is not None:
                    fail(audio_path, message)
                else:
                    result[audio_path] = n_frames
                    result.computed.append(audio_path)
        # Keep the caller's order, like a serial build would.
        result.computed.sort(key=order.get)
        result.skipped.sort(key=lambda item: order[item[0]])
        ordered = sorted(result.items(), key=lambda item: order[item[0]])
        result.clear()
        result.update(ordered)
        return result
