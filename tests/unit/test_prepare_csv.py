"""Generic annotations.csv datasets, including ones made from the REAL annotation files."""

import collections
import json
import os
import subprocess
import sys

import pytest
from prepare_fixtures import (
    REPO,
    build_4q,
    build_eim,
    build_pmemo,
    dataset_hparams,
    load_prepare_module,
    put_audio,
    read_raw,
    write_csv,
)

from sssl_brain.dataio.labels import song_class
from sssl_brain.dataio.prepare import REPORT_FILE, SONGS_FILE
from sssl_brain.dataio.songs import read_segment_truth, read_songs_table
from sssl_brain.utils.errors import DataError

csv_prep = load_prepare_module("csv")
csv_prep_hp = dataset_hparams("csv")  # the thresholds and the prepare function the recipe uses
pmemo = load_prepare_module("pmemo")
TRUTH_HEADER = ["song_id", "second", "valence", "arousal", "quadrant"]


def test_thresholds_default_to_half():
    assert csv_prep_hp["prepare"].__name__ == "prepare_csv" and csv_prep_hp["dataset"] == "csv"
    assert (csv_prep_hp["valence_threshold"], csv_prep_hp["arousal_threshold"]) == (0.5, 0.5)


def test_real_pmemo_as_a_generic_csv_matches_the_pmemo_recipe(tmp_path):
    built = build_pmemo(tmp_path, "nested")
    rows = [[r["musicId"], f"chorus/{r['musicId']}.mp3", r["Valence(mean)"], r["Arousal(mean)"]]
            for r in read_raw("pmemo/static_annotations.csv")]
    write_csv(built.root / "annotations.csv", ["song_id", "path", "valence", "arousal"], rows)
    generic = read_songs_table(csv_prep.prepare_csv(str(built.root), str(tmp_path / "g"), value_range=(0, 1)))
    official = read_songs_table(pmemo.prepare_pmemo(str(built.root), str(tmp_path / "p")))
    assert generic == official and len(generic) == 767
    assert sum(song_class(s, "valence") for s in generic) == 562
    report = json.loads((tmp_path / "g" / REPORT_FILE).read_text())
    assert report["skipped"]["unannotated_audio"]["count"] == 27  # found anywhere under the CSV's folder


def test_real_4q_quadrant_only_csv(tmp_path):
    built = build_4q(tmp_path)
    rows = [[song, os.path.relpath(path, built.root), path.parent.name] for song, path in built.audio.items()]
    write_csv(built.root / "annotations.csv", ["song_id", "path", "quadrant"], rows, line_end="\r\n")
    songs = read_songs_table(csv_prep.prepare_csv(str(built.root / "annotations.csv"), str(tmp_path / "s")))
    assert len(songs) == 900 and all(s["valence"] is None and s["arousal"] is None for s in songs)
    assert collections.Counter(s["quadrant"] for s in songs) == {"Q1": 225, "Q2": 225, "Q3": 225, "Q4": 225}
    assert sum(song_class(s, "valence") for s in songs) == 450
    assert sum(song_class(s, "arousal") for s in songs) == 450


def test_real_emomusic_csv_with_value_range(tmp_path):
    built = build_eim(tmp_path)
    raw = read_raw("emomusic/static_annotations.csv")
    rows = [[r["song_id"], str(built.audio[r["song_id"]]), r["mean_valence"], r["mean_arousal"]] for r in raw]
    write_csv(tmp_path / "elsewhere" / "annotations.csv", ["song_id", "path", "valence", "arousal"], rows)
    songs = read_songs_table(csv_prep.prepare_csv(str(tmp_path / "elsewhere"), str(tmp_path / "s"),
                                                  value_range=(1, 9)))
    assert len(songs) == 744  # absolute paths outside the CSV's folder work
    assert sum(song_class(s, "valence", 5, 5) for s in songs) == 385
    with pytest.raises(DataError, match=r"annotations.csv:\d+: valence='\d.*' is outside the range \[0, 1\]"):
        csv_prep.prepare_csv(str(tmp_path / "elsewhere"), str(tmp_path / "s2"), value_range=(0, 1))


@pytest.fixture
def small(tmp_path):
    """Four songs in audio/ with valence/arousal on an arbitrary scale and per-second truth."""
    root = tmp_path / "data"
    for i, d in enumerate((1.5, 3.5, 6.5, 0.5)):
        put_audio(str(root / "audio" / f"s{i}.wav"), d)
    write_csv(root / "annotations.csv", ["song_id", "path", "valence", "arousal"],
              [["s0", "audio/s0.wav", "-2.5", "0.9"], ["s1", "audio/s1.wav", "0.7", "0.1"],
               ["s2", "audio/s2.wav", "0.2", "0.3"], ["s3", "audio/s3.wav", "0.6", "0.6"]])
    write_csv(root / "truth" / "segment_truth.csv", TRUTH_HEADER,
              [["s1", "0", "1", "0", "Q4"], ["s1", "1", "0", "0", "Q3"], ["s0", "0", "0", "1", "Q2"]])
    return root


def test_small_dataset_with_truth_and_short_clip(small, tmp_path, capsys):
    save = tmp_path / "save"
    songs = read_songs_table(csv_prep.prepare_csv(str(small), str(save)))
    assert [(s["song_id"], s["valence"], round(s["duration"], 3)) for s in songs] == [
        ("s0", -2.5, 1.5), ("s1", 0.7, 3.5), ("s2", 0.2, 6.5), ("s3", 0.6, 0.5)]
    assert all(s["path"] == str(small / "audio" / f"{s['song_id']}.wav") for s in songs)
    assert read_segment_truth(str(save / "segment_truth.csv")) == read_segment_truth(
        str(small / "truth" / "segment_truth.csv"))
    report = json.loads((save / REPORT_FILE).read_text())
    assert report["files"] == ["songs.csv", "segment_truth.csv"]
    assert report["segment_summary"]["rows"][0]["short_song_ids"] == ["s3"]
    assert "Songs shorter than 1 s (no segment): s3" in capsys.readouterr().out


@pytest.mark.parametrize("header, rows, message", [
    (["song_id", "path"], [["s0", "audio/s0.wav"]], "annotations.csv: needs at least one label column"),
    (["song_id", "valence"], [["s0", "0.1"]], r"annotations.csv: annotations file lacks column\(s\) path"),
    (["song_id", "path", "valence", "quadrant"], [["s0", "audio/s0.wav", "0.2", ""]],
     "annotations.csv:2: song 's0' has an empty quadrant"),
    (["song_id", "path", "arousal"], [["s0", "audio/s0.wav", "0.2"], ["s1", "audio/s1.wav", "x"]],
     "annotations.csv:3: arousal='x' is not a number"),
    (["song_id", "path", "arousal"], [["s0", "audio/s0.wav", "0.2"], ["s0", "audio/s1.wav", "0.1"]],
     r"annotations.csv:3: duplicate song_id 's0' \(first at .*annotations.csv:2\)"),
    (["song_id", "path", "arousal"], [["s0", "audio/s0.wav", "inf"]], "annotations.csv:2: arousal='inf' is"),
])
def test_bad_annotations_name_the_file_or_row(small, tmp_path, header, rows, message):
    write_csv(small / "annotations.csv", header, rows)
    os.remove(small / "truth" / "segment_truth.csv")
    with pytest.raises(DataError, match=message):
        csv_prep.prepare_csv(str(small), str(tmp_path / "save"))
    assert not (tmp_path / "save").exists()


def test_truth_must_name_known_songs_and_be_valid(small, tmp_path):
    truth = small / "truth" / "segment_truth.csv"
    write_csv(truth, TRUTH_HEADER, [["s9", "0", "1", "1", "Q1"]])
    with pytest.raises(DataError, match=r"segment_truth.csv: song\(s\) not in .*annotations.csv: s9"):
        csv_prep.prepare_csv(str(small), str(tmp_path / "save"))
    write_csv(truth, TRUTH_HEADER, [["s0", "0", "1", "1", "Q1"], ["s0", "1", "2", "1", "Q1"]])
    with pytest.raises(DataError, match=r"segment_truth.csv:3: valence='2' must be 0 or 1"):
        csv_prep.prepare_csv(str(small), str(tmp_path / "save"))
    assert not (tmp_path / "save").exists()


def test_unreadable_and_missing_audio_in_a_csv_dataset(small, tmp_path):
    (small / "audio" / "s1.wav").write_bytes(os.urandom(1000))
    os.remove(small / "audio" / "s2.wav")
    put_audio(str(small / "extra" / "orphan.mp3"), 1.5)
    songs = read_songs_table(csv_prep.prepare_csv(str(small), str(tmp_path / "save")))
    assert [s["song_id"] for s in songs] == ["s0", "s3"]
    skipped = json.loads((tmp_path / "save" / REPORT_FILE).read_text())["skipped"]
    ann = str(small / "annotations.csv")
    assert [i["source"] for i in skipped["unreadable_audio"]["items"]] == [f"{ann}:3"]
    assert [i["source"] for i in skipped["missing_audio"]["items"]] == [f"{ann}:4"]
    assert skipped["unannotated_audio"]["items"] == [{"path": str(small / "extra" / "orphan.mp3")}]


def test_command_line_with_value_range(small, tmp_path):
    script = REPO / "recipes" / "csv" / "csv_prepare.py"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(script), str(small), str(tmp_path / "a"), "--value-range", "0",
                           "1"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert "annotations.csv:2: valence='-2.5' is outside the range [0, 1]" in done.stderr
    assert not (tmp_path / "a").exists()
    done = subprocess.run([sys.executable, str(script), str(small), str(tmp_path / "b")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "csv: 4 songs written" in done.stdout
    assert len(read_songs_table(str(tmp_path / "b" / SONGS_FILE))) == 4
