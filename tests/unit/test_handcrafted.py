"""The features_svm baseline: hand-crafted song features, their cache and skips, and a tiny end-to-end run."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from sssl_brain.dataio.experiment import check_experiment_hparams
from sssl_brain.song_level.fold_outputs import run_features_svm_fold
from sssl_brain.song_level.handcrafted import HandcraftedCache, HandcraftedConfig, extract_file, feature_names
from sssl_brain.utils.errors import ConfigError
from sssl_brain.utils.hparams import load_hparams
from sssl_brain.utils.io_utils import read_csv_dicts

REPO = Path(__file__).resolve().parents[2]
HPARAMS = REPO / "hparams" / "vgg16_sssl.yaml"
pytestmark = pytest.mark.filterwarnings("ignore:song classifier")


def write_song(path, duration, sr=22050, freq=220.0, bpm=120.0, seed=0):
    """A generated 'song': a tone with clicks at ``bpm`` and a little noise (format from the extension)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(duration * sr))) / sr
    y = 0.3 * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))
    beat = (t % (60.0 / bpm)) < 0.01
    y = y + 0.5 * beat * rng.standard_normal(t.size) + 0.005 * rng.standard_normal(t.size)
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    sf.write(str(path), y.astype(np.float32), sr)
    return str(path)


def test_features_are_finite_named_and_deterministic(tmp_path):
    config = HandcraftedConfig()
    path = write_song(tmp_path / "song.wav", 4.3, sr=44100)
    x = extract_file(path, config)
    names = feature_names(config)
    assert x.shape == (len(names),) == (171,) and x.dtype == np.float64
    assert np.all(np.isfinite(x)) and len(set(names)) == len(names)
    assert names[-1] == "tempo" and 40 < x[-1] < 300
    np.testing.assert_array_equal(extract_file(path, config), x)  # deterministic
    # the cache gives the same vector, computed once
    cache = HandcraftedCache(tmp_path / "cache", config)
    first = cache.build([path], progress=False)
    assert first.computed == [path] and not first.skipped
    np.testing.assert_array_equal(first[path], x)
    again = cache.build([path], progress=False)
    assert again.computed == [] and np.array_equal(again[path], x)
    entry = cache.entry_path(path)
    assert np.load(entry, allow_pickle=False).shape == x.shape
    # another song, another setting: other vectors
    other = extract_file(write_song(tmp_path / "other.wav", 4.3, freq=880.0, bpm=90.0), config)
    assert not np.allclose(other, x)
    fewer = HandcraftedConfig(n_mfcc=13)
    assert extract_file(path, fewer).shape == (len(feature_names(fewer)),) == (171 - 6 * 7,)


def test_max_song_duration_is_respected(tmp_path):
    path = write_song(tmp_path / "long.wav", 6.0)
    head = str(tmp_path / "head.wav")  # the first 3 s of the same song
    sf.write(head, sf.read(path, dtype="float32")[0][: 3 * 22050], 22050)
    capped = extract_file(path, HandcraftedConfig(max_duration=3.0))
    np.testing.assert_allclose(capped, extract_file(head, HandcraftedConfig()), rtol=1e-6, atol=1e-6)
    assert not np.allclose(capped, extract_file(path, HandcraftedConfig()))


def test_a_song_too_short_for_a_feature_is_a_named_skip(tmp_path, caplog):
    config = HandcraftedConfig()
    ok = write_song(tmp_path / "ok.wav", 2.0)
    short = write_song(tmp_path / "blip.wav", 0.05)  # 1102 samples < n_fft = 2048
    few_frames = write_song(tmp_path / "few.wav", 0.15)  # 3307 samples: 7 frames < the 9 of the delta window
    cache = HandcraftedCache(tmp_path / "cache", config)
    result = cache.build([ok, short, few_frames], progress=False)
    assert list(result) == [ok] and list(result.skipped) == [short, few_frames]
    assert short in result.skipped[short] and "shorter than hc_n_fft=2048" in result.skipped[short]
    assert "delta window" in result.skipped[few_frames]
    # the skip is cached too: a second build computes nothing and reports the same reasons
    again = cache.build([ok, short, few_frames], progress=False)
    assert again.computed == [] and again.skipped == result.skipped


def test_bad_options_name_the_option():
    for kwargs, option in (({"n_mfcc": 0}, "hc_n_mfcc"), ({"delta_width": 4}, "hc_delta_width"),
                           ({"rolloff_percent": 1.5}, "hc_rolloff_percent"),
                           ({"contrast_fmin": 4000.0}, "hc_contrast_fmin")):
        with pytest.raises(ConfigError, match=option):
            HandcraftedConfig(**kwargs)
    hp = load_hparams(str(HPARAMS), {"data_folder": "/nowhere", "methods": ["features_svm"], "hc_n_fft": -1,
                                     "width_mult": 0.0625, "classifier_dim": 32})
    with pytest.raises(ConfigError, match="hc_n_fft"):
        check_experiment_hparams(hp)
    hp = load_hparams(str(HPARAMS), {"data_folder": "/nowhere", "methods": ["svm_on_air"],
                                     "width_mult": 0.0625, "classifier_dim": 32})
    with pytest.raises(ConfigError, match="features_svm"):
        check_experiment_hparams(hp)


def test_fold_counts_and_names_the_skipped_song(tmp_path, caplog):
    """run_features_svm_fold on a hand-made fold with one test song too short for the features."""
    songs, folds = [], {}
    for i in range(12):
        label = i % 2
        path = write_song(tmp_path / "audio" / f"s{i:02d}.wav", 1.5 + 0.1 * i, freq=220.0 * (1 + 2 * label),
                          bpm=80.0 + 60.0 * label, seed=i)
        songs.append({"song_id": f"s{i:02d}", "path": path, "label": label})
        folds[f"s{i:02d}"] = "test" if i in (0, 1) else ("valid" if i == 2 else "train")
    blip = write_song(tmp_path / "audio" / "blip.wav", 0.05)
    songs.append({"song_id": "blip", "path": blip, "label": 1})
    folds["blip"] = "test"
    exp = SimpleNamespace(songs=songs, folds=[folds], song_label={s["song_id"]: s["label"] for s in songs},
                          class_names=["low", "high"], target="valence", valence_threshold=0.5,
                          arousal_threshold=0.5)
    folder = tmp_path / "exp" / "features_svm" / "fold_0"
    overrides = {"data_folder": str(tmp_path), "target": "valence", "method": "features_svm", "fold": 0,
                 "results_folder": str(tmp_path / "results"), "experiment_folder": str(tmp_path / "exp"),
                 "svm_grid_search": False, "feature_jobs": 1, "width_mult": 0.0625, "classifier_dim": 32}
    hp = load_hparams(str(HPARAMS), overrides)
    assert hp["output_folder"] == str(folder)
    with caplog.at_level("WARNING"):
        metrics = run_features_svm_fold(hp, exp)
    assert "blip" in caplog.text and "1 song(s) too short" in caplog.text
    saved = json.loads((folder / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    skipped = saved["handcrafted_skipped"]
    assert skipped["count"] == 1 and [r["song_id"] for r in skipped["items"]] == ["blip"]
    assert skipped["items"][0]["split"] == "test" and "shorter than hc_n_fft" in skipped["items"][0]["reason"]
    rows = read_csv_dicts(folder / "song_predictions.csv")
    assert {r["aggregator"] for r in rows} == {"svm"}
    assert {r["song_id"]: r["split"] for r in rows} == {s: v for s, v in folds.items() if s != "blip"}
    assert saved["metrics"]["svm"]["test"]["n"] == 2 and saved["n_features"] == 171
    config = json.loads((folder / "fold_config.json").read_text())
    assert config["method"] == "features_svm" and config["handcrafted"]["n_mfcc"] == 20


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """The csv recipe with methods features_svm and inherit, 2 folds, 12 generated songs."""
    from demo_data import generate_demo_dataset

    root = tmp_path_factory.mktemp("features_svm")
    generate_demo_dataset(str(root / "data"), n_songs=12, seed=1, min_duration=6, max_duration=8,
                          progress=False)
    cmd = [sys.executable, str(REPO / "recipes" / "csv" / "train.py"), str(HPARAMS),
           f"--data_folder={root / 'data'}", f"--results_folder={root / 'results'}", "--n_folds=2",
           "--number_of_epochs=1", "--warmup_epochs=1", "--width_mult=0.0625", "--classifier_dim=32",
           "--seg_dur=2", "--target=valence", "--methods=[features_svm, inherit]", "--svm_grid_search=False",
           "--batch_size=8", "--feature_jobs=1", "--plot_partition=False", "--device=cpu", "--noprogressbar"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root / "results" / "csv" / "valence_seg2s_seed1986", root / "results" / "csv" / "prepared"


def test_end_to_end_outputs_and_results_table(experiment):
    exp, prepared = experiment
    for k in (0, 1):
        fold = exp / "features_svm" / f"fold_{k}"
        rows = read_csv_dicts(fold / "song_predictions.csv")
        assert list(rows[0]) == ["song_id", "split", "aggregator", "label", "pred", "p_low", "p_high"]
        assert {r["aggregator"] for r in rows} == {"svm"} and len(rows) == 12
        metrics = json.loads((fold / "metrics.json").read_text())
        assert metrics["method"] == "features_svm" and metrics["fold"] == k
        assert metrics["handcrafted_skipped"] == {"count": 0, "items": []}
        for key in ("accuracy", "macro_f1", "weighted_f1"):
            assert key in metrics["metrics"]["svm"]["test"]
        assert not (fold / "segment_predictions.csv").exists() and (fold / "fold_config.json").is_file()
        # the same song split as the other methods: folds.csv and the inherit fold's segments
        folds = {r["song_id"]: r["split"] for r in read_csv_dicts(exp / "folds.csv") if r["fold"] == str(k)}
        assert {r["song_id"]: r["split"] for r in rows} == folds
        segments = read_csv_dicts(exp / "inherit" / f"fold_{k}" / "segment_predictions.csv")
        assert {r["song_id"]: r["split"] for r in segments} == folds
    results = read_csv_dicts(exp / "results.csv")
    assert [(r["method"], r["aggregator"]) for r in results if r["method"] == "features_svm"] == [
        ("features_svm", "svm")]
    assert {r["method"] for r in results} == {"features_svm", "inherit"}
    row = next(r for r in results if r["method"] == "features_svm")
    assert row["n_folds"] == "2" and row["n_test"] == "12"
    assert "| features_svm | svm | 2 |" in (exp / "results.md").read_text()
    # the vectors are cached once under the prepare folder, for every fold and method
    entries = list((prepared / "handcrafted").glob("*/*.npy"))
    assert len(entries) == 12
