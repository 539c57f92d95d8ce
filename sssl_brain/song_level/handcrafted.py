"""Hand-crafted song features for the ``features_svm`` baseline (the paper's Table 3 SVM baselines).

The paper compares SSSL with SVMs trained on hand-crafted audio features.
This module gives one fixed-length vector per song, computed with librosa
from the song's audio (read like every other feature of the project with
:func:`sssl_brain.dataio.audio.load_audio`, resampled to the yaml's
``sample_rate``, only the first ``max_song_duration`` seconds where that is
set):

- frame-level descriptors (one STFT, Hann window ``n_fft``, hop
  ``hop_length``, centred): MFCC (``n_mfcc`` coefficients of a
  ``n_mels``-band log-mel spectrogram) with their first and second deltas
  (``delta_width`` frames), ``chroma_stft`` (``n_chroma`` bins),
  ``spectral_contrast`` (``contrast_bands`` + 1 values, lowest band edge
  ``contrast_fmin``), spectral centroid, bandwidth, roll-off
  (``rolloff_percent``), flatness, zero-crossing rate and RMS energy; each
  summarised by its mean and standard deviation over the song's frames;
- the global tempo (BPM) of :func:`librosa.feature.tempo` over the onset
  strength envelope.

:func:`feature_names` lists the names in vector order. A song that is too
short for a feature (fewer samples than ``n_fft``, fewer frames than the
delta window) or for which a feature is undefined (tempo estimation fails,
a non-finite value) is a *skip*: :meth:`HandcraftedCache.build` returns it
with its reason, and the ``features_svm`` fold logs it with its name and
counts it in ``metrics.json``; it never crashes a run and is never dropped
silently.

Vectors are cached, one ``.npy`` (float64) per song under
``<prepare_folder>/handcrafted/<config key>/``, keyed like the log-mel
cache by the audio file's path, size and modification time and by every
setting; skips are cached as ``.skip.json`` beside them, so every fold and
every run reuses them. Every file is written atomically.
"""

import contextlib
import dataclasses
import json
import logging
import os
import warnings
from dataclasses import dataclass

import librosa
import numpy as np

from sssl_brain.dataio.audio import load_audio
from sssl_brain.dataio.features import cache_entry_path, settings_key
from sssl_brain.utils.errors import AudioError, ConfigError, DataError
from sssl_brain.utils.io_utils import atomic_save_npy, atomic_write_json
from sssl_brain.utils.parallel import check_jobs, map_songs

logger = logging.getLogger(__name__)

#: Song-level methods that train no segment classifier (beside SSSLBrain's METHODS): hand-crafted
#: song features and stage 2's SVM, on the same folds.
SONG_METHODS = ("features_svm",)

#: Bumped whenever the computation or the layout of the vector changes; part of every cache key.
FORMAT_VERSION = 1

#: Frame-level descriptors in vector order (each gives its mean, then its standard deviation).
FRAME_FEATURES = ("mfcc", "mfcc_delta", "mfcc_delta2", "chroma", "spectral_contrast", "spectral_centroid",
                  "spectral_bandwidth", "spectral_rolloff", "spectral_flatness", "zero_crossing_rate", "rms")


@dataclass(frozen=True)
class HandcraftedConfig:
    """Settings of the hand-crafted features (defaults: librosa's defaults, 20 MFCCs).

    Arguments
    ---------
    sample_rate : int
        Audio is resampled to this rate (Hz); the yaml's ``sample_rate``.
    n_fft, hop_length : int
        STFT window and hop, in samples (``hc_n_fft``, ``hc_hop_length``).
    n_mfcc, n_mels : int
        MFCC coefficients and the mel bands they come from.
    delta_width : int
        Frames of the MFCC delta window (odd, >= 3; librosa's default 9).
    n_chroma : int
        Chroma bins.
    contrast_bands : int
        Spectral contrast bands (the vector holds ``contrast_bands + 1`` values).
    contrast_fmin : float
        Upper edge of the lowest spectral contrast band (Hz).
    rolloff_percent : float
        Spectral roll-off fraction, in (0, 1).
    max_duration : float or None
        Use only the first seconds of a song (the yaml's ``max_song_duration``).

    Example
    -------
    >>> config = HandcraftedConfig()
    >>> config.n_mfcc, len(config.key()), len(feature_names(config))
    (20, 16, 171)
    >>> HandcraftedConfig(n_mfcc=13).key() == config.key()
    False
    """

    sample_rate: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    n_mfcc: int = 20
    n_mels: int = 128
    delta_width: int = 9
    n_chroma: int = 12
    contrast_bands: int = 6
    contrast_fmin: float = 200.0
    rolloff_percent: float = 0.85
    max_duration: float | None = None

    def __post_init__(self):
        for name in ("sample_rate", "n_fft", "hop_length", "n_mfcc", "n_mels", "delta_width", "n_chroma",
                     "contrast_bands"):
            value = getattr(self, name)
            try:
                valid = not isinstance(value, bool) and isinstance(value, (int, np.integer, float))
                valid = valid and value == int(value) and int(value) > 0
            except (ValueError, OverflowError):  # nan, inf
                valid = False
            if not valid:
                option = "sample_rate" if name == "sample_rate" else f"hc_{name}"
                raise ConfigError(f"{option}={value!r}: must be a positive integer")
            object.__setattr__(self, name, int(value))
        if self.delta_width < 3 or self.delta_width % 2 == 0:
            raise ConfigError(f"hc_delta_width={self.delta_width}: must be an odd integer >= 3")
        if self.hop_length > self.n_fft:
            raise ConfigError(f"hc_hop_length={self.hop_length} must not exceed hc_n_fft={self.n_fft}")
        if self.n_mfcc > self.n_mels:
            raise ConfigError(f"hc_n_mfcc={self.n_mfcc} must not exceed hc_n_mels={self.n_mels}")
        for name, low, high in (("rolloff_percent", 0.0, 1.0), ("contrast_fmin", 0.0, None)):
            value = getattr(self, name)
            ok = not isinstance(value, bool) and isinstance(value, (int, float, np.number)) and value > low
            if not ok or (high is not None and not value < high) or not np.isfinite(value):
                bounds = f"in ({low:g}, {high:g})" if high is not None else f"> {low:g}"
                raise ConfigError(f"hc_{name}={value!r}: must be a number {bounds}")
            object.__setattr__(self, name, float(value))
        top = self.contrast_fmin * 2.0 ** (self.contrast_bands - 1)  # lower edge of the top band
        if top >= self.sample_rate / 2:
            raise ConfigError(
                f"hc_contrast_fmin={self.contrast_fmin:g}, hc_contrast_bands={self.contrast_bands}: the top "
                f"spectral contrast band starts at {top:g} Hz, not below the Nyquist frequency "
                f"({self.sample_rate / 2:g} Hz)")
        if self.max_duration is not None:
            value = self.max_duration
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value > 0:
                raise ConfigError(f"max_song_duration={value!r}: must be null or a positive number (s)")
            object.__setattr__(self, "max_duration", float(value))

    def key(self):
        """Stable short hash of every setting and of :data:`FORMAT_VERSION` (16 hex characters)."""
        return settings_key(self, FORMAT_VERSION)

    @classmethod
    def from_hparams(cls, hp):
        """The config of the yaml: ``sample_rate``, ``max_song_duration`` and the ``hc_*`` keys.

        Example
        -------
        >>> HandcraftedConfig.from_hparams({"sample_rate": 16000, "max_song_duration": None, "hc_n_mfcc": 13})
        ... # doctest: +ELLIPSIS
        HandcraftedConfig(sample_rate=16000, n_fft=2048, hop_length=512, n_mfcc=13, ...)
        """
        names = {field.name for field in dataclasses.fields(cls)} - {"sample_rate", "max_duration"}
        kwargs = {name: hp[f"hc_{name}"] for name in names if f"hc_{name}" in hp}
        return cls(sample_rate=hp["sample_rate"], max_duration=hp.get("max_song_duration"), **kwargs)


def feature_names(config):
    """Names of the vector's values, in order: ``<descriptor>_<k>_mean`` ..., then ``tempo``.

    Example
    -------
    >>> names = feature_names(HandcraftedConfig())
    >>> names[:2], names[40:42]
    (['mfcc_0_mean', 'mfcc_1_mean'], ['mfcc_delta_0_mean', 'mfcc_delta_1_mean'])
    >>> names[-3:]
    ['rms_mean', 'rms_std', 'tempo']
    """
    sizes = {"mfcc": config.n_mfcc, "mfcc_delta": config.n_mfcc, "mfcc_delta2": config.n_mfcc,
             "chroma": config.n_chroma, "spectral_contrast": config.contrast_bands + 1}
    names = []
    for name in FRAME_FEATURES:
        size = sizes.get(name, 1)
        for stat in ("mean", "std"):
            names += [f"{name}_{k}_{stat}" for k in range(size)] if size > 1 else [f"{name}_{stat}"]
    return names + ["tempo"]


def _name_of_rows(rows_by_name):
    names = []
    for name, rows in rows_by_name:
        names += [name] * rows.shape[0]
    return names


def song_features(y, config):
    """The hand-crafted feature vector of one song (see the module docstring and :func:`feature_names`).

    Arguments
    ---------
    y : numpy.ndarray
        Mono signal at ``config.sample_rate``, shape (samples,).
    config : HandcraftedConfig
        Settings.

    Returns
    -------
    numpy.ndarray
        Shape ``(len(feature_names(config)),)``, float64, finite.

    Raises
    ------
    DataError
        If the signal is too short for a feature or a feature is undefined
        (the message says which); the caller counts the song as a skip.

    Example
    -------
    >>> t = np.arange(3 * 22050) / 22050
    >>> x = song_features((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), HandcraftedConfig())
    >>> x.shape, bool(np.all(np.isfinite(x)))
    ((171,), True)
    >>> song_features(np.zeros(1000, dtype=np.float32), HandcraftedConfig())
    Traceback (most recent call last):
    ...
    sssl_brain.utils.errors.DataError: 1000 samples (0.045 s) is shorter than hc_n_fft=2048 samples
    """
    y = np.ascontiguousarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise DataError(f"expected a mono signal of shape (samples,), got shape {y.shape}")
    sr, n_fft, hop = config.sample_rate, config.n_fft, config.hop_length
    if y.size < n_fft:
        raise DataError(f"{y.size} samples ({y.size / sr:.3f} s) is shorter than hc_n_fft={n_fft} samples")
    n_frames = 1 + y.size // hop
    if n_frames < config.delta_width:
        raise DataError(f"{n_frames} frames ({y.size / sr:.3f} s) are fewer than the {config.delta_width} "
                        "frames of the MFCC delta window (hc_delta_width)")
    if not np.all(np.isfinite(y)):
        raise DataError("the signal holds NaN or infinite samples")
    magnitude = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, window="hann", center=True))
    power = magnitude ** 2
    mel_db = librosa.power_to_db(librosa.feature.melspectrogram(S=power, sr=sr, n_mels=config.n_mels))
    mfcc = librosa.feature.mfcc(S=mel_db, n_mfcc=config.n_mfcc)
    with warnings.catch_warnings():
        # chroma's tuning estimate warns on signals without pitched content; the value is still defined
        warnings.simplefilter("ignore", UserWarning)
        chroma = librosa.feature.chroma_stft(S=power, sr=sr, n_fft=n_fft, hop_length=hop,
                                             n_chroma=config.n_chroma)
    frame_features = [
        ("mfcc", mfcc),
        ("mfcc_delta", librosa.feature.delta(mfcc, width=config.delta_width, order=1)),
        ("mfcc_delta2", librosa.feature.delta(mfcc, width=config.delta_width, order=2)),
        ("chroma", chroma),
        ("spectral_contrast", librosa.feature.spectral_contrast(
            S=magnitude, sr=sr, n_fft=n_fft, hop_length=hop, n_bands=config.contrast_bands,
            fmin=config.contrast_fmin)),
        ("spectral_centroid", librosa.feature.spectral_centroid(S=magnitude, sr=sr, n_fft=n_fft,
                                                                hop_length=hop)),
        ("spectral_bandwidth", librosa.feature.spectral_bandwidth(S=magnitude, sr=sr, n_fft=n_fft,
                                                                  hop_length=hop)),
        ("spectral_rolloff", librosa.feature.spectral_rolloff(S=magnitude, sr=sr, n_fft=n_fft, hop_length=hop,
                                                              roll_percent=config.rolloff_percent)),
        ("spectral_flatness", librosa.feature.spectral_flatness(S=magnitude, n_fft=n_fft, hop_length=hop)),
        ("zero_crossing_rate", librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop)),
        ("rms", librosa.feature.rms(y=y, frame_length=n_fft, hop_length=hop)),
    ]
    parts = []
    for _, values in frame_features:
        values = np.asarray(values, dtype=np.float64)
        parts += [values.mean(axis=1), values.std(axis=1)]
    onset = librosa.onset.onset_strength(y=y, sr=sr, hop_length=hop)
    tempo = np.asarray(librosa.feature.tempo(onset_envelope=onset, sr=sr, hop_length=hop), dtype=np.float64)
    if tempo.size != 1 or not np.isfinite(tempo[0]) or not tempo[0] > 0:
        raise DataError(f"tempo undefined (librosa.feature.tempo gave {tempo.tolist()})")
    vector = np.concatenate(parts + [tempo.reshape(1)])
    bad = ~np.isfinite(vector)
    if bad.any():
        names = feature_names(config)
        raise DataError("non-finite values of " + ", ".join(sorted({names[i].rsplit("_", 1)[0]
                                                                    for i in np.flatnonzero(bad)})))
    return vector


def extract_file(path, config):
    """Reads an audio file (the first ``config.max_duration`` seconds) and returns its vector.

    Raises
    ------
    AudioError
        If the file cannot be read (the message names the file).
    DataError
        If the song is too short for a feature (see :func:`song_features`).
    """
    y = load_audio(os.fspath(path), sample_rate=config.sample_rate, stop=config.max_duration)
    return song_features(y, config)


def _compute_entry(audio_path, entry, skip_entry, config):
    """Worker: one song's vector written atomically, or its skip reason. Returns (path, vector, reason)."""
    try:
        vector = extract_file(audio_path, config)
    except DataError as err:  # AudioError included
        reason = str(err)
        if not isinstance(err, AudioError):
            reason = f"{audio_path}: {reason}"
        atomic_write_json(skip_entry, {"audio_path": audio_path, "reason": reason})
        return audio_path, None, reason
    atomic_save_npy(entry, vector)
    return audio_path, vector, None


class HandcraftedResult(dict):
    """``{audio_path: vector}`` of the songs with features; ``skipped``: ``{audio_path: reason}``."""

    def __init__(self):
        super().__init__()
        self.skipped = {}
        self.computed = []


class HandcraftedCache:
    """Per-song hand-crafted feature vectors stored as ``.npy`` files (skips as ``.skip.json``).

    Layout: ``<cache_dir>/<config.key()>/<name>-<hash>.npy`` (the hash covers
    the audio file's absolute path, size, modification time and the config
    key) and ``config.json`` with the settings and the feature names.

    Arguments
    ---------
    cache_dir : str
        Cache folder (created when needed).
    config : HandcraftedConfig
        Settings.
    """

    def __init__(self, cache_dir, config):
        if not isinstance(config, HandcraftedConfig):
            raise ConfigError(f"config={config!r}: expected a HandcraftedConfig")
        self.cache_dir = os.path.abspath(os.fspath(cache_dir))
        self.config = config
        self.folder = os.path.join(self.cache_dir, config.key())
        self.n_features = len(feature_names(config))

    def entry_path(self, audio_path):
        """Path of the ``.npy`` entry of an audio file in its current state (skips: :meth:`skip_path`)."""
        return cache_entry_path(self.folder, audio_path, self.config.key())

    @staticmethod
    def skip_path(entry):
        """The skip entry beside a ``.npy`` entry: ``<name>-<hash>.skip.json`` (holds the reason)."""
        return entry[: -len(".npy")] + ".skip.json"

    def _load(self, entry):
        """The cached vector, or None when the entry is missing or damaged (then it is recomputed)."""
        if not os.path.isfile(entry):
            return None
        try:
            vector = np.load(entry, allow_pickle=False)
        except Exception as err:
            logger.warning("%s: damaged hand-crafted feature entry (%s): recomputing it", entry, err)
            return None
        if vector.shape != (self.n_features,) or vector.dtype != np.float64 or not np.isfinite(vector).all():
            logger.warning("%s: hand-crafted feature entry of shape %s, dtype %s: recomputing it", entry,
                           vector.shape, vector.dtype)
            return None
        return vector

    @staticmethod
    def _load_skip(skip_entry):
        try:
            with open(skip_entry, encoding="utf-8") as f:
                return str(json.load(f)["reason"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def build(self, audio_paths, n_jobs=1, progress=True):
        """Vectors of the songs, computing (in parallel) those not cached yet.

        Arguments
        ---------
        audio_paths : iterable of str
            Audio files.
        n_jobs : int
            Worker processes (-1: one per CPU core; 1: in this process).
        progress : bool
            Show a tqdm progress bar.

        Returns
        -------
        HandcraftedResult
            ``{audio_path: vector}`` in the order given; ``.skipped``
            ``{audio_path: reason}`` for the songs too short for a feature
            (or unreadable); ``.computed`` the songs computed by this call.
        """
        n_jobs = check_jobs(n_jobs, "feature_jobs")
        found, skipped, todo, order = {}, {}, [], {}
        for audio_path in audio_paths:
            audio_path = os.fspath(audio_path)
            if audio_path in order:
                continue
            order[audio_path] = len(order)
            try:
                entry = self.entry_path(audio_path)
            except AudioError as err:
                skipped[audio_path] = str(err)
                continue
            vector = self._load(entry)
            if vector is not None:
                found[audio_path] = vector
                continue
            reason = self._load_skip(self.skip_path(entry))
            if reason is not None:
                skipped[audio_path] = reason
                continue
            todo.append((audio_path, entry, self.skip_path(entry)))
        result = HandcraftedResult()
        if todo:
            os.makedirs(self.folder, exist_ok=True)
            config_file = os.path.join(self.folder, "config.json")
            if not os.path.isfile(config_file):
                atomic_write_json(config_file, {**dataclasses.asdict(self.config), "format_version":
                                                FORMAT_VERSION, "feature_names": feature_names(self.config)})
            tasks = [(p, e, s, self.config) for p, e, s in todo]
            with contextlib.closing(map_songs(_compute_entry, tasks, n_jobs, "hand-crafted features",
                                              progress)) as outputs:
                for audio_path, vector, reason in outputs:
                    if reason is None:
                        found[audio_path] = vector
                        result.computed.append(audio_path)
                    else:
                        skipped[audio_path] = reason
        result.update(sorted(found.items(), key=lambda item: order[item[0]]))
        result.skipped = dict(sorted(skipped.items(), key=lambda item: order[item[0]]))
        result.computed.sort(key=order.get)
        return result


def song_vectors(cache, songs, split_of=None, n_jobs=1, progress=True, what="features_svm"):
    """Hand-crafted vectors of songs by song id, and the songs skipped (logged with their names).

    Arguments
    ---------
    cache : HandcraftedCache
        Where the vectors are (computed when missing).
    songs : list of dict
        Rows of the songs table (``song_id``, ``path``).
    split_of : dict, optional
        ``{song_id: split}``, to name each skipped song's split.
    n_jobs : int
        Worker processes of the computation.
    progress : bool
        Show a progress bar.
    what : str
        Names the caller in the warning.

    Returns
    -------
    vectors : dict
        ``{song_id: vector}`` in the order of ``songs``.
    skipped : list of dict
        ``{"song_id", "split", "reason"}`` of each song left out.
    """
    built = cache.build([s["path"] for s in songs], n_jobs=n_jobs, progress=progress)
    vectors, skipped = {}, []
    for song in songs:
        if song["path"] in built:
            vectors[song["song_id"]] = built[song["path"]]
        else:
            skipped.append({"song_id": song["song_id"], "split": (split_of or {}).get(song["song_id"]),
                            "reason": built.skipped[song["path"]]})
    if skipped:
        names = "; ".join(f"{r['song_id']} ({r['split']}): {r['reason']}" for r in skipped)
        logger.warning("%s: %d song(s) too short for a hand-crafted feature are left out: %s", what,
                       len(skipped), names)
    return vectors, skipped
