"""A song longer than the training cap is classified whole; a cap is an option, and says so when it cuts."""

import json

import pytest
from audio_fixtures import write_audio
from model_fixtures import fold_by_hand

from sssl_brain.inference.cli import main
from sssl_brain.inference.export import export_fold
from sssl_brain.inference.recognizer import EmotionRecognizer, plot_title
from sssl_brain.utils.errors import DataError

pytestmark = pytest.mark.filterwarnings("ignore:song classifier")
TRAINING_CAP = 20.0  # the model was trained on the first 20 s of each song
SONG_SECONDS = 45.0


@pytest.fixture(scope="module")
def capped_model(tmp_path_factory):
    """A model trained with ``max_song_duration: 20`` (3 s segments) and a 45 s song."""
    root = tmp_path_factory.mktemp("whole_song")
    export_fold(fold_by_hand(root / "fold", max_song_duration=TRAINING_CAP), root / "model")
    song = write_audio(str(root / "long.wav"), duration=SONG_SECONDS, freq=330.0)
    return root / "model", song


def test_a_song_longer_than_the_training_cap_is_classified_whole(capped_model):
    model_dir, song = capped_model
    rec = EmotionRecognizer.from_hparams(source=str(model_dir), run_opts={"device": "cpu"})
    assert rec.training_max_duration == TRAINING_CAP and rec.max_duration is None
    result = rec.classify_file(song)
    assert result.segment_ends.max() > SONG_SECONDS - 2  # segments reach the end of the file, not 20 s
    assert result.n_segments == 42  # 3 s segments, hop 1 s, over the 45 s (less the last frame's few ms)
    assert not result.truncated and result.used_duration == pytest.approx(SONG_SECONDS, abs=1e-3)
    d = result.to_dict(segments=False)
    assert d["truncated"] is False and d["max_duration_s"] is None
    assert d["used_s"] == d["duration_s"] == pytest.approx(SONG_SECONDS, abs=1e-3)
    assert "truncated" not in plot_title(result)


def test_a_cap_is_an_option_and_a_truncated_song_says_so(capped_model):
    model_dir, song = capped_model
    rec = EmotionRecognizer.from_hparams(source=str(model_dir), run_opts={"device": "cpu"}, max_duration=10)
    result = rec.classify_file(song)
    assert result.segment_ends.max() == 10.0 and result.n_segments == 8
    assert result.truncated and result.used_duration == 10.0
    assert result.usage_note() == "used 10.0 s of 45.0 s"
    d = result.to_dict(segments=False)
    assert d["truncated"] is True and d["used_s"] == 10.0 and d["max_duration_s"] == 10.0
    assert "truncated: used 10.0 s of 45.0 s (max_duration 10 s)" in plot_title(result)
    # a cap longer than the song cuts nothing
    whole = EmotionRecognizer.from_hparams(source=str(model_dir), run_opts={"device": "cpu"},
                                           max_duration=60).classify_file(song)
    assert not whole.truncated and whole.n_segments == 42
    with pytest.raises(DataError, match="max_duration=0"):
        EmotionRecognizer.from_hparams(source=str(model_dir), run_opts={"device": "cpu"}, max_duration=0)


def test_sssl_classify_uses_the_whole_file_and_reports_a_cap(capped_model, tmp_path, capsys):
    model_dir, song = capped_model
    assert main([str(model_dir), song, "--no_progress"]) == 0
    out, err = capsys.readouterr()
    header, row = out.strip().splitlines()
    assert header.split()[-1] == "segments" and row.split()[-1] == "42"  # no truncation, no `used` column
    assert "truncated" not in err

    out_json, out_csv = tmp_path / "out.json", tmp_path / "out.csv"
    assert main([str(model_dir), song, "--max_duration", "10", "--no_progress", "--json", str(out_json),
                 "--csv", str(out_csv)]) == 0
    out, err = capsys.readouterr()
    header, row = out.strip().splitlines()
    assert header.split()[-2:] == ["segments", "used"]
    assert row.endswith("8  10.0 s / 45.0 s")
    assert f"{song}: truncated, used 10.0 s of 45.0 s (--max_duration 10)" in err
    [result] = json.loads(out_json.read_text())["results"]
    assert result["truncated"] is True and result["used_s"] == 10.0 and result["n_segments"] == 8
    assert result["duration_s"] == pytest.approx(SONG_SECONDS, abs=1e-3)
    assert out_csv.read_text().splitlines()[1].split(",")[3:5] == ["45.0", "10.0"]  # duration_s, used_s


def test_sssl_classify_refuses_a_cap_that_is_not_positive(capped_model, capsys):
    model_dir, song = capped_model
    with pytest.raises(SystemExit):
        main([str(model_dir), song, "--max_duration", "-1"])
    assert "--max_duration=-1: must be > 0 seconds" in capsys.readouterr().err
