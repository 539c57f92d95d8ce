"""EmotionRecognizer: the exported model gives what training gave, on real-world file kinds."""

import json

import matplotlib.image
import numpy as np
import pytest
import torch
from audio_fixtures import tone, write_audio
from model_fixtures import segment_reference

from sssl_brain.dataio.features import extract_file
from sssl_brain.dataio.segments import segment_starts, song_segments
from sssl_brain.inference.model_folder import MANIFEST_FILE
from sssl_brain.inference.recognizer import (
    EmotionRecognizer,
    SongResult,
    plot_segment_probabilities,
)
from sssl_brain.utils.errors import AudioError, DataError, ModelFolderError
from sssl_brain.utils.io_utils import read_csv_dicts

pytestmark = pytest.mark.filterwarnings("ignore:song classifier")


@pytest.fixture(scope="module")
def model(model_dir):
    return EmotionRecognizer.from_hparams(source=str(model_dir), run_opts={"device": "cpu"})


def _train_songs(fold, songs, n=2):
    train = {r["song_id"] for r in read_csv_dicts(fold / "segment_predictions.csv") if r["split"] == "train"}
    return [s for s in songs if s["song_id"] in train][:n]


@pytest.mark.parametrize("channels_last", [True, False])
def test_segment_probabilities_equal_the_folds_predictions(fold_and_songs, model_dir, channels_last):
    fold, songs = fold_and_songs
    rec = EmotionRecognizer.from_hparams(source=model_dir, run_opts={"device": "cpu"},
                                         channels_last=channels_last)
    assert rec.channels_last is channels_last
    for song in _train_songs(fold, songs):
        starts, ends, probs = segment_reference(fold, song["song_id"], rec.class_names)
        result = rec.classify_file(song["path"])
        np.testing.assert_allclose(result.segment_starts, starts)
        np.testing.assert_allclose(result.segment_ends, ends)
        np.testing.assert_allclose(result.segment_probs, probs, atol=1e-4)


def test_song_decision_matches_the_folds_song_predictions(fold_and_songs, model_dir, model):
    """The SVM/majority/mean decisions of a training song equal song_predictions.csv."""
    fold, songs = fold_and_songs
    manifest = json.loads((model_dir / MANIFEST_FILE).read_text())
    assert manifest["source"]["song_classifier"] == "song_classifier.skops"  # the fold's own classifier
    rows = read_csv_dicts(fold / "song_predictions.csv")
    for song in _train_songs(fold, songs):
        result = model.classify_file(song["path"])
        for agg in ("svm", "majority", "mean"):
            ref = next(r for r in rows if r["song_id"] == song["song_id"] and r["aggregator"] == agg)
            expected = np.array([float(ref[f"p_{c}"]) for c in model.class_names])
            np.testing.assert_allclose(result.aggregations[agg]["probs"], expected, atol=1e-4)
            assert result.aggregations[agg]["index"] == int(ref["pred"])
        assert result.label == model.class_names[result.index] == result.aggregations["svm"]["label"]
        np.testing.assert_array_equal(result.probs, result.aggregations["svm"]["probs"])


@pytest.mark.parametrize("ext,sr,channels", [("wav", 22050, 1), ("flac", 44100, 2), ("ogg", 48000, 1),
                                             ("mp3", 44100, 2)])
def test_file_kinds(model, tmp_path, ext, sr, channels):
    path = write_audio(str(tmp_path / f"song.{ext}"), duration=3.5, sr=sr, channels=channels)
    result = model.classify_file(path)
    assert isinstance(result, SongResult) and result.path == path
    expected = segment_starts(min(result.duration, 3.5), 1.0)
    assert result.n_segments == len(expected) in (3, 4)  # mp3 encoders may pad a few ms
    np.testing.assert_allclose(result.segment_starts, expected)
    np.testing.assert_allclose(result.segment_ends, np.array(expected) + 1.0)
    assert result.segment_probs.shape == (result.n_segments, 4)
    np.testing.assert_allclose(result.segment_probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(result.probs.sum(), 1.0, atol=1e-6)
    assert result.label in model.class_names and 0 <= result.index < 4


def test_stereo_is_the_mean_of_its_channels(model, tmp_path):
    import soundfile as sf

    y = tone(3.0, channels=2)
    sf.write(tmp_path / "stereo.wav", y, 22050)
    sf.write(tmp_path / "mono.wav", y.mean(axis=1), 22050)
    a, b = model.classify_file(tmp_path / "stereo.wav"), model.classify_file(tmp_path / "mono.wav")
    np.testing.assert_allclose(a.segment_probs, b.segment_probs, atol=1e-6)


def test_file_shorter_than_one_segment(model, tmp_path):
    path = write_audio(str(tmp_path / "short.wav"), duration=0.6)
    expected = r"short\.wav: 0\.600 s of audio is shorter than one segment.*at least 1 s"
    with pytest.raises(AudioError, match=expected):
        model.classify_file(path)


def test_unreadable_file_is_named(model, tmp_path):
    path = tmp_path / "broken.mp3"
    path.write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match="broken.mp3"):
        model.classify_file(path)


def test_long_file_runs_the_model_in_chunks(model_dir, tmp_path):
    path = write_audio(str(tmp_path / "long.wav"), duration=11.5)
    small = EmotionRecognizer.from_hparams(source=model_dir, run_opts={"device": "cpu"}, batch_size=4)
    sizes = []
    handle = small.mods.model.register_forward_hook(lambda mod, inp, out: sizes.append(inp[0].shape[0]))
    result = small.classify_file(path)
    handle.remove()
    assert result.n_segments == 11 and sizes == [4, 4, 3]
    whole = EmotionRecognizer.from_hparams(source=model_dir, run_opts={"device": "cpu"}, batch_size=64)
    np.testing.assert_allclose(whole.classify_file(path).segment_probs, result.segment_probs, atol=1e-6)


def test_classify_batch_of_segment_features(model, tmp_path):
    path = write_audio(str(tmp_path / "a.wav"), duration=3.0)
    feats = extract_file(path, model.feature_config)
    n = model.n_seg_frames
    segments = song_segments(feats.shape[0], 1.0, 22050, 512, duration=3.0)
    batch = torch.from_numpy(np.stack([feats[seg.start_frame:seg.start_frame + n] for seg in segments]))
    probs, score, index, labels = model.classify_batch(batch)
    np.testing.assert_allclose(probs.numpy(), model.classify_file(path).segment_probs, atol=1e-6)
    assert torch.equal(index, probs.argmax(dim=1)) and torch.allclose(score, probs.max(dim=1).values)
    assert labels == [model.class_names[i] for i in index]


def test_classify_batch_of_waveforms(model):
    a, b = tone(3.0, freq=220.0), tone(2.0, freq=880.0, seed=1)
    wavs = torch.zeros(2, a.size)
    wavs[0], wavs[1, : b.size] = torch.from_numpy(a), torch.from_numpy(b)
    probs, score, index, labels = model.classify_batch(wavs, torch.tensor([1.0, b.size / a.size]))
    for i, y in enumerate((a, b)):
        single = model.classify_signal(y)
        np.testing.assert_allclose(probs[i].numpy(), single.probs, atol=1e-6)
        assert labels[i] == single.label and int(index[i]) == single.index
    assert probs.shape == (2, 4) and torch.allclose(score, probs.max(dim=1).values)
    with pytest.raises(AudioError, match="shorter than one segment"):
        model.classify_batch(torch.zeros(1, 1000))
    with pytest.raises(DataError, match="wav_lens has shape"):
        model.classify_batch(wavs, torch.ones(3))


def test_from_hparams_refuses_anything_but_a_local_folder(model_dir, tmp_path):
    for source in ("speechbrain/emotion-recognition", "https://example.org/model", str(tmp_path / "nowhere")):
        with pytest.raises(ModelFolderError, match="not a local folder.*nothing is downloaded"):
            EmotionRecognizer.from_hparams(source=source)
    with pytest.raises(ModelFolderError, match="hyperparams.yaml only"):
        EmotionRecognizer.from_hparams(source=model_dir, hparams_file="other.yaml")


def test_model_is_in_eval_mode_and_frozen(model):
    assert not model.mods.model.training
    assert not any(p.requires_grad for p in model.mods.model.parameters())


def test_json_friendly_result_and_plot(model, tmp_path):
    path = write_audio(str(tmp_path / "a.wav"), duration=4.5)
    result = model.classify_file(path)
    d = result.to_dict()
    assert d["file"] == path and d["label"] == result.label and d["n_segments"] == 4
    assert set(d["probs"]) == set(model.class_names) and set(d["aggregations"]) == {"svm", "majority", "mean"}
    assert [s["start_s"] for s in d["segments"]] == [0.0, 1.0, 2.0, 3.0]
    png = plot_segment_probabilities(result, str(tmp_path / "fig.png"))
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
