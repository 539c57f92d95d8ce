"""Tests of the built-in demo dataset generator (demo_data)."""

import json
import os
from collections import Counter

import librosa
import numpy as np
import pytest
import soundfile as sf
from demo_data import (
    AROUSAL_OF,
    QUADRANT_CUES,
    QUADRANTS,
    VALENCE_OF,
    dataset_summary,
    draw_song_plan,
    generate_demo_dataset,
    main,
    synthesize_song,
)

from sssl_brain.utils.errors import ConfigError, DataError
from sssl_brain.utils.io_utils import atomic_write_csv, read_csv_dicts

SR = 22050
SMALL = {"n_songs": 12, "min_duration": 6, "max_duration": 8, "progress": False}

_MAJOR = np.zeros(12)
_MAJOR[[0, 4, 7]] = 1.0
_MINOR = np.zeros(12)
_MINOR[[0, 3, 7]] = 1.0


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """Three small datasets: seed 0 with 2 workers, seed 0 in-process, seed 1."""
    root = tmp_path_factory.mktemp("demo")
    out = {}
    for name, seed, jobs in (("a", 0, 2), ("b", 0, 1), ("c", 1, 1)):
        folder = str(root / name)
        generate_demo_dataset(folder, seed=seed, n_jobs=jobs, **SMALL)
        out[name] = folder
    return out


def _all_files(folder):
    files = {}
    for base, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, folder)] = f.read()
    return files


def _truth_by_song(folder):
    truth = {}
    for row in read_csv_dicts(os.path.join(folder, "truth", "segment_truth.csv")):
        truth.setdefault(row["song_id"], []).append(row)
    return truth


def _n_runs(seconds, main_q):
    """Number of contiguous stretches of non-main seconds."""
    return sum(1 for k, q in enumerate(seconds) if q != main_q and (k == 0 or seconds[k - 1] == main_q))


def _major_minor(chroma):
    """Best major-triad correlation minus best minor-triad correlation of a chroma vector."""
    c = chroma - chroma.mean()
    major = max(np.corrcoef(c, np.roll(_MAJOR, k))[0, 1] for k in range(12))
    minor = max(np.corrcoef(c, np.roll(_MINOR, k))[0, 1] for k in range(12))
    return major - minor


def _per_second_cues(y, n_seconds):
    """Mean onset strength, RMS and major-minor chroma score of every whole second."""
    hop = 512
    onset = librosa.onset.onset_strength(y=y, sr=SR, hop_length=hop)
    rms = librosa.feature.rms(y=y, hop_length=hop)[0]
    chroma = librosa.feature.chroma_cqt(y=y, sr=SR, hop_length=hop)
    fps = SR / hop
    out = []
    for s in range(n_seconds):
        a, b = int(s * fps), int((s + 1) * fps)
        out.append((onset[a:b].mean(), rms[a:b].mean(), _major_minor(chroma[:, a:b].mean(axis=1))))
    return np.array(out)


def test_layout_and_columns(datasets):
    folder = datasets["a"]
    rows = read_csv_dicts(os.path.join(folder, "annotations.csv"))
    assert list(rows[0]) == ["song_id", "path", "valence", "arousal", "quadrant"]
    assert len(rows) == 12
    assert len({r["song_id"] for r in rows}) == 12
    for r in rows:
        assert r["path"] == f"audio/{r['song_id']}.wav"
        info = sf.info(os.path.join(folder, r["path"]))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (SR, 1, "PCM_16", "WAV")
        assert 6 <= info.frames / SR <= 8
        q = r["quadrant"]
        assert q in QUADRANTS
        assert (r["valence"], r["arousal"]) == (f"{VALENCE_OF[q]:.1f}", f"{AROUSAL_OF[q]:.1f}")
    truth_rows = read_csv_dicts(os.path.join(folder, "truth", "segment_truth.csv"))
    assert list(truth_rows[0]) == ["song_id", "second", "valence", "arousal", "quadrant"]
    with open(os.path.join(folder, "demo_settings.json")) as f:
        assert json.load(f)["n_songs"] == 12
    assert not [n for n in os.listdir(os.path.join(folder, "audio")) if n.startswith(".tmp")]


def test_balanced_quadrants(datasets):
    rows = read_csv_dicts(os.path.join(datasets["a"], "annotations.csv"))
    assert Counter(r["quadrant"] for r in rows) == {"Q1": 3, "Q2": 3, "Q3": 3, "Q4": 3}


def test_deterministic_and_seed_dependent(datasets):
    a, b, c = (_all_files(datasets[k]) for k in "abc")
    assert a.keys() == b.keys()
    for name in a:
        assert a[name] == b[name], f"{name} differs between 2 workers and 1 worker with the same seed"
    assert a["truth/segment_truth.csv"] != c["truth/segment_truth.csv"]
    assert a["audio/song_0001.wav"] != c["audio/song_0001.wav"]


def test_truth_one_row_per_second_and_minority_bounds(datasets):
    folder = datasets["a"]
    songs = {r["song_id"]: r for r in read_csv_dicts(os.path.join(folder, "annotations.csv"))}
    truth = _truth_by_song(folder)
    assert truth.keys() == songs.keys()
    for song_id, rows in truth.items():
        n_sec = int(np.floor(sf.info(os.path.join(folder, songs[song_id]["path"])).duration))
        assert [int(r["second"]) for r in rows] == list(range(n_sec))
        main_q = songs[song_id]["quadrant"]
        quads = [r["quadrant"] for r in rows]
        for r in rows:
            q = r["quadrant"]
            assert (int(r["valence"]), int(r["arousal"])) == (VALENCE_OF[q], AROUSAL_OF[q])
        minority = [q for q in quads if q != main_q]
        assert 1 <= len(minority) <= 0.45 * n_sec
        assert len(set(minority)) == 1
        assert _n_runs(quads, main_q) in (1, 2)


def test_plan_statistics_default_durations():
    fractions, runs = [], Counter()
    for i in range(400):
        duration, seconds = draw_song_plan(np.random.default_rng(i), QUADRANTS[i % 4], 20, 45)
        assert 20 <= duration <= 45 and len(seconds) == int(np.floor(duration))
        main_q = QUADRANTS[i % 4]
        minority = [q for q in seconds if q != main_q]
        fractions.append(len(minority) / len(seconds))
        runs[_n_runs(seconds, main_q)] += 1
    assert 0.2 <= np.mean(fractions) <= 0.35
    assert min(fractions) >= 0.08 and max(fractions) <= 0.45
    assert set(runs) == {1, 2} and runs[2] >= 80


def test_skip_when_complete_and_regenerate_on_change(tmp_path):
    folder = str(tmp_path / "d")
    settings = {**SMALL, "n_songs": 4}
    generate_demo_dataset(folder, **settings)
    wav = os.path.join(folder, "audio", "song_0001.wav")
    first = os.stat(wav).st_mtime_ns
    os.utime(wav, ns=(first - 10**9, first - 10**9))
    stamp = os.stat(wav).st_mtime_ns
    generate_demo_dataset(folder, **settings)
    assert os.stat(wav).st_mtime_ns == stamp  # skipped
    with open(wav, "rb") as f:
        old = f.read()
    generate_demo_dataset(folder, seed=5, **settings)
    with open(wav, "rb") as f:
        assert f.read() != old
    with open(os.path.join(folder, "demo_settings.json")) as f:
        assert json.load(f)["seed"] == 5
    os.remove(os.path.join(folder, "audio", "song_0002.wav"))  # incomplete: regenerated
    generate_demo_dataset(folder, seed=5, **settings)
    assert os.path.isfile(os.path.join(folder, "audio", "song_0002.wav"))


def test_refuses_foreign_dataset_and_bad_settings(tmp_path):
    folder = tmp_path / "foreign"
    rows = [{"song_id": "x", "path": "x.wav"}]
    atomic_write_csv(str(folder / "annotations.csv"), rows, ["song_id", "path"])
    with pytest.raises(DataError, match="not written by the demo generator"):
        generate_demo_dataset(str(folder), **SMALL)
    for bad in ({"n_songs": 2}, {"seed": -1}, {"min_duration": 3}, {"min_duration": 9, "max_duration": 8},
                {"sample_rate": 100}):
        with pytest.raises(ConfigError):
            generate_demo_dataset(str(tmp_path / "x"), **{**SMALL, **bad})
    assert main([str(folder), "--quiet"]) == 2


def test_summary_counts_label_noise(datasets):
    summary = dataset_summary(datasets["a"])
    truth = read_csv_dicts(os.path.join(datasets["a"], "truth", "segment_truth.csv"))
    assert summary["n_songs"] == 12 and summary["total_duration_s"] == len(truth)
    noise = summary["noise_rate"]
    # the minority quadrant always differs, a binary label only for 2 of the 3 other quadrants
    assert 0.05 < noise["quadrant"] <= 0.45
    assert noise["valence"] <= noise["quadrant"] and noise["arousal"] <= noise["quadrant"]


def test_cues_carry_emotion_in_dataset(datasets):
    """Pooled over the seconds of the small dataset: arousal and valence cues differ by true label."""
    folder = datasets["a"]
    songs = read_csv_dicts(os.path.join(folder, "annotations.csv"))
    truth = _truth_by_song(folder)
    cues, labels = [], []
    for song in songs:
        y, _ = sf.read(os.path.join(folder, song["path"]), dtype="float32")
        rows = truth[song["song_id"]]
        cues.append(_per_second_cues(y, len(rows)))
        labels += [(int(r["valence"]), int(r["arousal"])) for r in rows]
    cues, labels = np.concatenate(cues), np.array(labels)
    high_a, high_v = labels[:, 1] == 1, labels[:, 0] == 1
    assert cues[high_a, 0].mean() > 1.5 * cues[~high_a, 0].mean()  # onset strength
    assert cues[high_a, 1].mean() > 1.5 * cues[~high_a, 1].mean()  # RMS
    assert cues[high_v, 2].mean() > cues[~high_v, 2].mean() + 0.1  # major-minor chroma


def test_cues_within_song():
    """Same song (key, timbres) through all four quadrants: the cues follow the quadrant."""
    plan = [q for q in QUADRANTS for _ in range(3)]
    wins = Counter()
    for i in range(6):
        y = synthesize_song(np.random.default_rng(1000 + i), plan, 12.0, SR)
        cues = _per_second_cues(y, 12)
        by_q = {q: cues[k * 3 : (k + 1) * 3].mean(axis=0) for k, q in enumerate(QUADRANTS)}
        wins["onset"] += by_q["Q1"][0] + by_q["Q2"][0] > by_q["Q3"][0] + by_q["Q4"][0]
        wins["rms"] += by_q["Q1"][1] + by_q["Q2"][1] > by_q["Q3"][1] + by_q["Q4"][1]
        wins["mode"] += by_q["Q1"][2] + by_q["Q4"][2] > by_q["Q2"][2] + by_q["Q3"][2]
    assert wins["onset"] >= 5 and wins["rms"] >= 5 and wins["mode"] >= 5, wins


def test_cue_table_is_consistent():
    for q in QUADRANTS:
        cues = QUADRANT_CUES[q]
        assert cues["mode"] == ("major" if VALENCE_OF[q] else "minor")
        assert abs(sum(cues["drums"].values()) - 1.0) < 1e-9
    assert min(QUADRANT_CUES["Q1"]["tempo_bpm"]) > min(QUADRANT_CUES["Q4"]["tempo_bpm"])
    assert max(QUADRANT_CUES["Q2"]["dissonance"]) > max(QUADRANT_CUES["Q1"]["dissonance"])


def test_demo_export_says_when_no_method_has_a_trained_fold(tmp_path):
    from run_demo import export_and_plot

    (tmp_path / "sssl" / "fold_0").mkdir(parents=True)  # a warm-up-only folder is not a trained fold
    with pytest.raises(SystemExit, match=r"no trained fold 0 of sssl, proposed_star or inherit in .*"):
        export_and_plot(str(tmp_path), str(tmp_path), str(tmp_path / "model"))


def test_demo_exports_a_fold_it_ran_when_fold_0_was_not_run(tmp_path):
    """``run_demo.py --folds "[2, 3]"`` exports fold 2 (it used to stop with "no trained fold 0")."""
    from run_demo import fold_to_export

    for method, fold in (("inherit", 2), ("sssl", 3), ("sssl", 2)):
        (tmp_path / method / f"fold_{fold}").mkdir(parents=True)
        (tmp_path / method / f"fold_{fold}" / "fold_config.json").write_text("{}")
    (tmp_path / "sssl" / "fold_0").mkdir()  # not trained: ignored
    assert fold_to_export(str(tmp_path), [2, 3]) == str(tmp_path / "sssl" / "fold_2")
    assert fold_to_export(str(tmp_path), [3, 2]) == str(tmp_path / "sssl" / "fold_3")
    with pytest.raises(SystemExit, match=r"no trained fold 0, 1 of sssl"):
        fold_to_export(str(tmp_path), [0, 1])


def test_demo_summarises_the_folder_its_command_line_trained(tmp_path):
    """``run_demo.py --seed=1987`` trains into ``quadrant_seg1s_seed1987``; the summary used to read a
    fixed ``..._seed1986`` folder and stopped with FileNotFoundError after the training."""
    from run_demo import DEMO_OVERRIDES, ROOT, experiment_folder

    argv = [os.path.join(ROOT, "hparams", "vgg16_sssl.yaml"), *DEMO_OVERRIDES, f"--data_folder={tmp_path}",
            f"--results_folder={tmp_path}", "--dataset=demo"]
    assert experiment_folder(argv) == str(tmp_path / "demo" / "quadrant_seg1s_seed1986")
    assert experiment_folder(argv + ["--seed=1987", "--seg_dur=2"]) == str(
        tmp_path / "demo" / "quadrant_seg2s_seed1987")


def test_demo_recipe_is_importable_by_the_spawned_fold_processes():
    """``make demo`` trains its folds in spawned processes (``fold_jobs: 2``), which unpickle the
    recipe's ``fold_job`` by module name: a fresh interpreter with the demo's ``sys.path`` must find
    it (a module loaded under a made-up name is not found there)."""
    import pickle
    import subprocess
    import sys

    from run_demo import DEMO_OVERRIDES, load_recipe

    assert "--fold_jobs=2" in DEMO_OVERRIDES
    recipe = load_recipe("csv")
    code = "import pickle, sys; f = pickle.loads(sys.stdin.buffer.read()); print(f.__module__, f.__name__)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(recipe.fold_job),
                          capture_output=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().split() == [recipe.__name__, "fold_job"]
