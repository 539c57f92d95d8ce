"""A compact, checked pack of a dataset's cached log-mel features, for a machine without the audio.

A machine that cannot reach the audio (the GPU machine lent to this project
takes at most 64 MiB per transfer) trains from a *pack*: every song's
cached log-mel frames, quantised to ``uint8`` over a fixed dB range,
compressed losslessly (xz: a delta filter along time, then LZMA2) and cut
into parts of at most ``part_mib`` MiB, beside a manifest ``pack.json``
that holds the songs table, the feature settings, the quantisation range
and the SHA-256 of every part.

The quantisation error is at most half a step, ``(db_max - db_min) / 255 / 2``
dB (0.27 dB for the yaml's range of -100 to +40 dB), for every value
inside the range; values outside it are clipped to it and counted in the
manifest (``clipped_low``, ``clipped_high``). The features' floor, ``10
log10(amin / ref)`` (-100 dB with the yaml's settings), is the range's lower
end, so silence is exact.

:func:`write_pack` makes a pack from a :class:`~sssl_brain.dataio.features.FeatureCache`;
:func:`unpack` checks it (a missing or changed part is refused by name) and
writes the dequantised features as ``.npy`` files with ``songs.csv``;
:class:`PackedFeatures` reads them back as the training's feature source
(the interface of ``FeatureCache``, keyed by the songs table's ``path``).
"""

import dataclasses
import hashlib
import json
import logging
import lzma
import os

import numpy as np

from sssl_brain.dataio.features import FORMAT_VERSION, BuildResult, FeatureCache, FeatureConfig
from sssl_brain.utils.errors import ConfigError, DataError
from sssl_brain.utils.io_utils import atomic_save_npy, atomic_write_bytes, atomic_write_csv, atomic_write_json

logger = logging.getLogger(__name__)

#: Bumped whenever the pack layout changes; a pack of another version is refused.
PACK_VERSION = 1
MANIFEST = "pack.json"
SONG_COLUMNS = ("song_id", "path", "duration", "valence", "arousal", "quadrant")


def quantize_db(feats, db_min, db_max):
    """Log-mel values (dB) to ``uint8`` codes over ``[db_min, db_max]`` (values outside are clipped).

    Arguments
    ---------
    feats : numpy.ndarray
        Values in dB.
    db_min, db_max : float
        The range mapped to codes 0 and 255.

    Returns
    -------
    numpy.ndarray
        ``uint8`` codes, ``round((x - db_min) / step)`` with ``step = (db_max - db_min) / 255``.

    Example
    -------
    >>> quantize_db(np.array([-100.0, -30.0, 40.0, 99.0]), -100.0, 40.0).tolist()
    [0, 127, 255, 255]
    """
    step = (float(db_max) - float(db_min)) / 255.0
    codes = np.rint((np.asarray(feats, dtype=np.float64) - float(db_min)) / step)
    return np.clip(codes, 0, 255).astype(np.uint8)


def dequantize_db(codes, db_min, db_max, dtype="float32"):
    """``uint8`` codes back to dB: ``db_min + code * step``; within step / 2 of the original inside the range.

    Example
    -------
    >>> x = np.array([-100.0, -17.3, 33.1])
    >>> err = np.abs(dequantize_db(quantize_db(x, -100, 40), -100, 40) - x)
    >>> bool(err.max() <= (140 / 255) / 2 + 1e-6)
    True
    """
    step = (float(db_max) - float(db_min)) / 255.0
    return (float(db_min) + np.asarray(codes, dtype=np.float64) * step).astype(dtype)


def _xz_filters(n_mels):
    # delta along time (the previous frame's same mel bin is n_mels bytes back), then LZMA2
    return [{"id": lzma.FILTER_DELTA, "dist": int(n_mels)}, {"id": lzma.FILTER_LZMA2, "preset": 9}]


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def write_pack(folder, songs, cache, db_min, db_max, part_mib, progress=True):
    """Writes the pack of ``songs`` (their cached features) to ``folder``.

    Arguments
    ---------
    folder : str
        Output folder; the parts ``part_<k>.xz`` and the manifest (written last) go there.
    songs : list of dict
        Rows of the songs table (``song_id``, ``path``, ``duration``, ...).
    cache : FeatureCache
        Holds every song's features.
    db_min, db_max : float
        Quantisation range (the yaml's ``pack_db_min`` / ``pack_db_max``).
    part_mib : float
        Largest part, in MiB (the yaml's ``pack_part_mib``).
    progress : bool
        A progress bar over the songs.

    Returns
    -------
    dict
        The manifest.
    """
    if not float(db_max) > float(db_min):
        raise ConfigError(f"pack_db_max={db_max!r} must be above pack_db_min={db_min!r}")
    if not float(part_mib) > 0:
        raise ConfigError(f"pack_part_mib={part_mib!r}: must be > 0")
    step = (float(db_max) - float(db_min)) / 255.0
    compressor = lzma.LZMACompressor(format=lzma.FORMAT_XZ, filters=_xz_filters(cache.config.n_mels))
    chunks, rows, offset = [], [], 0
    low = high = total = 0
    from tqdm import tqdm

    for song in tqdm(songs, desc="pack", disable=not progress):
        feats = np.asarray(cache.load(song["path"]), dtype=np.float32)
        low += int((feats < float(db_min) - step / 2).sum())
        high += int((feats > float(db_max) + step / 2).sum())
        total += feats.size
        chunks.append(compressor.compress(quantize_db(feats, db_min, db_max).tobytes()))
        rows.append({**{k: song.get(k) for k in SONG_COLUMNS}, "n_frames": int(feats.shape[0]),
                     "offset": offset})
        offset += int(feats.shape[0])
    chunks.append(compressor.flush())
    blob = b"".join(chunks)
    size = max(1, int(float(part_mib) * 2 ** 20))
    os.makedirs(folder, exist_ok=True)
    parts = []
    for k, first in enumerate(range(0, len(blob), size)):
        name = f"part_{k:03d}.xz"
        data = blob[first:first + size]
        atomic_write_bytes(os.path.join(folder, name), data)
        parts.append({"name": name, "bytes": len(data), "sha256": _sha256(data)})
    manifest = {
        "pack_version": PACK_VERSION, "feature_format_version": FORMAT_VERSION,
        "features": dataclasses.asdict(cache.config), "n_mels": cache.config.n_mels,
        "db_min": float(db_min), "db_max": float(db_max), "step_db": step, "max_error_db": step / 2,
        "total_frames": offset, "uncompressed_bytes": offset * cache.config.n_mels,
        "compressed_bytes": len(blob), "clipped_low": low, "clipped_high": high, "n_values": total,
        "parts": parts, "songs": rows,
    }
    atomic_write_json(os.path.join(folder, MANIFEST), manifest)
    return manifest


def read_manifest(folder):
    """The pack's manifest, checked for its version and keys; a DataError names the file otherwise."""
    path = os.path.join(folder, MANIFEST)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: the pack's manifest is missing") from None
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable pack manifest ({err})") from None
    if manifest.get("pack_version") != PACK_VERSION:
        raise DataError(f"{path}: pack version {manifest.get('pack_version')!r}, expected {PACK_VERSION}")
    missing = [k for k in ("features", "db_min", "db_max", "total_frames", "parts", "songs", "n_mels")
               if k not in manifest]
    if missing:
        raise DataError(f"{path}: the manifest lacks {', '.join(missing)}")
    return manifest


def read_parts(folder, manifest):
    """The pack's compressed bytes, every part checked against its size and SHA-256.

    Raises
    ------
    DataError
        Naming the first part that is missing or whose size or checksum differs.
    """
    blobs = []
    for part in manifest["parts"]:
        path = os.path.join(folder, part["name"])
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise DataError(f"{path}: part {part['name']} of the pack is missing") from None
        if len(data) != int(part["bytes"]) or _sha256(data) != part["sha256"]:
            raise DataError(f"{path}: part {part['name']} is damaged or changed ({len(data)} bytes, "
                            f"expected {part['bytes']}; SHA-256 differs from the manifest's)")
        blobs.append(data)
    return b"".join(blobs)


def unpack(pack_folder, out_folder):
    """Checks a pack and writes its features (dequantised) and ``songs.csv`` to ``out_folder``.

    Arguments
    ---------
    pack_folder : str
        Folder of ``pack.json`` and the parts.
    out_folder : str
        Gets ``songs.csv``, ``features/<k>.npy`` (one per song, in the table's order) and a copy
        of the manifest; the manifest is copied last, so a stopped unpack is redone.

    Returns
    -------
    PackedFeatures
    """
    manifest = read_manifest(pack_folder)
    done = os.path.join(out_folder, MANIFEST)
    if os.path.isfile(done) and read_manifest(out_folder)["parts"] == manifest["parts"]:
        return PackedFeatures(out_folder)
    codes = lzma.decompress(read_parts(pack_folder, manifest), format=lzma.FORMAT_XZ)
    n_mels = int(manifest["n_mels"])
    if len(codes) != int(manifest["total_frames"]) * n_mels:
        raise DataError(f"{pack_folder}: the parts hold {len(codes)} values, the manifest "
                        f"{manifest['total_frames']} frames of {n_mels}")
    codes = np.frombuffer(codes, dtype=np.uint8).reshape(-1, n_mels)
    dtype = manifest["features"].get("dtype", "float32")
    for k, song in enumerate(manifest["songs"]):
        first, n = int(song["offset"]), int(song["n_frames"])
        feats = dequantize_db(codes[first:first + n], manifest["db_min"], manifest["db_max"], dtype)
        atomic_save_npy(os.path.join(out_folder, "features", f"{k:05d}.npy"), feats)
    atomic_write_csv(os.path.join(out_folder, "songs.csv"),
                     [{c: ("" if s[c] is None else s[c]) for c in SONG_COLUMNS} for s in manifest["songs"]],
                     list(SONG_COLUMNS))
    atomic_write_json(done, manifest)
    return PackedFeatures(out_folder)


class PackedFeatures(FeatureCache):
    """The features of an unpacked pack, read like a :class:`FeatureCache` (keyed by the songs' ``path``).

    Nothing is computed: :meth:`build` only checks that every song asked for is in the pack.

    Arguments
    ---------
    folder : str
        An ``out_folder`` of :func:`unpack`.
    """

    def __init__(self, folder):
        manifest = read_manifest(folder)
        super().__init__(os.path.join(folder, "features"), FeatureConfig(**manifest["features"]))
        self.folder = os.path.join(os.path.abspath(folder), "features")
        self.songs_csv = os.path.join(folder, "songs.csv")
        self.manifest = manifest
        self._entry = {s["path"]: os.path.join(self.folder, f"{k:05d}.npy")
                       for k, s in enumerate(manifest["songs"])}

    def entry_path(self, audio_path):
        """The ``.npy`` file of a song of the pack (by its songs-table path)."""
        try:
            return self._entry[os.fspath(audio_path)]
        except KeyError:
            raise DataError(f"{audio_path}: not a song of the feature pack {self.folder}") from None

    def build(self, audio_paths, n_jobs=2, progress=True, on_error="raise"):
        """Checks that every song is in the pack (nothing to compute); ``{path: n_frames}``."""
        result = BuildResult()
        result.update({os.fspath(p): self.n_frames(p) for p in audio_paths})
        return result
