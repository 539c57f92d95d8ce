"""The GPU benchmark script runs on the CPU path (its figures come from a GPU machine, when one is lent).

Correctness only: the script completes, writes every figure, and its bf16
check compares the same weights (agreement close to 1). No timing is asserted.
"""

import json
import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "benchmarks")
sys.path.insert(0, BENCH)


def test_gpu_benchmark_runs_on_the_cpu_path(tmp_path):
    import bench_gpu

    out = tmp_path / "gpu.json"
    bench_gpu.main(["--device", "cpu", "--models", "demo", "--seg-durs", "1", "--segments", "48",
                    "--steps", "1", "--precision", "fp32", "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["device"] == "cpu"
    (row,) = report["rows"]
    for key in ("raw_fp32_seg_per_s", "raw_bf16_seg_per_s", "inherit_seg_per_s", "sssl_seg_per_s"):
        assert row[key] > 0, key
    assert row["train_gflop_per_seg"] > 0.1  # the demo model: about 0.155 GFLOP per training segment
    for epoch in ("inherit_epoch", "sssl_epoch"):
        parts = row[epoch]
        assert abs(sum(v for k, v in parts.items() if k != "wall") - parts["wall"]) < 1e-6
    assert row["sssl_epoch"]["partition_pass"] > 0 and "partition_pass" not in row["inherit_epoch"]
    check = row["bf16_check"]
    assert check["argmax_agreement"] >= 0.75 and check["min_grad_cosine"] > 0.5
    assert 0 < check["max_abs_logit_diff"] < 1.0


def test_known_noise_benchmark_measures_what_it_reports(tmp_path):
    """bench_known_noise: the noise rate is the one asked for, and every reported figure is measured."""
    import bench_known_noise

    images, clean, noisy, split = bench_known_noise.noisy_split(seed=0, noise=0.4)
    for part in ("train", "valid"):
        idx = split[part]
        assert abs((noisy[idx] != clean[idx]).mean() - 0.4) < 0.06
    assert (noisy[split["test"]] == clean[split["test"]]).all()  # the test labels stay clean
    rows = bench_known_noise.main(["--noise", "0.4", "--configs", "ce,sssl_paper,sssl_paper+ema",
                                   "--epochs", "3",
                                   "--warmup", "1", "--out", str(tmp_path)])
    ce, sssl, ema = rows
    assert ema["test_curve"] != sssl["test_curve"]  # the teacher serves the test predictions
    post = sssl["selected_epoch_post_warmup"]
    assert post > 1 and sssl["test_selected_post_warmup"] == sssl["test_curve"][post - 1]
    assert len(ce["test_curve"]) == len(sssl["test_curve"]) == 3
    assert ce["x_precision"] is None and 0 <= sssl["x_precision"] <= 1 and 0 <= sssl["x_recall"] <= 1
    # per SSSL epoch (2 of 3), and the reported figure is their mean
    assert ce["x_precision_curve"] == []
    assert len(sssl["x_precision_curve"]) == len(sssl["x_recall_curve"]) == 2
    assert sssl["x_precision"] == pytest.approx(sum(sssl["x_precision_curve"]) / 2)
    assert ce["test_selected"] in ce["test_curve"] and max(ce["test_curve"]) == ce["test_best_oracle"]
    per_run, means = (tmp_path / "known_noise.md").read_text().split("Means over seeds")
    assert per_run.count("| 40% |") == 3 and means.count("| 40% |") == 3


def test_known_noise_oracles(tmp_path):
    """bench_known_noise's oracles: clean_subset trains on the right labels only, oracle_partition
    makes X exactly the clean set."""
    import bench_known_noise

    _, clean, noisy, split = bench_known_noise.noisy_split(seed=0, noise=0.4)
    train = split["train"]
    (subset,) = bench_known_noise.main(["--noise", "0.4", "--configs", "clean_subset", "--epochs", "1",
                                        "--warmup", "1", "--out", str(tmp_path / "s")])
    assert subset["n_train"] == int((noisy[train] == clean[train]).sum()) < len(train)
    (oracle,) = bench_known_noise.main(["--noise", "0.4", "--configs", "proposed_star", "--epochs", "3",
                                        "--warmup", "1", "--set", "oracle_partition=true",
                                        "--out", str(tmp_path / "o")])
    assert oracle["x_precision"] == 1.0 and oracle["x_recall"] == 1.0
    (co,) = bench_known_noise.main(["--noise", "0.4", "--configs", "proposed_star", "--epochs", "3",
                                    "--warmup", "1", "--set", "co_divide=true", "--out", str(tmp_path / "c")])
    assert len(co["test_curve_both"]) == 3 and co["test_last_both"] == co["test_curve_both"][-1]
    # the selected checkpoint restores the peer with the model: the mean of both is that epoch's again
    assert co["test_selected_both"] == co["test_curve_both"][co["selected_epoch"] - 1]


def test_epoch_curves_report_the_swing_after_the_warmup(tmp_path, capsys):
    """plot_epoch_curves: the table's swing is the std of the post-warm-up validation accuracy, its
    epoch-to-epoch change the mean absolute difference of consecutive post-warm-up epochs."""
    import json

    import plot_epoch_curves

    fold = tmp_path / "exp" / "sssl" / "fold_0"
    fold.mkdir(parents=True)
    (fold / "epoch_stats.csv").write_text("epoch,valid_acc\n1,0.1\n2,0.5\n3,0.4\n4,0.44\n5,0.42\n")
    (fold / "metrics.json").write_text(json.dumps({"selected_epoch": 2}))
    plot_epoch_curves.main([str(tmp_path / "exp"), "--warmup", "2", "--out", str(tmp_path / "c.png")])
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| sssl | 0 |")][0]
    assert row.endswith("| 2 | 1.6 | 3.0 |")  # std of 40, 44, 42; mean of |44 - 40|, |42 - 44|
    assert (tmp_path / "c.png").is_file()


def test_epoch_curves_against_the_truth_read_their_own_column(tmp_path, capsys):
    """plot_epoch_curves --column valid_acc_truth: the curve and its swing come from valid_acc_truth."""
    import json

    import plot_epoch_curves

    fold = tmp_path / "exp" / "inherit" / "fold_1"
    fold.mkdir(parents=True)
    rows = "epoch,valid_acc,valid_acc_truth\n1,0.1,0.2\n2,0.5,0.6\n3,0.4,0.9\n"
    (fold / "epoch_stats.csv").write_text(rows)
    (fold / "metrics.json").write_text(json.dumps({"selected_epoch": 3}))
    plot_epoch_curves.main([str(tmp_path / "exp"), "--warmup", "1", "--column", "valid_acc_truth"])
    out = capsys.readouterr().out
    assert "| inherit | 1 | 20.0 60.0 90.0 | 3 | 15.0 | 30.0 |" in out and "(per-second truth)" in out
    assert (tmp_path / "exp" / "valid_curves_truth.png").is_file()
