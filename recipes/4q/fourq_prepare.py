"""Prepares the 4Q audio emotion dataset (Panda, Malheiro, Paiva, IEEE TAFFC 2018).

Expected layout (``MER_audio_taffc_dataset`` as distributed)::

    MER_audio_taffc_dataset/
        Q1/MT0000040632.mp3 ...               225 clips per quadrant folder
        Q2/ Q3/ Q4/
        panda_dataset_taffc_annotations.csv   Song,Quadrant  (CRLF line ends)

``data_folder`` may be that folder or the one that contains it. Every
annotated song must sit in the folder of its quadrant: a song found in
another quadrant's folder (or in two folders) is a DataError naming the row
and the file. The dataset has only quadrants, so the songs table gets
``valence`` = 1.0 for Q1/Q4 (else 0.0), ``arousal`` = 1.0 for Q1/Q2 (else
0.0) and the quadrant itself; thresholds are 0.5.

Usage::

    python recipes/4q/fourq_prepare.py DATA_FOLDER SAVE_FOLDER [--strict]
"""

import os

from sssl_brain.dataio.prepare import find_audio_files, prepare_songs_table, run_prepare_cli
from sssl_brain.dataio.songs import read_annotation_csv
from sssl_brain.utils.errors import DataError

DATASET = "4Q"
VALUE_RANGE = (0.0, 1.0)
ANNOTATIONS = "panda_dataset_taffc_annotations.csv"
ROOT_NAME = "MER_audio_taffc_dataset"
QUADRANTS = ("Q1", "Q2", "Q3", "Q4")
HIGH_VALENCE = ("Q1", "Q4")
HIGH_AROUSAL = ("Q1", "Q2")


def find_4q_root(data_folder):
    """The folder holding the annotations CSV: ``data_folder`` or ``data_folder/MER_audio_taffc_dataset``."""
    for root in (data_folder, os.path.join(data_folder, ROOT_NAME)):
        if os.path.isfile(os.path.join(root, ANNOTATIONS)):
            return root
    raise DataError(f"{data_folder}: not a 4Q folder: {ANNOTATIONS} not found here or in {ROOT_NAME}/")


def parse_4q(data_folder):
    """Annotation entries and audio files of a 4Q folder.

    Returns
    -------
    entries : list of dict
        One per annotation row, with 1.0/0.0 valence and arousal derived from
        the quadrant.
    audio_files : list of str
        The mp3 files of the Q1..Q4 folders.
    """
    root = find_4q_root(data_folder)
    folders = [q for q in QUADRANTS if os.path.isdir(os.path.join(root, q))]
    if not folders:
        raise DataError(f"{root}: none of the quadrant folders {', '.join(QUADRANTS)} exists")
    audio_files, located = [], {}
    for quadrant in folders:
        for path in find_audio_files(os.path.join(root, quadrant)):
            stem = os.path.splitext(os.path.basename(path))[0]
            if stem in located:
                raise DataError(f"{path}: song {stem} is also in {located[stem][1]}")
            located[stem] = (quadrant, path)
            audio_files.append(path)
    entries = []
    annotations = os.path.join(root, ANNOTATIONS)
    for source, row in read_annotation_csv(annotations, ("Song", "Quadrant"), "4Q annotations"):
        song, quadrant = row["Song"], row["Quadrant"].upper()
        if quadrant not in QUADRANTS:
            raise DataError(f"{source}: Quadrant={row['Quadrant']!r} is not one of {', '.join(QUADRANTS)}")
        folder, path = located.get(song, (quadrant, os.path.join(root, quadrant, f"{song}.mp3")))
        if folder != quadrant:
            raise DataError(f"{source}: song {song} is annotated {quadrant} but its audio {path} is in the "
                            f"{folder} folder")
        entries.append({"song_id": song, "path": path, "quadrant": quadrant,
                        "valence": 1.0 if quadrant in HIGH_VALENCE else 0.0,
                        "arousal": 1.0 if quadrant in HIGH_AROUSAL else 0.0, "source": source})
    return entries, audio_files


def prepare_4q(data_folder, save_folder, skip_prep=False, strict=False):
    """Writes ``save_folder/songs.csv`` for 4Q (see the module docstring).

    Arguments
    ---------
    data_folder : str
        ``MER_audio_taffc_dataset`` or its parent.
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
    return prepare_songs_table(DATASET, data_folder, save_folder, parse_4q, value_range=VALUE_RANGE,
                               required=("quadrant",), skip_prep=skip_prep, strict=strict)


if __name__ == "__main__":
    run_prepare_cli(prepare_4q, __doc__)
