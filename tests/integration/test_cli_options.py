"""Wrong command-line overrides stop ``recipes/csv/train.py`` at start-up with a message naming the option.

Each bad value runs the real recipe in a subprocess (all of them at once, to
share the start-up time) on a valid dataset: it must exit with status 2 and
a one-line ``error:`` naming the option, before preparing the data or
training anything (no file is written under the results folder).
"""

import os
import subprocess

import pytest
from run_helpers import PYTHON, REPO, TRAIN, dataset, output_names_option, train_args

# option, bad value, words the message must hold besides the option name
BAD_OPTIONS = [
    ("seg_dur", "0", "positive"),
    ("seg_dur", "-1.5", "positive"),
    ("target", "happiness", "valence, arousal, quadrant"),
    ("tau", "0", "(0, 1)"),
    ("tau", "1.5", "(0, 1)"),
    ("fold_jobs", "0", ">= 1"),
]
IDS = [f"{option}={value}" for option, value, _ in BAD_OPTIONS]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Starts every bad command at once; returns ``{id: (returncode, output, results folder)}``."""
    data = dataset()
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    started = {}
    for run_id, (option, value, _) in zip(IDS, BAD_OPTIONS):
        results = tmp_path_factory.mktemp("cli") / "results"
        args = train_args(results, data=data, **{option: value})
        proc = subprocess.Popen(
            [PYTHON, str(TRAIN), *args],
            cwd=str(REPO),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started[run_id] = (proc, results)
    out = {}
    for run_id, (proc, results) in started.items():
        try:
            output, _ = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
            output += "\n[timed out: the run did not stop at start-up]"
        out[run_id] = (proc.returncode, output, results)
    return out


def written_files(folder):
    """Regular files under ``folder`` (empty folders do not count)."""
    return sorted(os.path.join(top, f) for top, _, files in os.walk(folder) for f in files)


@pytest.mark.parametrize(("option", "value", "words"), BAD_OPTIONS, ids=IDS)
def test_bad_override_fails_at_start_up_naming_the_option(runs, option, value, words):
    returncode, output, results = runs[f"{option}={value}"]
    error_lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert returncode == 2, f"exit {returncode}:\n{output[-3000:]}"
    assert len(error_lines) == 1, output[-3000:]
    assert output_names_option(error_lines[0], option) and words in error_lines[0], error_lines[0]
    assert "Traceback" not in output
    # Nothing was prepared or trained: no songs table, no feature, no checkpoint, no log.
    assert written_files(results) == []


def test_missing_data_folder_names_the_option(tmp_path):
    hparams = REPO / "hparams" / "vgg16_sssl.yaml"
    proc = subprocess.run(
        [
            PYTHON,
            str(REPO / "recipes" / "pmemo" / "train.py"),
            str(hparams),
            f"--results_folder={tmp_path / 'results'}",
        ],
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (
        proc.stderr.strip().splitlines()[-1]
        == "error: data_folder: required, pass --data_folder=... (see README)"
    )
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("cwd", ["repo", "elsewhere"])
def test_the_shared_script_run_directly_names_the_dataset_links(tmp_path, cwd):
    # recipes/sssl_train.py reads the dataset's yaml beside its link recipes/<dataset>/train.py
    folder = REPO if cwd == "repo" else tmp_path
    script = REPO / "recipes" / "sssl_train.py"
    proc = subprocess.run(
        [PYTHON, str(script.relative_to(REPO)) if cwd == "repo" else str(script),
         str(REPO / "hparams" / "vgg16_sssl.yaml"), f"--data_folder={tmp_path}"],
        cwd=str(folder), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    message = proc.stderr.strip().splitlines()[-1]
    recipes = "recipes" if cwd == "repo" else str(REPO / "recipes")
    assert message.startswith(f"error: {recipes}/sssl_train.py is shared by the dataset recipes: run it "
                              f"through a dataset's link, e.g. `python {recipes}/csv/train.py "
                              f"hparams/vgg16_sssl.yaml --data_folder=...` (dataset folders: 4q, csv, eim, "
                              f"pmemo; "), message
    assert "Traceback" not in proc.stderr + proc.stdout
