"""The CPU configuration is the main yaml with a few documented values changed, and it loads."""

import inspect
import re
from pathlib import Path

import pytest
from synthetic import yaml_values

from sssl_brain.dataio.experiment import check_experiment_hparams
from sssl_brain.method.checks import (
    BRAIN_HPARAMS,
    FALLBACK_THRESHOLDS,
    OPTIONAL_BRAIN_HPARAMS,
    check_sssl_hparams,
)
from sssl_brain.method.partition import partition_segments
from sssl_brain.utils.errors import ConfigError
from sssl_brain.utils.hparams import load_hparams

HPARAMS = Path(__file__).resolve().parents[2] / "hparams"
#: The values ``vgg16_sssl_cpu.yaml`` changes (its header and docs/results.md, "Speed", say why).
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
    hp = load_hparams(str(HPARAMS / "vgg16_sssl_cpu.yaml"),  # no batch norm: see the test below
                      {"data_folder": str(tmp_path), "results_folder": str(tmp_path / "results"),
                       "batch_norm": False})
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=r"fold_jobs=2: does not combine with torchrun"):
        check_experiment_hparams(hp)


def _cpu_hparams(tmp_path, **overrides):
    folders = {"data_folder": str(tmp_path), "results_folder": str(tmp_path / "results")}
    return load_hparams(str(HPARAMS / "vgg16_sssl_cpu.yaml"), {**folders, **overrides})


@pytest.mark.parametrize("name", ["vgg16_sssl.yaml", "vgg16_sssl_cpu.yaml"])
def test_the_yamls_set_every_partition_threshold_to_the_partition_default(name):
    # every number in the yaml, with its source; the values are partition_segments' defaults (same results)
    text = (HPARAMS / name).read_text(encoding="utf-8")
    defaults = inspect.signature(partition_segments).parameters
    for key in FALLBACK_THRESHOLDS:
        match = re.search(rf"^partition_{key}: (\S+)\s+#.*\[ours\]$", text, flags=re.M)
        assert match, f"partition_{key} missing or without its source tag in {name}"
        assert float(match.group(1)) == defaults[key].default, key


def test_the_partition_thresholds_of_the_yaml_are_checked_at_start_up(tmp_path):
    for key, value in (("partition_min_clean_frac", 0.99), ("partition_max_clean_frac", 1.5),
                       ("partition_min_mean_gap", -0.1), ("partition_bias_tolerance", 2.0),
                       ("partition_min_class_share", -1.0), ("partition_min_samples", 0),
                       ("partition_min_samples", 2.5), ("partition_min_mean_gap", "wide")):
        hp = _cpu_hparams(tmp_path, **{key: value})
        with pytest.raises(ConfigError, match=key):
            check_experiment_hparams(hp)
    hp = _cpu_hparams(tmp_path, partition_bias_tolerance=None, partition_min_class_share=None)
    check_experiment_hparams(hp)  # null switches a bias check off
    del hp["partition_min_samples"]
    with pytest.raises(ConfigError, match="partition_min_samples: missing"):
        check_experiment_hparams(hp)


def test_batch_norm_under_torchrun_on_the_cpu_is_refused_at_start_up(tmp_path):
    # SpeechBrain makes BatchNorm SyncBatchNorm under DDP, which crashes on the CPU: stop at start-up
    hp = _cpu_hparams(tmp_path)
    assert hp["batch_norm"] is True
    cpu = {"device": "cpu"}
    for run_opts, environ in ((cpu, {"WORLD_SIZE": "2"}), ({**cpu, "distributed_launch": True}, {}),
                              (cpu, {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1"})):
        with pytest.raises(ConfigError, match=r"batch_norm=True: .*SyncBatchNorm.* --batch_norm=False"):
            check_sssl_hparams(hp, run_opts, environ)
    check_sssl_hparams(hp, cpu, {})  # one process
    check_sssl_hparams(hp, {"device": "cuda:0"}, {"WORLD_SIZE": "2"})  # SyncBatchNorm runs on GPUs
    check_sssl_hparams(_cpu_hparams(tmp_path, batch_norm=False), cpu, {"WORLD_SIZE": "2"})


@pytest.mark.parametrize("name", ["vgg16_sssl.yaml", "vgg16_sssl_cpu.yaml"])
def test_every_key_the_brain_reads_is_set_in_the_yaml(name):
    # the yaml is the one source of the Brain's settings (the code has no defaults)
    keys = set(yaml_values(HPARAMS / name))
    read = set(BRAIN_HPARAMS) | set(OPTIONAL_BRAIN_HPARAMS)
    assert read <= keys, read - keys


def test_a_bad_train_labels_value_is_refused_at_start_up_by_name(tmp_path):
    hp = load_hparams(str(HPARAMS / "vgg16_sssl_cpu.yaml"),
                      {"data_folder": str(tmp_path), "results_folder": str(tmp_path / "results"),
                       "train_labels": "clean"})
    with pytest.raises(ConfigError, match=r"train_labels='clean': must be one of inherited, truth"):
        check_experiment_hparams(hp)
