"""The feature pack, the device-features path and the GPU window's dry run, all on the CPU.

* a pack round-trips the tiny dataset's features within its documented
  quantisation bound, and a changed or missing part is refused by name;
* ``--device_features=True`` (batches cut from one tensor on the device)
  gives the same outputs and checkpoints as the default loader, byte for byte;
* a run from an unpacked pack needs no audio;
* ``benchmarks/gpu_4q_window.py --dry-run`` runs its whole chain.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from run_helpers import REPO, assert_same_results, dataset, run_ok, scratch_dir

from sssl_brain.dataio.features import FeatureCache, FeatureConfig
from sssl_brain.dataio.pack import read_manifest, unpack
from sssl_brain.dataio.songs import read_songs_table
from sssl_brain.utils.errors import DataError

PYTHON = sys.executable
HPARAMS = REPO / "hparams" / "vgg16_sssl.yaml"


@pytest.fixture(scope="module")
def packed():
    """``(pack_folder, results_folder)``: the tiny dataset packed in parts of 0.05 MiB."""
    results = scratch_dir("pack")
    out = results / "pack"
    cmd = [PYTHON, str(REPO / "recipes" / "pack_features.py"), str(REPO / "recipes" / "csv"), str(HPARAMS),
           f"--data_folder={dataset()}", f"--results_folder={results}", f"--pack_out={out}",
           "--pack_part_mib=0.05", "--feature_jobs=1"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, results


def test_pack_round_trip_within_bound(packed, tmp_path):
    pack, results = packed
    manifest = read_manifest(pack)
    assert len(manifest["parts"]) >= 2, "the tiny pack should span several parts"
    assert manifest["max_error_db"] == pytest.approx((manifest["db_max"] - manifest["db_min"]) / 255 / 2)
    assert manifest["clipped_low"] == manifest["clipped_high"] == 0
    songs = read_songs_table(results / "csv" / "prepared" / "songs.csv")
    config = FeatureConfig.from_hparams({})
    assert FeatureConfig(**manifest["features"]) == config
    cache = FeatureCache(results / "csv" / "prepared" / "features", config)
    features = unpack(pack, tmp_path / "unpacked")
    assert [s["song_id"] for s in read_songs_table(features.songs_csv)] == [s["song_id"] for s in songs]
    worst = 0.0
    for song in songs:
        original = np.asarray(cache.load(song["path"]))
        restored = np.asarray(features.load(song["path"]))
        assert restored.shape == original.shape and restored.dtype == np.float32
        worst = max(worst, float(np.abs(restored - original).max()))
    assert 0 < worst <= manifest["max_error_db"] + 1e-4  # float32 rounding of the dB values
    assert features.build([s["path"] for s in songs]) == {s["path"]: cache.n_frames(s["path"]) for s in songs}
    with pytest.raises(DataError, match="not a song of the feature pack"):
        features.n_frames("/nowhere/else.wav")


def test_changed_part_is_refused_by_name(packed, tmp_path):
    pack = tmp_path / "pack"
    shutil.copytree(packed[0], pack)
    part = pack / "part_001.xz"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(DataError, match="part_001.xz is damaged or changed"):
        unpack(pack, tmp_path / "out")
    assert not (tmp_path / "out" / "pack.json").exists()


def test_missing_part_is_refused_by_name(packed, tmp_path):
    pack = tmp_path / "pack"
    shutil.copytree(packed[0], pack)
    (pack / "part_000.xz").unlink()
    with pytest.raises(DataError, match="part_000.xz of the pack is missing"):
        unpack(pack, tmp_path / "out")


def test_device_features_give_the_same_results():
    """The device path (on the CPU here) trains the same numbers as the default loader."""
    ref = run_ok(scratch_dir("loader") / "results")
    device = run_ok(scratch_dir("device") / "results", device_features=True)
    assert_same_results(device, ref, what="device_features=True")
    timing = json.loads((device / "sssl" / "fold_0" / "timing.json").read_text())
    assert timing["device_features"] is True and timing["epochs_run"] >= 1
    assert timing["train_segments_seen"] == timing["epochs_run"] * timing["n_train"]


def test_gpu_window_dry_run(packed, tmp_path):
    """The prepared GPU command, on the CPU with a tiny model: unpack, throughput, a fold, the tables."""
    out = tmp_path / "window"
    cmd = [PYTHON, str(REPO / "benchmarks" / "gpu_4q_window.py"), "--pack", str(packed[0]), "--out", str(out),
           "--dry-run", "--folds", "0", "--n-folds", "2", "--fold-jobs", "1", "--share", "2",
           "--budget-s", "600", "--profile-steps", "1", "--profile-warmup", "0"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu_4q.json").read_text())
    assert report["throughput"]["raw_seg_per_s"] > 0 and report["throughput"]["shared_raw_seg_per_s"] > 0
    finished = {(r["method"], r["finished"]) for r in report["loop"]}
    assert finished == {("inherit", True), ("sssl", True)}
    assert all(r["loop_train_seg_per_s"] > 0 for r in report["loop"])
    assert [r["exit"] for r in report["runs"]] == [0]
    profile = report["profile"]  # the loop's trace, summarised (no GPU kernels on the CPU)
    assert profile["steps"] == 1 and profile["step_ms"] > 0 and profile["top_cpu_ops_ms_per_step"]
    table = (out / "results.md").read_text()
    assert "sssl" in table and "inherit" in table
