"""Prepares Emotion in Music (emoMusic, "1000 songs"; Soleymani et al., CrowdMM 2013).

Expected layout::

    emoMusic/
        clips_45seconds/<song_id>.mp3     45 s clips
        static_annotations.csv            song_id,mean_arousal,std_arousal,mean_valence,std_valence  (1..9)
        songs_info.csv                    "song_id","file_name",...  (optional)

The two CSV files may also sit in ``annotations/`` (as in the distributed
``annotations`` archive). ``songs_info.csv`` pads its quoted cells with tab
characters; they are stripped, and its ``file_name`` locates a song's clip
where given (otherwise ``<song_id>.mp3``). The 744 annotated songs form the
cleaned set; clips without annotation are counted as ``unannotated_audio``
skips. Valence and arousal stay on the 1..9 scale; the binary label is
``value >= 5`` (``valence_threshold``, ``arousal_threshold`` in ``hparams/eim.yaml``).

Usage::

    python recipes/eim/eim_prepare.py DATA_FOLDER SAVE_FOLDER [--strict]
"""

import os

from sssl_brain.dataio.prepare import find_audio_files, prepare_songs_table, run_prepare_cli
from sssl_brain.dataio.songs import read_annotation_csv, read_file_names
from sssl_brain.utils.errors import DataError

DATASET = "emoMusic"
VALUE_RANGE = (1.0, 9.0)
ANNOTATIONS = "static_annotations.csv"
SONGS_INFO = "songs_info.csv"
AUDIO_FOLDER = "clips_45seconds"


def _csv_folder(data_folder):
    for folder in (data_folder, os.path.join(data_folder, "annotations")):
        if os.path.isfile(os.path.join(folder, ANNOTATIONS)):
            return folder
    raise DataError(f"{data_folder}: not an emoMusic folder: {ANNOTATIONS} not found here or in annotations/")


def parse_eim(data_folder):
    """Annotation entries and audio files of an emoMusic folder.

    Returns
    -------
    entries : list of dict
        One per row of ``static_annotations.csv``.
    audio_files : list of str
        The clips of ``clips_45seconds/``.
    """
    csv_folder = _csv_folder(data_folder)
    audio_folder = os.path.join(data_folder, AUDIO_FOLDER)
    if not os.path.isdir(audio_folder):
        raise DataError(f"{audio_folder}: emoMusic audio folder not found")
    songs_info = os.path.join(csv_folder, SONGS_INFO)
    file_names = read_file_names(songs_info, "song_id", "file_name", "emoMusic songs info")
    entries = []
    columns = ("song_id", "mean_arousal", "mean_valence")
    annotations = os.path.join(csv_folder, ANNOTATIONS)
    for source, row in read_annotation_csv(annotations, columns, "emoMusic annotations"):
        song_id = row["song_id"]
        name = file_names.get(song_id, f"{song_id}.mp3")
        entries.append({"song_id": song_id, "path": os.path.join(audio_folder, name),
                        "valence": row["mean_valence"], "arousal": row["mean_arousal"], "quadrant": None,
                        "source": source})
    return entries, find_audio_files(audio_folder)


def prepare_eim(data_folder, save_folder, skip_prep=False, strict=False):
    """Writes ``save_folder/songs.csv`` for emoMusic (see the module docstring).

    Arguments
    ---------
    data_folder : str
        emoMusic folder.
    save_folder : str
        Output folder.
    skip_prep : bool
        Use an existing ``songs.csv`` as it is.
    strict : bool
        Fail on missing, unannotated or unreadable audio instead of skipping.

    Returns
    -------
    str
        Path of ``songs.csv``.
    """
    return prepare_songs_table(DATASET, data_folder, save_folder, parse_eim, value_range=VALUE_RANGE,
                               required=("valence", "arousal"), skip_prep=skip_prep, strict=strict)


if __name__ == "__main__":
    run_prepare_cli(prepare_eim, __doc__)
