"""SSSLReporter writes every partition.csv and epoch_stats.csv column; each named fallback says its name."""

import csv
import types

import numpy as np
import speechbrain as sb
import torch

from sssl_brain.method import fallbacks
from sssl_brain.method.partition import partition_segments
from sssl_brain.method.partition_result import GMMParams
from sssl_brain.method.reporter import EPOCH_COLUMNS, PARTITION_COLUMNS, SSSLReporter
from sssl_brain.method.selection import PartitionState


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _reporter(tmp_path, **kwargs):
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1] * 5)
    truth = labels.copy()
    truth[::4] = 1 - truth[::4]  # every fourth inherited label is wrong
    return SSSLReporter("sssl", 2, 0.25, str(tmp_path), False, None, labels, truth, **kwargs)


def test_every_partition_column_is_written(tmp_path):
    reporter = _reporter(tmp_path)
    losses = np.where(reporter.correct, 0.1, 2.0) + np.linspace(0, 0.01, 40)
    result = partition_segments(losses, reporter.labels, 2)
    probs = np.tile([0.7, 0.3], (40, 1))
    history = reporter.partition(4, result, probs, [{"epoch": 5}])  # a later row is dropped
    assert [h["epoch"] for h in history] == [4]
    row = _rows(tmp_path / "partition.csv")[0]
    assert list(row) == PARTITION_COLUMNS
    assert all(row[k] != "" for k in PARTITION_COLUMNS if k not in ("fallback", "fallback_trigger")), row
    assert float(row["clean_precision"]) == 1.0 and float(row["clean_recall"]) == 1.0
    assert row["train_pred_dist"] == "1.000/0.000" and row["train_collapse"] == "1"
    assert float(row["u_label_acc_truth"]) == 0.0  # U is exactly the wrongly labeled segments


def test_every_epoch_stats_column_is_written(tmp_path):
    reporter = _reporter(tmp_path)
    state = PartitionState()
    reporter.start_stage("cpu")
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 0])
    batch = types.SimpleNamespace(truth=types.SimpleNamespace(data=torch.tensor([[0], [1], [0], [-1]])),
                                  song_id=["a", "a", "b", "b"], id=["a_0", "a_1", "b_0", "b_1"])
    reporter.count_batch(logits, labels, batch, sb.Stage.VALID)
    stats = reporter.stage_stats(0.5, epoch=1, valid=True)
    assert stats["acc_inherited"] == 0.75 and stats["acc_truth"] == 1.0
    assert stats["song_acc"] == 0.5  # song b (label 1) is predicted 0
    reporter.train_pred_dist = np.array([0.5, 0.5])
    reporter.end_of_epoch(1, False, 1e-3, 0.7, stats, state)
    row = _rows(tmp_path / "epoch_stats.csv")[0]
    assert list(row) == EPOCH_COLUMNS and all(row[k] != "" for k in EPOCH_COLUMNS), row
    assert row["valid_pred_dist"] == "0.750/0.250" and row["valid_collapse"] == "0"


def test_each_named_fallback_says_its_name():
    limits = fallbacks.Limits(10, 0.05, 0.05, 0.98, 0.25, 0.25, 10)
    assert fallbacks.too_few_samples(np.zeros(9), limits) == "too_few_samples"
    assert fallbacks.too_few_samples(np.zeros(10), limits) is None
    assert fallbacks.degenerate_losses(np.full(20, 0.3)) == "degenerate_losses"
    close = GMMParams(np.array([0.5, 0.5]), np.array([0.50, 0.52]), np.array([0.1, 0.1]))
    far = GMMParams(np.array([0.5, 0.5]), np.array([0.1, 0.9]), np.array([0.1, 0.1]))
    assert fallbacks.degenerate_mixture(np.ones(4), close, limits) == "degenerate_mixture"
    assert fallbacks.degenerate_mixture(np.array([np.nan, 1.0]), far, limits) == "degenerate_mixture"
    assert fallbacks.degenerate_mixture(np.ones(4), far, limits) is None
    assert fallbacks.clean_fraction_out_of_range(np.zeros(100), 0.5, limits) == "clean_too_small"
    assert fallbacks.clean_fraction_out_of_range(np.ones(100), 0.5, limits) == "clean_too_large"
    assert fallbacks.clean_fraction_out_of_range(np.r_[np.ones(50), np.zeros(50)], 0.5, limits) is None
    labels = np.r_[np.zeros(20, dtype=int), np.ones(20, dtype=int)]
    assert fallbacks.class_biased(labels == 0, labels, 2, limits)[0]  # X = one class
    assert not fallbacks.class_biased(np.arange(40) % 2 == 0, labels, 2, limits)[0]
