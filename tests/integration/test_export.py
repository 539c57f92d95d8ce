"""Export of a trained fold, the model folder format, and refusal of broken or tampered folders."""

import json
import os
import pickle
import shutil
import warnings
import zipfile

import numpy as np
import pytest
import skops.io as sio
import torch
import yaml
from audio_fixtures import write_audio
from model_fixtures import fold_by_hand
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from sssl_brain.dataio.features import FeatureConfig, extract_file
from sssl_brain.inference import export as export_mod
from sssl_brain.inference.export import FOLD_CLASSIFIER_FILE, export_fold, main
from sssl_brain.inference.model_folder import (
    CLASSIFIER_FILE,
    HPARAMS_FILE,
    MANIFEST_FILE,
    README_FILE,
    WEIGHTS_FILE,
    hparams_from_fold_config,
    load_model_folder,
)
from sssl_brain.inference.recognizer import EmotionRecognizer
from sssl_brain.lobes.vgg16 import VGG16
from sssl_brain.song_level.classifier import SongClassifier, SongSVM
from sssl_brain.utils.errors import ModelFolderError
from sssl_brain.utils.model_io import load_song_classifier, save_song_classifier, sha256_file

pytestmark = [pytest.mark.filterwarnings("ignore:song classifier"),
              pytest.mark.filterwarnings("ignore:Detected pickle protocol")]


@pytest.fixture
def model_copy(model_dir, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(model_dir, dst)
    return dst


def _update_manifest(folder, name):
    """What an attacker who rewrites the manifest too would do: the checksum then matches."""
    path = folder / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest["files"][name] = {"sha256": sha256_file(folder / name), "bytes": os.path.getsize(folder / name)}
    path.write_text(json.dumps(manifest))


class _MakesMarker:
    """Unpickling this object would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# --------------------------------------------------------------------------- export
def test_export_layout_and_manifest(fold, model_dir):
    names = sorted(os.listdir(model_dir))
    assert names == sorted([HPARAMS_FILE, WEIGHTS_FILE, CLASSIFIER_FILE, README_FILE, MANIFEST_FILE])
    leftovers = [n for n in os.listdir(model_dir.parent) if n.startswith((".tmp-sssl_tiny_model", ".old-"))]
    assert leftovers == []
    manifest = json.loads((model_dir / MANIFEST_FILE).read_text())
    assert manifest["format"] == "sssl-brain-model" and manifest["format_version"] == 1
    assert set(manifest["files"]) == {HPARAMS_FILE, WEIGHTS_FILE, CLASSIFIER_FILE, README_FILE}
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256_file(model_dir / name)
        assert entry["bytes"] == os.path.getsize(model_dir / name)

    config = json.loads((fold / "fold_config.json").read_text())
    hp = yaml.safe_load((model_dir / HPARAMS_FILE).read_text())
    assert hp["class_names"] == config["class_names"] == ["Q1", "Q2", "Q3", "Q4"]
    assert hp["target"] == "quadrant"
    assert hp["segments"] == {"seg_dur": 1.0, "seg_overlap": None, "max_song_duration": None}
    for key in ("sample_rate", "n_fft", "hop_length", "n_mels"):
        assert hp["features"][key] == config[key]
    assert hp["features"]["ref"] == config["mel_power_ref"]
    assert hp["model"]["width_mult"] == config["width_mult"] and hp["model"]["n_classes"] == 4
    assert hp["song_level"]["theta"] == config["song_theta"]

    state = torch.load(model_dir / WEIGHTS_FILE, weights_only=True)
    ckpt = export_mod.find_checkpoint(fold)
    selected = json.loads((fold / "metrics.json").read_text())["selected_epoch"]
    assert yaml.safe_load(open(os.path.join(ckpt, "CKPT.yaml")))["epoch"] == selected
    original = torch.load(os.path.join(ckpt, "model.ckpt"), weights_only=True)
    if os.path.isfile(os.path.join(ckpt, "teacher.ckpt")):  # ema_decay: the mean teacher serves
        from sssl_brain.method.teacher import teacher_model_state

        original = teacher_model_state(torch.load(os.path.join(ckpt, "teacher.ckpt"), weights_only=True))
    assert set(original) == set(state)
    assert all(torch.equal(state[k], original[k]) for k in original)
    assert zipfile.is_zipfile(model_dir / CLASSIFIER_FILE)
    readme = (model_dir / README_FILE).read_text()
    assert "sssl-classify" in readme and manifest["files"][WEIGHTS_FILE]["sha256"] in readme

    loaded = load_model_folder(model_dir)
    assert loaded.hparams == hp and set(loaded.state_dict) == set(state)


def test_export_uses_the_folds_saved_classifier(fold, tmp_path):
    """A fold with song_classifier.skops is exported with that classifier, unchanged."""
    fold_copy = tmp_path / "fold"
    shutil.copytree(fold, fold_copy)
    hp = hparams_from_fold_config(json.loads((fold / "fold_config.json").read_text()))
    clf = load_song_classifier(fold / FOLD_CLASSIFIER_FILE)
    manifest = export_fold(fold_copy, tmp_path / "model")
    assert manifest["source"]["song_classifier"] == FOLD_CLASSIFIER_FILE
    exported = load_model_folder(tmp_path / "model").classifier
    assert type(exported) is SongClassifier and exported.theta == hp["song_level"]["theta"]
    songs = list(np.random.default_rng(0).dirichlet(np.ones(4), size=(5, 3)))
    np.testing.assert_array_equal(exported.predict_proba(songs), clf.predict_proba(songs))


def test_export_without_classifier_is_refused(fold, tmp_path):
    fold_copy = tmp_path / "fold"
    shutil.copytree(fold, fold_copy)
    (fold_copy / FOLD_CLASSIFIER_FILE).unlink()
    with pytest.raises(ModelFolderError, match="song_classifier.skops: not found.*stage 2"):
        export_fold(fold_copy, tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_export_refuses_existing_folder_and_overwrites_on_request(fold, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(ModelFolderError, match="already exists"):
        export_fold(fold, out)
    assert (out / "keep.txt").is_file()
    export_fold(fold, out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / MANIFEST_FILE).is_file()
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_export_is_atomic(fold, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_mod, "_readme", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        export_fold(fold, tmp_path / "model")
    assert os.listdir(tmp_path) == []


def test_export_of_a_folder_that_is_not_a_fold(tmp_path):
    (tmp_path / "fold").mkdir()
    with pytest.raises(ModelFolderError, match="fold_config.json: not found"):
        export_fold(tmp_path / "fold", tmp_path / "model")
    with pytest.raises(ModelFolderError, match="fold folder not found"):
        export_fold(tmp_path / "missing", tmp_path / "model")


def test_export_command_prints_what_it_wrote(fold, tmp_path, capsys):
    args = [str(fold), str(tmp_path / "model")]
    assert main(args) == 0
    out = capsys.readouterr().out
    for name in (HPARAMS_FILE, WEIGHTS_FILE, CLASSIFIER_FILE, README_FILE, MANIFEST_FILE):
        assert name in out
    assert main(args) == 1  # exists now
    assert "already exists" in capsys.readouterr().err


# --------------------------------------------------------------------------- song classifier
@pytest.mark.parametrize("labels", ["four_classes", "one_song_class", "constant", "features_svm"])
def test_song_classifier_round_trip(labels, tmp_path):
    rng = np.random.default_rng(0)
    X = list(rng.dirichlet(np.ones(4), size=(16, 5)))  # 16 songs of 5 segments
    y = {"four_classes": np.arange(16) % 4, "one_song_class": np.r_[0, 1, 1, 1, 2, 2, 2, 2, np.full(8, 3)],
         "constant": np.full(16, 2), "features_svm": np.arange(16) % 2}[labels]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if labels == "features_svm":  # the baseline's SVM over song feature vectors
            X = rng.uniform(size=(16, 7))
            clf = SongSVM(random_state=3, calibration_folds=3).fit(X, y)
        else:
            clf = SongClassifier(theta=0.4, random_state=3, calibration_folds=3).fit(X, y)
    path = tmp_path / "clf.skops"
    save_song_classifier(clf, path)
    with open(path, "rb") as f:
        assert f.read(2) == b"PK"  # a zip (skops), not a pickle
    loaded = load_song_classifier(path)
    assert type(loaded) is type(clf) and loaded.get_params() == clf.get_params()
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    if labels == "constant":
        assert type(loaded.estimator_).__name__ == "DummyClassifier" and loaded.classes_.tolist() == [2]


def test_saving_a_classifier_outside_the_allowlist_is_refused(tmp_path):
    with pytest.raises(ModelFolderError, match="FunctionTransformer"):
        save_song_classifier(Pipeline([("f", FunctionTransformer(np.log1p))]), tmp_path / "c.skops")
    assert not (tmp_path / "c.skops").exists()


# --------------------------------------------------------------------------- tampering
def test_pickle_in_place_of_the_weights_is_refused_and_not_run(model_copy, tmp_path):
    marker = tmp_path / "marker"
    (model_copy / WEIGHTS_FILE).write_bytes(pickle.dumps(_MakesMarker(marker)))
    with pytest.raises(ModelFolderError, match=r"model\.ckpt: checksum mismatch"):
        load_model_folder(model_copy)
    _update_manifest(model_copy, WEIGHTS_FILE)
    with pytest.raises(ModelFolderError, match=r"model\.ckpt: refused to load, not a plain torch state_dict"):
        load_model_folder(model_copy)
    assert not marker.exists()
    # the same check through torch.save of an arbitrary object
    torch.save({"w": _MakesMarker(marker)}, model_copy / WEIGHTS_FILE)
    _update_manifest(model_copy, WEIGHTS_FILE)
    with pytest.raises(ModelFolderError, match="refused to load"):
        load_model_folder(model_copy)
    assert not marker.exists()


def test_weights_of_another_model_are_refused(model_copy):
    state = torch.load(model_copy / WEIGHTS_FILE, weights_only=True)
    state.pop(next(iter(state)))
    torch.save(state, model_copy / WEIGHTS_FILE)
    _update_manifest(model_copy, WEIGHTS_FILE)
    with pytest.raises(ModelFolderError, match=r"model\.ckpt: the weights do not fit"):
        load_model_folder(model_copy)


def test_pickle_in_place_of_the_song_classifier_is_refused_and_not_run(model_copy, tmp_path):
    marker = tmp_path / "marker"
    (model_copy / CLASSIFIER_FILE).write_bytes(pickle.dumps(_MakesMarker(marker)))
    _update_manifest(model_copy, CLASSIFIER_FILE)
    with pytest.raises(ModelFolderError, match=r"song_classifier\.skops: not a skops song classifier file"):
        load_model_folder(model_copy)
    assert not marker.exists()


def test_song_classifier_with_untrusted_types_is_refused(model_copy):
    (model_copy / CLASSIFIER_FILE).write_bytes(sio.dumps(Pipeline([("f", FunctionTransformer(os.system))])))
    _update_manifest(model_copy, CLASSIFIER_FILE)
    expected = r"song_classifier\.skops: refused to load.*untrusted types.*system"
    with pytest.raises(ModelFolderError, match=expected):
        load_model_folder(model_copy)


def test_song_classifier_of_another_kind_is_refused(model_copy):
    (model_copy / CLASSIFIER_FILE).write_bytes(sio.dumps(Pipeline([("f", FunctionTransformer(np.log1p))])))
    _update_manifest(model_copy, CLASSIFIER_FILE)
    with pytest.raises(ModelFolderError, match=r"song_classifier\.skops: holds .*FunctionTransformer"):
        load_model_folder(model_copy)


def test_song_classifier_that_does_not_fit_the_model_is_refused(model_copy, tmp_path):
    """A classifier with another theta than hyperparams.yaml, or over feature vectors, is refused."""
    songs = list(np.random.default_rng(0).dirichlet(np.ones(4), size=(8, 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other_theta = SongClassifier(theta=0.9, calibration_folds=2).fit(songs, np.arange(8) % 4)
        vectors = SongSVM(calibration_folds=2).fit(np.arange(16.0).reshape(8, 2), np.arange(8) % 2)
    save_song_classifier(other_theta, model_copy / CLASSIFIER_FILE)
    _update_manifest(model_copy, CLASSIFIER_FILE)
    with pytest.raises(ModelFolderError, match=r"classifier\.skops: the classifier's theta=0\.9 differs"):
        load_model_folder(model_copy)
    save_song_classifier(vectors, model_copy / CLASSIFIER_FILE)
    _update_manifest(model_copy, CLASSIFIER_FILE)
    with pytest.raises(ModelFolderError, match=r"a SongSVM, not a SongClassifier"):
        load_model_folder(model_copy)


def test_a_song_classifier_is_not_a_bare_pipeline(tmp_path):
    with pytest.raises(ModelFolderError, match="a sklearn.pipeline.Pipeline, not a song classifier"):
        save_song_classifier(Pipeline([("s", StandardScaler())]).fit([[0.0], [1.0]]), tmp_path / "c.skops")


def test_hyperparams_with_python_tags_are_refused_and_not_run(model_copy, tmp_path):
    marker = tmp_path / "marker"
    text = (model_copy / HPARAMS_FILE).read_text()
    hook = f"hook: !!python/object/apply:builtins.open ['{marker}', 'w']\n"
    (model_copy / HPARAMS_FILE).write_text(text + hook)
    _update_manifest(model_copy, HPARAMS_FILE)
    with pytest.raises(ModelFolderError, match=r"hyperparams\.yaml: not a plain YAML file"):
        load_model_folder(model_copy)
    extra = "model2: !new:sssl_brain.lobes.vgg16.VGG16 {n_classes: 2}\n"
    (model_copy / HPARAMS_FILE).write_text(text + extra)
    _update_manifest(model_copy, HPARAMS_FILE)
    with pytest.raises(ModelFolderError, match="not a plain YAML file"):
        load_model_folder(model_copy)
    assert not marker.exists()


@pytest.mark.parametrize("name", [HPARAMS_FILE, WEIGHTS_FILE, CLASSIFIER_FILE, README_FILE])
def test_missing_file_is_named(model_copy, name):
    (model_copy / name).unlink()
    with pytest.raises(ModelFolderError, match=f"{name}: missing file"):
        load_model_folder(model_copy)


@pytest.mark.parametrize("name", [HPARAMS_FILE, WEIGHTS_FILE, CLASSIFIER_FILE, README_FILE])
def test_checksum_mismatch_is_named(model_copy, name):
    data = bytearray((model_copy / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (model_copy / name).write_bytes(bytes(data))
    with pytest.raises(ModelFolderError, match=f"{name}: checksum mismatch"):
        load_model_folder(model_copy)


def test_bad_manifests_are_refused(model_copy, tmp_path):
    manifest_path = model_copy / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    outside = {**manifest["files"], "../outside": {"sha256": "0"}}
    manifest_path.write_text(json.dumps({**manifest, "files": outside}))
    with pytest.raises(ModelFolderError, match="bad file name '../outside'"):
        load_model_folder(model_copy)
    files = dict(manifest["files"])
    del files[WEIGHTS_FILE]
    manifest_path.write_text(json.dumps({**manifest, "files": files}))
    with pytest.raises(ModelFolderError, match="does not list the required file model.ckpt"):
        load_model_folder(model_copy)
    manifest_path.write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ModelFolderError, match="format_version=99 is not supported"):
        load_model_folder(model_copy)
    manifest_path.write_text("{not json")
    with pytest.raises(ModelFolderError, match="manifest.json: not valid JSON"):
        load_model_folder(model_copy)
    manifest_path.unlink()
    with pytest.raises(ModelFolderError, match="manifest.json: not found"):
        load_model_folder(model_copy)
    with pytest.raises(ModelFolderError, match="model folder not found"):
        load_model_folder(tmp_path / "nowhere")


# --------------------------------------------------------------------------- a fold built by hand
@pytest.mark.parametrize("max_duration", [None, 4.0])
def test_hand_built_fold_gives_the_models_own_segment_probabilities(tmp_path, max_duration):
    """Binary target, 3 s segments, input normalisation: inference equals a direct forward of the weights.

    The fold was trained on the first 4 s of each song; inference takes the whole file unless
    ``max_duration`` caps it.
    """
    fold_dir = fold_by_hand(tmp_path / "fold", max_song_duration=4.0)
    export_fold(fold_dir, tmp_path / "model")
    hp = yaml.safe_load((tmp_path / "model" / HPARAMS_FILE).read_text())
    assert hp["class_names"] == ["low", "high"] and hp["segments"]["seg_dur"] == 3.0
    assert "trained on the first 4 s of each song" in (tmp_path / "model" / "README.md").read_text()
    rec = EmotionRecognizer.from_hparams(source=tmp_path / "model", run_opts={"device": "cpu"},
                                         max_duration=max_duration)
    assert rec.training_max_duration == 4.0 and rec.max_duration == max_duration
    path = write_audio(str(tmp_path / "song.wav"), duration=6.5, freq=330.0)
    result = rec.classify_file(path)
    expected_starts = [0.0, 1.0, 2.0, 3.0] if max_duration is None else [0.0, 1.0]
    np.testing.assert_allclose(result.segment_starts, expected_starts)
    np.testing.assert_allclose(result.segment_ends, np.array(expected_starts) + 3.0)
    assert result.truncated == (max_duration is not None)
    assert result.used_duration == pytest.approx(6.5 if max_duration is None else 4.0, abs=1e-3)

    state = torch.load(export_mod.find_checkpoint(fold_dir) + "/model.ckpt", weights_only=True)
    direct = VGG16(n_classes=2, width_mult=0.0625, classifier_dim=16, n_mels=128)
    direct.load_state_dict(state)
    direct.eval()
    feats = torch.from_numpy(extract_file(path, FeatureConfig()))
    firsts = [round(s * 22050 / 512) for s in expected_starts]
    with torch.no_grad():
        logits = direct(torch.stack([feats[f:f + 130] for f in firsts]))
    np.testing.assert_allclose(result.segment_probs, torch.softmax(logits, -1).numpy(), atol=1e-5)
    clf = load_song_classifier(fold_dir / FOLD_CLASSIFIER_FILE)
    np.testing.assert_allclose(result.probs, clf.predict_proba([result.segment_probs])[0])


def test_model_without_per_bin_normalisation_exports_with_n_mels_none(tmp_path):
    fold_dir = fold_by_hand(tmp_path / "fold", normalization=False)
    export_fold(fold_dir, tmp_path / "model")
    loaded = load_model_folder(tmp_path / "model")
    assert loaded.hparams["model"]["n_mels"] is None
    assert torch.equal(loaded.state_dict["input_mean"], torch.zeros(1))
    assert torch.equal(loaded.state_dict["input_std"], torch.ones(1))


def test_weights_without_the_normalisation_buffers_are_refused(tmp_path):
    fold_dir = fold_by_hand(tmp_path / "fold")
    ckpt = export_mod.find_checkpoint(fold_dir)
    state = torch.load(os.path.join(ckpt, "model.ckpt"), weights_only=True)
    torch.save({k: v for k, v in state.items() if k not in ("input_mean", "input_std")},
               os.path.join(ckpt, "model.ckpt"))
    with pytest.raises(ModelFolderError, match=r"(?s)model\.ckpt: the weights do not fit.*input_mean"):
        export_fold(fold_dir, tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_fold_config_missing_a_key_is_refused_naming_it(tmp_path):
    fold_dir = fold_by_hand(tmp_path / "fold")
    config = json.loads((fold_dir / "fold_config.json").read_text())
    del config["mel_power_ref"]
    (fold_dir / "fold_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match=r"fold_config\.json: missing key\(s\) mel_power_ref"):
        export_fold(fold_dir, tmp_path / "model")


def test_find_checkpoint_takes_the_one_selected_on_validation_not_the_newest(tmp_path):
    fold = tmp_path / "fold_0"
    for name, when, epoch in (("CKPT+best", 1.0, 3), ("CKPT+last", 2.0, 5)):
        (fold / "save" / name).mkdir(parents=True)
        (fold / "save" / name / "model.ckpt").write_bytes(b"x")
        (fold / "save" / name / "CKPT.yaml").write_text(f"unixtime: {when}\nepoch: {epoch}\n")
    assert os.path.basename(export_mod.find_checkpoint(str(fold))) == "CKPT+last"  # no metrics.json yet
    (fold / "metrics.json").write_text(json.dumps({"selected_epoch": 3}))
    assert os.path.basename(export_mod.find_checkpoint(str(fold))) == "CKPT+best"
    assert os.path.basename(export_mod.find_checkpoint(str(fold), "CKPT+last")) == "CKPT+last"


def test_a_fold_trained_with_a_mean_teacher_exports_the_teacher(tmp_path):
    from sssl_brain.method.teacher import MeanTeacher

    fold = fold_by_hand(tmp_path / "fold")
    ckpt = next((fold / "save").glob("CKPT+*"))
    student = torch.load(ckpt / "model.ckpt", weights_only=True)
    model = load_model_folder_model(fold, ckpt)
    teacher = MeanTeacher(model, decay=0.5)
    with torch.no_grad():
        for p in teacher.module.parameters():
            p.add_(1.0)  # the teacher's weights differ from the student's
    torch.save(teacher.state_dict(), ckpt / "teacher.ckpt")
    export_fold(fold, tmp_path / "model")
    exported = torch.load(tmp_path / "model" / WEIGHTS_FILE, weights_only=True)
    assert exported.keys() == student.keys()
    for key, value in teacher.module.state_dict().items():
        torch.testing.assert_close(exported[key], value)
    key = next(k for k in student if k.endswith("weight"))
    assert not torch.equal(exported[key], student[key])  # the teacher, not model.ckpt


def load_model_folder_model(fold, ckpt):
    """The fold's VGG16 with the checkpoint's weights (as the export builds it)."""
    config = json.loads((fold / "fold_config.json").read_text())
    hp = hparams_from_fold_config(config)
    return export_mod._fold_model(hp, str(ckpt), "test")
