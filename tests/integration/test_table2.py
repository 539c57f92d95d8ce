"""recipes/table2.py: the same experiment for several segment durations, collected into one table."""

import os
import subprocess
import sys
from pathlib import Path

from sssl_brain.utils.io_utils import read_csv_dicts

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "--n_folds=2",
    "--number_of_epochs=1",
    "--warmup_epochs=1",
    "--width_mult=0.0625",
    "--classifier_dim=16",
    "--target=arousal",
    "--svm_grid_search=False",
    "--batch_size=8",
    "--feature_jobs=1",
    "--device=cpu",
    "--noprogressbar",
    "--plot_partition=False",
    "--methods=[inherit]",
]


def test_table2_collects_one_row_per_duration(tmp_path):
    from demo_data import generate_demo_dataset

    generate_demo_dataset(
        str(tmp_path / "data"), n_songs=8, seed=2, min_duration=5, max_duration=6, progress=False
    )
    cmd = [
        sys.executable,
        str(REPO / "recipes" / "table2.py"),
        str(REPO / "recipes" / "csv" / "train.py"),
        str(REPO / "hparams" / "vgg16_sssl.yaml"),
        "--durations=1,2",
        f"--data_folder={tmp_path / 'data'}",
        f"--results_folder={tmp_path / 'results'}",
        *TINY,
    ]
    proc = subprocess.run(
        cmd,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = read_csv_dicts(tmp_path / "results" / "csv" / "table2_arousal.csv")
    assert [(r["seg_dur"], r["method"]) for r in rows] == [("1", "inherit"), ("2", "inherit")]
    for r in rows:  # each row is the svm row of that duration's own results.csv
        own = read_csv_dicts(
            tmp_path / "results" / "csv" / f"arousal_seg{r['seg_dur']}s_seed1986" / "results.csv"
        )
        svm = next(x for x in own if x["method"] == "inherit" and x["aggregator"] == "svm")
        assert r["acc_mean"] == svm["acc_mean"] and r["macro_f1_mean"] == svm["macro_f1_mean"]
    table = (tmp_path / "results" / "csv" / "table2_arousal.md").read_text()
    assert "| 1 s |" in table and "| 2 s |" in table
