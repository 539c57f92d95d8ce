"""`--debug` smoke runs of every recipe's train.py: real annotation files, tiny audio, tiny model.

Each run goes through the whole chain a user's first command runs: prepare
(on the real annotation files of the dataset, in its real layout), feature
cache, segments, folds, SSSLBrain (a couple of batches), stage 2 and the
results tables.
"""

import csv
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from prepare_fixtures import build_4q, build_eim, build_pmemo

REPO = Path(__file__).resolve().parents[2]
#: One csv per recipe, as SpeechBrain's tests/recipes/*.csv: its files and its --debug command.
RECIPE_TABLES = sorted((REPO / "tests" / "recipes").glob("*.csv"))


def recipe_rows():
    rows = []
    for table in RECIPE_TABLES:
        with open(table, newline="", encoding="utf-8") as f:
            rows += list(csv.DictReader(f))
    return rows


def build_csv_dataset(base):
    from demo_data import generate_demo_dataset

    generate_demo_dataset(str(base), n_songs=20, seed=2, min_duration=4, max_duration=6, progress=False)
    return base


BUILDERS = {"pmemo": lambda base: build_pmemo(base).root, "4q": lambda base: build_4q(base).root,
            "eim": lambda base: build_eim(base).root, "csv": build_csv_dataset}


def test_every_recipe_has_a_row_and_its_files():
    rows = recipe_rows()
    assert sorted(Path(r["Script_file"]).parent.name for r in rows) == sorted(BUILDERS)
    for row in rows:
        for column in ("Script_file", "Hparam_file", "Data_prep_file", "Dataset_hparam_file", "Readme_file"):
            assert (REPO / row[column]).is_file(), f"{row['Dataset']}: {column} {row[column]} is missing"
        # every dataset recipe is the shared script, seen from the dataset's folder
        assert (REPO / row["Script_file"]).resolve() == (REPO / "recipes" / "sssl_train.py").resolve()


@pytest.mark.parametrize("row", recipe_rows(), ids=lambda r: Path(r["Script_file"]).parent.name)
def test_recipe_debug_smoke_run(tmp_path, row):
    name = Path(row["Script_file"]).parent.name
    data = BUILDERS[name](tmp_path / "data")
    results = tmp_path / "results"
    results.mkdir()
    cmd = [sys.executable, str(REPO / row["Script_file"]), str(REPO / row["Hparam_file"]),
           f"--data_folder={data}", f"--results_folder={results}", *shlex.split(row["test_debug_flags"])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=results,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    checks = dict(c.split("=") for c in row["test_debug_checks"].split() if c)
    with open(results / name / "prepared" / "songs.csv", newline="") as f:
        n_songs = sum(1 for _ in csv.DictReader(f))
    if "songs" in checks:
        assert n_songs == int(checks["songs"])  # the prepare step reads every song ...
    target = re.search(r"--target=(\w+)", row["test_debug_flags"]).group(1)
    exp = results / name / f"{target}_seg1s_seed1986"
    with open(exp / "folds.csv", newline="") as f:
        assert len({r["song_id"] for r in csv.DictReader(f)}) < n_songs  # ... the debug run trains on a few
    fold = exp / "sssl" / "fold_0"
    for output in ("segment_predictions.csv", "song_predictions.csv", "metrics.json", "fold_config.json",
                   "train_log.txt", "partition.csv"):
        assert (fold / output).is_file(), output
    table = (exp / "results.md").read_text()
    assert "| sssl | svm | 1 |" in table


def test_debug_limits_reach_every_pass(tmp_path):
    """--debug: songs per class, one fold of two, an SSSL epoch, and debug_batches batches of every pass."""
    from demo_data import generate_demo_dataset

    data = tmp_path / "data"
    generate_demo_dataset(str(data), n_songs=24, seed=3, min_duration=6, max_duration=8, progress=False)
    results = tmp_path / "results"
    results.mkdir()
    batch, batches = 8, 2
    train_py, hparams = REPO / "recipes" / "csv" / "train.py", REPO / "hparams" / "vgg16_sssl.yaml"
    cmd = [sys.executable, str(train_py), str(hparams),
           f"--data_folder={data}", f"--results_folder={results}", "--debug", f"--debug_batches={batches}",
           "--debug_epochs=2", f"--batch_size={batch}", "--width_mult=0.0625", "--classifier_dim=16",
           "--seg_dur=1", "--target=quadrant", "--methods=[sssl, inherit]", "--svm_grid_search=False",
           "--feature_jobs=1", "--device=cpu", "--noprogressbar", "--plot_partition=False"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=results,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    exp = results / "csv" / "quadrant_seg1s_seed1986"
    with open(exp / "folds.csv", newline="") as f:
        folds = list(csv.DictReader(f))
    assert len({r["song_id"] for r in folds}) == 4 * 4  # debug_songs_per_class (4) of each quadrant
    assert {r["fold"] for r in folds} == {"0", "1"}  # two folds ...
    assert sorted(p.name for p in (exp / "sssl").iterdir() if p.is_dir()) == ["fold_0"]  # ... one trained
    limit = batch * batches
    for method in ("sssl", "inherit"):
        fold = exp / method / "fold_0"
        with open(fold / "segment_predictions.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        per_split = {s: sum(r["split"] == s for r in rows) for s in ("train", "valid", "test")}
        assert per_split["train"] == limit and per_split["test"] == limit, per_split  # prediction pass
        assert 0 < per_split["valid"] <= limit, per_split
        with open(fold / "epoch_stats.csv", newline="") as f:
            assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2"]  # debug_epochs
    with open(exp / "sssl" / "fold_0" / "partition.csv", newline="") as f:
        partition = list(csv.DictReader(f))
    # the warm-up ends before the last debug epoch, so epoch 2 is an SSSL epoch; its partition pass saw
    # the fold's (limited) training segments only
    assert [r["epoch"] for r in partition] == ["2"]
    assert int(partition[0]["n_clean"]) + int(partition[0]["n_noisy"]) == limit
