"""The CPU configuration is the main yaml with a few documented values changed, and it loads."""

import re
from pathlib import Path

import pytest

from sssl_brain.dataio.experiment import check_experiment_hparams
from sssl_brain.utils.errors import ConfigError
from sssl_brain.utils.hparams import load_hparams

HPARAMS = Path(__file__).resolve().parents[2] / "hparams"
#: The values ``vgg16_sssl_cpu.yaml`` changes (its header and the README say why).
CPU_CHANGES = {"number_of_epochs": "6", "warmup_epochs": "3", "mixup_alpha": "0.5", "lr": "0.001",
               "fold_jobs": "2", "width_mult": "0.125", "classifier_dim": "64", "batch_norm": "True"}


def settings(path):
    """Every line of the yaml below its header, comments and blank lines removed."""
    text = path.read_text(encoding="utf-8")
    body = text[text.index("\nseed:") + 1:]
    lines = [re.sub(r"\s+#.*$", "", line).rstrip() for line in body.splitlines()]
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_the_cpu_yaml_differs_from_the_main_yaml_only_in_the_documented_values():
    main, cpu = settings(HPARAMS / "vgg16_sssl.yaml"), settings(HPARAMS / "vgg16_sssl_cpu.yaml")
    assert len(main) == len(cpu)
    changed = {}
    for a, b in zip(main, cpu):
        if a != b:
            key_a, key_b = a.split(":")[0], b.split(":")[0]
            assert key_a == key_b, (a, b)
            changed[key_b] = b.split(":", 1)[1].strip()
    assert changed == CPU_CHANGES


def test_the_cpu_yaml_loads_and_passes_the_start_up_checks(tmp_path):
    hp = load_hparams(str(HPARAMS / "vgg16_sssl_cpu.yaml"),
                      {"data_folder": str(tmp_path), "results_folder": str(tmp_path / "results")})
    check_experiment_hparams(hp)
    assert (hp["number_of_epochs"], hp["warmup_epochs"], hp["fold_jobs"]) == (6, 3, 2)
    assert hp["model"].channels_last and sum(p.numel() for p in hp["model"].parameters()) < 10 ** 6


def test_fold_jobs_is_refused_under_torchrun_at_start_up(tmp_path, monkeypatch):
    hp = load_hparams(str(HPARAMS / "vgg16_sssl_cpu.yaml"),
                      {"data_folder": str(tmp_path), "results_folder": str(tmp_path / "results")})
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=r"fold_jobs=2: does not combine with torchrun"):
        check_experiment_hparams(hp)
