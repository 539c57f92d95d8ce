"""The generic half of every prepare step: pairing with the audio, writing ``songs.csv``.

A dataset's prepare module (``recipes/<dataset>/<dataset>_prepare.py``) only
parses the dataset's own layout into *entries*, one dict per annotation row::

    {"song_id": "1", "path": "/data/PMEmo2019/chorus/1.mp3",
     "valence": "0.575", "arousal": "0.4", "quadrant": None,
     "source": "/data/PMEmo2019/annotations/static_annotations.csv:2"}

and lists the audio files it found. Everything else is here and is the same
for every dataset (:func:`prepare_songs_table`):

1. Validation of the entries (:func:`sssl_brain.dataio.songs.validate_entries`);
   any error is a :class:`DataError` naming the row (``source`` is
   ``file:line``) and nothing is written:
   empty or duplicate song ids, two rows sharing one audio file, ratings that
   are not numbers, not finite or out of the dataset's range, unknown
   quadrants, rows without any label.
2. Pairing with the audio; these problems are *documented, counted skips*
   (each one logged as a warning naming the row and the file and listed in
   ``prepare_report.json``), or errors with ``strict=True``:

   - ``missing_audio``: an annotation row whose audio file does not exist;
   - ``unannotated_audio``: an audio file no annotation row points to
     (PMEmo2019 has 27 of them: 794 clips, 767 annotated);
   - ``unreadable_audio``: an annotated audio file that cannot be read or is
     empty (:func:`sssl_brain.dataio.audio.audio_samples` raises ``AudioError``).
3. The duration of every song is read from its audio file: its decoded
   sample count over its rate (MP3s are decoded to count their samples, see
   :func:`sssl_brain.dataio.audio.audio_samples`), written at full precision.
4. ``save_folder/songs.csv`` (:data:`sssl_brain.dataio.songs.SONG_COLUMNS`),
   ``prepare_report.json`` and ``prepare_options.json`` are written atomically, and a summary like Table 1
   of the paper (segments per segment duration, songs too short for one
   segment) is printed.

Like SpeechBrain's prepare scripts, a second call with the same options finds
``songs.csv`` and ``prepare_options.json`` and returns at once ("skipping
preparation"). Delete ``songs.csv`` to force a new preparation after the
data changed.
"""

import argparse
import json
import logging
import os
import sys

from tqdm import tqdm

from sssl_brain.dataio.audio import audio_samples
from sssl_brain.dataio.segments import (
    n_feature_frames,
    n_feature_frames_of_duration,
    segment_hop,
    song_segments,
)
from sssl_brain.dataio.songs import SONG_COLUMNS, validate_entries
from sssl_brain.utils.errors import AudioError, ConfigError, DataError, SSSLError
from sssl_brain.utils.io_utils import atomic_write_csv, atomic_write_json

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".mp3", ".wav", ".flac", ".ogg")
SUMMARY_DURATIONS = (1.0, 2.0, 3.0, 4.0, 5.0)
SONGS_FILE = "songs.csv"
REPORT_FILE = "prepare_report.json"
OPTIONS_FILE = "prepare_options.json"
SKIP_KINDS = ("missing_audio", "unannotated_audio", "unreadable_audio")
# Feature settings the prepare step's segment summary assumes (the yaml's and FeatureConfig's defaults).
SUMMARY_SAMPLE_RATE = 22050
SUMMARY_HOP_LENGTH = 512
_LIST_LIMIT = 10


def _names(items, limit=_LIST_LIMIT):
    items = [str(x) for x in items]
    more = len(items) - limit
    return ", ".join(items[:limit]) + (f" (and {more} more)" if more > 0 else "")


def find_audio_files(folder, recursive=False, extensions=AUDIO_EXTENSIONS):
    """Absolute paths of the audio files in a folder (by extension, any case), sorted.

    Example
    -------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> for name in ("b.MP3", "a.wav", "notes.txt"):
    ...     _ = open(os.path.join(d, name), "w").close()
    >>> [os.path.basename(p) for p in find_audio_files(d)]
    ['a.wav', 'b.MP3']
    """
    found = []
    if recursive:
        for top, dirs, files in os.walk(folder):
            dirs.sort()
            found.extend(os.path.join(top, f) for f in files if f.lower().endswith(tuple(extensions)))
    elif os.path.isdir(folder):
        found = [os.path.join(folder, f) for f in os.listdir(folder)
                 if f.lower().endswith(tuple(extensions)) and os.path.isfile(os.path.join(folder, f))]
    return sorted(os.path.abspath(p) for p in found)


def pair_audio(songs, audio_files=None, desc="reading audio durations"):
    """Pairs validated rows with their audio files and measures durations.

    Arguments
    ---------
    songs : list of dict
        Output of :func:`sssl_brain.dataio.songs.validate_entries`.
    audio_files : iterable of str, optional
        Audio files found in the dataset folder; those no row points to are
        counted as ``unannotated_audio``. None skips that check.
    desc : str
        Progress bar label.

    Returns
    -------
    rows : list of dict
        Rows of the songs table (``SONG_COLUMNS``; ``duration`` float) plus
        ``n_samples`` and ``native_rate`` (the decoded sample count and the
        file's rate, used by :func:`segment_summary`; not written to the table).
    skipped : dict
        ``{kind: [item, ...]}`` for each kind of ``SKIP_KINDS``; an item is a
        dict naming the row (``source``, ``song_id``) and/or the ``path``.
    """
    skipped = {kind: [] for kind in SKIP_KINDS}
    rows = []
    for song in tqdm(songs, desc=desc, disable=None, leave=False):
        path = song["path"]
        if not os.path.isfile(path):
            item = {"source": song["source"], "song_id": song["song_id"], "path": path}
            skipped["missing_audio"].append(item)
            logger.warning("%s: song %r skipped: audio file %s not found", item["source"], song["song_id"],
                           path)
            continue
        try:
            n_samples, native_rate = audio_samples(path)
        except AudioError as err:
            skipped["unreadable_audio"].append(
                {"source": song["source"], "song_id": song["song_id"], "path": path, "error": str(err)})
            logger.warning("%s: song %r skipped: %s", song["source"], song["song_id"], err)
            continue
        rows.append({**{k: song[k] for k in ("song_id", "path", "valence", "arousal", "quadrant")},
                     "duration": n_samples / native_rate, "n_samples": n_samples, "native_rate": native_rate})
    if audio_files is not None:
        annotated = {os.path.normcase(s["path"]) for s in songs}
        unannotated = sorted({os.path.abspath(p) for p in audio_files
                              if os.path.normcase(os.path.abspath(p)) not in annotated})
        skipped["unannotated_audio"] = [{"path": p} for p in unannotated]
        if unannotated:
            logger.warning("%d audio file(s) have no annotation row and are left out: %s",
                           len(unannotated), _names(unannotated))
    return rows, skipped


def _describe(kind, item):
    if kind == "unannotated_audio":
        return f"{item['path']}: no annotation row"
    if kind == "missing_audio":
        return f"{item['source']}: audio file {item['path']} not found"
    return f"{item['source']}: {item['error']}"


def song_feature_frames(song, sample_rate=SUMMARY_SAMPLE_RATE, hop_length=SUMMARY_HOP_LENGTH):
    """Feature frames a song will have, predicted before any feature exists.

    From ``n_samples`` and ``native_rate`` where the row has them (exactly
    what the feature extractor gives: librosa's resampled length, then
    centred frames, :func:`sssl_brain.dataio.segments.n_feature_frames`), else from
    ``duration`` (:func:`sssl_brain.dataio.segments.n_feature_frames_of_duration`).

    Example
    -------
    >>> song_feature_frames({"duration": 1.0})
    44
    >>> song_feature_frames({"n_samples": 88200, "native_rate": 44100})
    87
    """
    if song.get("n_samples") is not None and song.get("native_rate") is not None:
        return n_feature_frames(song["n_samples"], sample_rate, hop_length, native_rate=song["native_rate"])
    return n_feature_frames_of_duration(float(song["duration"]), sample_rate, hop_length)


def segment_summary(songs, seg_durs=SUMMARY_DURATIONS, overlap=None, max_duration=None,
                    sample_rate=SUMMARY_SAMPLE_RATE, hop_length=SUMMARY_HOP_LENGTH):
    """Segments per segment duration, as in Table 1 of the paper.

    Each song is cut by the rule training uses
    (:func:`sssl_brain.dataio.segments.song_segments`) over the feature frames
    it will have (:func:`song_feature_frames`), so a summary's count equals
    the number of segments training builds from the feature cache.

    Arguments
    ---------
    songs : list of dict
        Rows with ``song_id`` and ``duration`` (s), and optionally
        ``n_samples`` and ``native_rate`` (as :func:`pair_audio` gives them).
    seg_durs : sequence of float
        Segment durations (s).
    overlap, max_duration : float, optional
        See :func:`sssl_brain.dataio.segments.segment_starts` (default overlap:
        duration - 1 s, a hop of 1 s).
    sample_rate, hop_length : int
        Feature settings (default: the yaml's 22,050 Hz and 512).

    Returns
    -------
    list of dict
        One row per duration: ``seg_dur``, ``overlap``, ``segments``,
        ``short_songs`` (count of songs shorter than one segment, which yield
        none) and ``short_song_ids``.

    Example
    -------
    >>> songs = [{"song_id": "a", "duration": 30.0}, {"song_id": "b", "duration": 2.5}]
    >>> rows = segment_summary(songs, (1, 3))
    >>> [(r["seg_dur"], r["overlap"], r["segments"], r["short_song_ids"]) for r in rows]
    [(1.0, 0.0, 31, []), (3.0, 2.0, 27, ['b'])]

    A song of exactly 30.0 s has 29 one-second segments, not 30: its 1,292
    centred frames (hop 512 at 22,050 Hz) span 29.98 s, and training cuts
    segments from the frames.
    """
    rows = []
    frames = [song_feature_frames(song, sample_rate, hop_length) for song in songs]
    for seg_dur in seg_durs:
        seg_dur = float(seg_dur)
        hop = segment_hop(seg_dur, overlap)
        count, short = 0, []
        for song, n_frames in zip(songs, frames):
            n = len(song_segments(n_frames, seg_dur, sample_rate, hop_length, overlap, max_duration,
                                  duration=float(song["duration"])))
            count += n
            if n == 0:
                short.append(song["song_id"])
        rows.append({"seg_dur": seg_dur, "overlap": round(seg_dur - hop, 6), "segments": count,
                     "short_songs": len(short), "short_song_ids": short})
    return rows


def format_segment_summary(rows, dataset, n_songs):
    """The rows of :func:`segment_summary` as a Markdown table (paper Table 1 layout).

    Example
    -------
    >>> songs = [{"song_id": "a", "duration": 30.0}, {"song_id": "b", "duration": 1.5}]
    >>> rows = segment_summary(songs, (1, 2))
    >>> print(format_segment_summary(rows, "demo", 2))
    | Dataset | Songs | Duration (overlap) | Segments | Songs too short |
    |---|---:|---|---:|---:|
    | demo | 2 | 1 s (0 s) | 30 | 0 |
    |  |  | 2 s (1 s) | 28 | 1 |
    Songs shorter than 2 s (no segment): b
    """
    lines = ["| Dataset | Songs | Duration (overlap) | Segments | Songs too short |",
             "|---|---:|---|---:|---:|"]
    for i, row in enumerate(rows):
        head = f"| {dataset} | {n_songs} |" if i == 0 else "|  |  |"
        lines.append(f"{head} {row['seg_dur']:g} s ({row['overlap']:g} s) | {row['segments']:,} | "
                     f"{row['short_songs']} |")
    for row in rows:
        if row["short_songs"]:
            names = _names(row["short_song_ids"])
            lines.append(f"Songs shorter than {row['seg_dur']:g} s (no segment): {names}")
    return "\n".join(lines)


def _format_number(value):
    return "" if value is None else repr(float(value))


def write_songs_table(entries, audio_files, save_folder, dataset, value_range=None, required=(), strict=False,
                      options=None, extra_tables=None, seg_durs=SUMMARY_DURATIONS, overlap=None,
                      max_duration=None):
    """Validates entries, pairs them with audio and writes ``songs.csv`` and its report.

    Arguments
    ---------
    entries : list of dict
        Parsed annotation rows (see :func:`sssl_brain.dataio.songs.validate_entries`).
    audio_files : iterable of str or None
        Audio files found in the dataset folder (None: no unannotated check).
    save_folder : str
        Output folder.
    dataset : str
        Dataset name, for the report and the summary.
    value_range : tuple of float, optional
        Inclusive range of valence/arousal.
    required : sequence of str
        Label columns that must be non-empty in every row.
    strict : bool
        Turn every skip (missing, unannotated, unreadable audio) into a
        DataError.
    options : dict, optional
        Preparation options saved to ``prepare_options.json`` (written last,
        so its presence means the preparation completed).
    extra_tables : dict, optional
        ``{file name: (rows, fieldnames)}`` written beside ``songs.csv``.
    seg_durs, overlap, max_duration
        Settings of the printed segment summary.

    Returns
    -------
    str
        Path of ``songs.csv``.

    Raises
    ------
    DataError
        On invalid entries, in strict mode on any skip, or when no song is
        left; nothing is written then.

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile as sf
    >>> d = tempfile.mkdtemp()
    >>> sf.write(os.path.join(d, "a.wav"), np.zeros(20000, "float32"), 8000)
    >>> sf.write(os.path.join(d, "extra.wav"), np.zeros(8000, "float32"), 8000)
    >>> entries = [{"song_id": "a", "path": os.path.join(d, "a.wav"), "valence": "0.8", "arousal": "0.1",
    ...             "source": "ann.csv:2"}]
    >>> import contextlib, io
    >>> with contextlib.redirect_stdout(io.StringIO()) as printed:
    ...     path = write_songs_table(entries, find_audio_files(d), os.path.join(d, "out"), "toy", (0, 1))
    >>> printed.getvalue().splitlines()[3]
    '| toy | 1 | 1 s (0 s) | 2 | 0 |'
    >>> from sssl_brain.dataio.songs import read_songs_table
    >>> [(r["song_id"], r["duration"]) for r in read_songs_table(path)]
    [('a', 2.5)]
    >>> report = json.load(open(os.path.join(d, "out", REPORT_FILE)))
    >>> report["songs"], report["skipped"]["unannotated_audio"]["count"]
    (1, 1)
    """
    songs = validate_entries(entries, value_range, required)
    rows, skipped = pair_audio(songs, audio_files, desc=f"{dataset}: reading audio durations")
    problems = [_describe(kind, item) for kind in SKIP_KINDS for item in skipped[kind]]
    if strict and problems:
        raise DataError(f"{dataset}: strict=True and {len(problems)} problem(s) would be skipped: "
                        + "; ".join(problems[:_LIST_LIMIT]) + (" ..." if len(problems) > _LIST_LIMIT else ""))
    if not rows:
        raise DataError(f"{dataset}: no song left to write ({len(songs)} annotation rows; "
                        + "; ".join(problems[:3]) + ")")
    summary = segment_summary(rows, seg_durs, overlap, max_duration)
    report = {
        "dataset": dataset,
        "songs": len(rows),
        "annotation_rows": len(songs),
        "audio_files": None if audio_files is None else len(set(audio_files)),
        "skipped": {kind: {"count": len(skipped[kind]), "items": skipped[kind]} for kind in SKIP_KINDS},
        "segment_summary": {"overlap": overlap, "max_duration": max_duration, "rows": summary},
        "files": [SONGS_FILE] + sorted(extra_tables or {}),
    }
    songs_csv = os.path.join(save_folder, SONGS_FILE)
    options_json = os.path.join(save_folder, OPTIONS_FILE)
    if os.path.exists(options_json):  # stale options must never vouch for a half-updated folder
        os.remove(options_json)
    table = [{**row, "duration": _format_number(row["duration"]),
              "valence": _format_number(row["valence"]), "arousal": _format_number(row["arousal"]),
              "quadrant": row["quadrant"] or ""} for row in rows]
    atomic_write_csv(songs_csv, table, SONG_COLUMNS)
    for name, (extra_rows, fieldnames) in sorted((extra_tables or {}).items()):
        atomic_write_csv(os.path.join(save_folder, name), extra_rows, fieldnames)
    atomic_write_json(os.path.join(save_folder, REPORT_FILE), report)
    if options is not None:
        atomic_write_json(options_json, _jsonable(options))
    skips = ", ".join(f"{kind} {len(skipped[kind])}" for kind in SKIP_KINDS)
    print(f"{dataset}: {len(rows)} songs written to {songs_csv} (skipped: {skips})")
    print(format_segment_summary(summary, dataset, len(rows)))
    return songs_csv


def _jsonable(obj):
    return json.loads(json.dumps(obj, sort_keys=True))


def skip_if_prepared(save_folder, options):
    """True if ``save_folder`` already holds a songs table prepared with these options.

    Arguments
    ---------
    save_folder : str
        Output folder of the preparation.
    options : dict
        JSON-serialisable options (data folder, dataset, strict, ...).

    Returns
    -------
    bool

    Example
    -------
    >>> import tempfile
    >>> skip_if_prepared(tempfile.mkdtemp(), {"data_folder": "/data"})
    False
    """
    songs_csv = os.path.join(save_folder, SONGS_FILE)
    options_json = os.path.join(save_folder, OPTIONS_FILE)
    if not (os.path.isfile(songs_csv) and os.path.isfile(options_json)):
        return False
    try:
        with open(options_json, encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return False
    if saved != _jsonable(options):
        logger.info("%s: options differ from %s, preparing again", options_json, options)
        return False
    logger.info("%s already prepared with the same options: skipping preparation", songs_csv)
    return True


def prepare_songs_table(dataset, data_folder, save_folder, parse, value_range=None, required=(),
                        skip_prep=False, strict=False, options=None):
    """Runs a dataset's preparation: skip logic, parsing, validation, writing.

    Arguments
    ---------
    dataset : str
        Dataset name.
    data_folder : str
        The dataset's folder (passed to ``parse``).
    save_folder : str
        Where ``songs.csv`` and the reports go.
    parse : callable
        ``parse(data_folder) -> (entries, audio_files)`` or
        ``(entries, audio_files, extra_tables)``; see :func:`write_songs_table`.
    value_range : tuple of float, optional
        Inclusive range of valence/arousal.
    required : sequence of str
        Label columns that must be non-empty in every row.
    skip_prep : bool
        Do nothing and return the path of an existing ``songs.csv``.
    strict : bool
        Turn the documented skips into errors.
    options : dict, optional
        Extra options that, when changed, force a new preparation.

    Returns
    -------
    str
        Path of ``save_folder/songs.csv``.
    """
    songs_csv = os.path.join(save_folder, SONGS_FILE)
    if skip_prep:
        if not os.path.isfile(songs_csv):
            raise ConfigError(f"skip_prep=True but {songs_csv} does not exist: prepare the data first "
                              "(skip_prep=False)")
        logger.info("skip_prep=True: using %s as it is", songs_csv)
        return songs_csv
    all_options = {"dataset": dataset, "data_folder": os.path.abspath(data_folder), "strict": bool(strict),
                   "value_range": None if value_range is None else [float(v) for v in value_range],
                   **(options or {})}
    if skip_if_prepared(save_folder, all_options):
        return songs_csv
    if not os.path.exists(data_folder):
        raise DataError(f"{data_folder}: {dataset} data folder not found")
    parsed = parse(data_folder)
    entries, audio_files = parsed[0], parsed[1]
    extra_tables = parsed[2] if len(parsed) > 2 else None
    return write_songs_table(entries, audio_files, save_folder, dataset, value_range, required, strict,
                             options=all_options, extra_tables=extra_tables)


def run_prepare_cli(prepare, description, argv=None):
    """Command line of a prepare module: ``DATA_FOLDER SAVE_FOLDER [--strict]``.

    Errors on bad data print their message and exit with status 2.

    Arguments
    ---------
    prepare : callable
        ``prepare(data_folder, save_folder, strict=...)``.
    description : str
        Help text (the module docstring).
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    str
        Path of ``songs.csv``.
    """
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_folder", help="the dataset's folder")
    parser.add_argument("save_folder", help="output folder: songs.csv, prepare_report.json, "
                        "prepare_options.json")
    parser.add_argument("--strict", action="store_true", help="fail instead of skipping missing, unannotated "
                        "or unreadable audio")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return prepare(args.data_folder, args.save_folder, strict=args.strict)
    except SSSLError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
