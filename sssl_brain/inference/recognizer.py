"""Pretrained interface: classify the emotion of songs with an exported sssl-brain model.

:class:`EmotionRecognizer` follows SpeechBrain's pretrained interfaces
(:class:`speechbrain.inference.interfaces.Pretrained`): build it with
``from_hparams(source=...)``, then call ``classify_file`` or
``classify_batch``. The source is a model folder written by
:func:`sssl_brain.inference.export.export_fold` on the local disk; nothing is
downloaded and nothing from the folder is executed (see
:func:`sssl_brain.inference.model_folder.load_model_folder`).

A song goes through exactly what training did: audio read as mono at the
model's sample rate (:func:`sssl_brain.dataio.audio.load_audio`), log-mel features
of the whole song (:func:`sssl_brain.dataio.features.log_mel`), segments cut and
sliced from the song's frames by :func:`sssl_brain.dataio.segments.song_segments`
(the rule of :func:`sssl_brain.dataio.dataset.build_segments`) over the whole
file, the VGG16 over the segments
(eval mode, ``torch.inference_mode``, in chunks of ``batch_size`` segments so
a long file never builds its whole batch at once), then the song decision:
the SVM over the Eq. 10 statistics of the segment probabilities, plus the
majority vote and mean-probability baselines.

A song is classified whole: the cap on the seconds of a song used in training
(``max_song_duration``, recorded in the model folder) does not apply. A cap
at inference is the explicit option ``max_duration`` of
:class:`EmotionRecognizer` (``sssl-classify --max_duration SECONDS``), and a
song it cuts says so (:attr:`SongResult.truncated`, ``used_s``).

Example
-------
>>> from sssl_brain.inference.recognizer import EmotionRecognizer  # doctest: +SKIP
>>> model = EmotionRecognizer.from_hparams(source="models/pmemo_valence")  # doctest: +SKIP
>>> result = model.classify_file("song.mp3")  # doctest: +SKIP
>>> result.label, result.probs, result.segment_probs.shape  # doctest: +SKIP
('high', array([0.21, 0.79]), (28, 2))
"""

import dataclasses
import os

import numpy as np
import torch
from speechbrain.inference.interfaces import Pretrained

from sssl_brain.dataio.audio import audio_duration, load_audio
from sssl_brain.dataio.features import FeatureConfig, log_mel
from sssl_brain.dataio.segments import frames_per_segment, song_segments
from sssl_brain.inference.model_folder import HPARAMS_FILE, build_model, load_model_folder
from sssl_brain.song_level.classifier import predict_song_proba
from sssl_brain.song_level.features import majority_vote, mean_probability
from sssl_brain.utils.errors import AudioError, DataError, ModelFolderError


def _device_of(run_opts):
    """The device run_opts asks for, else SpeechBrain's guess (cuda:0 when available, else cpu)."""
    from speechbrain.utils.distributed import infer_device

    if isinstance(run_opts, dict):
        device = run_opts.get("device")
    else:
        device = getattr(run_opts, "device", None)
    return str(device or infer_device())


@dataclasses.dataclass
class SongResult:
    """Classification of one song (what :meth:`EmotionRecognizer.classify_file` returns).

    Attributes
    ----------
    path : str
        The file (or a name given to a signal).
    label : str
        The song's class: the SVM decision over the Eq. 10 statistics.
    index : int
        Index of ``label`` in ``class_names``.
    probs : numpy.ndarray
        SVM class probabilities, shape (K,).
    class_names : list of str
        The K class names.
    aggregations : dict
        ``{"svm" | "majority" | "mean": {"label", "index", "probs"}}``; for the
        majority vote ``probs`` are the vote fractions, for ``mean`` the mean
        segment probabilities.
    segment_starts, segment_ends : numpy.ndarray
        Segment times in seconds, shape (S,).
    segment_probs : numpy.ndarray
        Segment class probabilities, shape (S, K).
    duration : float
        Duration of the audio in seconds.
    max_duration : float or None
        The cap on the seconds used (:class:`EmotionRecognizer`'s
        ``max_duration``); None: the whole file.
    """

    path: str
    label: str
    index: int
    probs: np.ndarray
    class_names: list
    aggregations: dict
    segment_starts: np.ndarray
    segment_ends: np.ndarray
    segment_probs: np.ndarray
    duration: float
    max_duration: float = None

    @property
    def n_segments(self):
        """Number of segments."""
        return int(self.segment_probs.shape[0])

    @property
    def used_duration(self):
        """Seconds of the audio the segments were cut from: the whole duration, or the cap when shorter."""
        if self.max_duration is None:
            return float(self.duration)
        return min(float(self.duration), float(self.max_duration))

    @property
    def truncated(self):
        """True when ``max_duration`` cut the song: only its first :attr:`used_duration` seconds were used."""
        return self.used_duration < float(self.duration)

    def usage_note(self):
        """``"used 20.0 s of 163.2 s"`` for a truncated song, else an empty string.

        Example
        -------
        >>> r = SongResult("a.wav", "high", 1, np.array([0.25, 0.75]), ["low", "high"], {},
        ...                np.zeros(3), np.ones(3), np.zeros((3, 2)), 163.23, max_duration=20)
        >>> r.truncated, r.usage_note()
        (True, 'used 20.0 s of 163.2 s')
        """
        return f"used {self.used_duration:.1f} s of {self.duration:.1f} s" if self.truncated else ""

    def to_dict(self, segments=True):
        """Plain types for JSON: file, label (SVM), majority and mean decisions, probabilities, segments.

        ``label`` is the SVM's decision, ``majority`` and ``mean`` those of the
        majority vote and of the mean segment probability (as in the plot's
        title); ``aggregations`` holds each one's index and probabilities.
        ``used_s`` are the seconds the segments were cut from, ``truncated``
        says whether ``max_duration`` cut the song short of ``duration_s``.
        """
        names = list(self.class_names)

        def per_class(p):
            return {c: round(float(v), 6) for c, v in zip(names, p)}

        out = {
            "file": self.path,
            "label": self.label,
            "majority": self.aggregations["majority"]["label"],
            "mean": self.aggregations["mean"]["label"],
            "index": int(self.index),
            "probs": per_class(self.probs),
            "aggregations": {
                k: {"label": v["label"], "index": int(v["index"]), "probs": per_class(v["probs"])}
                for k, v in self.aggregations.items()},
            "n_segments": self.n_segments,
            "duration_s": round(float(self.duration), 6),
            "used_s": round(self.used_duration, 6),
            "truncated": self.truncated,
            "max_duration_s": None if self.max_duration is None else float(self.max_duration),
        }
        if segments:
            out["segments"] = [{"start_s": float(s), "end_s": float(e), "probs": per_class(p)}
                               for s, e, p in zip(self.segment_starts, self.segment_ends, self.segment_probs)]
        return out


class EmotionRecognizer(Pretrained):
    """Song emotion recognition with an exported SSSL model (VGG16 segments + SVM song decision).

    Build it with :meth:`from_hparams`. ``self.mods.model`` is the VGG16,
    ``self.hparams`` the settings of ``hyperparams.yaml`` (``class_names``,
    ``features``, ``segments``, ``model``, ``song_level``), ``self.song_classifier``
    the stage 2 classifier (a :class:`~sssl_brain.song_level.classifier.SongClassifier`: it
    takes a song's segment probabilities, its Eq. 10 theta inside).

    Arguments
    ---------
    modules : dict
        ``{"model": VGG16}`` with the trained weights loaded.
    hparams : dict
        Content of ``hyperparams.yaml``.
    run_opts : dict, optional
        SpeechBrain run options (``device``, ``precision`` ...).
    freeze_params : bool
        Freeze the parameters and switch to eval mode (inference).
    song_classifier : SongClassifier
        The fitted song classifier.
    source : str, optional
        The model folder (for messages).
    batch_size : int
        Segments per forward pass (bounds memory on long files).
    channels_last : bool, optional
        Run the convolutions in the channels-last memory format (default: on
        the CPU, where it measured 1.4-3.6x faster for this model on a 2-core
        machine, ``benchmarks/bench_inference.py``; same results to float rounding).
    max_duration : float, optional
        Classify only the first ``max_duration`` seconds of each song; a song
        it cuts is reported as truncated (:attr:`SongResult.truncated`).
        Default: None, the whole file. The training cap of the model
        (``hparams["segments"]["max_song_duration"]``, kept as
        :attr:`training_max_duration`) is not applied unless passed here.
    """

    MODULES_NEEDED = ["model"]
    HPARAMS_NEEDED = ["class_names", "features", "segments", "model", "song_level"]

    def __init__(self, modules=None, hparams=None, run_opts=None, freeze_params=True, song_classifier=None,
                 source=None, batch_size=64, channels_last=None, max_duration=None):
        super().__init__(modules=modules, hparams=hparams, run_opts=run_opts, freeze_params=freeze_params)
        if song_classifier is None:
            raise ModelFolderError("EmotionRecognizer needs a song classifier; build it with from_hparams()")
        if int(batch_size) < 1:
            raise DataError(f"batch_size={batch_size!r}: must be >= 1")
        if max_duration is not None and not float(max_duration) > 0:
            raise DataError(f"max_duration={max_duration!r}: must be > 0 seconds (None: the whole file)")
        self.song_classifier = song_classifier
        self.source = source
        self.batch_size = int(batch_size)
        self.class_names = list(hparams["class_names"])
        self.feature_config = FeatureConfig(**hparams["features"])
        seg = hparams["segments"]
        self.seg_dur = float(seg["seg_dur"])
        self.seg_overlap = None if seg.get("seg_overlap") is None else float(seg["seg_overlap"])
        #: the seconds of a song used in training (information only: inference uses ``max_duration``)
        self.training_max_duration = (None if seg.get("max_song_duration") is None
                                      else float(seg["max_song_duration"]))
        self.max_duration = None if max_duration is None else float(max_duration)
        self.n_seg_frames = frames_per_segment(self.seg_dur, self.feature_config.sample_rate,
                                               self.feature_config.hop_length)
        self.channels_last = (self.device_type == "cpu") if channels_last is None else bool(channels_last)
        if self.channels_last:
            self.mods.model.to(memory_format=torch.channels_last)
        self.mods.eval()

    @classmethod
    def from_hparams(cls, source, hparams_file=HPARAMS_FILE, savedir=None, run_opts=None, **kwargs):
        """Loads an exported model folder (local only), checking every file first.

        Arguments
        ---------
        source : str or os.PathLike
            A local folder written by ``python -m sssl_brain.inference.export``. URLs and
            hub names are refused: nothing is downloaded.
        hparams_file : str
            Must be ``hyperparams.yaml`` (the file the manifest covers).
        savedir : str, optional
            Accepted for SpeechBrain compatibility; a local folder is used in place.
        run_opts : dict, optional
            SpeechBrain run options, e.g. ``{"device": "cpu"}``.
        **kwargs
            ``batch_size``, ``channels_last``, ``freeze_params``, ``max_duration``
            (default: None, classify the whole file).

        Returns
        -------
        EmotionRecognizer

        Raises
        ------
        ModelFolderError
            Not a local folder, or a missing, changed or unsafe file (named in the message).
        """
        del savedir  # nothing to fetch: the source is a local folder
        if not isinstance(source, (str, os.PathLike)):
            raise ModelFolderError(f"source={source!r}: must be the path of a local model folder")
        source = os.fspath(source)
        if "://" in source or not os.path.isdir(source):
            raise ModelFolderError(
                f"source={source!r}: not a local folder. EmotionRecognizer loads model folders from "
                "disk only (nothing is downloaded); create one with "
                "`python -m sssl_brain.inference.export FOLD_DIR OUT_DIR`")
        if hparams_file != HPARAMS_FILE:
            raise ModelFolderError(f"hparams_file={hparams_file!r}: an exported model folder is read from "
                                   f"its {HPARAMS_FILE} only")
        folder = load_model_folder(source)
        channels_last = kwargs.get("channels_last")
        if channels_last is None:
            channels_last = _device_of(run_opts).startswith("cpu")
        kwargs["channels_last"] = bool(channels_last)
        model = build_model(folder.hparams, channels_last=kwargs["channels_last"])
        model.load_state_dict(folder.state_dict, strict=True)
        return cls(modules={"model": model}, hparams=folder.hparams, run_opts=run_opts,
                   song_classifier=folder.classifier, source=folder.folder, **kwargs)

    # ------------------------------------------------------------------ audio
    def load_audio(self, path, savedir=None):
        """Reads a file (MP3, WAV, FLAC, OGG; any channels and rate) as mono at the model's rate."""
        del savedir
        return load_audio(os.fspath(path), sample_rate=self.feature_config.sample_rate)

    # ---------------------------------------------------------------- segments
    def _as_model_input(self, feats):
        x = torch.as_tensor(np.asarray(feats, dtype=np.float32)).to(self.device).unsqueeze(1)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def segment_probs(self, feats):
        """Class probabilities of segment features, computed in chunks of ``batch_size``.

        Arguments
        ---------
        feats : array-like or torch.Tensor
            Segment log-mel features, shape (S, frames, n_mels).

        Returns
        -------
        numpy.ndarray
            Shape (S, K), float32.
        """
        if isinstance(feats, torch.Tensor):
            feats = feats.detach().cpu().numpy()
        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim != 3 or feats.shape[-1] != self.feature_config.n_mels:
            raise DataError(f"segment features must have shape (S, frames, {self.feature_config.n_mels}), "
                            f"got {feats.shape}")
        out = [self._forward(feats[first:first + self.batch_size])
               for first in range(0, feats.shape[0], self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), dtype=np.float32)

    def _forward(self, chunk):
        with torch.inference_mode(), self.inference_ctx:
            logits = self.mods.model(self._as_model_input(chunk)).float()
            return torch.softmax(logits, dim=-1).cpu().numpy()

    def song_segment_probs(self, feats, duration, name="<signal>"):
        """Segments of one song's features and their class probabilities.

        Arguments
        ---------
        feats : numpy.ndarray
            The song's log-mel features, shape (frames, n_mels).
        duration : float
            Duration of the audio (s).
        name : str
            Names the song in errors.

        Returns
        -------
        starts, ends : numpy.ndarray
            Segment times (s).
        probs : numpy.ndarray
            Shape (S, K).

        Raises
        ------
        AudioError
            If the song is shorter than one segment (the message names it and the needed duration).
        """
        cfg = self.feature_config
        segments = song_segments(feats.shape[0], self.seg_dur, cfg.sample_rate, cfg.hop_length,
                                 self.seg_overlap, self.max_duration, duration=duration)
        if not segments:
            raise AudioError(f"{name}: {duration:.3f} s of audio is shorter than one segment; this model "
                             f"needs at least {self.seg_dur:g} s (seg_dur)")
        n_seg, chunks = self.n_seg_frames, []
        for first in range(0, len(segments), self.batch_size):  # only one chunk of segments in memory at once
            chunk = np.stack([feats[seg.start_frame:seg.start_frame + n_seg]
                              for seg in segments[first:first + self.batch_size]])
            chunks.append(self._forward(chunk))
        starts = np.array([seg.start_s for seg in segments], dtype=np.float64)
        ends = np.array([seg.end_s for seg in segments], dtype=np.float64)
        return starts, ends, np.concatenate(chunks)

    # --------------------------------------------------------------- song level
    def decide(self, probs):
        """Song decisions from segment probabilities: SVM over Eq. 10 features, majority, mean.

        Arguments
        ---------
        probs : array-like
            Segment probabilities of one song, shape (S, K).

        Returns
        -------
        dict
            ``{"svm" | "majority" | "mean": {"label", "index", "probs"}}``.
        """
        probs = np.asarray(probs, dtype=np.float64)
        n_classes = len(self.class_names)
        svm_index = int(np.asarray(self.song_classifier.predict([probs]))[0])  # Eq. 10 with its theta inside
        out = {"svm": (svm_index, predict_song_proba(self.song_classifier, [probs], n_classes)[0]),
               "majority": majority_vote(probs), "mean": mean_probability(probs)}
        return {name: {"label": self.class_names[int(i)], "index": int(i),
                       "probs": np.asarray(p, dtype=float)}
                for name, (i, p) in out.items()}

    def classify_signal(self, y, name="<signal>"):
        """Classifies one mono signal at the model's sample rate.

        Arguments
        ---------
        y : array-like
            Samples, shape (samples,).
        name : str
            Names the song in the result and in errors.

        Returns
        -------
        SongResult
        """
        y = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y, dtype=np.float32)
        if y.ndim != 1 or y.size == 0:
            raise AudioError(f"{name}: expected a non-empty mono signal of shape (samples,), got {y.shape}")
        if not np.all(np.isfinite(y)):
            raise AudioError(f"{name}: signal holds NaN or infinite samples")
        duration = y.size / self.feature_config.sample_rate
        return self._classify_features(log_mel(y, self.feature_config), duration, name)

    def _classify_features(self, feats, duration, name):
        starts, ends, probs = self.song_segment_probs(feats, duration, name)
        decisions = self.decide(probs)
        svm = decisions["svm"]
        return SongResult(path=name, label=svm["label"], index=svm["index"], probs=svm["probs"],
                          class_names=list(self.class_names), aggregations=decisions, segment_starts=starts,
                          segment_ends=ends, segment_probs=probs, duration=float(duration),
                          max_duration=self.max_duration)

    def classify_file(self, path):
        """Classifies one audio file (MP3, WAV, FLAC, OGG; mono or stereo; any sample rate).

        Arguments
        ---------
        path : str
            The audio file.

        Returns
        -------
        SongResult
            The song's label and SVM probabilities, the majority and mean
            aggregations, and every segment's start/end time and probabilities;
            the whole file, or its first ``max_duration`` seconds (then
            ``truncated`` says whether that cut the song).

        Raises
        ------
        AudioError
            Unreadable file, or shorter than one segment (the message names the file).
        """
        path = os.fspath(path)
        duration = audio_duration(path)  # as the songs table measures it for training
        feats = log_mel(self.load_audio(path), self.feature_config)
        return self._classify_features(feats, duration, path)

    def classify_batch(self, inputs, wav_lens=None):
        """Classifies a batch of segment features or of waveforms (SpeechBrain-style outputs).

        Arguments
        ---------
        inputs : torch.Tensor or numpy.ndarray
            Either segment features (B, frames, n_mels): each row is one
            segment; or waveforms (B, samples) (or one (samples,)) at the
            model's sample rate: each row is one song.
        wav_lens : torch.Tensor, optional
            For waveforms: lengths relative to the longest (SpeechBrain
            convention; padding beyond is ignored).

        Returns
        -------
        probs : torch.Tensor
            Class probabilities (B, K): per segment for features, the SVM's per song for waveforms.
        score : torch.Tensor
            The highest probability (B,).
        index : torch.Tensor
            The predicted class (B,).
        text_lab : list of str
            The predicted class names.
        """
        x = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
        if x.ndim == 3:
            probs = torch.from_numpy(self.segment_probs(x).astype(np.float32))
            score, index = probs.max(dim=-1)
        elif x.ndim in (1, 2):
            wavs = x[None, :] if x.ndim == 1 else x
            lens = np.ones(len(wavs)) if wav_lens is None else np.asarray(
                wav_lens.detach().cpu() if isinstance(wav_lens, torch.Tensor) else wav_lens, dtype=np.float64)
            if lens.shape != (len(wavs),):
                raise DataError(f"wav_lens has shape {lens.shape}, expected ({len(wavs)},)")
            results = [self.classify_signal(w[: int(round(rel * wavs.shape[1]))], name=f"<batch item {i}>")
                       for i, (w, rel) in enumerate(zip(wavs, lens))]
            probs = torch.as_tensor(np.stack([r.probs for r in results]), dtype=torch.float32)
            index = torch.as_tensor([r.index for r in results], dtype=torch.long)
            score = probs.gather(1, index[:, None])[:, 0]
        else:
            raise DataError(f"classify_batch expects segment features (B, frames, n_mels) or waveforms "
                            f"(B, samples), got shape {x.shape}")
        return probs, score, index, [self.class_names[int(i)] for i in index]

    def forward(self, wavs, wav_lens=None):
        """Runs :meth:`classify_batch`."""
        return self.classify_batch(wavs, wav_lens)


def plot_title(result):
    """The default title of :func:`plot_segment_probabilities`: the song's decisions, and any truncation.

    Arguments
    ---------
    result : SongResult
        A classified song.

    Returns
    -------
    str
        The file name, the SVM's label and probability, the majority and
        mean decisions; for a song cut by ``max_duration``, a second line
        with the seconds used of the seconds in the file.

    Example
    -------
    >>> agg = {"majority": {"label": "low"}, "mean": {"label": "high"}}
    >>> r = SongResult("songs/a.wav", "high", 1, np.array([0.25, 0.75]), ["low", "high"], agg,
    ...                np.zeros(3), np.ones(3), np.zeros((3, 2)), 163.2, max_duration=20.0)
    >>> print(plot_title(r))
    a.wav: high (SVM p=0.75); majority low, mean high
    [truncated: used 20.0 s of 163.2 s (max_duration 20 s)]
    """
    agg = result.aggregations
    title = (f"{os.path.basename(result.path)}: {result.label} (SVM p={result.probs[result.index]:.2f}); "
             f"majority {agg['majority']['label']}, mean {agg['mean']['label']}")
    if result.truncated:
        title += f"\n[truncated: {result.usage_note()} (max_duration {result.max_duration:g} s)]"
    return title


def plot_segment_probabilities(result, path, title=None):
    """The paper's Figure 2 for one song: class probabilities of each segment over time.

    One line per class (segment probability at the segment's centre, the
    segment span shaded lightly), the song's decision in the title, and,
    for a song cut by ``max_duration``, the seconds used of the file's.

    Arguments
    ---------
    result : SongResult
        What :meth:`EmotionRecognizer.classify_file` returned.
    path : str
        PNG file to write (atomically).
    title : str, optional
        Default: :func:`plot_title` (the file name, the decisions, and the
        seconds used of the file's when the song was truncated).

    Returns
    -------
    str
        ``path``.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sssl_brain.utils.io_utils import atomic_write_bytes

    centres = (result.segment_starts + result.segment_ends) / 2.0
    fig, ax = plt.subplots(figsize=(8, 3.6))
    colours = plt.get_cmap("tab10").colors
    for k, name in enumerate(result.class_names):
        colour = colours[k % len(colours)]
        ax.plot(centres, result.segment_probs[:, k], marker="o", markersize=3, linewidth=1.5, color=colour,
                label=f"{name} (song p={result.probs[k]:.2f})")
    ax.set_xlim(0.0, float(result.segment_ends.max()))
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("time (s, segment centre)")
    ax.set_ylabel("segment class probability")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    ax.set_title(plot_title(result) if title is None else title, fontsize="medium")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(os.fspath(path), buf.getvalue())
    return path
