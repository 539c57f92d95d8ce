"""``warmup_mixup``: mixup on the inherited labels in the epochs without a partition ("CE + mixup")."""

import copy

import pytest
import torch
from synthetic import brain_hparams, datasets, make_brain, make_noisy_segments, tiny_hparams

from sssl_brain.method import brain as brain_module
from sssl_brain.method.checks import check_sssl_hparams
from sssl_brain.method.sssl import class_prior_penalty, mix_pairs, soft_cross_entropy
from sssl_brain.method.warmup import warmup_key
from sssl_brain.utils.errors import ConfigError


@pytest.fixture(scope="module")
def segments(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wm")
    segs, _ = make_noisy_segments(str(folder / "data"), n_songs=8, segs_per_song=6, noise=0.3, seed=1)
    return segs


def _run(tmp_path, segments, method, warmup_mixup, monkeypatch):
    """Trains 3 epochs (2 warm-up); returns [(epoch, n_u, l_prior, loss, by_hand)] of every mixup step."""
    torch.set_num_threads(1)
    hp = tiny_hparams(str(tmp_path), method=method, epochs=3, warmup=2, prior_weight=1.0,
                      warmup_mixup=warmup_mixup)
    brain = make_brain(hp)
    steps, mixed = [], []
    real_mix = brain_module.mix_pairs

    def recording_mix(x, delta, perm):  # keeps what the step mixed, to recompute its loss by hand
        mixed.append((x, delta, perm))
        return real_mix(x, delta, perm)

    monkeypatch.setattr(brain_module, "mix_pairs", recording_mix)
    objective = brain.sssl_objective

    def recorded(batch):
        mixed.clear()
        before, model = torch.get_rng_state(), copy.deepcopy(brain.modules.model)  # as the step starts
        loss, parts = objective(batch)
        if parts["n_u"] == 0 and brain.clean_mask is None:  # no partition: targets are the inherited one-hots
            (x, delta, perm), (targets, _, _) = mixed
            after = torch.get_rng_state()
            torch.set_rng_state(before)  # the same dropout masks as the step
            with torch.no_grad():
                logits = model(mix_pairs(x, delta, perm))
            torch.set_rng_state(after)
            by_hand = float(soft_cross_entropy(logits.float(), mix_pairs(targets, delta, perm))
                            + class_prior_penalty(logits.float(), brain.class_prior))  # prior_weight 1
            labels = batch.label.data[:, 0]
            assert torch.equal(targets, torch.nn.functional.one_hot(labels, 2).float())
        else:
            by_hand = None
        steps.append((hp["epoch_counter"].current, parts["n_u"], parts["l_prior"],
                      float(loss.detach()), by_hand))
        return loss, parts

    brain.sssl_objective = recorded
    brain.fit(hp["epoch_counter"], datasets(segments), None,
              train_loader_kwargs={"batch_size": 16, "shuffle": True})
    return steps


def test_without_warmup_mixup_the_warmup_is_plain_cross_entropy(tmp_path, segments, monkeypatch):
    steps = _run(tmp_path, segments, "sssl", False, monkeypatch)
    assert {epoch for epoch, *_ in steps} == {3}  # the SSSL objective runs only after the warm-up


def test_warmup_mixup_trains_the_warmup_on_eq9_with_every_segment_labeled(tmp_path, segments, monkeypatch):
    steps = _run(tmp_path, segments, "sssl", True, monkeypatch)
    warm = [s for s in steps if s[0] <= 2]
    assert {s[0] for s in warm} == {1, 2} and len(warm) == 6  # 48 segments, batches of 16, 2 epochs
    for _, n_u, _, loss, by_hand in warm:
        assert n_u == 0  # no U, so no R-Drop term
        assert loss == pytest.approx(by_hand, rel=1e-5)  # L_MIX of Eq. 6-7 on the one-hot labels + prior
    assert any(s[2] > 0 for s in warm)  # the class-prior term of prior_weight counts in the warm-up too
    assert any(s[0] == 3 for s in steps)


def test_inherit_with_warmup_mixup_is_ce_with_mixup_in_every_epoch(tmp_path, segments, monkeypatch):
    steps = _run(tmp_path, segments, "inherit", True, monkeypatch)
    assert {s[0] for s in steps} == {1, 2, 3}
    assert all(s[1] == 0 and s[3] == pytest.approx(s[4], rel=1e-5) for s in steps)


def test_warmup_key_counts_mixup_alpha_only_with_warmup_mixup():
    plain = brain_hparams(warmup_mixup=False)
    mixed = brain_hparams(warmup_mixup=True)
    assert "mixup_alpha" not in warmup_key(plain)
    assert warmup_key(mixed)["mixup_alpha"] == mixed["mixup_alpha"]
    assert warmup_key(plain)["warmup_mixup"] is False


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_wrong_warmup_mixup_is_refused_by_name(value):
    with pytest.raises(ConfigError, match=r"warmup_mixup="):
        check_sssl_hparams(brain_hparams(warmup_mixup=value))
