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
