"""Segments whose features live on the training device: batches are cut there (``device_features``).

On a GPU the default data loader (one ``.npy`` slice per segment, collated
on the CPU, copied to the device every batch) feeds a full VGG16 far more
slowly than it trains. :class:`DeviceSegments` copies the frames of a
fold's songs to the device once, as one ``(frames, n_mels)`` tensor, and
cuts each batch there with a single gather (``frames[start + arange(T)]``).

It yields the same batches as :func:`sssl_brain.dataio.dataset.segment_dataset`
behind SpeechBrain's loader: the same float32 values, the same order
(SpeechBrain's ``ReproducibleRandomSampler`` with its default seed for the
shuffled training passes, dataset order otherwise) and the same batch
fields (``feats``, ``label``, ``truth``, ``index`` as ``PaddedData``,
``song_id``, ``id``), so ``SSSLBrain`` trains the same numbers either way
(``tests/integration/test_gpu_path.py``).
"""

import math
import os

import numpy as np
import torch
from speechbrain.dataio.batch import PaddedData
from speechbrain.dataio.sampler import ReproducibleRandomSampler

from sssl_brain.utils.errors import DataError


class SegmentBatch:
    """One batch of :class:`DeviceSegments`, with the fields of SpeechBrain's ``PaddedBatch`` that
    ``SSSLBrain`` reads."""

    def __init__(self, segments, order, idx):
        self._segments, self._order = segments, order  # order: positions, a list of ints; idx: on the device
        ones = torch.ones(len(order), device=segments.device)
        self.feats = PaddedData(segments.features_of(idx), ones)
        self.label = PaddedData(segments.labels[idx].unsqueeze(1), ones)
        self.truth = PaddedData(segments.truth[idx].unsqueeze(1), ones)
        self.index = PaddedData(idx.unsqueeze(1), ones)

    @property
    def song_id(self):
        return [self._segments.song_ids[i] for i in self._order]

    @property
    def id(self):
        return [self._segments.seg_ids[i] for i in self._order]

    def to(self, *args, **kwargs):
        """Already on the device (SpeechBrain calls ``batch.to`` on some paths)."""
        return self

    def __len__(self):
        return len(self._order)


class DeviceSegments:
    """The segments of one split with their songs' features on ``device`` (see the module docstring).

    Arguments
    ---------
    segments : list of dict
        Rows of :func:`sssl_brain.dataio.dataset.build_segments` (``path``, ``start_frame``,
        ``n_frames``, ``label``, ``truth``, ``seg_id``, ``song_id``).
    cache : FeatureCache
        Holds the songs' features (or a :class:`~sssl_brain.dataio.pack.PackedFeatures`).
    device : str or torch.device
        Where the features and batches live.

    Example
    -------
    >>> import tempfile, soundfile
    >>> from sssl_brain.dataio.features import FeatureCache, FeatureConfig
    >>> folder = tempfile.mkdtemp()
    >>> wav = os.path.join(folder, "a.wav")
    >>> soundfile.write(wav, np.zeros(22050 * 2, dtype=np.float32), 22050)
    >>> cache = FeatureCache(os.path.join(folder, "cache"), FeatureConfig())
    >>> _ = cache.build([wav], n_jobs=1, progress=False)
    >>> rows = [{"seg_id": f"a__{k}", "song_id": "a", "path": wav, "start_frame": 43 * k, "n_frames": 44,
    ...          "label": 1, "truth": -1} for k in range(2)]
    >>> segs = DeviceSegments(rows, cache, "cpu")
    >>> batch = next(iter(segs.loader(batch_size=2)))
    >>> tuple(batch.feats.data.shape), batch.label.data[:, 0].tolist(), batch.song_id
    ((2, 44, 128), [1, 1], ['a', 'a'])
    """

    def __init__(self, segments, cache, device):
        self.device = torch.device(device)
        if not segments:
            raise DataError("DeviceSegments: no segment given")
        lengths = {int(s["n_frames"]) for s in segments}
        if len(lengths) != 1:
            raise DataError(f"DeviceSegments: segments of different lengths {sorted(lengths)} (one seg_dur)")
        self.n_frames = lengths.pop()
        offset, song_offset, blocks = 0, {}, []
        for seg in segments:
            path = seg["path"]
            if path not in song_offset:
                feats = np.asarray(cache.load(path), dtype=np.float32)
                song_offset[path] = offset
                blocks.append(feats)
                offset += feats.shape[0]
        self.frames = torch.from_numpy(np.concatenate(blocks)).to(self.device)
        starts = [song_offset[s["path"]] + int(s["start_frame"]) for s in segments]
        self.starts = torch.as_tensor(starts, dtype=torch.long, device=self.device)
        self.labels_np = np.array([int(s["label"]) for s in segments], dtype=np.int64)
        self.truth_np = np.array([int(s["truth"]) for s in segments], dtype=np.int64)
        self.labels = torch.as_tensor(self.labels_np, device=self.device)
        self.truth = torch.as_tensor(self.truth_np, device=self.device)
        self.song_ids = [s["song_id"] for s in segments]
        self.seg_ids = [s["seg_id"] for s in segments]
        self._arange = torch.arange(self.n_frames, device=self.device)

    def __len__(self):
        return len(self.seg_ids)

    def features_of(self, idx):
        """Features of the segments at positions ``idx`` (a long tensor on the device): (B, T, n_mels)."""
        return self.frames[self.starts[idx].unsqueeze(1) + self._arange]

    def batches(self, batch_size, positions=None):
        """Batches over ``positions`` (default: every segment) in order, ``batch_size`` at a time."""
        positions = list(range(len(self))) if positions is None else list(positions)
        # one host-to-device copy per pass, not per batch (a pageable copy waits for the queued kernels)
        idx = torch.as_tensor(positions, dtype=torch.long).to(self.device)
        for first in range(0, len(positions), int(batch_size)):
            last = first + int(batch_size)
            yield SegmentBatch(self, positions[first:last], idx[first:last])

    def loader(self, batch_size, shuffle=False, positions=None):
        """A ``DataLoader`` of batches (``Brain.fit`` takes it as it is).

        With ``shuffle`` its dataset's ``sampler`` is SpeechBrain's
        ``ReproducibleRandomSampler`` (the one ``make_dataloader`` builds), to be given to the
        Brain as ``train_sampler`` so that it sets the epoch; else the batches follow
        ``positions`` (default: every segment in order). Like every ``DataLoader`` it draws its
        base seed from torch's global generator when a pass starts, so the dropout masks that
        follow are those of the default loader's run.
        """
        sampler = None
        if shuffle:
            seed = os.environ.get("SB_GLOBAL_SEED", 563375142)  # make_dataloader's seed
            sampler = ReproducibleRandomSampler(range(len(self)), seed=seed)
        return torch.utils.data.DataLoader(_Batches(self, batch_size, sampler, positions), batch_size=None)


class _Batches(torch.utils.data.IterableDataset):
    """The batches of one pass: shuffled by ``sampler`` when given, else over ``positions`` in order."""

    def __init__(self, segments, batch_size, sampler, positions=None):
        super().__init__()
        self.segments, self.batch_size, self.sampler = segments, int(batch_size), sampler
        self.positions = None if positions is None else list(positions)

    def __iter__(self):
        order = list(self.sampler) if self.sampler is not None else self.positions
        return self.segments.batches(self.batch_size, order)

    def __len__(self):
        n = len(self.segments) if self.positions is None else len(self.positions)
        return math.ceil(n / self.batch_size)


def fit_loaders(train_set, valid_set, fit_kwargs):
    """``Brain.fit``'s training and validation sets, with :class:`DeviceSegments` turned into loaders.

    A :class:`DeviceSegments` becomes its :meth:`DeviceSegments.loader` built from
    ``train_loader_kwargs`` / ``valid_loader_kwargs`` (popped from ``fit_kwargs``); other
    datasets pass through for SpeechBrain's ``make_dataloader``.

    Arguments
    ---------
    train_set, valid_set : DeviceSegments or Dataset or None
        The sets given to ``fit``.
    fit_kwargs : dict
        ``fit``'s keyword arguments (changed in place).

    Returns
    -------
    tuple
        ``(train, valid, sampler)``: the sampler of the shuffled training loader, for the
        Brain's ``train_sampler`` (None when ``train_set`` is not a :class:`DeviceSegments`).

    Example
    -------
    >>> fit_loaders([1, 2], None, {})
    ([1, 2], None, None)
    """
    if not isinstance(train_set, DeviceSegments):
        return train_set, valid_set, None
    opts = dict(fit_kwargs.pop("train_loader_kwargs", None) or {})
    train = train_set.loader(opts["batch_size"], shuffle=bool(opts.get("shuffle", False)))
    if isinstance(valid_set, DeviceSegments):
        valid_set = valid_set.loader(dict(fit_kwargs.pop("valid_loader_kwargs", None) or {})["batch_size"])
    return train, valid_set, train.dataset.sampler
