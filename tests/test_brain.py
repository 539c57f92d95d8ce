"""SSSLBrain on synthetic segments with known label noise (tiny model, CPU)."""

import csv
import os

import numpy as np
import pytest
import torch
from synthetic import datasets, make_brain, make_noisy_segments, tiny_hparams

from sssl_brain.brain import SSSLForward, check_sssl_hparams
from sssl_brain.errors import ConfigError

LOADER = {"batch_size": 16, "shuffle": True}


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("noisy")
    segments, flipped = make_noisy_segments(str(folder / "data"), n_songs=24, segs_per_song=10, noise=0.3,
                                            seed=0)
    return folder, segments, flipped


def _train(folder, segments, method, epochs=10, warmup=3, **extra):
    torch.set_num_threads(1)
    hp = tiny_hparams(str(folder), method=method, epochs=epochs, warmup=warmup, **extra)
    brain = make_brain(hp)
    dataset = datasets(segments)
    brain.fit(hp["epoch_counter"], dataset, None, train_loader_kwargs=LOADER)
    return brain, dataset, hp


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_sssl_finds_clean_segments_and_beats_inherit_on_true_labels(noisy):
    folder, segments, flipped = noisy
    truth = np.array([s["truth"] for s in segments])
    accs = {}
    for method in ("sssl", "inherit"):
        brain, dataset, _ = _train(folder / method, segments, method)
        accs[method] = float((brain.predict_probs(dataset).argmax(1) == truth).mean())
    rows = _rows(folder / "sssl" / "partition.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(4, 11))  # one row per SSSL epoch after warm-up
    precision = [float(r["clean_precision"]) for r in rows]
    noise_free = 1.0 - flipped.mean()  # 0.7: the precision of taking every segment as clean
    assert np.mean(precision) > noise_free + 0.05, (precision, noise_free)
    assert accs["sssl"] >= accs["inherit"], accs
    assert not (folder / "inherit" / "partition.csv").exists()
    plots = sorted(os.listdir(folder / "sssl" / "partition_plots"))
    assert plots[0] == "epoch_004.png" and len(plots) == 7


def test_resume_continues_epoch_counter_and_partition_history(noisy, tmp_path):
    _, segments, _ = noisy
    full, _, _ = _train(tmp_path / "full", segments, "sssl", epochs=5, warmup=2)
    # an interrupted run: 4 of 5 epochs, then a new process resumes from the checkpoint
    _train(tmp_path / "cut", segments, "sssl", epochs=4, warmup=2)
    resumed, _, hp = _train(tmp_path / "cut", segments, "sssl", epochs=5, warmup=2)
    assert hp["epoch_counter"].current == 5
    assert _rows(tmp_path / "cut" / "partition.csv") == _rows(tmp_path / "full" / "partition.csv")
    for a, b in zip(full.modules.model.parameters(), resumed.modules.model.parameters()):
        torch.testing.assert_close(a, b)


def test_proposed_star_and_batches_without_u_or_x(noisy, tmp_path):
    _, segments, _ = noisy
    brain, dataset, _ = _train(tmp_path / "star", segments, "proposed_star", epochs=4, warmup=1)
    batch = next(iter(brain.make_dataloader(dataset, stage=None, ckpt_prefix=None, batch_size=8)))
    for fill in (True, False):  # all clean (no U), then all noisy (no X)
        brain.clean_mask = torch.full((len(dataset),), fill)
        for method in ("sssl", "proposed_star"):
            brain.hparams.method = method
            loss, parts = brain.sssl_objective(batch)
            assert torch.isfinite(loss)
            assert parts["n_u"] == (0 if fill else 8)
            if method == "proposed_star" or fill:
                assert parts["l_kl"] == 0.0
            else:
                assert parts["l_kl"] > 0.0  # dropout makes the two passes differ


def test_rdrop_passes_share_one_trunk_pass():
    torch.manual_seed(0)
    from sssl_brain.models import VGG16

    model = VGG16(2, width_mult=1 / 16, classifier_dim=16, dropout=0.5)
    model.train()
    x = torch.randn(4, 12, 16)
    torch.testing.assert_close(model.trunk(x), model.trunk(x))  # same computation in train mode
    out = SSSLForward(model)(x, u_x=x[:2], rdrop=True)
    assert out["logits"].shape == (4, 2) and out["u_probs"].shape == (2, 2)
    assert not torch.allclose(out["u_logits_a"], out["u_logits_b"])  # head dropout differs
    model.eval()
    torch.testing.assert_close(out["u_probs"], torch.softmax(model(x[:2]), -1))  # pseudo-labels: no dropout


@pytest.mark.parametrize("key,value", [("tau", 1.5), ("tau", 0.0), ("method", "dividemix"),
                                       ("sharpen_temperature", 0), ("rdrop_lambda", -1)])
def test_wrong_sssl_options_name_the_option(key, value):
    hp = {"method": "sssl", "tau": 0.5, "sharpen_temperature": 0.5, "mixup_alpha": 4, "rdrop_lambda": 1,
          "warmup_epochs": 1, key: value}
    with pytest.raises(ConfigError, match=key):
        check_sssl_hparams(hp)
