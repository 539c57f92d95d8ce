"""``train_labels: truth``: the clean-label ceiling trains and validates on each segment's truth."""

import numpy as np
import pytest
from run_helpers import run_ok, run_train, scratch_dir, train_args

from sssl_brain.utils.io_utils import read_csv_dicts


@pytest.fixture(scope="module")
def ceiling():
    return run_ok(scratch_dir("ceiling") / "results", methods="[inherit]", train_labels="truth",
                  number_of_epochs=2)


def test_the_ceiling_validates_against_the_truth_and_keeps_the_song_labels_in_its_outputs(ceiling):
    fold = ceiling / "inherit" / "fold_0"
    stats = read_csv_dicts(fold / "epoch_stats.csv")
    # the validation labels are the truth: accuracy against them is accuracy against the truth
    assert [r["valid_acc"] for r in stats] == [r["valid_acc_truth"] for r in stats]
    rows = read_csv_dicts(fold / "segment_predictions.csv")
    label, truth = (np.array([int(r[k]) for r in rows]) for k in ("label", "truth"))
    assert (label != truth).any()  # the demo's minority seconds: the outputs still carry the song labels
    assert all(label[i] == label[j] for i, j in zip(range(len(rows) - 1), range(1, len(rows)))
               if rows[i]["song_id"] == rows[j]["song_id"])


def test_inherited_labels_validate_against_the_song_labels(ceiling):
    # the same tiny data with the default: the two accuracies differ in some epoch (else the test above proves
    # nothing about the truth)
    exp = run_ok(scratch_dir("inherited") / "results", methods="[inherit]", number_of_epochs=2)
    stats = read_csv_dicts(exp / "inherit" / "fold_0" / "epoch_stats.csv")
    assert [r["valid_acc"] for r in stats] != [r["valid_acc_truth"] for r in stats]


def test_a_dataset_without_truth_is_refused_by_name(tmp_path):
    import shutil

    from run_helpers import dataset

    data = tmp_path / "data"
    shutil.copytree(dataset(), data)
    shutil.rmtree(data / "truth")
    args = train_args(tmp_path / "results", data=data, methods="[inherit]", train_labels="truth")
    rc, out = run_train(args, tmp_path / "run.log")
    assert rc != 0 and "train_labels=truth: the dataset has no truth/segment_truth.csv" in out
