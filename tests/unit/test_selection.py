"""Model selection: the checkpoint chosen on validation, and whether it is a warm-up (plain CE) epoch."""

import pytest
import torch
from speechbrain.utils.checkpoints import Checkpointer

from sssl_brain.method.selection import recover_selected, save_epoch_checkpoint


@pytest.fixture
def checkpointer(tmp_path):
    """Checkpoints of epochs 1-4 whose validation accuracy peaks at epoch 2."""
    layer = torch.nn.Linear(2, 2)
    ckpt = Checkpointer(tmp_path / "save", {"model": layer})
    for epoch, acc in enumerate([0.5, 0.9, 0.6, 0.7], start=1):
        with torch.no_grad():
            layer.weight.fill_(epoch)
        save_epoch_checkpoint(ckpt, epoch, {"loss": 1.0 - acc, "acc_inherited": acc}, "valid_acc", False)
    return ckpt, layer


@pytest.mark.parametrize("warmup, in_warmup", [(2, True), (1, False)])
def test_sssl_run_says_when_its_selected_checkpoint_is_a_warmup_epoch(checkpointer, warmup, in_warmup):
    ckpt, layer = checkpointer
    out = recover_selected(ckpt, "valid_acc", "sssl", warmup, False)
    assert out["selected_epoch"] == 2 and out["selected_value"] == pytest.approx(0.9)
    assert out["selected_in_warmup"] is in_warmup
    assert float(layer.weight[0, 0].detach()) == 2.0  # the selected epoch's weights are loaded


def test_inherit_has_no_warmup_flag_and_last_keeps_the_last_epoch(checkpointer):
    ckpt, layer = checkpointer
    assert "selected_in_warmup" not in recover_selected(ckpt, "valid_acc", "inherit", 2, False)
    out = recover_selected(ckpt, "last", "proposed_star", 2, False)
    assert out["selection_metric"] == "last" and out["selected_epoch"] == 4
    assert out["selected_in_warmup"] is False and float(layer.weight[0, 0].detach()) == 4.0


def _saved(tmp_path, accs, warmup):
    layer = torch.nn.Linear(2, 2)
    ckpt = Checkpointer(tmp_path / "save", {"model": layer})
    for epoch, acc in enumerate(accs, start=1):
        with torch.no_grad():
            layer.weight.fill_(epoch)
        save_epoch_checkpoint(ckpt, epoch, {"loss": 1.0 - acc, "acc_inherited": acc}, "valid_acc", False,
                              warmup_epochs=warmup)
    return ckpt, layer


def test_post_warmup_scope_selects_among_the_sssl_epochs_and_reports_both(tmp_path):
    ckpt, layer = _saved(tmp_path, [0.5, 0.9, 0.6, 0.7, 0.65], warmup=2)
    kept = sorted(c.meta["epoch"] for c in ckpt.list_checkpoints())
    assert kept == [2, 4, 5]  # best warm-up, best after the warm-up, newest
    out = recover_selected(ckpt, "valid_acc", "sssl", 2, False, scope="post_warmup")
    assert out["selection_scope"] == "post_warmup" and out["selected_epoch"] == 4
    assert out["selected_in_warmup"] is False and float(layer.weight[0, 0].detach()) == 4.0
    assert out["best_all"] == {"epoch": 2, "value": 0.9}
    assert out["best_post_warmup"] == {"epoch": 4, "value": 0.7}
    out = recover_selected(ckpt, "valid_acc", "sssl", 2, False, scope="all")
    assert out["selected_epoch"] == 2 and out["selected_in_warmup"] is True
    assert out["best_post_warmup"] == {"epoch": 4, "value": 0.7}
    inherit = recover_selected(ckpt, "valid_acc", "inherit", 2, False, scope="post_warmup")
    assert inherit["selection_scope"] == "all" and inherit["selected_epoch"] == 2


def test_post_warmup_scope_without_sssl_epochs_falls_back_to_all(tmp_path):
    ckpt, _ = _saved(tmp_path, [0.5, 0.9], warmup=2)
    out = recover_selected(ckpt, "valid_acc", "sssl", 2, False, scope="post_warmup")
    assert out["selection_scope"] == "all" and out["selected_epoch"] == 2 and out["best_post_warmup"] is None


def test_tied_validation_scores_select_the_later_epoch(tmp_path):
    ckpt, layer = _saved(tmp_path, [0.5, 0.9, 0.6, 0.9, 0.7], warmup=0)
    out = recover_selected(ckpt, "valid_acc", "inherit", 0, False)
    assert out["selected_epoch"] == 4 and float(layer.weight[0, 0].detach()) == 4.0
