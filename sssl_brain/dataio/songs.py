"""The canonical songs table and the per-second segment truth (docs/output_contract.md, songs.csv).

A songs table (``songs.csv``, :data:`SONG_COLUMNS`) has one row per song: its
id, its audio file, its duration in seconds and its labels (valence and
arousal ratings and/or a quadrant). This module reads and checks the rows a
dataset's prepare module parses (:func:`validate_entries`), the annotation
CSVs they come from (:func:`read_annotation_csv`), the canonical table
(:func:`read_songs_table`) and the optional per-second truth
``truth/segment_truth.csv`` (:func:`read_segment_truth`). Any error is a
:class:`~sssl_brain.utils.errors.DataError` naming the file or the row.

The generic prepare step that writes the table is
:mod:`sssl_brain.dataio.prepare`.
"""

import csv
import math
import os

from sssl_brain.dataio.labels import CLASS_NAMES, QUADRANT_OF
from sssl_brain.utils.errors import DataError

SONG_COLUMNS = ["song_id", "path", "duration", "valence", "arousal", "quadrant"]
TRUTH_COLUMNS = ["song_id", "second", "valence", "arousal", "quadrant"]


def _is_empty(raw):
    return raw is None or (isinstance(raw, str) and raw.strip() == "")


def parse_rating(raw, column, source, value_range=None):
    """Reads one valence or arousal rating; empty means absent (None).

    Arguments
    ---------
    raw : str, float or None
        The cell.
    column : str
        Column name, for the message.
    source : str
        Where the cell comes from (``file:line``), for the message.
    value_range : tuple of float, optional
        Inclusive ``(low, high)`` range of the dataset's scale; None accepts
        any finite number.

    Returns
    -------
    float or None

    Raises
    ------
    DataError
        Naming ``source`` if the cell is not a finite number in range.

    Example
    -------
    >>> parse_rating(" 0.575", "valence", "a.csv:2", (0, 1)), parse_rating("", "valence", "a.csv:3")
    (0.575, None)
    >>> parse_rating("9.5", "arousal", "a.csv:4", (1, 9))
    Traceback (most recent call last):
    ...
    sssl_brain.utils.errors.DataError: a.csv:4: arousal='9.5' is outside the range [1, 9]
    """
    if _is_empty(raw):
        return None
    try:
        value = float(raw.strip() if isinstance(raw, str) else raw)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond the float range
        raise DataError(f"{source}: {column}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{source}: {column}={raw!r} is not a finite number")
    if value_range is not None:
        low, high = value_range
        if not low <= value <= high:
            raise DataError(f"{source}: {column}={raw!r} is outside the range [{low:g}, {high:g}]")
    return value


def parse_quadrant(raw, source):
    """Reads a quadrant cell (``Q1``..``Q4``, any case); empty means absent (None).

    Example
    -------
    >>> parse_quadrant("q2", "a.csv:2"), parse_quadrant("", "a.csv:3")
    ('Q2', None)
    """
    if _is_empty(raw):
        return None
    quadrant = str(raw).strip().upper()
    if quadrant not in CLASS_NAMES["quadrant"]:
        raise DataError(f"{source}: quadrant={raw!r} is not one of Q1, Q2, Q3, Q4")
    return quadrant


def _check_song_id(raw, source):
    song_id = "" if raw is None else str(raw).strip()
    if not song_id:
        raise DataError(f"{source}: empty song_id")
    if any(c in song_id for c in "/\\") or song_id in (".", "..") or not song_id.isprintable():
        raise DataError(f"{source}: song_id={song_id!r} must not hold path separators or control characters")
    return song_id


def validate_entries(entries, value_range=None, required=()):
    """Checks parsed annotation rows and returns them normalised.

    Arguments
    ---------
    entries : list of dict
        ``song_id``, ``path`` (audio file), ``valence``, ``arousal``,
        ``quadrant`` (each may be empty/None) and ``source`` (``file:line``).
    value_range : tuple of float, optional
        Inclusive range of valence and arousal (e.g. ``(0, 1)`` for PMEmo,
        ``(1, 9)`` for emoMusic); None accepts any finite number.
    required : sequence of str
        Label columns that must be non-empty in every row.

    Returns
    -------
    list of dict
        Same order; ``path`` absolute, ratings as float or None, quadrant
        ``Qn`` or None.

    Raises
    ------
    DataError
        Naming the row: empty or duplicate song id (naming both rows), an
        audio file used by two rows, bad ratings or quadrant, missing labels.

    Example
    -------
    >>> rows = [{"song_id": "a", "path": "/d/a.wav", "valence": "0.7", "arousal": "0.1", "source": "x.csv:2"},
    ...         {"song_id": "a", "path": "/d/b.wav", "valence": "0.2", "arousal": "0.3", "source": "x.csv:3"}]
    >>> validate_entries(rows[:1], (0, 1))[0]["valence"]
    0.7
    >>> validate_entries(rows, (0, 1))
    Traceback (most recent call last):
    ...
    sssl_brain.utils.errors.DataError: x.csv:3: duplicate song_id 'a' (first at x.csv:2)
    """
    seen_ids, seen_paths, out = {}, {}, []
    for index, entry in enumerate(entries):
        source = entry.get("source") or f"entry {index}"
        song_id = _check_song_id(entry.get("song_id"), source)
        if song_id in seen_ids:
            raise DataError(f"{source}: duplicate song_id {song_id!r} (first at {seen_ids[song_id]})")
        seen_ids[song_id] = source
        if _is_empty(entry.get("path")):
            raise DataError(f"{source}: song {song_id!r} has no audio path")
        path = os.path.abspath(os.fspath(entry["path"]).strip())
        if path in seen_paths:
            raise DataError(f"{source}: song {song_id!r} uses the audio file {path}, "
                            f"already used by the row at {seen_paths[path]}")
        seen_paths[path] = source
        row = {
            "song_id": song_id,
            "path": path,
            "valence": parse_rating(entry.get("valence"), "valence", source, value_range),
            "arousal": parse_rating(entry.get("arousal"), "arousal", source, value_range),
            "quadrant": parse_quadrant(entry.get("quadrant"), source),
            "source": source,
        }
        for column in required:
            if row[column] is None:
                raise DataError(f"{source}: song {song_id!r} has an empty {column}")
        if row["valence"] is None and row["arousal"] is None and row["quadrant"] is None:
            raise DataError(f"{source}: song {song_id!r} has no valence, arousal or quadrant")
        out.append(row)
    return out


def read_annotation_csv(path, required_columns, what="annotation file"):
    """Reads a CSV (UTF-8, optional BOM, any line ending) with cells stripped of spaces and tabs.

    Arguments
    ---------
    path : str
        CSV file.
    required_columns : sequence of str
        Columns the header must have.
    what : str
        What the file is, for messages.

    Returns
    -------
    list of (str, dict)
        ``(source, row)`` with ``source`` = ``path:line``.

    Raises
    ------
    DataError
        Naming the file (missing, undecodable, missing columns) or the row
        (more cells than the header).

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.csv")
    >>> _ = open(p, "w").write('"id","name"\\r\\n1,"\\tx\\t"\\r\\n')
    >>> [(s.endswith("a.csv:2"), r) for s, r in read_annotation_csv(p, ["id"])]
    [(True, {'id': '1', 'name': 'x'})]
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: {what} not found")
    out = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [(h or "").strip() for h in (reader.fieldnames or [])]
            missing = [c for c in required_columns if c not in header]
            if missing:
                raise DataError(f"{path}: {what} lacks column(s) {', '.join(missing)} "
                                f"(header: {','.join(header) or 'empty'})")
            reader.fieldnames = header
            for row in reader:
                source = f"{path}:{reader.line_num}"
                if None in row:
                    raise DataError(f"{source}: more cells than the {len(header)} header columns")
                out.append((source, {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()}))
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: {what} is not valid UTF-8 ({err})") from None
    except csv.Error as err:
        raise DataError(f"{path}: malformed CSV ({err})") from None
    return out


def read_songs_table(path):
    """Reads and checks a canonical songs table.

    Arguments
    ---------
    path : str
        ``songs.csv``.

    Returns
    -------
    list of dict
        ``song_id`` and ``path`` (str), ``duration`` (float), ``valence`` and
        ``arousal`` (float or None), ``quadrant`` (``Qn`` or None).

    Raises
    ------
    DataError
        Naming the file (missing, missing columns, empty) or the row.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "songs.csv")
    >>> _ = open(p, "w").write("song_id,path,duration,valence,arousal,quadrant\\n7,/a/7.mp3,30.5,,,Q3\\n")
    >>> song = read_songs_table(p)[0]
    >>> song["duration"], song["valence"], song["quadrant"]
    (30.5, None, 'Q3')
    """
    rows, seen = [], {}
    for source, row in read_annotation_csv(path, SONG_COLUMNS, "songs table"):
        song_id = _check_song_id(row["song_id"], source)
        if song_id in seen:
            raise DataError(f"{source}: duplicate song_id {song_id!r} (first at {seen[song_id]})")
        seen[song_id] = source
        if _is_empty(row["path"]):
            raise DataError(f"{source}: song {song_id!r} has no path")
        duration = parse_rating(row["duration"], "duration", source)
        if duration is None or duration <= 0:
            raise DataError(f"{source}: song {song_id!r}: duration={row['duration']!r} must be a positive "
                            "number")
        song = {"song_id": song_id, "path": row["path"], "duration": duration,
                "valence": parse_rating(row["valence"], "valence", source),
                "arousal": parse_rating(row["arousal"], "arousal", source),
                "quadrant": parse_quadrant(row["quadrant"], source)}
        if song["valence"] is None and song["arousal"] is None and song["quadrant"] is None:
            raise DataError(f"{source}: song {song_id!r} has no valence, arousal or quadrant")
        rows.append(song)
    if not rows:
        raise DataError(f"{path}: songs table has no rows")
    return rows


def _binary_cell(raw, column, source):
    if raw not in ("0", "1", "0.0", "1.0"):
        raise DataError(f"{source}: {column}={raw!r} must be 0 or 1")
    return int(float(raw))


def read_segment_truth(path):
    """Reads the optional per-second truth ``truth/segment_truth.csv``.

    Columns ``song_id,second,valence,arousal,quadrant``: valence and arousal
    0/1, quadrant Q1..Q4 (consistent with them: Q1 V+A+, Q2 V-A+, Q3 V-A-,
    Q4 V+A-), ``second`` a whole second >= 0, one row per song and second.

    Arguments
    ---------
    path : str
        The CSV file.

    Returns
    -------
    dict
        ``{song_id: {second: {"valence": 0/1, "arousal": 0/1, "quadrant": "Qn"}}}``.

    Raises
    ------
    DataError
        Naming the file or the row.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "segment_truth.csv")
    >>> _ = open(p, "w").write("song_id,second,valence,arousal,quadrant\\ns1,0,1,1,Q1\\ns1,1,0,1,Q2\\n")
    >>> read_segment_truth(p)["s1"][1]
    {'valence': 0, 'arousal': 1, 'quadrant': 'Q2'}
    """
    truth, seen = {}, {}
    for source, row in read_annotation_csv(path, TRUTH_COLUMNS, "segment truth file"):
        song_id = _check_song_id(row["song_id"], source)
        raw = row["second"]
        try:
            second = float(raw)
        except (TypeError, ValueError):
            second = -1.0
        if not (math.isfinite(second) and second >= 0 and second == int(second)):
            raise DataError(f"{source}: second={raw!r} must be a whole number of seconds >= 0")
        second = int(second)
        valence = _binary_cell(row["valence"], "valence", source)
        arousal = _binary_cell(row["arousal"], "arousal", source)
        quadrant = parse_quadrant(row["quadrant"], source)
        if quadrant != QUADRANT_OF[(valence, arousal)]:
            raise DataError(f"{source}: quadrant={row['quadrant']!r} does not match valence={valence}, "
                            f"arousal={arousal} (expected {QUADRANT_OF[(valence, arousal)]})")
        key = (song_id, second)
        if key in seen:
            raise DataError(f"{source}: duplicate row for song {song_id!r} second {second} "
                            f"(first at {seen[key]})")
        seen[key] = source
        truth.setdefault(song_id, {})[second] = {"valence": valence, "arousal": arousal, "quadrant": quadrant}
    return truth


def read_file_names(path, id_column, name_column, what):
    """Optional ``id -> audio file name`` map from a dataset's metadata table.

    Arguments
    ---------
    path : str
        Metadata CSV; a missing file gives an empty map.
    id_column, name_column : str
        Columns of the song id and of its audio file name (empty cells are left out).
    what : str
        Name of the table in error messages.

    Returns
    -------
    dict

    Raises
    ------
    DataError
        On a duplicate id, naming both rows.
    """
    names, seen = {}, {}
    if not os.path.isfile(path):
        return names
    for source, row in read_annotation_csv(path, (id_column, name_column), what):
        song_id = row[id_column]
        if song_id in seen:
            raise DataError(f"{source}: duplicate {id_column} {song_id!r} (first at {seen[song_id]})")
        seen[song_id] = source
        if row[name_column]:
            names[song_id] = row[name_column]
    return names
