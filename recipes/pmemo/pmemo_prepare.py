"""Prepares PMEmo2019 (Zhang et al., ICMR 2018) as the canonical songs table.

Expected layout, the official one::

    PMEmo2019/
        chorus/<musicId>.mp3                  794 chorus clips
        metadata.csv                          musicId,fileName,title,artist,...
        annotations/static_annotations.csv    musicId,Arousal(mean),Valence(mean)  (0..1)

or a flattened copy with every one of those files in a single folder (the mp3
files beside the two CSV files). ``data_folder`` may be ``PMEmo2019/`` itself
or the folder that contains it. ``metadata.csv`` is optional: where it lists
a ``fileName`` for a ``musicId`` that name is used, otherwise
``<musicId>.mp3``.

767 of the 794 clips have static annotations: the 27 others are counted as
``unannotated_audio`` skips in ``prepare_report.json`` (so ``strict=True``
fails on the complete dataset). Valence and arousal are kept on their 0..1
scale; a song's binary label is ``value >= 0.5`` (``valence_threshold``,
``arousal_threshold`` in ``hparams/pmemo.yaml``) and the quadrant follows from the two.

Usage::

    python recipes/pmemo/pmemo_prepare.py DATA_FOLDER SAVE_FOLDER [--strict]
"""

import os

from sssl_brain.dataio.prepare import find_audio_files, prepare_songs_table, run_prepare_cli
from sssl_brain.dataio.songs import read_annotation_csv, read_file_names
from sssl_brain.utils.errors import DataError

DATASET = "PMEmo2019"
VALUE_RANGE = (0.0, 1.0)
ANNOTATIONS = "static_annotations.csv"
METADATA = "metadata.csv"
AUDIO_FOLDER = "chorus"
ANNOTATION_COLUMNS = ("musicId", "Arousal(mean)", "Valence(mean)")


def find_pmemo_layout(data_folder):
    """Finds the dataset root and its layout (``nested`` or ``flat``).

    Arguments
    ---------
    data_folder : str
        ``PMEmo2019/``, a flattened copy, or the folder holding ``PMEmo2019/``.

    Returns
    -------
    root : str
    layout : str
        ``nested`` (official: ``chorus/``, ``annotations/``) or ``flat``.
    """
    for root in (data_folder, os.path.join(data_folder, "PMEmo2019")):
        if os.path.isfile(os.path.join(root, "annotations", ANNOTATIONS)):
            return root, "nested"
        if os.path.isfile(os.path.join(root, ANNOTATIONS)):
            return root, "flat"
    raise DataError(f"{data_folder}: not a PMEmo2019 folder: found neither annotations/{ANNOTATIONS} "
                    f"(official layout) nor {ANNOTATIONS} (flattened copy), here or in PMEmo2019/")


def parse_pmemo(data_folder):
    """Annotation entries and audio files of a PMEmo2019 folder.

    Returns
    -------
    entries : list of dict
        One per row of the static annotations (see
        :func:`sssl_brain.dataio.songs.validate_entries`).
    audio_files : list of str
        The mp3 files of the audio folder.
    """
    root, layout = find_pmemo_layout(data_folder)
    if layout == "nested":
        annotations = os.path.join(root, "annotations", ANNOTATIONS)
        audio_folder = os.path.join(root, AUDIO_FOLDER)
        if not os.path.isdir(audio_folder):
            raise DataError(f"{audio_folder}: PMEmo2019 audio folder not found (expected {AUDIO_FOLDER}/ "
                            "beside annotations/)")
    else:
        annotations = os.path.join(root, ANNOTATIONS)
        audio_folder = root
    file_names = read_file_names(os.path.join(root, METADATA), "musicId", "fileName", "PMEmo metadata")
    entries = []
    for source, row in read_annotation_csv(annotations, ANNOTATION_COLUMNS, "PMEmo static annotations"):
        music_id = row["musicId"]
        name = file_names.get(music_id, f"{music_id}.mp3")
        entries.append({"song_id": music_id, "path": os.path.join(audio_folder, name),
                        "valence": row["Valence(mean)"], "arousal": row["Arousal(mean)"], "quadrant": None,
                        "source": source})
    return entries, find_audio_files(audio_folder)


def prepare_pmemo(data_folder, save_folder, skip_prep=False, strict=False):
    """Writes ``save_folder/songs.csv`` for PMEmo2019 (see the module docstring).

    Arguments
    ---------
    data_folder : str
        PMEmo2019 folder (official or flattened layout) or its parent.
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
    return prepare_songs_table(DATASET, data_folder, save_folder, parse_pmemo, value_range=VALUE_RANGE,
                               required=("valence", "arousal"), skip_prep=skip_prep, strict=strict)


if __name__ == "__main__":
    run_prepare_cli(prepare_pmemo, __doc__)
