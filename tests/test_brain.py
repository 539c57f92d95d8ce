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


def _split_songs(segments, n_valid_songs=6):
    songs = sorted({s["song_id"] for s in segments})
    valid = set(songs[-n_valid_songs:])
    return [s for s in segments if s["song_id"] not in valid], [s for s in segments if s["song_id"] in valid]


def test_the_best_validation_checkpoint_serves_the_predictions(noisy, tmp_path):
    _, segments, _ = noisy
    train, valid = _split_songs(segments)
    torch.set_num_threads(1)
    hp = tiny_hparams(str(tmp_path), method="sssl", epochs=6, warmup=2, selection_metric="valid_acc")
    brain = make_brain(hp)
    valid_ds = datasets(valid)
    brain.fit(hp["epoch_counter"], datasets(train), valid_ds, train_loader_kwargs=LOADER,
              valid_loader_kwargs={"batch_size": 32})
    stats = _rows(tmp_path / "epoch_stats.csv")
    assert [int(r["epoch"]) for r in stats] == list(range(1, 7))
    accs = [float(r["valid_acc"]) for r in stats]
    selection = brain.recover_selected()
    assert selection["selection_metric"] == "valid_acc"
    assert selection["selected_value"] == pytest.approx(max(accs), abs=1e-6)
    assert accs[selection["selected_epoch"] - 1] == pytest.approx(max(accs), abs=1e-6)
    labels = np.array([s["label"] for s in valid])
    acc = float((brain.predict_probs(valid_ds).argmax(1) == labels).mean())
    assert acc == pytest.approx(selection["selected_value"], abs=1e-6)  # the model now is that checkpoint


def test_recover_selected_loads_the_best_not_the_last_checkpoint(noisy, tmp_path):
    _, segments, _ = noisy
    hp = tiny_hparams(str(tmp_path), method="inherit", epochs=1, warmup=0, selection_metric="valid_acc")
    brain = make_brain(hp)
    brain.train_labels = np.array([s["label"] for s in segments])
    model = hp["model"]
    weights = {}
    for epoch, acc in ((1, 0.5), (2, 0.9), (3, 0.6)):  # the best (epoch 2) is neither the first nor the last
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float(epoch))
        weights[epoch] = [p.detach().clone() for p in model.parameters()]
        brain.checkpointer.save_and_keep_only(meta={"epoch": epoch, "acc_inherited": acc}, num_to_keep=1,
                                              max_keys=["acc_inherited"])
    selection = brain.recover_selected()
    assert selection["selected_epoch"] == 2 and selection["selected_value"] == 0.9
    for p, w in zip(model.parameters(), weights[2]):
        torch.testing.assert_close(p, w)
    brain.hparams.selection_metric = "last"
    assert brain.recover_selected()["selected_epoch"] == 3


def test_diagnostics_record_class_shares_and_warn_on_collapse(noisy, tmp_path, caplog):
    _, segments, _ = noisy
    train, valid = _split_songs(segments)
    torch.set_num_threads(1)
    hp = tiny_hparams(str(tmp_path), method="sssl", epochs=3, warmup=1)
    with torch.no_grad():  # a model that predicts class 0 for everything
        last = [m for m in hp["model"].modules() if isinstance(m, torch.nn.Linear)][-1]
        last.bias.copy_(torch.tensor([50.0, -50.0]))
        last.weight.zero_()
    brain = make_brain(hp)
    brain.on_fit_start()
    brain.train_dataset, brain.train_labels = datasets(train), np.array([s["label"] for s in train])
    brain.train_truth = np.array([s["truth"] for s in train])
    brain.train_correct = brain.train_truth == brain.train_labels
    brain.label_share = np.bincount(brain.train_labels, minlength=2) / len(train)
    with caplog.at_level("WARNING"):
        brain.compute_partition(epoch=2)
    row = _rows(tmp_path / "partition.csv")[-1]
    assert row["train_pred_dist"] == "1.000/0.000" and row["train_collapse"] == "1"
    assert any("prediction collapse" in r.getMessage() for r in caplog.records)
    assert brain._collapsed(np.array([0.55, 0.45]), "test") is False


def test_new_sssl_options_are_checked_at_start_up():
    base = {"method": "sssl", "tau": 0.5, "sharpen_temperature": 0.5, "mixup_alpha": 4, "rdrop_lambda": 1,
            "warmup_epochs": 1}
    for key, value in (("prior_weight", -1), ("pseudo_labels", "teacher"), ("rdrop_reduction", "sum"),
                       ("selection_metric", "test_acc"), ("collapse_margin", 2)):
        with pytest.raises(ConfigError, match=key):
            check_sssl_hparams({**base, key: value})


PAPER_STEP = {"prior_weight": 0.0, "refine_labels": False, "pseudo_labels": "step",
              "rdrop_reduction": "unlabeled"}


def _biased_run(folder, segments, **options):
    """6 SSSL epochs (no warm-up) of a model whose output starts strongly biased to class 0."""
    torch.set_num_threads(1)
    hp = tiny_hparams(str(folder), method="sssl", epochs=6, warmup=0, seed=0, plot_partition=False, **options)
    with torch.no_grad():
        last = [m for m in hp["model"].modules() if isinstance(m, torch.nn.Linear)][-1]
        last.bias[0] += 3.0
        last.bias[1] -= 3.0
    brain = make_brain(hp)
    dataset = datasets(segments)
    brain.fit(hp["epoch_counter"], dataset, None, train_loader_kwargs=LOADER)
    return float((brain.predict_probs(dataset).argmax(1) == 0).mean())


def test_a_biased_model_collapses_with_the_papers_step_not_with_the_prior_penalty(noisy, tmp_path):
    # The confirmation-bias loop: a model leaning to class 0 gives class 0 low losses, its sharpened
    # guesses push further. With the paper's step (Eq. 9 alone) it ends predicting class 0 for almost
    # every segment (balanced labels: 50 %); the class-prior penalty keeps both classes.
    _, segments, _ = noisy
    paper = _biased_run(tmp_path / "paper", segments, **PAPER_STEP)
    guarded = _biased_run(tmp_path / "prior", segments, **{**PAPER_STEP, "prior_weight": 1.0})
    assert paper > 0.9, paper
    assert guarded < 0.8, guarded
