"""A finished fold is reused only when the same settings made it (``fold_settings.json``)."""

import pytest
from run_helpers import run_ok, run_train, scratch_dir, train_args


@pytest.fixture(scope="module")
def finished():
    results = scratch_dir("finished") / "results"
    return results, run_ok(results, methods="[inherit]")


def test_the_same_settings_reuse_the_finished_folds(finished):
    results, exp = finished
    before = (exp / "inherit" / "fold_0" / "metrics.json").stat().st_mtime_ns
    rc, out = run_train(train_args(results, methods="[inherit]"), results.parent / "again.log")
    assert rc == 0, out[-3000:]
    assert "finished" in out and "same settings), not retrained" in out
    assert (exp / "inherit" / "fold_0" / "metrics.json").stat().st_mtime_ns == before


def test_other_settings_are_refused_by_name(finished):
    results, exp = finished
    rc, out = run_train(train_args(results, methods="[inherit]", batch_size=4), results.parent / "other.log")
    assert rc != 0
    assert "holds a fold finished with other settings (batch_size: 8 there, 4 now" in out


def test_a_finished_fold_without_its_settings_record_is_refused(tmp_path):
    results = tmp_path / "results"
    exp = run_ok(results, methods="[inherit]")
    (exp / "inherit" / "fold_0" / "fold_settings.json").unlink()
    rc, out = run_train(train_args(results, methods="[inherit]"), tmp_path / "again.log")
    assert rc != 0 and "holds a finished fold without fold_settings.json" in out
