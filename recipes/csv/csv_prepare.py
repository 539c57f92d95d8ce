"""Prepares any dataset described by a generic ``annotations.csv`` (no code needed).

Expected layout::

    my_dataset/
        annotations.csv               song_id,path[,valence][,arousal][,quadrant]
        audio/...                     any layout: ``path`` is relative to annotations.csv
        truth/segment_truth.csv       optional: song_id,second,valence,arousal,quadrant

``data_folder`` is the folder of ``annotations.csv`` or the CSV file itself.
At least one of ``valence``, ``arousal``, ``quadrant`` must be a column, and
every present label column must be filled in every row. ``path`` may also be
absolute. Audio files (mp3, wav, flac, ogg) anywhere under the CSV's folder
that no row names are counted as ``unannotated_audio`` skips. Ratings may be
on any scale (pass ``value_range=(low, high)`` to have them checked); the
binary label is ``value >= 0.5`` by default (``valence_threshold``,
``arousal_threshold`` in ``hparams/csv.yaml``; override them for other scales), and a
quadrant column, where given, is used as is for the quadrant task.

Where ``truth/segment_truth.csv`` exists it is validated (see
:func:`sssl_brain.dataio.songs.read_segment_truth`; every song it names must be in
``annotations.csv``) and copied to ``save_folder/segment_truth.csv`` for the
partition diagnostics.

Usage::

    python recipes/csv/csv_prepare.py DATA_FOLDER SAVE_FOLDER [--strict] [--value-range LOW HIGH]
"""

import argparse
import csv
import logging
import os
import sys

from sssl_brain.dataio.prepare import find_audio_files, prepare_songs_table
from sssl_brain.dataio.songs import TRUTH_COLUMNS, read_annotation_csv, read_segment_truth
from sssl_brain.utils.errors import DataError, SSSLError

DATASET = "csv"
ANNOTATIONS = "annotations.csv"
TRUTH = os.path.join("truth", "segment_truth.csv")
TRUTH_FILE = "segment_truth.csv"
LABEL_COLUMNS = ("valence", "arousal", "quadrant")


def find_annotations(data_folder):
    """The annotations CSV: ``data_folder`` if it is a file, else ``data_folder/annotations.csv``."""
    path = data_folder if os.path.isfile(data_folder) else os.path.join(data_folder, ANNOTATIONS)
    if not os.path.isfile(path):
        raise DataError(f"{path}: annotations file not found")
    return os.path.abspath(path)


def parse_csv_dataset(data_folder):
    """Annotation entries, audio files and (optional) segment truth of a generic CSV dataset.

    Returns
    -------
    entries : list of dict
        One per row of ``annotations.csv``; paths made absolute.
    audio_files : list of str
        Audio files anywhere under the CSV's folder.
    extra_tables : dict
        ``{"segment_truth.csv": (rows, TRUTH_COLUMNS)}`` where truth exists.
    """
    annotations = find_annotations(data_folder)
    folder = os.path.dirname(annotations)
    rows = read_annotation_csv(annotations, ("song_id", "path"), "annotations file")
    with open(annotations, encoding="utf-8-sig", newline="") as f:
        header = [h.strip() for h in next(csv.reader(f), [])]
    labels = [c for c in LABEL_COLUMNS if c in header]
    if not labels:
        raise DataError(f"{annotations}: needs at least one label column among {', '.join(LABEL_COLUMNS)} "
                        f"(header: {','.join(header)})")
    entries = []
    for source, row in rows:
        path = row["path"]
        if path and not os.path.isabs(path):
            path = os.path.join(folder, path)
        for column in labels:
            if not row[column]:
                raise DataError(f"{source}: song {row['song_id']!r} has an empty {column}")
        entries.append({"song_id": row["song_id"], "path": path, "source": source,
                        **{c: row.get(c) for c in LABEL_COLUMNS}})
    extra = {}
    truth_path = os.path.join(folder, TRUTH)
    if os.path.isfile(truth_path):
        truth = read_segment_truth(truth_path)
        known = {str(e["song_id"]).strip() for e in entries}
        unknown = sorted(set(truth) - known)
        if unknown:
            raise DataError(f"{truth_path}: song(s) not in {annotations}: {', '.join(unknown[:10])}")
        truth_rows = [{"song_id": song, "second": sec, **cells}
                      for song, seconds in truth.items() for sec, cells in sorted(seconds.items())]
        extra[TRUTH_FILE] = (truth_rows, TRUTH_COLUMNS)
    return entries, find_audio_files(folder, recursive=True), extra


def prepare_csv(data_folder, save_folder, skip_prep=False, strict=False, value_range=None):
    """Writes ``save_folder/songs.csv`` from a generic ``annotations.csv`` (see the module docstring).

    Arguments
    ---------
    data_folder : str
        Folder of ``annotations.csv``, or the CSV file.
    save_folder : str
        Output folder.
    skip_prep : bool
        Use an existing ``songs.csv`` as it is.
    strict : bool
        Fail on missing, unannotated or unreadable audio instead of skipping.
    value_range : tuple of float, optional
        Inclusive range of valence and arousal; None accepts any finite number.

    Returns
    -------
    str
        Path of ``songs.csv``.
    """
    return prepare_songs_table(DATASET, data_folder, save_folder, parse_csv_dataset, value_range=value_range,
                               skip_prep=skip_prep, strict=strict)


def main(argv=None):
    """Command line: ``DATA_FOLDER SAVE_FOLDER [--strict] [--value-range LOW HIGH]``."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_folder", help="folder of annotations.csv, or the CSV file")
    parser.add_argument("save_folder", help="output folder")
    parser.add_argument("--strict", action="store_true", help="fail instead of skipping problems")
    parser.add_argument("--value-range", nargs=2, type=float, metavar=("LOW", "HIGH"),
                        help="check that valence/arousal lie in [LOW, HIGH]")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return prepare_csv(args.data_folder, args.save_folder, strict=args.strict,
                           value_range=tuple(args.value_range) if args.value_range else None)
    except SSSLError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
