"""4Q (MER_audio_taffc_dataset) preparation on the REAL annotation file (CRLF) with generated audio."""

import collections
import json
import os
import shutil

import pytest
from prepare_fixtures import (
    build_4q,
    class_counts,
    dataset_hparams,
    expected_segments,
    load_prepare_module,
    read_raw,
    real,
)

from sssl_brain.dataio.prepare import REPORT_FILE
from sssl_brain.dataio.songs import read_songs_table
from sssl_brain.utils.errors import DataError

fourq = load_prepare_module("4q")
fourq_hp = dataset_hparams("4q")  # the thresholds and the prepare function the recipe uses


def counts(songs, target):
    return class_counts(songs, target, "4q")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    base = tmp_path_factory.mktemp("fourq")
    built = build_4q(base)
    save = base / "save"
    return built, save, read_songs_table(fourq.prepare_4q(str(built.root), str(save), strict=True))


def test_real_file_is_crlf_and_thresholds():
    assert real("4q/panda_dataset_taffc_annotations.csv").read_bytes().count(b"\r\n") == 901
    assert fourq_hp["prepare"].__name__ == "prepare_4q" and fourq_hp["dataset"] == "4q"
    assert (fourq_hp["valence_threshold"], fourq_hp["arousal_threshold"]) == (0.5, 0.5)


def test_900_songs_225_per_quadrant(prepared):
    built, save, songs = prepared
    raw = read_raw("4q/panda_dataset_taffc_annotations.csv")
    assert collections.Counter(r["Quadrant"] for r in raw) == {"Q1": 225, "Q2": 225, "Q3": 225, "Q4": 225}
    assert len(songs) == 900
    assert counts(songs, "quadrant") == {"Q1": 225, "Q2": 225, "Q3": 225, "Q4": 225}
    assert counts(songs, "valence") == {"low": 450, "high": 450}
    assert counts(songs, "arousal") == {"low": 450, "high": 450}
    assert [(s["song_id"], s["quadrant"]) for s in songs] == [(r["Song"], r["Quadrant"]) for r in raw]
    # valence/arousal written as 1.0/0.0 from the quadrant
    for s in songs:
        assert s["valence"] == (1.0 if s["quadrant"] in ("Q1", "Q4") else 0.0)
        assert s["arousal"] == (1.0 if s["quadrant"] in ("Q1", "Q2") else 0.0)
        assert s["path"] == str(built.audio[s["song_id"]])
        assert os.path.basename(os.path.dirname(s["path"])) == s["quadrant"]


def test_report_has_no_skips_and_the_segment_table(prepared):
    built, save, songs = prepared
    report = json.loads((save / REPORT_FILE).read_text())
    assert report["songs"] == 900 and report["audio_files"] == 900
    assert all(v["count"] == 0 for v in report["skipped"].values())
    durations = [built.durations[s["song_id"]] for s in songs]
    assert [r["segments"] for r in report["segment_summary"]["rows"]] == [
        expected_segments(durations, d) for d in range(1, 6)]


def test_parent_folder_is_accepted(prepared, tmp_path):
    built, _, songs = prepared
    parent = os.path.dirname(built.root)
    again = read_songs_table(fourq.prepare_4q(parent, str(tmp_path / "save")))
    assert again == songs


def test_song_in_the_wrong_quadrant_folder_names_the_row(tmp_path):
    built = build_4q(tmp_path)
    raw = read_raw("4q/panda_dataset_taffc_annotations.csv")
    song, quadrant = raw[9]["Song"], raw[9]["Quadrant"]  # line 11 of the file
    other = "Q1" if quadrant != "Q1" else "Q2"
    moved = built.root / other / f"{song}.mp3"
    shutil.move(built.audio[song], moved)
    with pytest.raises(DataError) as err:
        fourq.prepare_4q(str(built.root), str(tmp_path / "save"))
    assert str(err.value) == (f"{built.annotations}:11: song {song} is annotated {quadrant} but its audio "
                              f"{moved} is in the {other} folder")
    assert not (tmp_path / "save").exists()


def test_song_in_two_folders_and_unknown_quadrant(tmp_path):
    built = build_4q(tmp_path)
    song = next(iter(built.audio))
    copy = built.root / "Q4" / f"{song}.mp3"
    shutil.copyfile(built.audio[song], copy)
    with pytest.raises(DataError, match=f"song {song} is also in"):
        fourq.prepare_4q(str(built.root), str(tmp_path / "save"))
    os.remove(copy)
    lines = built.annotations.read_bytes().split(b"\r\n")
    lines[5] = lines[5].replace(b",Q", b",Q5 #")
    built.annotations.write_bytes(b"\r\n".join(lines))
    with pytest.raises(DataError, match=r"taffc_annotations.csv:6: Quadrant='Q5 #\d' is not one"):
        fourq.prepare_4q(str(built.root), str(tmp_path / "save"))
    assert not (tmp_path / "save").exists()


def test_missing_and_extra_clips_are_counted(tmp_path):
    built = build_4q(tmp_path)
    gone = read_raw("4q/panda_dataset_taffc_annotations.csv")[0]["Song"]  # line 2
    os.remove(built.audio[gone])
    shutil.copyfile(built.audio[list(built.audio)[1]], built.root / "Q3" / "MT9999999999.mp3")
    songs = read_songs_table(fourq.prepare_4q(str(built.root), str(tmp_path / "save")))
    assert len(songs) == 899 and gone not in {s["song_id"] for s in songs}
    skipped = json.loads((tmp_path / "save" / REPORT_FILE).read_text())["skipped"]
    assert skipped["missing_audio"]["items"] == [{"source": f"{built.annotations}:2", "song_id": gone,
                                                  "path": str(built.audio[gone])}]
    assert skipped["unannotated_audio"]["items"] == [{"path": str(built.root / "Q3" / "MT9999999999.mp3")}]
    with pytest.raises(DataError, match="strict=True and 2 problem"):
        fourq.prepare_4q(str(built.root), str(tmp_path / "strict"), strict=True)


def test_not_a_4q_folder(tmp_path):
    with pytest.raises(DataError, match="not a 4Q folder: panda_dataset_taffc_annotations.csv not found"):
        fourq.prepare_4q(str(tmp_path), str(tmp_path / "save"))
    name = "panda_dataset_taffc_annotations.csv"
    shutil.copyfile(real(f"4q/{name}"), tmp_path / name)
    with pytest.raises(DataError, match="none of the quadrant folders Q1, Q2, Q3, Q4 exists"):
        fourq.prepare_4q(str(tmp_path), str(tmp_path / "save"))
