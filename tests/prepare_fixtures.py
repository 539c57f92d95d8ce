"""Fake dataset folders for the prepare tests: REAL annotation files + tiny generated audio.

The annotation files are byte-exact copies of ``../shared/fixtures/real_annotations``
(never edited there) placed in each dataset's real layout; the audio is a short
generated tone, encoded once per (duration, format) and then copied byte for
byte, so a 900-clip dataset is built in a fraction of a second.
"""

import collections
import csv
import functools
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

from audio_fixtures import write_audio

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "fixtures" / "real_annotations"
SR = 8000
# Clip durations cycle over these (s): away from whole seconds so segment counts are robust to
# codec rounding, and covering "too short" cases for the 2..5 s segments.
DURATIONS = (1.5, 3.5, 6.5)
ANNOTATIONS = "static_annotations.csv"
RECIPE_MODULES = {"pmemo": "pmemo_prepare", "4q": "fourq_prepare", "eim": "eim_prepare", "csv": "csv_prepare"}


def load_prepare_module(dataset):
    """Imports ``recipes/<dataset>/<name>_prepare.py`` (recipe folders are not packages)."""
    name = RECIPE_MODULES[dataset]
    key = f"recipe_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, REPO / "recipes" / dataset / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


@functools.lru_cache(maxsize=None)
def dataset_hparams(dataset):
    """``recipes/<dataset>/hparams/<dataset>.yaml`` as the recipe loads it (prepare function included)."""
    from hyperpyyaml import load_hyperpyyaml

    folder = str(REPO / "recipes" / dataset)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    with open(REPO / "recipes" / dataset / "hparams" / f"{dataset}.yaml", encoding="utf-8") as fin:
        return load_hyperpyyaml(fin)


def class_counts(songs, target, dataset):
    """Songs per class name, with the label thresholds of the dataset's yaml (as the recipe labels them)."""
    from sssl_brain.dataio.labels import CLASS_NAMES, song_class

    hp = dataset_hparams(dataset)
    names = CLASS_NAMES[target]
    got = collections.Counter(song_class(s, target, hp["valence_threshold"], hp["arousal_threshold"])
                              for s in songs)
    return {names[k]: v for k, v in sorted(got.items())}


@functools.lru_cache(maxsize=None)
def audio_bytes(duration, ext="mp3", sr=SR):
    """Encoded bytes of a generated tone (encoded once per process and setting)."""
    folder = tempfile.mkdtemp(prefix="sssl-audio-")
    try:
        path = write_audio(os.path.join(folder, f"clip.{ext}"), duration=duration, sr=sr, freq=330.0)
        with open(path, "rb") as f:
            return f.read()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def put_audio(path, duration=DURATIONS[0], ext=None):
    """Writes a generated clip at ``path`` (format from its extension unless ``ext``)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ext = ext or os.path.splitext(path)[1].lstrip(".").lower()
    with open(path, "wb") as f:
        f.write(audio_bytes(float(duration), ext))
    return path


def duration_of(index):
    """Duration of the ``index``-th clip of a fake dataset."""
    return DURATIONS[index % len(DURATIONS)]


def real(relative):
    """Path of a real annotation file, e.g. ``real("pmemo/metadata.csv")``."""
    path = REAL / relative
    assert path.is_file(), f"missing real annotation fixture {path}"
    return path


def copy_real(relative, dest):
    """Byte-exact copy of a real annotation file."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.copyfile(real(relative), dest)
    return Path(dest)


def read_raw(relative):
    """Rows of a real CSV with the csv module (cells stripped), independently of the code under test."""
    with open(real(relative), newline="", encoding="utf-8") as f:
        return [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(f)]


def build_pmemo(base, layout="nested"):
    """PMEmo2019 in the official (``nested``) or ``flat`` layout with one clip per metadata row.

    Returns
    -------
    SimpleNamespace
        ``root`` (the PMEmo2019 folder), ``annotations``, ``metadata``,
        ``audio`` ({musicId: path}) and ``durations`` ({musicId: seconds}).
    """
    root = Path(base) / "PMEmo2019"
    if layout == "nested":
        annotations = copy_real("pmemo/static_annotations.csv", root / "annotations" / ANNOTATIONS)
        copy_real("pmemo/static_annotations_std.csv", root / "annotations" / "static_annotations_std.csv")
        audio_folder = root / "chorus"
    elif layout == "flat":
        annotations = copy_real("pmemo/static_annotations.csv", root / ANNOTATIONS)
        copy_real("pmemo/static_annotations_std.csv", root / "static_annotations_std.csv")
        audio_folder = root
    else:
        raise ValueError(layout)
    metadata = copy_real("pmemo/metadata.csv", root / "metadata.csv")
    audio, durations = {}, {}
    for i, row in enumerate(read_raw("pmemo/metadata.csv")):
        durations[row["musicId"]] = duration_of(i)
        audio[row["musicId"]] = Path(put_audio(str(audio_folder / row["fileName"]), duration_of(i)))
    return SimpleNamespace(root=root, annotations=annotations, metadata=metadata, audio=audio,
                           durations=durations)


def build_4q(base):
    """MER_audio_taffc_dataset with Q1..Q4 folders of clips named as in the real audio listing."""
    root = Path(base) / "MER_audio_taffc_dataset"
    name = "panda_dataset_taffc_annotations.csv"
    annotations = copy_real(f"4q/{name}", root / name)
    copy_real("4q/panda_dataset_taffc_metadata.csv", root / "panda_dataset_taffc_metadata.csv")
    copy_real("4q/readme.txt", root / "readme.txt")
    audio, durations = {}, {}
    listing = real("4q/audio_listing.txt").read_text(encoding="ascii").split()
    for i, relative in enumerate(listing):
        song = Path(relative).stem
        durations[song] = duration_of(i)
        audio[song] = Path(put_audio(str(root / relative), duration_of(i)))
    return SimpleNamespace(root=root, annotations=annotations, audio=audio, durations=durations)


def build_eim(base, csv_subfolder=""):
    """emoMusic with ``clips_45seconds/<file_name>`` per songs_info row; CSVs at root or in a subfolder."""
    root = Path(base) / "emoMusic"
    csv_folder = root / csv_subfolder if csv_subfolder else root
    annotations = copy_real("emomusic/static_annotations.csv", csv_folder / ANNOTATIONS)
    songs_info = copy_real("emomusic/songs_info.csv", csv_folder / "songs_info.csv")
    audio, durations = {}, {}
    for i, row in enumerate(read_raw("emomusic/songs_info.csv")):
        durations[row["song_id"]] = duration_of(i)
        clip = root / "clips_45seconds" / row["file_name"]
        audio[row["song_id"]] = Path(put_audio(str(clip), duration_of(i)))
    return SimpleNamespace(root=root, annotations=annotations, songs_info=songs_info, audio=audio,
                           durations=durations)


def write_csv(path, header, rows, line_end="\n"):
    """Writes a small CSV (lists of cells) for hand-made annotation tables."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator=line_end)
        writer.writerow(header)
        writer.writerows(rows)
    return Path(path)


def expected_segments(durations, seg_dur):
    """Independent segment count (hop 1 s, no padding): floor(d - seg_dur) + 1 per song long enough."""
    total = 0
    for d in durations:
        if d >= seg_dur:
            total += int(d - seg_dur) + 1
    return total
