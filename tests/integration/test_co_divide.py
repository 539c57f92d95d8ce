"""``co_divide``: DivideMix's co-divide and co-guess (two networks, each on the other's partition)."""

import numpy as np
import pytest
import torch
from synthetic import brain_hparams, datasets, make_brain, make_noisy_segments, tiny_hparams

from sssl_brain.method import brain as brain_module
from sssl_brain.method.checks import check_sssl_hparams
from sssl_brain.method.co_divide import make_peer
from sssl_brain.method.selection import PartitionState
from sssl_brain.method.warmup import warmup_key
from sssl_brain.utils.errors import ConfigError


@pytest.fixture(scope="module")
def segments(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cd")
    segs, _ = make_noisy_segments(str(folder / "data"), n_songs=8, segs_per_song=6, noise=0.3, seed=1)
    return segs


def _trained(tmp_path, segments, monkeypatch):
    """A 3-epoch run (2 warm-up) with co_divide; records the partition passes and the SSSL objectives.

    The tiny models' losses split by class in the same way; so that the two partitions differ, each
    network's X is made the segments of even rank in its own losses (the real mixture on 0/1 values).
    """
    real_partition = brain_module.partition_segments

    def rank_split(losses, labels, n_classes, **kwargs):
        odd = np.argsort(np.argsort(np.asarray(losses), kind="stable"), kind="stable") % 2
        return real_partition(odd.astype(np.float64), labels, n_classes, **kwargs)

    monkeypatch.setattr(brain_module, "partition_segments", rank_split)
    torch.set_num_threads(1)
    hp = tiny_hparams(str(tmp_path), method="sssl", epochs=3, warmup=2, co_divide=True, ema_decay=None,
                      partition_bias_tolerance=None, partition_min_class_share=None)  # no teachers: see below
    brain = make_brain(hp)
    initial_peer = None if brain.peer is None else [p.detach().clone() for p in brain.peer.parameters()]
    passes, objectives = [], []
    compute_partition, objective = brain.compute_partition, brain.sssl_objective

    def recorded_partition(epoch, model=None, report=True):
        result, probs = compute_partition(epoch, model, report)
        passes.append((epoch, brain.student if model is None else model, result.clean.copy()))
        return result, probs

    def recorded_objective(batch, net=None, partition=None, generator=None):
        mask = (brain.clean_mask if partition is None else partition[0]).cpu()
        net = brain.modules.model if net is None else net
        objectives.append((net.model, mask[batch.index.data[:, 0]].tolist(), batch.index.data[:, 0].tolist()))
        return objective(batch, net, partition, generator)

    brain.compute_partition, brain.sssl_objective = recorded_partition, recorded_objective
    brain.fit(hp["epoch_counter"], datasets(segments), None,
              train_loader_kwargs={"batch_size": 16, "shuffle": True})
    return brain, initial_peer, passes, objectives


def test_each_network_trains_on_the_partition_of_the_other_ones_losses(tmp_path, segments, monkeypatch):
    brain, initial_peer, passes, objectives = _trained(tmp_path, segments, monkeypatch)
    assert [(epoch, net) for epoch, net, _ in passes] == [(3, brain.student), (3, brain.peer)]
    clean_of = {net: clean for _, net, clean in passes}
    assert (clean_of[brain.student] != clean_of[brain.peer]).any()  # two different partitions to cross
    trained = {id(net) for net, _, _ in objectives}
    assert trained == {id(brain.student), id(brain.peer)} and len(objectives) == 2 * 3  # 48 segments / 16
    for net, mask, index in objectives:
        other = brain.peer if net is brain.student else brain.student
        assert mask == clean_of[other][index].tolist()
    # the peer trained (warm-up included)
    assert all(not torch.equal(a, b) for a, b in zip(initial_peer, brain.peer.parameters()))


def test_co_guess_is_the_mean_of_both_networks_and_the_model_alone_serves(tmp_path, segments, monkeypatch):
    brain, _, _, _ = _trained(tmp_path, segments, monkeypatch)
    x = torch.randn(5, *datasets(segments)[0]["feats"].shape)
    with torch.no_grad():
        brain.student.eval(), brain.peer.eval()
        own, peer = torch.softmax(brain.student(x), -1), torch.softmax(brain.peer(x), -1)
    assert torch.allclose(brain.guess_probs(x), (own + peer) / 2, atol=1e-6)
    assert brain.serving_model is brain.student
    assert "peer" in brain.checkpointer.recoverables


def test_the_baseline_has_no_peer_and_the_warmup_key_says_who_has_one(tmp_path):
    hp = tiny_hparams(str(tmp_path), method="inherit", co_divide=True)
    assert make_brain(hp).peer is None
    plain = {"seed": 0, "co_divide": False, "method": "sssl"}
    assert "co_divide" not in warmup_key(plain)
    assert warmup_key({**plain, "co_divide": True})["co_divide"] is True
    assert "co_divide" not in warmup_key({**plain, "co_divide": True, "method": "inherit"})


def test_the_peer_is_the_same_network_with_other_weights():
    from sssl_brain.lobes.vgg16 import VGG16

    model = VGG16(n_classes=3, width_mult=1 / 16, classifier_dim=8, n_mels=4)
    model.set_input_normalization([1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 2.0, 2.0])
    state = torch.get_rng_state()
    peer = make_peer(model, seed=5)
    assert torch.equal(torch.get_rng_state(), state)  # the global random state is untouched
    assert torch.equal(peer.input_std, model.input_std)
    assert not torch.equal(peer.classifier[0].weight, model.classifier[0].weight)
    assert torch.equal(make_peer(model, seed=5).classifier[0].weight, peer.classifier[0].weight)


def test_co_divide_is_checked_by_name():
    with pytest.raises(ConfigError, match="co_divide='yes'"):
        check_sssl_hparams(brain_hparams(co_divide="yes"))
    check_sssl_hparams(brain_hparams(co_divide=True, ema_decay=0.99))  # each network has its teacher


def test_with_a_mean_teacher_each_network_is_served_by_its_own(tmp_path, segments, monkeypatch):
    """co_divide + ema_decay: the peer's teacher (the EMA of the peer) makes the peer's partition pass and
    its half of the co-guess; it is averaged after every step and checkpointed beside the model's."""
    passes = []
    compute_partition = brain_module.SSSLBrain.compute_partition

    def recorded(self, epoch, model=None, report=True):
        passes.append(model)
        return compute_partition(self, epoch, model, report)

    monkeypatch.setattr(brain_module.SSSLBrain, "compute_partition", recorded)
    torch.set_num_threads(1)
    hp = tiny_hparams(str(tmp_path), method="sssl", epochs=3, warmup=2, co_divide=True, ema_decay=0.9)
    brain = make_brain(hp)
    brain.fit(hp["epoch_counter"], datasets(segments), None,
              train_loader_kwargs={"batch_size": 16, "shuffle": True})
    assert brain.serving_model is brain.teacher.module and brain.serving_peer is brain.peer_teacher.module
    assert passes == [None, brain.peer_teacher.module]  # the model's pass: the serving model (its teacher)
    assert int(brain.peer_teacher.n_averaged) == int(brain.teacher.n_averaged) == 3 * 3  # 48 segments / 16
    teacher_w = brain.peer_teacher.module.classifier[0].weight
    assert not torch.allclose(teacher_w, brain.peer.classifier[0].weight)  # an average, not the peer
    x = torch.randn(5, *datasets(segments)[0]["feats"].shape)
    with torch.no_grad():
        brain.teacher.module.eval(), brain.peer_teacher.module.eval()
        own = torch.softmax(brain.teacher.module(x), -1)
        peer = torch.softmax(brain.peer_teacher.module(x), -1)
    assert torch.allclose(brain.guess_probs(x), (own + peer) / 2, atol=1e-6)
    assert "peer_teacher" in brain.checkpointer.recoverables


def test_the_state_keeps_the_peer_partition_across_a_checkpoint(tmp_path):
    from types import SimpleNamespace

    state = PartitionState()
    result = SimpleNamespace(clean=np.array([True, False]), clean_prob=np.array([0.9, 0.1]))
    peer = SimpleNamespace(clean=np.array([False, True]), clean_prob=np.array([0.2, 0.8]))
    state.keep(4, result, np.eye(2), peer, np.eye(2)[::-1])
    state.save(tmp_path / "state.ckpt")
    loaded = PartitionState()
    loaded.load(tmp_path / "state.ckpt")
    assert loaded.epoch == 4 and loaded.clean.tolist() == [True, False]
    assert loaded.peer_clean.tolist() == [False, True] and loaded.peer_probs[0].tolist() == [0.0, 1.0]


def test_the_peer_leaves_the_models_warmup_as_it_was(tmp_path, segments):
    """The peer's own optimiser and random streams: the model's warm-up weights are those of a run
    without co_divide, bit for bit (same dropout masks, same clipping, same Adam state)."""
    torch.set_num_threads(1)
    weights = {}
    for co_divide in (False, True):
        hp = tiny_hparams(str(tmp_path / str(co_divide)), method="sssl", epochs=2, warmup=2,
                          co_divide=co_divide)
        brain = make_brain(hp)
        brain.fit(hp["epoch_counter"], datasets(segments), None,
                  train_loader_kwargs={"batch_size": 16, "shuffle": True})
        weights[co_divide] = [p.detach().clone() for p in brain.student.parameters()]
        assert (brain.peer is not None) == co_divide
    assert all(torch.equal(a, b) for a, b in zip(weights[False], weights[True]))


def test_each_network_gets_its_own_optimiser_as_speechbrain_builds_it(tmp_path):
    """co_divide's two optimisers: one per network, each honouring ``remove_vector_weight_decay``."""
    hp = tiny_hparams(str(tmp_path), method="sssl", co_divide=True)
    brain = make_brain(hp, {"device": "cpu", "noprogressbar": True, "remove_vector_weight_decay": True})
    brain.init_optimizers()
    for opt, net in ((brain.optimizer, brain.student), (brain.peer_optimizer, brain.peer)):
        no_decay, decay = opt.param_groups
        assert no_decay["weight_decay"] == 0.0 and all(p.dim() == 1 for p in no_decay["params"])
        owned = {id(p) for p in net.parameters()}
        assert {id(p) for g in opt.param_groups for p in g["params"]} == owned
    assert brain.checkpointer.recoverables["peer_optimizer"] is brain.peer_optimizer
