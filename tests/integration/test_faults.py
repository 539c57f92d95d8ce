"""Faults: a run killed with SIGKILL anywhere resumes with the same command and ends as an uninterrupted run.

Every test runs the real recipe (``recipes/csv/train.py``) on a tiny dataset
in a subprocess, kills it with a real SIGKILL (see ``run_helpers`` for how
the kill point is chosen), runs the *same command* again and compares the
outputs byte for byte with one uninterrupted reference run of the same seed:
folds, partitions, segment and song predictions, metrics, result tables and
the final checkpoints. Finished work (the songs table, feature cache
entries, finished folds) must be reused, unfinished work recomputed.

Failed writes (disk full, permission denied) must give an error naming the
file and leave the previous valid files as they were.
"""

import errno
import json
import os
import shutil
import signal

import numpy as np
import pytest
from run_helpers import (
    N_SONGS,
    assert_same_results,
    checkpoints,
    experiment_folder,
    feature_entries,
    feature_folder,
    fold_folders,
    kill_job,
    last_epoch,
    partition_epochs,
    prepared_folder,
    reference,
    run_train,
    start_train,
    temp_files,
    train_args,
    wait_until,
)

from sssl_brain.dataio.features import FeatureCache, FeatureConfig
from sssl_brain.utils import io_utils

KILLED = -signal.SIGKILL


@pytest.fixture(scope="module")
def ref():
    """Experiment folder of the uninterrupted reference run (shared with test_determinism)."""
    return reference()


def ref_results(ref):
    return ref.parents[1]  # <results>/csv/<experiment>


def run_or_fail(args, log):
    rc, out = run_train(args, log)
    assert rc == 0, f"the same command run again failed (exit {rc}):\n{out[-4000:]}"
    return out


def mtimes(paths):
    return {str(p): os.stat(p).st_mtime_ns for p in paths}


# ----------------------------------------------------------------------------- SIGKILL and resume
def test_killed_in_prepare_then_in_feature_extraction_then_resumed(ref, tmp_path):
    results = tmp_path / "results"
    args = train_args(results, feature_jobs=2)  # the yaml's default: two feature worker processes
    prepared = prepared_folder(results)

    # 1. Killed while the prepare step writes prepare_report.json: songs.csv is in place, but the
    #    options file that vouches for a finished preparation is not; nothing else has started.
    rc, out = run_train(args, tmp_path / "1.log", kill_at="write:prepare_report.json")
    assert rc == KILLED, out[-3000:]
    assert (prepared / "songs.csv").is_file() and not (prepared / "prepare_options.json").exists()
    assert temp_files(prepared), "the interrupted write should have left its temporary file"
    assert feature_folder(results) is None

    # 2. The same command prepares again (the table is not trusted) and is killed once 3 of the 12
    #    songs' features are finished (the workers are killed with it).
    rc, out = run_train(args, tmp_path / "2.log", kill_at="features:3")
    assert rc == KILLED, out[-3000:]
    assert (prepared / "prepare_options.json").is_file()
    ref_songs = prepared_folder(ref_results(ref)) / "songs.csv"
    assert (prepared / "songs.csv").read_bytes() == ref_songs.read_bytes()
    partial = feature_entries(results)
    reference_entries = feature_entries(ref_results(ref))
    assert 3 <= len(partial) < N_SONGS, f"{len(partial)} entries after the kill"
    assert all(partial[name] == reference_entries[name] for name in partial), "a finished entry is damaged"
    assert not list(results.glob("csv/*_seed*/*/fold_*/save/CKPT+*")), "training started before the kill"
    finished = mtimes(feature_folder(results) / name for name in partial)

    # 3. The same command completes: finished entries are reused (not rewritten), the rest computed,
    #    and every output equals the uninterrupted run.
    run_or_fail(args, tmp_path / "3.log")
    assert feature_entries(results) == reference_entries
    assert mtimes(finished) == finished, "finished feature entries were recomputed"
    assert_same_results(experiment_folder(results), ref, "resumed after kills in prepare and features")


def test_killed_inside_an_epoch_then_between_folds_then_in_stage_2_then_resumed(ref, tmp_path):
    results = tmp_path / "results"
    args = train_args(results)

    # 1. Killed just before the 2nd training batch of epoch 2 of the first fold: the epoch-1
    #    checkpoint exists, epoch 2 has computed its partition and trained one batch.
    rc, out = run_train(args, tmp_path / "1.log", kill_at="batch:2:2")
    assert rc == KILLED, out[-3000:]
    exp = experiment_folder(results)
    fold0 = exp / "sssl" / "fold_0"
    assert last_epoch(fold0) == 1 and partition_epochs(fold0) == [2]
    assert not (fold0 / "metrics.json").exists()

    # 2. The same command resumes fold 0 from its epoch-1 checkpoint; killed from outside as soon as
    #    fold 0 is finished (its metrics.json, written last, exists), i.e. between folds.
    proc = start_train(args, tmp_path / "2.log")
    try:
        assert wait_until(lambda: (fold0 / "metrics.json").exists(), proc), "fold 0 never finished"
    finally:
        kill_job(proc)
    out = (tmp_path / "2.log").read_text(errors="replace")
    assert proc.returncode == KILLED, out[-3000:]
    assert "Loading a checkpoint from" in out and str(fold0) in out
    assert partition_epochs(fold0) == [2]  # the redone epoch replaced its row, did not add one
    assert not (exp / "sssl" / "fold_1" / "metrics.json").exists()
    fold0_files = mtimes([fold0 / "metrics.json", fold0 / "song_predictions.csv", *checkpoints(fold0)])

    # 3. The same command trains fold 1 and is killed while writing its song predictions (stage 2):
    #    segment_predictions.csv is written, song_predictions.csv and metrics.json are not.
    fold1 = exp / "sssl" / "fold_1"
    rc, out = run_train(args, tmp_path / "3.log", kill_at="write:song_predictions.csv")
    assert rc == KILLED, out[-3000:]
    assert "sssl fold 0: finished" in out
    assert (fold1 / "segment_predictions.csv").exists() and not (fold1 / "metrics.json").exists()
    assert last_epoch(fold1) == 2
    fold1_checkpoints = mtimes(checkpoints(fold1))

    # 4. The same command completes: fold 0 is not retrained, fold 1 is not retrained either (its final
    #    checkpoint is loaded and only stage 2 runs again), the inherit folds are trained.
    out = run_or_fail(args, tmp_path / "4.log")
    assert "sssl fold 0: finished" in out
    assert mtimes(fold0_files) == fold0_files, "the finished fold 0 was retrained"
    assert mtimes(fold1_checkpoints) == fold1_checkpoints, "fold 1 was retrained after its last epoch"
    assert_same_results(exp, ref, "resumed after kills inside an epoch, between folds and in stage 2")


def test_killed_while_saving_a_checkpoint_then_resumed(ref, tmp_path):
    results = tmp_path / "results"
    args = train_args(results)
    # Killed half-way through writing model.ckpt of the epoch-2 checkpoint of the first fold.
    rc, out = run_train(args, tmp_path / "1.log", kill_at="save:model.ckpt:2")
    assert rc == KILLED, out[-3000:]
    assert not (experiment_folder(results) / "sssl" / "fold_0" / "metrics.json").exists()
    run_or_fail(args, tmp_path / "2.log")
    assert_same_results(experiment_folder(results), ref, "resumed after a kill while saving a checkpoint")


# ----------------------------------------------------------------------------- failed writes
def test_no_space_for_the_feature_cache_is_a_clear_error_and_keeps_valid_entries(ref, tmp_path):
    """A real failed write (RLIMIT_FSIZE): exit with the errno and the entry's path; other entries intact."""
    results = tmp_path / "results"
    shutil.copytree(prepared_folder(ref_results(ref)), prepared_folder(results))
    folder = feature_folder(results)
    entries = sorted(folder.glob("*.npy"))
    for entry in entries[::2]:
        entry.unlink()
    kept = feature_entries(results)
    before = mtimes(folder / name for name in kept)
    smallest = min(len(data) for data in feature_entries(ref_results(ref)).values())
    rc, out = run_train(train_args(results), tmp_path / "full.log", max_file_bytes=smallest // 2)
    assert rc not in (0, KILLED, -signal.SIGXFSZ), out[-3000:]
    last = out.strip().splitlines()[-1]
    assert last.startswith("error: ") and "File too large" in last, last  # one line, no traceback
    assert str(folder) in last and ".npy" in last, last
    assert feature_entries(results) == kept and mtimes(before) == before
    assert temp_files(results) == []
    assert not list(results.glob("csv/*_seed*/*/fold_*/save/CKPT+*")), "training started"


@pytest.fixture
def failing(monkeypatch):
    """Makes the next writes fail like a full disk (ENOSPC at fsync) or a read-only folder (EACCES)."""
    def install(code):
        def fsync(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def mkstemp(*args, **kwargs):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), kwargs.get("dir"))

        if code == errno.ENOSPC:
            monkeypatch.setattr(os, "fsync", fsync)
        else:
            monkeypatch.setattr(io_utils.tempfile, "mkstemp", mkstemp)
    return install


WRITERS = {
    "csv": lambda path, v: io_utils.atomic_write_csv(path, [{"id": "a", "value": v}], ["id", "value"]),
    "json": lambda path, v: io_utils.atomic_write_json(path, {"value": v}),
    "text": lambda path, v: io_utils.atomic_write_text(path, f"value {v}\n"),
    "npy": lambda path, v: io_utils.atomic_save_npy(path, np.full((3, 2), v, dtype=np.float32)),
}


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES], ids=["disk_full", "permission"])
@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_failed_write_names_the_file_and_keeps_the_previous_version(tmp_path, failing, kind, code):
    path = tmp_path / "results" / f"table.{kind}"
    WRITERS[kind](str(path), 1)
    before = path.read_bytes()
    failing(code)
    with pytest.raises(OSError) as info:
        WRITERS[kind](str(path), 2)
    assert info.value.errno == code and str(path) in str(info.value)
    assert path.read_bytes() == before
    assert temp_files(tmp_path) == []


def test_failed_cache_write_keeps_the_entries_already_written(tmp_path, failing):
    from audio_fixtures import write_audio

    songs = [write_audio(str(tmp_path / f"s{k}.wav"), duration=1.0, freq=300.0 + 100 * k) for k in range(3)]
    cache = FeatureCache(str(tmp_path / "cache"), FeatureConfig())
    cache.build(songs[:2], n_jobs=1, progress=False)
    before = {p: open(cache.entry_path(p), "rb").read() for p in songs[:2]}
    failing(errno.ENOSPC)
    with pytest.raises(OSError) as info:
        cache.build(songs, n_jobs=1, progress=False)
    assert info.value.errno == errno.ENOSPC and cache.entry_path(songs[2]) in str(info.value)
    assert {p: open(cache.entry_path(p), "rb").read() for p in songs[:2]} == before
    assert not cache.has(songs[2]) and temp_files(tmp_path) == []


def test_failed_results_write_keeps_the_finished_tables(ref, tmp_path, failing):
    """Rewriting results.md/.csv on a full disk fails naming the file and keeps the previous tables."""
    from sssl_brain.song_level.results import collect_results, write_results

    exp = tmp_path / "exp"
    shutil.copytree(ref, exp, ignore=shutil.ignore_patterns("save", "*.png", "log.txt"))
    before = {name: (exp / name).read_bytes() for name in ("results.md", "results.csv")}
    rows = collect_results(str(exp))
    failing(errno.ENOSPC)
    with pytest.raises(OSError) as info:
        write_results(str(exp), rows, title="again")
    assert info.value.errno == errno.ENOSPC and str(exp) in str(info.value)
    assert {name: (exp / name).read_bytes() for name in before} == before
    assert temp_files(exp) == []
    for fold in fold_folders(exp):
        json.loads((fold / "metrics.json").read_text())  # still valid
