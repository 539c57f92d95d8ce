"""sssl-classify: table, JSON and CSV outputs, plots, folders, bad files and exit codes."""

import csv
import io
import json

import matplotlib.image
import pytest
from audio_fixtures import write_audio

from sssl_brain.inference.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:song classifier")
CLASSES = ["Q1", "Q2", "Q3", "Q4"]


@pytest.fixture
def songs(tmp_path):
    folder = tmp_path / "songs"
    paths = [write_audio(str(folder / "a.mp3"), duration=3.5, sr=44100, channels=2),
             write_audio(str(folder / "b.flac"), duration=2.5, sr=48000),
             write_audio(str(folder / "sub" / "c.ogg"), duration=4.5, sr=22050, seed=2)]
    (folder / "notes.txt").write_text("not audio")
    return folder, paths


def test_table_on_the_terminal(model_dir, songs, capsys):
    folder, paths = songs
    assert main([str(model_dir), paths[0], paths[1], "--no_progress"]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines[0].split() == ["file", "label", "majority", "mean"] + [f"p_{c}" for c in CLASSES] + [
        "segments"]
    assert len(lines) == 3
    assert main([str(model_dir), paths[0], paths[1], "--json", "--no_progress"]) == 0
    expected = json.loads(capsys.readouterr().out)["results"]
    for line, path, n_segments, result in zip(lines[1:], paths, (3, 2), expected):
        cells = line.split()
        assert cells[0] == path and cells[-1] == str(n_segments)
        # the SVM's decision, then the majority vote's and the mean probability's, as in the JSON
        assert cells[1:4] == [result["label"], result["majority"], result["mean"]]
        assert all(c in CLASSES for c in cells[1:4])
        assert abs(sum(float(c) for c in cells[4:8]) - 1.0) < 3e-3
        probs = [result["probs"][c] for c in CLASSES]
        assert [float(c) for c in cells[4:8]] == pytest.approx(probs, abs=5e-4)
    assert "2 file(s) classified, 0 failed" in err


def test_json_to_stdout_with_a_bad_and_a_short_file(model_dir, songs, tmp_path, capsys):
    folder, paths = songs
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"garbage")
    short = write_audio(str(tmp_path / "short.wav"), duration=0.4)
    assert main([str(model_dir), paths[0], str(bad), short, str(tmp_path / "missing.mp3"), "--json"]) == 1
    out, err = capsys.readouterr()
    payload = json.loads(out)  # stdout holds the JSON only
    assert payload["class_names"] == CLASSES
    [result] = payload["results"]
    assert result["file"] == paths[0] and result["label"] in CLASSES and result["n_segments"] == 3
    assert set(result["probs"]) == set(CLASSES) and set(result["aggregations"]) == {"svm", "majority", "mean"}
    # the three decisions side by side: SVM (label), majority vote, mean probability
    assert result["label"] == result["aggregations"]["svm"]["label"]
    for name in ("majority", "mean"):
        assert result[name] == result["aggregations"][name]["label"] and result[name] in CLASSES
        assert result["aggregations"][name]["label"] == CLASSES[result["aggregations"][name]["index"]]
    assert [s["start_s"] for s in result["segments"]] == [0.0, 1.0, 2.0]
    assert all(s["end_s"] - s["start_s"] == 1.0 for s in result["segments"])
    errors = {e["file"]: e["error"] for e in payload["errors"]}
    assert set(errors) == {str(bad), short, str(tmp_path / "missing.mp3")}
    assert "cannot read audio" in errors[str(bad)]
    assert "shorter than one segment" in errors[short] and "at least 1 s" in errors[short]
    assert "not found" in errors[str(tmp_path / "missing.mp3")]
    assert "bad.wav" in err and "short.wav" in err  # reported on the terminal too


def test_folder_scan_and_csv_files(model_dir, songs, tmp_path, capsys):
    folder, paths = songs
    out_csv, seg_csv = tmp_path / "out" / "songs.csv", tmp_path / "out" / "segments.csv"
    assert main([str(model_dir), str(folder), "--csv", str(out_csv), "--segments_csv", str(seg_csv),
                 "--no_progress"]) == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert list(rows[0]) == ["file", "label", "n_segments", "duration_s", "used_s"] + [
        f"p_{c}" for c in CLASSES] + [
        "majority", "mean"]
    assert [r["file"] for r in rows] == sorted(paths)  # notes.txt skipped, sub/ searched
    assert [int(r["n_segments"]) for r in rows] == [3, 2, 4]
    segments = list(csv.DictReader(seg_csv.open()))
    assert len(segments) == 9 and list(segments[0])[:5] == ["file", "segment", "start_s", "end_s", "pred"]
    assert capsys.readouterr().out.splitlines()[0].split()[:2] == ["file", "label"]  # table still printed


def test_csv_to_stdout(model_dir, songs, capsys):
    _, paths = songs
    assert main([str(model_dir), paths[2], "--csv", "--no_progress"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 1 and rows[0]["file"] == paths[2] and rows[0]["label"] in CLASSES
    assert main([str(model_dir), paths[2], "--json", "--no_progress"]) == 0
    [result] = json.loads(capsys.readouterr().out)["results"]
    decisions = ("label", "majority", "mean")
    assert [rows[0][k] for k in decisions] == [result[k] for k in decisions]


def test_plots_one_png_per_file(model_dir, songs, tmp_path, capsys):
    _, paths = songs
    out = tmp_path / "plots" / "fig.png"
    assert main([str(model_dir), paths[0], paths[2], "--plot", str(out), "--no_progress"]) == 0
    made = sorted(p.name for p in out.parent.iterdir())
    assert made == ["fig_a.png", "fig_c.png"]
    for name in made:
        image = matplotlib.image.imread(out.parent / name)
        assert image.ndim == 3 and min(image.shape[:2]) > 100
    assert main([str(model_dir), paths[1], "--plot", str(out), "--no_progress"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_model_folder_and_bad_options(songs, tmp_path, capsys):
    _, paths = songs
    assert main([str(tmp_path / "no_model"), paths[0]]) == 2
    assert "cannot load the model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), paths[0], "--json", "--csv"])
    assert exit_info.value.code == 2
    assert "only one of --json, --csv can write to standard output" in capsys.readouterr().err
