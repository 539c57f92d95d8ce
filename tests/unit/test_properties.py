"""Property-based tests (hypothesis) of the annotation parsers, the prepare steps and the audio reader.

Whatever the input (random bytes, odd encodings and line endings, ids with
spaces or unicode, truncated or corrupted audio, NaN/inf samples, empty or
huge files), a parser either returns well-formed rows or raises a typed
:class:`sssl_brain.utils.errors.SSSLError` whose message names the file (or the
row, ``file:line``); never another exception from deep inside.
"""

import codecs
import csv
import io
import math
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from audio_fixtures import write_audio
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from prepare_fixtures import load_prepare_module

from sssl_brain.dataio.audio import audio_duration, load_audio
from sssl_brain.dataio.features import FeatureCache, FeatureConfig
from sssl_brain.dataio.songs import (
    SONG_COLUMNS,
    TRUTH_COLUMNS,
    parse_quadrant,
    parse_rating,
    read_annotation_csv,
    read_segment_truth,
    read_songs_table,
)
from sssl_brain.utils.errors import AudioError, DataError, SSSLError


def _neutralize_broken_lazy_modules():
    """Lets hypothesis scan ``sys.modules`` although SpeechBrain registers unimportable lazy modules.

    Hypothesis (>= 6.1xx) reads ``__file__`` of every loaded module to collect
    constants of local code; SpeechBrain's ``DeprecatedModuleRedirect`` shims
    (``speechbrain.k2_integration``, ``speechbrain.wordemb``...) answer that by
    importing optional packages that are not installed (k2, ...) and raise
    ImportError, which fails every hypothesis test of a session that imported
    speechbrain. Giving those shims ``__file__ = None`` (they have no file:
    nothing was loaded) makes hypothesis skip them.
    """
    import sys
    import warnings

    # (registers every shim the library's imports bring)
    import sssl_brain.dataio.experiment  # noqa: F401
    import sssl_brain.song_level.fold_outputs  # noqa: F401

    for module in list(sys.modules.values()):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the shims' deprecation notices
                getattr(module, "__file__", None)
        except ImportError:
            module.__dict__["__file__"] = None


_neutralize_broken_lazy_modules()
# database=None: no example database folder in the repository (failures print their example).
QUICK = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
QUADRANTS = ("Q1", "Q2", "Q3", "Q4")
LINE_ENDS = ("\n", "\r\n", "\r")

# Text as annotation files hold it: any unicode but surrogates and NUL (csv cannot hold NUL).
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
# Cells that hit the interesting branches, mixed with arbitrary text.
CELL = st.one_of(
    st.sampled_from(["", " ", "\t", "Q1", " q2 ", "Q4", "Q5", "0", "1", "0.5", "30.5", " 12 ", "-1", "nan",
                     "inf", "-inf", "1e400", "abc", "1,5", '"', "Ünïcödé", "歌 1", "a b"]),
    TEXT,
)
SONG_ID = st.one_of(st.sampled_from(["1", "song 1", " padded ", "chanson d'été", "歌", "a/b", "..", "x\ty",
                                     "tab\x07bell", "\u00a0nbsp", ""]), TEXT)


def scratch():
    """A fresh folder per hypothesis example (function-scoped fixtures are shared between examples)."""
    return Path(tempfile.mkdtemp(prefix="sssl-prop-"))


def outcome(call, *names):
    """Runs ``call()``: any exception must be an SSSLError naming one of ``names``; gives (result, error)."""
    try:
        return call(), None
    except SSSLError as err:
        message = str(err)
        assert any(str(name) in message for name in names), f"error does not name {names}: {message}"
        return None, err


def encode_table(header, rows, line_end, encoding, quoting=csv.QUOTE_MINIMAL):
    """A CSV file's bytes: header and rows written by the csv module with ``line_end``, then encoded."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=line_end, quoting=quoting)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode(encoding, errors="replace")


# ----------------------------------------------------------------------------- single cells
@QUICK
@given(st.one_of(TEXT, CELL, st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.none(),
                 st.booleans()))
@example(10**400)  # beyond the float range: was an OverflowError from deep inside
def test_parse_rating_gives_a_finite_float_none_or_a_data_error_naming_the_cell(raw):
    value, _ = outcome(lambda: parse_rating(raw, "valence", "ann.csv:7"), "ann.csv:7")
    if value is not None:
        assert isinstance(value, float) and math.isfinite(value)


@QUICK
@given(st.one_of(TEXT, CELL), st.floats(-10, 10), st.floats(0, 10))
def test_parse_rating_range_is_inclusive_and_checked(raw, low, width):
    high = low + width
    value, err = outcome(lambda: parse_rating(raw, "arousal", "ann.csv:3", (low, high)), "ann.csv:3")
    if value is not None:
        assert low <= value <= high
    if err is not None:
        assert "arousal" in str(err)


@QUICK
@given(st.one_of(TEXT, CELL, st.integers(), st.none()))
def test_parse_quadrant_gives_q1_to_q4_none_or_a_data_error_naming_the_cell(raw):
    quadrant, _ = outcome(lambda: parse_quadrant(raw, "ann.csv:9"), "ann.csv:9")
    if quadrant is not None:
        assert quadrant in QUADRANTS and str(raw).strip().upper() == quadrant


# ----------------------------------------------------------------------------- whole files
@QUICK
@given(st.binary(max_size=600))
def test_read_annotation_csv_on_random_bytes(data):
    path = scratch() / "ann.csv"
    path.write_bytes(data)
    rows, _ = outcome(lambda: read_annotation_csv(str(path), ["song_id"]), path)
    for source, row in rows or []:
        assert source.startswith(f"{path}:")
        assert all(v is None or (isinstance(v, str) and v == v.strip()) for v in row.values())


@QUICK
@given(st.lists(st.lists(CELL, min_size=3, max_size=3), max_size=6), st.sampled_from(LINE_ENDS),
       st.sampled_from(["utf-8", "utf-8-sig"]), st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
def test_read_annotation_csv_reads_back_any_cells_with_any_line_ending(rows, line_end, encoding, quoting):
    """Quoted commas, quotes, newlines, tabs, unicode: every cell comes back, stripped."""
    if quoting == csv.QUOTE_MINIMAL:
        # The csv module quotes only the line end it writes: a bare CR or LF in a cell of a file with
        # other line ends is a line break (another file), so only quoted files may hold them.
        assume(not any("\r" in c or "\n" in c for row in rows for c in row))
    path = scratch() / "ann.csv"
    path.write_bytes(encode_table(["song_id", "path", "valence"], rows, line_end, encoding, quoting))
    got = read_annotation_csv(str(path), ["song_id", "path"])
    assert [list(r.values()) for _, r in got] == [[c.strip() for c in row] for row in rows]


@QUICK
@given(st.lists(st.lists(CELL, min_size=3, max_size=3), min_size=1, max_size=4),
       st.sampled_from(["utf-16", "utf-32", "latin-1", "cp1252"]))
def test_other_encodings_are_read_correctly_or_rejected_naming_the_file(rows, encoding):
    """A file in another encoding is rejected as not UTF-8 unless its bytes happen to be UTF-8 as well."""
    path = scratch() / "ann.csv"
    data = encode_table(["song_id", "path", "valence"], rows, "\r\n", encoding)
    path.write_bytes(data)
    got, err = outcome(lambda: read_annotation_csv(str(path), ["song_id", "path"]), path)
    if got is not None:
        text = data.decode("utf-8")  # it parsed, so the bytes were valid UTF-8
        assert codecs.BOM_UTF8 not in data[:3] or text.startswith("\ufeff")


def _check_songs(songs, written_ids):
    ids = [s["song_id"] for s in songs]
    assert ids == [i.strip() for i in written_ids] and len(set(ids)) == len(ids)
    for song in songs:
        assert song["song_id"] and song["song_id"].isprintable() and not set("/\\") & set(song["song_id"])
        assert math.isfinite(song["duration"]) and song["duration"] > 0
        assert song["quadrant"] in QUADRANTS + (None,)
        for key in ("valence", "arousal"):
            assert song[key] is None or math.isfinite(song[key])
        assert any(song[k] is not None for k in ("valence", "arousal", "quadrant"))


@QUICK
@given(st.lists(st.tuples(SONG_ID, CELL, CELL, CELL, CELL, CELL), max_size=5), st.sampled_from(LINE_ENDS),
       st.sampled_from(["utf-8", "utf-8-sig"]))
def test_read_songs_table_returns_valid_songs_or_names_the_file(rows, line_end, encoding):
    path = scratch() / "songs.csv"
    path.write_bytes(encode_table(SONG_COLUMNS, rows, line_end, encoding))
    songs, _ = outcome(lambda: read_songs_table(str(path)), path)
    if songs is not None:
        _check_songs(songs, [r[0] for r in rows])


@QUICK
@given(st.lists(st.tuples(SONG_ID, CELL, CELL, CELL, CELL), max_size=5), st.sampled_from(LINE_ENDS))
def test_read_segment_truth_returns_consistent_seconds_or_names_the_file(rows, line_end):
    path = scratch() / "segment_truth.csv"
    path.write_bytes(encode_table(TRUTH_COLUMNS, rows, line_end, "utf-8"))
    truth, _ = outcome(lambda: read_segment_truth(str(path)), path)
    quadrant_of = {(1, 1): "Q1", (0, 1): "Q2", (0, 0): "Q3", (1, 0): "Q4"}
    for song_id, seconds in (truth or {}).items():
        assert song_id == song_id.strip() and song_id
        for second, cell in seconds.items():
            assert isinstance(second, int) and second >= 0
            assert cell["quadrant"] == quadrant_of[(cell["valence"], cell["arousal"])]


@FEW
@given(st.binary(max_size=400))
def test_read_songs_table_and_segment_truth_on_random_bytes(data):
    path = scratch() / "table.csv"
    path.write_bytes(data)
    outcome(lambda: read_songs_table(str(path)), path)
    outcome(lambda: read_segment_truth(str(path)), path)


def test_huge_cell_and_huge_file_are_data_errors_or_read(tmp_path):
    """A cell over the csv module's field limit is a DataError naming the file, not a csv.Error."""
    path = tmp_path / "ann.csv"
    path.write_text("song_id,path\n1," + "x" * 200_000 + "\n")
    with pytest.raises(DataError, match="ann.csv"):
        read_annotation_csv(str(path), ["song_id"])
    many = "song_id,path,valence\n" + "".join(f"s{i},a{i}.wav,0.{i % 10}\r\n" for i in range(50_000))
    path.write_text(many)
    rows = read_annotation_csv(str(path), ["song_id"])
    assert len(rows) == 50_000 and rows[-1][0].endswith(":50001")


# ----------------------------------------------------------------------------- prepare steps
@pytest.fixture(scope="module")
def clip_bytes():
    folder = tempfile.mkdtemp(prefix="sssl-prop-clip-")
    return Path(write_audio(os.path.join(folder, "clip.wav"), duration=1.5, sr=8000)).read_bytes()


def _fill(folder, names, data):
    for name in names:
        path = Path(folder) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


PREPARE_LAYOUTS = {
    # dataset: (annotation file, other CSV (or None), audio files, value range of parse)
    "csv": ("annotations.csv", None, ["audio/a b.wav", "audio/é.wav"]),
    "pmemo": ("PMEmo2019/annotations/static_annotations.csv", "PMEmo2019/metadata.csv",
              ["PMEmo2019/chorus/1.mp3"]),
    "4q": ("MER_audio_taffc_dataset/panda_dataset_taffc_annotations.csv", None,
           ["MER_audio_taffc_dataset/Q1/MT0000004637.mp3"]),
    "eim": ("emoMusic/static_annotations.csv", "emoMusic/songs_info.csv", ["emoMusic/clips_45seconds/2.mp3"]),
}
PREPARE_FUNCTIONS = {"csv": "prepare_csv", "pmemo": "prepare_pmemo", "4q": "prepare_4q", "eim": "prepare_eim"}


@pytest.mark.parametrize("dataset", sorted(PREPARE_LAYOUTS))
def test_prepare_steps_on_random_annotation_bytes(dataset, clip_bytes):
    annotation, other, audio = PREPARE_LAYOUTS[dataset]
    prepare = getattr(load_prepare_module(dataset), PREPARE_FUNCTIONS[dataset])

    @FEW
    @given(st.binary(max_size=300), st.binary(max_size=100))
    def check(data, other_data):
        base = scratch()
        _fill(base, audio, clip_bytes)
        _fill(base, [annotation], data)
        if other:
            _fill(base, [other], other_data)
        data_folder = base / Path(annotation).parts[0] if dataset != "csv" else base
        save = base / "out"
        songs_csv, _ = outcome(lambda: prepare(str(data_folder), str(save)), base)
        if songs_csv is not None:
            assert read_songs_table(songs_csv)

    check()


PATHS = ["audio/a b.wav", "audio/é.wav", "audio/missing.wav", "", "/abs/x.wav", " audio/a b.wav "]
ROW = st.tuples(SONG_ID, st.sampled_from(PATHS), CELL, CELL, CELL)


@FEW
@given(st.lists(ROW, max_size=4), st.sampled_from(LINE_ENDS), st.sampled_from(["utf-8", "utf-8-sig"]))
def test_csv_prepare_on_structured_random_rows(rows, line_end, encoding):
    base = scratch()
    clip = Path(write_audio(str(base / "audio" / "a b.wav"), duration=1.5, sr=8000))
    (base / "audio" / "é.wav").write_bytes(clip.read_bytes())
    (base / "annotations.csv").write_bytes(
        encode_table(["song_id", "path", "valence", "arousal", "quadrant"], rows, line_end, encoding))
    prepare = load_prepare_module("csv").prepare_csv
    songs_csv, _ = outcome(lambda: prepare(str(base), str(base / "out")), base)
    if songs_csv is not None:
        songs = read_songs_table(songs_csv)
        assert {s["song_id"] for s in songs} <= {r[0].strip() for r in rows}
        assert all(os.path.isfile(s["path"]) for s in songs)


def test_ids_and_paths_with_spaces_and_unicode_go_through_prepare_features_and_segments(tmp_path):
    """Song ids and file names with spaces, quotes and unicode survive every step unchanged."""
    from sssl_brain.dataio.dataset import build_segments, segment_dataset

    ids = ["chanson d'été", "歌 1", "a  b", "Ünïcödé-ß", 'say "hi", ok']
    names = ["my song é.wav", "歌 1.wav", "a  b.wav", "Ü.flac", "q,\"x\".ogg"]
    base = tmp_path / "data set"
    for k, name in enumerate(names):
        write_audio(str(base / "audio ü" / name), duration=2.5, sr=22050, freq=200.0 + 50 * k)
    rows = [[f" {i}\t", f"audio ü/{n}", q] for i, n, q in zip(ids, names, ["Q1", "Q2", "Q3", "Q4", "Q1"])]
    (base / "annotations.csv").write_bytes(encode_table(["song_id", "path", "quadrant"], rows, "\r\n",
                                                       "utf-8-sig"))
    songs = read_songs_table(load_prepare_module("csv").prepare_csv(str(base), str(tmp_path / "prepared")))
    assert [s["song_id"] for s in songs] == ids
    config = FeatureConfig()
    cache = FeatureCache(str(tmp_path / "cache ü"), config)
    frames = cache.build([s["path"] for s in songs], n_jobs=1, progress=False)
    assert len(frames) == len(ids)
    segments, too_short = build_segments(songs, frames, "quadrant", 1.0, config)
    assert not too_short and {s["song_id"] for s in segments} == set(ids)
    dataset = segment_dataset(segments, cache)
    item = dataset[len(dataset) - 1]
    assert item["song_id"] == ids[-1] and tuple(item["feats"].shape) == (44, 128)


# ----------------------------------------------------------------------------- audio reader
EXTENSIONS = ("wav", "mp3", "flac", "ogg")


@pytest.fixture(scope="module")
def encoded():
    """A real 1 s file per format."""
    folder = tempfile.mkdtemp(prefix="sssl-prop-audio-")
    return {ext: Path(write_audio(os.path.join(folder, f"clip.{ext}"), duration=1.0, sr=22050)).read_bytes()
            for ext in EXTENSIONS}


def check_audio_file(path):
    """Both readers: a finite mono float32 signal and a positive duration, or an AudioError naming it."""
    duration, _ = outcome(lambda: audio_duration(str(path)), path)
    assert duration is None or (math.isfinite(duration) and duration > 0)
    y, err = outcome(lambda: load_audio(str(path), sample_rate=22050), path)
    if y is not None:
        assert y.dtype == np.float32 and y.ndim == 1 and y.size > 0 and np.all(np.isfinite(y))
    else:
        assert isinstance(err, AudioError)
    return y


@QUICK
@given(st.sampled_from(EXTENSIONS), st.binary(max_size=3000))
def test_audio_reader_on_random_bytes(ext, data):
    path = scratch() / f"random.{ext}"
    path.write_bytes(data)
    check_audio_file(path)


@QUICK
@given(st.sampled_from(EXTENSIONS), st.floats(0, 1, exclude_max=True))
def test_audio_reader_on_truncated_files(encoded, ext, keep):
    """Truncated MP3/OGG/FLAC/WAV: decoded what is there, or an AudioError naming the file."""
    data = encoded[ext]
    path = scratch() / f"truncated.{ext}"
    path.write_bytes(data[: int(keep * len(data))])
    check_audio_file(path)


@QUICK
@given(st.sampled_from(EXTENSIONS),
       st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=30))
def test_audio_reader_on_corrupted_files(encoded, ext, flips):
    data = bytearray(encoded[ext])
    for where, value in flips:
        data[int(where * len(data))] = value
    path = scratch() / f"corrupt.{ext}"
    path.write_bytes(bytes(data))
    check_audio_file(path)


@QUICK
@given(st.lists(st.integers(0, 2204), min_size=1, max_size=5), st.sampled_from([np.nan, np.inf, -np.inf]),
       st.sampled_from(["FLOAT", "DOUBLE"]), st.integers(1, 2))
def test_nan_or_inf_samples_are_an_audio_error_naming_the_file(positions, bad, subtype, channels):
    path = scratch() / "bad.wav"
    y = np.full((2205, channels), 0.1, dtype=np.float32)
    y[positions, channels - 1] = bad
    sf.write(str(path), y, 22050, subtype=subtype)
    with pytest.raises(AudioError, match="NaN or infinite") as info:
        load_audio(str(path), sample_rate=16000)
    assert str(path) in str(info.value)
    with pytest.raises(AudioError, match=str(path)):
        FeatureCache(str(path.parent / "cache"), FeatureConfig()).build([str(path)], n_jobs=1, progress=False)


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_empty_and_header_only_files_are_audio_errors(tmp_path, ext):
    empty = tmp_path / f"empty.{ext}"
    empty.write_bytes(b"")
    for call in (audio_duration, load_audio):
        with pytest.raises(AudioError, match="empty"):
            call(str(empty))
    header_only = tmp_path / "header.wav"
    sf.write(str(header_only), np.zeros(0, dtype=np.float32), 22050)
    for call in (audio_duration, load_audio):
        with pytest.raises(AudioError, match="header.wav"):
            call(str(header_only))


def test_huge_files_are_handled_from_the_header_without_reading_them(tmp_path):
    """A 5 GiB sparse file of zeros is rejected from its header; a 4 GiB WAV's duration is read from it."""
    junk = tmp_path / "huge.mp3"
    with open(junk, "wb") as f:
        f.truncate(5 * 2**30)
    for call in (audio_duration, load_audio):
        with pytest.raises(AudioError, match="huge.mp3"):
            call(str(junk))
    n = 4 * 2**30 - 100  # bytes of 16-bit mono samples at 22050 Hz
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, 22050, 44100, 2, 16)  # PCM, mono, 22050 Hz, 16 bits
    header = b"RIFF" + struct.pack("<I", 36 + n) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", n)
    wav = tmp_path / "huge.wav"
    with open(wav, "wb") as f:
        f.write(header)
        f.truncate(len(header) + n)
    assert audio_duration(str(wav)) == pytest.approx(n / 2 / 22050)
    y = load_audio(str(wav), sample_rate=22050, start=90_000.0, stop=90_001.0)
    assert y.shape == (22050,) and not y.any()
