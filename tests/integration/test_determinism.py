"""Determinism on the CPU: the same seed gives the same run, another seed another run.

The real recipe runs in subprocesses on a tiny dataset (see ``run_helpers``);
the first run is the reference shared with ``test_faults``.
"""

import pytest
from run_helpers import (
    assert_same_results,
    checkpoint_meta,
    checkpoint_tensors,
    feature_entries,
    final_checkpoint,
    reference,
    result_files,
    run_ok,
    states_equal,
)


@pytest.fixture(scope="module")
def ref():
    return reference()


def test_same_seed_gives_identical_folds_partitions_checkpoints_and_tables(ref, tmp_path):
    exp = run_ok(tmp_path / "results")
    # folds.csv, partition.csv, segment/song predictions, metrics.json, results.csv/.md byte for byte,
    # and the final checkpoint of every fold (its metrics and every tensor).
    assert_same_results(exp, ref, "second run with the same seed")
    assert feature_entries(exp.parents[1]) == feature_entries(ref.parents[1])


def test_a_fold_does_not_depend_on_the_other_folds_and_methods_of_the_run(ref, tmp_path):
    """One fold of one method run alone equals the same fold in the full run (what resuming relies on)."""
    exp = run_ok(tmp_path / "results", methods="[inherit]", folds="[1]")
    got, want = result_files(exp), result_files(ref)
    assert got["folds.csv"] == want["folds.csv"]
    fold = sorted(name for name in got if name.startswith("inherit/fold_1/"))
    assert fold == sorted(name for name in want if name.startswith("inherit/fold_1/")) and len(fold) >= 4
    assert all(got[name] == want[name] for name in fold)
    assert checkpoint_meta(final_checkpoint(exp / "inherit" / "fold_1")) == \
        checkpoint_meta(final_checkpoint(ref / "inherit" / "fold_1"))


def test_another_seed_changes_folds_partitions_predictions_and_weights(ref, tmp_path):
    exp = run_ok(tmp_path / "results", seed=7, methods="[sssl]", folds="[0]")
    assert exp.name.endswith("_seed7")
    got, want = result_files(exp), result_files(ref)
    for name in ("folds.csv", "sssl/fold_0/partition.csv", "sssl/fold_0/segment_predictions.csv",
                 "sssl/fold_0/song_predictions.csv"):
        assert got[name] != want[name], f"{name} is the same with another seed"
    assert not states_equal(checkpoint_tensors(final_checkpoint(exp / "sssl" / "fold_0")),
                            checkpoint_tensors(final_checkpoint(ref / "sssl" / "fold_0")))


def _run_log(exp):
    """The console output of the run that wrote the experiment folder ``exp`` (see ``run_ok``)."""
    results = exp.parents[1]
    return (results.parent / f"{results.name}-run.log").read_text(errors="replace")


def test_shared_warmup_gives_the_results_of_training_it_again(ref, tmp_path):
    """The reference's inherit folds start from the sssl folds' warm-up snapshot; training it again changes
    nothing: the same checkpoints, partitions, predictions and tables byte for byte."""
    assert "inherit fold 0: epochs 1-1 restored from the warm-up snapshot" in _run_log(ref)
    assert (ref / "warmup" / "snapshot_fold_1" / "warmup_key.json").is_file()
    exp = run_ok(tmp_path / "results", share_warmup=False)
    assert "restored from the warm-up snapshot" not in _run_log(exp)
    assert not (exp / "warmup").exists()
    assert_same_results(exp, ref, "run without the shared warm-up")


def test_a_snapshot_of_other_settings_is_not_used(ref, tmp_path):
    """A warm-up snapshot written with another learning rate is ignored: the method trains its own."""
    results = tmp_path / "results"
    first = run_ok(results, methods="[inherit]", folds="[0]", lr=0.002)
    assert (first / "warmup" / "snapshot_fold_0" / "warmup_key.json").is_file()
    exp = run_ok(results, log_name="second.log", methods="[sssl]", folds="[0]")
    log = (results.parent / f"{results.name}-second.log").read_text(errors="replace")
    assert "restored from the warm-up snapshot" not in log
    got, want = result_files(exp), result_files(ref)
    assert all(got[f"sssl/fold_0/{name}"] == want[f"sssl/fold_0/{name}"]
               for name in ("partition.csv", "epoch_stats.csv", "segment_predictions.csv", "metrics.json"))


def test_two_fold_jobs_give_the_results_of_a_serial_run(ref, tmp_path):
    """fold_jobs: 2 trains the folds in two processes (one thread each, as the serial reference)."""
    exp = run_ok(tmp_path / "results", fold_jobs=2)
    assert "fold job: folds [0]" in _run_log(exp) and "fold job: folds [1]" in _run_log(exp)
    assert_same_results(exp, ref, "run with fold_jobs: 2")
