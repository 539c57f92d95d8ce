"""A 2-fold experiment end to end (csv recipe, generated songs, tiny model): outputs, recomputed tables."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from sssl_brain.utils.io_utils import read_csv_dicts

REPO = Path(__file__).resolve().parents[2]
ARGS = [
    "--n_folds=2",
    "--number_of_epochs=2",
    "--warmup_epochs=1",
    "--width_mult=0.0625",
    "--classifier_dim=32",
    "--seg_dur=2",
    "--target=valence",
    "--methods=[sssl, inherit]",
    "--svm_grid_search=False",
    "--batch_size=8",
    "--feature_jobs=1",
    "--device=cpu",
    "--noprogressbar",
]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    from demo_data import generate_demo_dataset

    root = tmp_path_factory.mktemp("experiment")
    generate_demo_dataset(
        str(root / "data"), n_songs=12, seed=1, min_duration=6, max_duration=8, progress=False
    )
    cmd = [
        sys.executable,
        str(REPO / "recipes" / "csv" / "train.py"),
        str(REPO / "hparams" / "vgg16_sssl.yaml"),
        f"--data_folder={root / 'data'}",
        f"--results_folder={root / 'results'}",
        *ARGS,
    ]
    proc = subprocess.run(
        cmd, cwd=root, capture_output=True, text=True, timeout=900, env=dict(os.environ, OMP_NUM_THREADS="1")
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root / "results" / "csv" / "valence_seg2s_seed1986"


def test_every_output_file_and_its_columns(experiment):
    for method in ("sssl", "inherit"):
        for k in (0, 1):
            fold = experiment / method / f"fold_{k}"
            seg = read_csv_dicts(fold / "segment_predictions.csv")
            assert list(seg[0]) == [
                "song_id",
                "segment",
                "start_s",
                "end_s",
                "split",
                "label",
                "pred",
                "truth",
                "p_low",
                "p_high",
            ]
            assert {r["split"] for r in seg} == {"train", "valid", "test"}
            for r in seg:
                assert abs(float(r["p_low"]) + float(r["p_high"]) - 1) < 1e-4
                assert float(r["end_s"]) - float(r["start_s"]) == 2.0
            songs = read_csv_dicts(fold / "song_predictions.csv")
            assert list(songs[0]) == ["song_id", "split", "aggregator", "label", "pred", "p_low", "p_high"]
            assert {r["aggregator"] for r in songs} == {"svm", "majority", "mean"}
            assert len(songs) == 3 * 12
            metrics = json.loads((fold / "metrics.json").read_text())
            assert metrics["method"] == method and metrics["fold"] == k
            for key in ("accuracy", "macro_f1", "weighted_f1"):
                assert key in metrics["metrics"]["svm"]["test"]
            assert (fold / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert (fold / "song_classifier.skops").is_file()
            assert (fold / "fold_config.json").is_file()
        partition = read_csv_dicts(experiment / "sssl" / "fold_0" / "partition.csv")
        assert [int(r["epoch"]) for r in partition] == [2]
        assert partition[0]["clean_precision"] != ""  # the demo data carries segment truth
    assert not (experiment / "inherit" / "fold_0" / "partition.csv").exists()


def test_results_md_recomputed_from_song_predictions(experiment):
    table = (experiment / "results.md").read_text()
    for method in ("sssl", "inherit"):
        for aggregator in ("svm", "majority", "mean"):
            accs, f1s = [], []
            for k in (0, 1):
                rows = [
                    r
                    for r in read_csv_dicts(experiment / method / f"fold_{k}" / "song_predictions.csv")
                    if r["split"] == "test" and r["aggregator"] == aggregator
                ]
                y, p = [int(r["label"]) for r in rows], [int(r["pred"]) for r in rows]
                accs.append(100 * accuracy_score(y, p))
                f1s.append(100 * f1_score(y, p, average="macro", labels=[0, 1], zero_division=0))
            acc = f"{np.mean(accs):.2f} ± {np.std(accs, ddof=1):.2f}"
            f1 = f"{np.mean(f1s):.2f} ± {np.std(f1s, ddof=1):.2f}"
            assert re.search(
                rf"\| {method} \| {aggregator} \| 2 \| {re.escape(acc)} \| {re.escape(f1)} \|", table
            ), (method, aggregator, acc, f1, table)


def test_no_song_of_a_test_split_is_in_training_or_validation(experiment):
    folds = read_csv_dicts(experiment / "folds.csv")
    for k in ("0", "1"):
        split = {r["song_id"]: r["split"] for r in folds if r["fold"] == k}
        test = {s for s, v in split.items() if v == "test"}
        assert test and all(v in ("train", "valid", "test") for v in split.values())
        for method in ("sssl", "inherit"):
            seg = read_csv_dicts(experiment / method / f"fold_{k}" / "segment_predictions.csv")
            by_song = {}
            for r in seg:
                by_song.setdefault(r["song_id"], set()).add(r["split"])
            assert all(len(s) == 1 for s in by_song.values())  # a song's segments share one split
            assert {s for s, v in by_song.items() if v == {"test"}} == test
    tests = [{r["song_id"] for r in folds if r["fold"] == k and r["split"] == "test"} for k in ("0", "1")]
    assert not tests[0] & tests[1] and len(tests[0] | tests[1]) == 12  # every song tested exactly once
