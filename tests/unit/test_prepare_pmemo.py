"""PMEmo2019 preparation on the REAL annotation files (both layouts) with generated audio."""

import collections
import json
import logging
import os
import subprocess
import sys

import pytest
from prepare_fixtures import (
    REPO,
    build_pmemo,
    class_counts,
    dataset_hparams,
    expected_segments,
    load_prepare_module,
    read_raw,
)

from sssl_brain.dataio.prepare import OPTIONS_FILE, REPORT_FILE, SONGS_FILE
from sssl_brain.dataio.songs import read_songs_table
from sssl_brain.utils.errors import DataError

pmemo = load_prepare_module("pmemo")
pmemo_hp = dataset_hparams("pmemo")  # the thresholds and the prepare function the recipe uses
V_COL, A_COL = "Valence(mean)", "Arousal(mean)"


def counts(songs, target):
    return class_counts(songs, target, "pmemo")


@pytest.fixture(scope="module")
def nested(tmp_path_factory):
    base = tmp_path_factory.mktemp("pmemo_nested")
    built = build_pmemo(base, "nested")
    save = base / "save"
    songs_csv = pmemo.prepare_pmemo(str(built.root), str(save))
    return built, save, read_songs_table(songs_csv)


def test_thresholds():
    assert pmemo_hp["prepare"].__name__ == "prepare_pmemo" and pmemo_hp["dataset"] == "pmemo"
    assert (pmemo_hp["valence_threshold"], pmemo_hp["arousal_threshold"]) == (0.5, 0.5)


def test_official_layout_gives_767_songs_with_the_real_label_balance(nested):
    built, save, songs = nested
    raw = read_raw("pmemo/static_annotations.csv")
    # independent counts, straight from the raw CSV
    high_v = sum(float(r[V_COL]) >= 0.5 for r in raw)
    high_a = sum(float(r[A_COL]) >= 0.5 for r in raw)
    quads = collections.Counter({(True, True): "Q1", (False, True): "Q2", (False, False): "Q3",
                                 (True, False): "Q4"}[(float(r[V_COL]) >= 0.5, float(r[A_COL]) >= 0.5)]
                                for r in raw)
    assert (len(raw), high_v, high_a) == (767, 562, 578)
    assert dict(quads) == {"Q1": 505, "Q2": 73, "Q3": 132, "Q4": 57}
    assert len(songs) == 767
    assert counts(songs, "valence") == {"low": 767 - 562, "high": 562}
    assert counts(songs, "arousal") == {"low": 767 - 578, "high": 578}
    assert counts(songs, "quadrant") == {"Q1": 505, "Q2": 73, "Q3": 132, "Q4": 57}
    # raw values kept, row order of the annotation file, audio paths absolute and real
    assert [s["song_id"] for s in songs] == [r["musicId"] for r in raw]
    assert [(s["valence"], s["arousal"]) for s in songs] == [(float(r[V_COL]), float(r[A_COL])) for r in raw]
    assert all(s["quadrant"] is None for s in songs)
    assert all(s["path"] == str(built.audio[s["song_id"]]) and os.path.isabs(s["path"]) for s in songs)
    assert all(abs(s["duration"] - built.durations[s["song_id"]]) < 1e-3 for s in songs)


def test_report_counts_the_27_unannotated_clips(nested):
    built, save, songs = nested
    report = json.loads((save / REPORT_FILE).read_text())
    metadata_ids = {r["musicId"] for r in read_raw("pmemo/metadata.csv")}
    annotated = {r["musicId"] for r in read_raw("pmemo/static_annotations.csv")}
    assert len(metadata_ids) == 794 and len(metadata_ids - annotated) == 27
    assert report["songs"] == 767 and report["audio_files"] == 794
    assert report["skipped"]["missing_audio"]["count"] == 0
    assert report["skipped"]["unreadable_audio"]["count"] == 0
    unannotated = report["skipped"]["unannotated_audio"]
    assert unannotated["count"] == 27
    assert sorted(os.path.basename(i["path"]) for i in unannotated["items"]) == sorted(
        f"{m}.mp3" for m in metadata_ids - annotated)


def test_summary_table_counts_segments_per_duration(nested):
    built, save, songs = nested
    rows = json.loads((save / REPORT_FILE).read_text())["segment_summary"]["rows"]
    durations = [built.durations[s["song_id"]] for s in songs]
    assert [r["segments"] for r in rows] == [expected_segments(durations, d) for d in range(1, 6)]
    assert [r["short_songs"] for r in rows] == [sum(d < k for d in durations) for k in range(1, 6)]
    assert rows[0]["short_songs"] == 0 and rows[4]["short_songs"] > 0


def test_flattened_layout_and_parent_folder_give_the_same_table(nested, tmp_path):
    _, save, songs = nested
    flat = build_pmemo(tmp_path / "flat", "flat")
    flat_songs = read_songs_table(pmemo.prepare_pmemo(str(flat.root), str(tmp_path / "save_flat")))
    strip = [{k: v for k, v in s.items() if k != "path"} for s in songs]
    assert [{k: v for k, v in s.items() if k != "path"} for s in flat_songs] == strip
    assert all(os.path.dirname(s["path"]) == str(flat.root) for s in flat_songs)
    report = json.loads((tmp_path / "save_flat" / REPORT_FILE).read_text())
    assert report["skipped"]["unannotated_audio"]["count"] == 27
    # data_folder = the folder that holds PMEmo2019/
    parent = pmemo.prepare_pmemo(str(tmp_path / "flat"), str(tmp_path / "save_parent"))
    parent_songs = read_songs_table(parent)
    assert [s["song_id"] for s in parent_songs] == [s["song_id"] for s in songs]


def test_not_a_pmemo_folder(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError, match=r"data: not a PMEmo2019 folder: found neither annotations/static"):
        pmemo.prepare_pmemo(str(tmp_path / "data"), str(tmp_path / "save"))
    built = build_pmemo(tmp_path, "nested")
    for clip in built.audio.values():
        os.remove(clip)
    os.rmdir(built.root / "chorus")
    with pytest.raises(DataError, match=r"chorus: PMEmo2019 audio folder not found"):
        pmemo.prepare_pmemo(str(built.root), str(tmp_path / "save"))
    assert not (tmp_path / "save").exists()


def test_strict_fails_on_the_unannotated_clips(tmp_path):
    built = build_pmemo(tmp_path, "nested")
    with pytest.raises(DataError, match=r"strict=True and 27 problem\(s\).*chorus/\d+\.mp3: no annotation"):
        pmemo.prepare_pmemo(str(built.root), str(tmp_path / "save"), strict=True)
    assert not (tmp_path / "save").exists()


def test_unreadable_empty_and_missing_clips_are_skipped_and_named(tmp_path, caplog):
    built = build_pmemo(tmp_path, "nested")
    ann = str(built.annotations)
    raw_ids = [r["musicId"] for r in read_raw("pmemo/static_annotations.csv")]
    broken, empty, missing = raw_ids[0], raw_ids[1], raw_ids[2]  # lines 2, 3, 4 of the file
    built.audio[broken].write_bytes(os.urandom(5000))
    built.audio[empty].write_bytes(b"")
    os.remove(built.audio[missing])
    with caplog.at_level(logging.WARNING, logger="sssl_brain.dataio.prepare"):
        songs = read_songs_table(pmemo.prepare_pmemo(str(built.root), str(tmp_path / "save")))
    assert len(songs) == 764 and not {broken, empty, missing} & {s["song_id"] for s in songs}
    skipped = json.loads((tmp_path / "save" / REPORT_FILE).read_text())["skipped"]
    assert skipped["unreadable_audio"]["count"] == 2
    assert [(i["source"], i["path"]) for i in skipped["unreadable_audio"]["items"]] == [
        (f"{ann}:2", str(built.audio[broken])), (f"{ann}:3", str(built.audio[empty]))]
    assert skipped["missing_audio"]["items"] == [{"source": f"{ann}:4", "song_id": missing,
                                                  "path": str(built.audio[missing])}]
    assert skipped["unannotated_audio"]["count"] == 27
    assert f"{ann}:4: song '{missing}' skipped: audio file {built.audio[missing]} not found" in caplog.text
    assert f"{ann}:2: song '{broken}' skipped: {built.audio[broken]}: cannot read audio" in caplog.text
    assert f"{ann}:3: song '{empty}' skipped: {built.audio[empty]}: audio file is empty" in caplog.text


def append_line(path, line):
    with open(path, "a", encoding="utf-8", newline="") as f:
        f.write(line + "\n")


def replace_line(path, number, line):
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[number - 1] = line
    path.write_text("\n".join(lines), encoding="utf-8")


BAD_ROWS = [
    (lambda p: append_line(p, "1,0.3,0.3"),
     r"static_annotations.csv:769: duplicate song_id '1' \(first at .*static_annotations.csv:2\)"),
    (lambda p: replace_line(p, 5, "7,0.5,n/a"), r"static_annotations.csv:5: valence='n/a' is not a number"),
    (lambda p: replace_line(p, 10, "20,1.25,0.5"),
     r"static_annotations.csv:10: arousal='1.25' is outside the range \[0, 1\]"),
    (lambda p: replace_line(p, 10, "20,NaN,0.5"), r"annotations.csv:10: arousal='NaN' is not a finite"),
    (lambda p: replace_line(p, 1, "musicId,Arousal,Valence(mean)"),
     r"static_annotations.csv: PMEmo static annotations lacks column\(s\) Arousal\(mean\)"),
]


@pytest.mark.parametrize("change, message", BAD_ROWS,
                         ids=["duplicate", "non-numeric", "range", "nan", "header"])
def test_bad_annotation_rows_name_the_row_and_write_nothing(tmp_path, change, message):
    built = build_pmemo(tmp_path, "nested")
    change(built.annotations)  # a modified COPY of the real file
    save = tmp_path / "save"
    with pytest.raises(DataError, match=message):
        pmemo.prepare_pmemo(str(built.root), str(save))
    assert not save.exists()


def test_metadata_file_names_locate_the_audio(tmp_path):
    built = build_pmemo(tmp_path, "nested")
    os.rename(built.audio["1"], built.root / "chorus" / "first.mp3")
    replace_line(built.metadata, 2, '1,first.mp3,Good Drank,2 Chainz,"Def Jam",32.1,02:35,03:05')
    songs = read_songs_table(pmemo.prepare_pmemo(str(built.root), str(tmp_path / "save")))
    assert songs[0]["song_id"] == "1" and songs[0]["path"] == str(built.root / "chorus" / "first.mp3")
    assert len(songs) == 767


def test_second_call_skips_preparation(tmp_path, caplog):
    built = build_pmemo(tmp_path, "nested")
    save = tmp_path / "save"
    path = pmemo.prepare_pmemo(str(built.root), str(save))
    stamp = os.stat(path).st_mtime_ns
    options = json.loads((save / OPTIONS_FILE).read_text())
    assert options["dataset"] == "PMEmo2019" and options["data_folder"] == str(built.root)
    built.annotations.write_text("broken")  # would fail if it were read again
    with caplog.at_level(logging.INFO, logger="sssl_brain.dataio.prepare"):
        assert pmemo.prepare_pmemo(str(built.root), str(save)) == path
    assert "skipping preparation" in caplog.text and os.stat(path).st_mtime_ns == stamp
    assert pmemo.prepare_pmemo("/nowhere", str(save), skip_prep=True) == str(save / SONGS_FILE)
    with pytest.raises(DataError, match="static_annotations.csv: PMEmo static annotations lacks column"):
        pmemo.prepare_pmemo(str(built.root), str(save), strict=True)  # other options: prepared again


def test_command_line(tmp_path):
    built = build_pmemo(tmp_path, "flat")
    script = REPO / "recipes" / "pmemo" / "pmemo_prepare.py"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(script), str(built.root), str(tmp_path / "save")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "PMEmo2019: 767 songs written" in done.stdout and "| PMEmo2019 | 767 | 1 s (0 s) |" in done.stdout
    assert len(read_songs_table(str(tmp_path / "save" / SONGS_FILE))) == 767
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "nope"), str(tmp_path / "save2")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and "nope: PMEmo2019 data folder not found" in done.stderr
