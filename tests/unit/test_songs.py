"""The generic half of data preparation: validation, audio pairing, skips, summary, tables."""

import json
import logging
import os

import pytest
from prepare_fixtures import expected_segments, put_audio, write_csv

from sssl_brain.dataio.prepare import (
    OPTIONS_FILE,
    REPORT_FILE,
    SONGS_FILE,
    find_audio_files,
    format_segment_summary,
    prepare_songs_table,
    segment_summary,
    skip_if_prepared,
    write_songs_table,
)
from sssl_brain.dataio.songs import (
    SONG_COLUMNS,
    read_annotation_csv,
    read_segment_truth,
    read_songs_table,
    validate_entries,
)
from sssl_brain.utils.errors import ConfigError, DataError


def entry(song_id, path, valence="0.6", arousal="0.4", quadrant=None, line=None):
    return {"song_id": song_id, "path": str(path), "valence": valence, "arousal": arousal,
            "quadrant": quadrant, "source": f"ann.csv:{line if line is not None else song_id}"}


@pytest.fixture
def dataset(tmp_path):
    """Three annotated clips (1.5, 3.5, 6.5 s) in tmp_path/audio."""
    folder = tmp_path / "audio"
    paths = {sid: put_audio(str(folder / f"{sid}.mp3"), d) for sid, d in (("a", 1.5), ("b", 3.5), ("c", 6.5))}
    entries = [entry(sid, p, line=i + 2) for i, (sid, p) in enumerate(paths.items())]
    return folder, paths, entries


def write(entries, folder, save, **kw):
    return write_songs_table(entries, find_audio_files(str(folder), recursive=True), str(save), "toy",
                             value_range=kw.pop("value_range", (0, 1)), **kw)


def report_of(save):
    with open(os.path.join(save, REPORT_FILE)) as f:
        return json.load(f)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("cells, message", [
    ({"valence": "high"}, "ann.csv:7: valence='high' is not a number"),
    ({"arousal": "nan"}, "ann.csv:7: arousal='nan' is not a finite number"),
    ({"valence": "inf"}, "ann.csv:7: valence='inf' is not a finite number"),
    ({"valence": "1.2"}, "ann.csv:7: valence='1.2' is outside the range [0, 1]"),
    ({"arousal": "-0.01"}, "ann.csv:7: arousal='-0.01' is outside the range [0, 1]"),
    ({"quadrant": "Q5"}, "ann.csv:7: quadrant='Q5' is not one of Q1, Q2, Q3, Q4"),
    ({"song_id": " "}, "ann.csv:7: empty song_id"),
    ({"song_id": "../x"}, "ann.csv:7: song_id='../x' must not hold path separators"),
    ({"valence": "", "arousal": ""}, "ann.csv:7: song 'x' has no valence, arousal or quadrant"),
    ({"path": ""}, "ann.csv:7: song 'x' has no audio path"),
])
def test_validate_rejects_bad_rows_naming_them(cells, message):
    row = {**entry("x", "/d/x.mp3", line=7), **cells}
    with pytest.raises(DataError) as err:
        validate_entries([entry("ok", "/d/ok.mp3", line=6), row], (0, 1))
    assert message in str(err.value)


def test_validate_names_both_rows_of_a_duplicate_id_and_of_a_shared_file():
    with pytest.raises(DataError, match=r"ann.csv:9: duplicate song_id 'a' \(first at ann.csv:3\)"):
        validate_entries([entry("a", "/d/a.mp3", line=3), entry("b", "/d/b.mp3", line=4),
                          entry("a", "/d/c.mp3", line=9)])
    with pytest.raises(DataError, match=r"ann.csv:4: song 'b' uses the audio file /d/a.mp3, already used by "
                                        r"the row at ann.csv:3"):
        validate_entries([entry("a", "/d/a.mp3", line=3), entry("b", "/d/a.mp3", line=4)])


def test_validate_normalises_values_and_checks_required_columns():
    rows = validate_entries([entry("a", "rel/a.mp3", valence=" 0.25 ", arousal=0.75, quadrant="q3")], (0, 1))
    assert rows[0]["valence"] == 0.25 and rows[0]["arousal"] == 0.75 and rows[0]["quadrant"] == "Q3"
    assert rows[0]["path"] == os.path.abspath("rel/a.mp3")
    # no range: any finite number
    assert validate_entries([entry("a", "/a.mp3", valence="-3.5", arousal="120")])[0]["arousal"] == 120.0
    with pytest.raises(DataError, match="ann.csv:a: song 'a' has an empty arousal"):
        validate_entries([entry("a", "/a.mp3", arousal="")], required=("valence", "arousal"))


# ---------------------------------------------------------------- writing and skips


def test_writes_table_with_measured_durations_and_report(dataset, tmp_path, capsys):
    folder, paths, entries = dataset
    save = tmp_path / "save"
    songs_csv = write(entries, folder, save, options={"data_folder": "x"})
    assert songs_csv == str(save / SONGS_FILE)
    with open(songs_csv) as f:
        assert f.readline().strip() == ",".join(SONG_COLUMNS)
    songs = read_songs_table(songs_csv)
    assert [s["song_id"] for s in songs] == ["a", "b", "c"]
    assert [s["duration"] for s in songs] == pytest.approx([1.5, 3.5, 6.5], abs=1e-3)
    assert [s["path"] for s in songs] == [paths[k] for k in "abc"]
    assert all(s["valence"] == 0.6 and s["arousal"] == 0.4 and s["quadrant"] is None for s in songs)
    report = report_of(save)
    assert report["songs"] == 3 and report["annotation_rows"] == 3 and report["audio_files"] == 3
    assert {k: v["count"] for k, v in report["skipped"].items()} == {
        "missing_audio": 0, "unannotated_audio": 0, "unreadable_audio": 0}
    with open(save / OPTIONS_FILE) as f:
        assert json.load(f) == {"data_folder": "x"}
    out = capsys.readouterr().out
    assert "toy: 3 songs written" in out and "| toy | 3 | 1 s (0 s) | 10 | 0 |" in out


def test_unreadable_zero_length_missing_and_unannotated_audio_are_counted_skips(dataset, tmp_path, caplog):
    folder, paths, entries = dataset
    broken = folder / "d.mp3"
    broken.write_bytes(os.urandom(3000))
    empty = folder / "e.mp3"
    empty.write_bytes(b"")
    put_audio(str(folder / "sub" / "orphan.wav"), 1.5)
    entries = entries + [entry("d", broken, line=5), entry("e", empty, line=6),
                         entry("f", folder / "f.mp3", line=7)]
    save = tmp_path / "save"
    with caplog.at_level(logging.WARNING, logger="sssl_brain.dataio.prepare"):
        write(entries, folder, save)
    assert [s["song_id"] for s in read_songs_table(str(save / SONGS_FILE))] == ["a", "b", "c"]
    skipped = report_of(save)["skipped"]
    assert skipped["missing_audio"]["count"] == 1
    assert skipped["missing_audio"]["items"] == [{"source": "ann.csv:7", "song_id": "f",
                                                  "path": str(folder / "f.mp3")}]
    assert skipped["unreadable_audio"]["count"] == 2
    assert [(i["source"], i["path"]) for i in skipped["unreadable_audio"]["items"]] == [
        ("ann.csv:5", str(broken)), ("ann.csv:6", str(empty))]
    assert "empty (0 bytes)" in skipped["unreadable_audio"]["items"][1]["error"]
    orphan = str(folder / "sub" / "orphan.wav")
    assert skipped["unannotated_audio"] == {"count": 1, "items": [{"path": orphan}]}
    log = caplog.text
    assert f"ann.csv:7: song 'f' skipped: audio file {folder / 'f.mp3'} not found" in log
    assert f"ann.csv:5: song 'd' skipped: {broken}: cannot read audio" in log
    assert f"ann.csv:6: song 'e' skipped: {empty}: audio file is empty" in log
    assert f"have no annotation row and are left out: {folder / 'sub' / 'orphan.wav'}" in log


@pytest.mark.parametrize("problem, message", [
    ("missing", "ann.csv:5: audio file {folder}/x.mp3 not found"),
    ("unreadable", "ann.csv:5: {folder}/x.mp3: cannot read audio"),
    ("empty", "ann.csv:5: {folder}/x.mp3: audio file is empty"),
    ("unannotated", "{folder}/x.mp3: no annotation row"),
])
def test_strict_turns_each_skip_into_an_error_and_writes_nothing(dataset, tmp_path, problem, message):
    folder, _, entries = dataset
    target = folder / "x.mp3"
    if problem == "unreadable":
        target.write_bytes(os.urandom(2000))
    elif problem == "empty":
        target.write_bytes(b"")
    elif problem == "unannotated":
        put_audio(str(target), 1.5)
    if problem != "unannotated":
        entries = entries + [entry("x", target, line=5)]
    save = tmp_path / "save"
    write(entries, folder, tmp_path / "lenient")  # not strict: a counted skip
    assert report_of(tmp_path / "lenient")["songs"] == 3
    with pytest.raises(DataError) as err:
        write(entries, folder, save, strict=True)
    assert "strict=True and 1 problem(s)" in str(err.value)
    assert message.format(folder=folder) in str(err.value)
    assert not save.exists()


def test_invalid_rows_write_nothing_and_keep_a_previous_table(dataset, tmp_path):
    folder, paths, entries = dataset
    save = tmp_path / "save"
    write(entries, folder, save, options={"v": 1})
    before = (save / SONGS_FILE).read_bytes()
    bad = entries + [entry("a", paths["b"], line=9)]
    with pytest.raises(DataError, match="ann.csv:9: duplicate song_id 'a' .first at ann.csv:2"):
        write(bad, folder, save, options={"v": 2})
    assert (save / SONGS_FILE).read_bytes() == before
    assert json.loads((save / OPTIONS_FILE).read_text()) == {"v": 1}
    fresh = tmp_path / "fresh"
    with pytest.raises(DataError):
        write(bad, folder, fresh)
    assert not fresh.exists()


def test_no_song_left_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"toy: no song left to write .1 annotation rows; ann.csv:2: audio"):
        write([entry("a", tmp_path / "a.mp3", line=2)], tmp_path, tmp_path / "save")
    assert not (tmp_path / "save").exists()


# ---------------------------------------------------------------- summary (paper Table 1)


def test_summary_counts_segments_and_reports_short_clips(dataset, tmp_path, capsys):
    folder, paths, entries = dataset
    tiny = put_audio(str(folder / "tiny.mp3"), 0.5)
    save = tmp_path / "save"
    write(entries + [entry("tiny", tiny, line=5)], folder, save)
    rows = report_of(save)["segment_summary"]["rows"]
    durations = [1.5, 3.5, 6.5, 0.5]
    assert [r["seg_dur"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["overlap"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["segments"] for r in rows] == [expected_segments(durations, d) for d in range(1, 6)] \
        == [1 + 3 + 6, 2 + 5, 1 + 4, 3, 2]
    assert [r["short_song_ids"] for r in rows] == [["tiny"], ["a", "tiny"], ["a", "tiny"], ["a", "b", "tiny"],
                                                   ["a", "b", "tiny"]]
    out = capsys.readouterr().out
    assert "| toy | 4 | 1 s (0 s) | 10 | 1 |" in out and "|  |  | 5 s (4 s) | 2 | 3 |" in out
    assert "Songs shorter than 1 s (no segment): tiny" in out
    assert "Songs shorter than 5 s (no segment): a, b, tiny" in out
    # the short clip is still a song of the table (nothing dropped silently)
    assert len(read_songs_table(str(save / SONGS_FILE))) == 4


def test_summary_is_reusable_with_other_settings():
    songs = [{"song_id": "s", "duration": 45.0}, {"song_id": "t", "duration": 20.5}]
    rows = segment_summary(songs, (1, 3), max_duration=30)
    assert [r["segments"] for r in rows] == [30 + 20, 28 + 18]
    rows = segment_summary(songs, (2,), overlap=0.0)
    assert rows[0]["segments"] == 22 + 10 and rows[0]["overlap"] == 0
    text = format_segment_summary(rows, "X", 2)
    assert text.splitlines()[2] == "| X | 2 | 2 s (0 s) | 32 | 0 |"


# ---------------------------------------------------------------- reading tables


def test_read_songs_table_checks_columns_and_rows(tmp_path):
    path = tmp_path / "songs.csv"
    with pytest.raises(DataError, match=f"{path}: songs table not found"):
        read_songs_table(str(path))
    write_csv(path, ["song_id", "path", "valence"], [["a", "/a.mp3", "0.3"]])
    with pytest.raises(DataError, match=f"{path}: songs table lacks column.s. duration, arousal, quadrant"):
        read_songs_table(str(path))
    cases = [
        (["a", "/a.mp3", "0", "0.5", "0.5", ""], "songs.csv:2: song 'a': duration='0' must be a positive"),
        (["a", "/a.mp3", "x", "0.5", "0.5", ""], "songs.csv:2: duration='x' is not a number"),
        (["a", "/a.mp3", "3", "", "", "Q9"], "songs.csv:2: quadrant='Q9' is not one of"),
        (["a", "/a.mp3", "3", "", "", ""], "songs.csv:2: song 'a' has no valence, arousal or quadrant"),
        (["a", "", "3", "0.1", "", ""], "songs.csv:2: song 'a' has no path"),
    ]
    for row, message in cases:
        write_csv(path, SONG_COLUMNS, [row])
        with pytest.raises(DataError, match=message):
            read_songs_table(str(path))
    write_csv(path, SONG_COLUMNS, [["a", "/a.mp3", "3", "0.1", "", ""], ["a", "/b.mp3", "3", "0.2", "", ""]])
    with pytest.raises(DataError, match=r"songs.csv:3: duplicate song_id 'a' \(first at .*songs.csv:2\)"):
        read_songs_table(str(path))
    write_csv(path, SONG_COLUMNS, [])
    with pytest.raises(DataError, match="songs table has no rows"):
        read_songs_table(str(path))


def test_read_annotation_csv_handles_crlf_bom_tabs_and_extra_cells(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(b'\xef\xbb\xbf"id","name"\r\n1,"\tx y\t"\r\n\r\n2,z\r\n')
    rows = read_annotation_csv(str(path), ["id", "name"])
    assert [(s.rsplit(":", 1)[1], r) for s, r in rows] == [("2", {"id": "1", "name": "x y"}),
                                                          ("4", {"id": "2", "name": "z"})]
    path.write_bytes(b"id,name\n1,a,extra\n")
    with pytest.raises(DataError, match=r"a.csv:2: more cells than the 2 header columns"):
        read_annotation_csv(str(path), ["id"])
    path.write_bytes(b"id,name\n1,\x93quoted\x94\n")
    with pytest.raises(DataError, match=r"a.csv: annotation file is not valid UTF-8"):
        read_annotation_csv(str(path), ["id"])


def test_read_segment_truth(tmp_path):
    path = tmp_path / "truth" / "segment_truth.csv"
    header = ["song_id", "second", "valence", "arousal", "quadrant"]
    write_csv(path, header, [["s1", "0", "1", "1", "Q1"], ["s1", "1", "0", "0", "Q3"],
                             ["s2", "3", "1", "0", "Q4"]])
    truth = read_segment_truth(str(path))
    assert truth == {"s1": {0: {"valence": 1, "arousal": 1, "quadrant": "Q1"},
                            1: {"valence": 0, "arousal": 0, "quadrant": "Q3"}},
                     "s2": {3: {"valence": 1, "arousal": 0, "quadrant": "Q4"}}}
    cases = [
        (["s1", "1.5", "1", "1", "Q1"], "segment_truth.csv:3: second='1.5' must be a whole number"),
        (["s1", "-1", "1", "1", "Q1"], "segment_truth.csv:3: second='-1' must be a whole number"),
        (["s1", "2", "0.7", "1", "Q1"], "segment_truth.csv:3: valence='0.7' must be 0 or 1"),
        (["s1", "2", "1", "", "Q1"], "segment_truth.csv:3: arousal='' must be 0 or 1"),
        (["s1", "2", "1", "1", "Q7"], "segment_truth.csv:3: quadrant='Q7' is not one of"),
        (["s1", "2", "1", "1", "Q2"], "truth.csv:3: quadrant='Q2' does not match valence=1, arousal=1"),
        (["s1", "0", "1", "1", "Q1"], r"truth.csv:3: duplicate row for song 's1' second 0 \(first at "),
    ]
    for row, message in cases:
        write_csv(path, header, [["s1", "0", "1", "1", "Q1"], row])
        with pytest.raises(DataError, match=message):
            read_segment_truth(str(path))
    write_csv(path, header[:4], [["s1", "0", "1", "1"]])
    with pytest.raises(DataError, match=f"{path}: segment truth file lacks column.s. quadrant"):
        read_segment_truth(str(path))


# ---------------------------------------------------------------- skip if done


def test_prepare_skips_work_already_done_and_redoes_it_when_options_change(dataset, tmp_path, caplog):
    folder, _, entries = dataset
    calls = []

    def parse(data_folder):
        calls.append(data_folder)
        return entries, find_audio_files(data_folder)

    save = str(tmp_path / "save")
    path = prepare_songs_table("toy", str(folder), save, parse, value_range=(0, 1))
    assert calls == [str(folder)] and os.path.isfile(path)
    stamp = os.stat(path).st_mtime_ns
    with caplog.at_level(logging.INFO, logger="sssl_brain.dataio.prepare"):
        assert prepare_songs_table("toy", str(folder), save, parse, value_range=(0, 1)) == path
    assert "skipping preparation" in caplog.text
    assert calls == [str(folder)] and os.stat(path).st_mtime_ns == stamp
    options = json.loads(open(os.path.join(save, OPTIONS_FILE)).read())
    assert options["data_folder"] == os.path.abspath(folder) and options["value_range"] == [0.0, 1.0]
    assert skip_if_prepared(save, options)
    # a different option (strict) prepares again
    prepare_songs_table("toy", str(folder), save, parse, value_range=(0, 1), strict=True)
    assert len(calls) == 2
    # a corrupt options file, or a missing songs.csv, means "not done"
    open(os.path.join(save, OPTIONS_FILE), "w").write("{not json")
    assert not skip_if_prepared(save, options)
    os.remove(path)
    prepare_songs_table("toy", str(folder), save, parse, value_range=(0, 1))
    assert len(calls) == 3


def test_skip_prep(dataset, tmp_path):
    folder, _, entries = dataset

    def parse(data_folder):
        raise AssertionError("skip_prep must not parse")

    save = tmp_path / "save"
    with pytest.raises(ConfigError, match=f"skip_prep=True but {save / SONGS_FILE} does not exist"):
        prepare_songs_table("toy", str(folder), str(save), parse, skip_prep=True)
    write(entries, folder, save)
    assert prepare_songs_table("toy", "/nowhere", str(save), parse, skip_prep=True) == str(save / SONGS_FILE)


def test_missing_data_folder(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'nope'}: toy data folder not found"):
        prepare_songs_table("toy", str(tmp_path / "nope"), str(tmp_path / "save"), lambda f: ([], []))

