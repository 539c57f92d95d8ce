"""emoMusic preparation on the REAL annotation files (tab-padded songs_info) with generated audio."""

import collections
import json
import os

import pytest
from prepare_fixtures import (
    build_eim,
    class_counts,
    dataset_hparams,
    expected_segments,
    load_prepare_module,
    put_audio,
    read_raw,
    real,
)

from sssl_brain.dataio.prepare import REPORT_FILE
from sssl_brain.dataio.songs import read_songs_table
from sssl_brain.utils.errors import DataError

eim = load_prepare_module("eim")
eim_hp = dataset_hparams("eim")  # the thresholds and the prepare function the recipe uses


def counts(songs, target):
    return class_counts(songs, target, "eim")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    base = tmp_path_factory.mktemp("eim")
    built = build_eim(base)
    save = base / "save"
    return built, save, read_songs_table(eim.prepare_eim(str(built.root), str(save), strict=True))


def test_real_songs_info_has_tab_padded_cells():
    assert real("emomusic/songs_info.csv").read_bytes().count(b'"\t') > 700
    assert eim_hp["prepare"].__name__ == "prepare_eim" and eim_hp["dataset"] == "eim"
    assert (eim_hp["valence_threshold"], eim_hp["arousal_threshold"]) == (5.0, 5.0)


def test_744_songs_with_the_real_label_balance(prepared):
    built, save, songs = prepared
    raw = read_raw("emomusic/static_annotations.csv")
    high_v = sum(float(r["mean_valence"]) >= 5 for r in raw)
    high_a = sum(float(r["mean_arousal"]) >= 5 for r in raw)
    quadrant_of = {(True, True): "Q1", (False, True): "Q2", (False, False): "Q3", (True, False): "Q4"}
    quads = collections.Counter(quadrant_of[(float(r["mean_valence"]) >= 5, float(r["mean_arousal"]) >= 5)]
                                for r in raw)
    assert (len(raw), high_v, high_a) == (744, 385, 337)
    assert dict(quads) == {"Q1": 265, "Q2": 72, "Q3": 287, "Q4": 120}
    assert len(songs) == 744
    assert counts(songs, "valence") == {"low": 744 - 385, "high": 385}
    assert counts(songs, "arousal") == {"low": 744 - 337, "high": 337}
    assert counts(songs, "quadrant") == {"Q1": 265, "Q2": 72, "Q3": 287, "Q4": 120}
    assert [(s["song_id"], s["valence"], s["arousal"]) for s in songs] == [
        (r["song_id"], float(r["mean_valence"]), float(r["mean_arousal"])) for r in raw]
    # tab-padded file names stripped: every path is clips_45seconds/<id>.mp3 and exists
    assert all(s["path"] == str(built.root / "clips_45seconds" / f"{s['song_id']}.mp3") for s in songs)
    assert all(os.path.isfile(s["path"]) for s in songs)
    report = json.loads((save / REPORT_FILE).read_text())
    assert report["songs"] == 744 and all(v["count"] == 0 for v in report["skipped"].values())
    durations = [built.durations[s["song_id"]] for s in songs]
    assert [r["segments"] for r in report["segment_summary"]["rows"]] == [
        expected_segments(durations, d) for d in range(1, 6)]


def test_csvs_in_annotations_subfolder_and_without_songs_info(prepared, tmp_path):
    _, _, songs = prepared
    built = build_eim(tmp_path / "sub", csv_subfolder="annotations")
    again = read_songs_table(eim.prepare_eim(str(built.root), str(tmp_path / "save_sub")))
    assert [(s["song_id"], s["valence"], s["arousal"]) for s in again] == [
        (s["song_id"], s["valence"], s["arousal"]) for s in songs]
    os.remove(built.songs_info)  # optional: file names default to <song_id>.mp3
    assert len(read_songs_table(eim.prepare_eim(str(built.root), str(tmp_path / "save_noinfo")))) == 744


def test_file_name_of_songs_info_locates_the_clip(tmp_path):
    built = build_eim(tmp_path)
    os.rename(built.audio["2"], built.root / "clips_45seconds" / "two.mp3")
    text = built.songs_info.read_text(encoding="utf-8")
    built.songs_info.write_text(text.replace('2,"\t2.mp3"', '2,"\ttwo.mp3\t"', 1), encoding="utf-8")
    songs = read_songs_table(eim.prepare_eim(str(built.root), str(tmp_path / "save")))
    assert songs[0]["song_id"] == "2" and songs[0]["path"] == str(built.root / "clips_45seconds" / "two.mp3")


def test_extra_clip_out_of_range_and_missing_folder(tmp_path):
    built = build_eim(tmp_path)
    put_audio(str(built.root / "clips_45seconds" / "1001.mp3"), 1.5)
    read_songs_table(eim.prepare_eim(str(built.root), str(tmp_path / "save")))
    report = json.loads((tmp_path / "save" / REPORT_FILE).read_text())
    assert report["skipped"]["unannotated_audio"]["items"] == [
        {"path": str(built.root / "clips_45seconds" / "1001.mp3")}]
    with open(built.annotations, "a") as f:
        f.write("1001,9.5,1,5,1\n")
    with pytest.raises(DataError, match=r"annotations.csv:746: arousal='9.5' is outside the range \[1, 9\]"):
        eim.prepare_eim(str(built.root), str(tmp_path / "save2"))
    assert not (tmp_path / "save2").exists()
    with pytest.raises(DataError, match="not an emoMusic folder"):
        eim.prepare_eim(str(tmp_path), str(tmp_path / "save3"))
