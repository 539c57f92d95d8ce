"""The mean teacher (``ema_decay``): it is what the partition, the guesses, validation and predictions use."""

import copy
import os

import numpy as np
import pytest
import speechbrain as sb
import torch
from synthetic import brain_hparams, datasets, make_brain, make_noisy_segments, tiny_hparams

from sssl_brain.dataio.dataset import segment_labels
from sssl_brain.method.checks import check_sssl_hparams
from sssl_brain.method.teacher import MeanTeacher, ema_decay_at, teacher_model_state
from sssl_brain.utils.errors import ConfigError

LOADER = {"batch_size": 16, "shuffle": True}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny SSSL run with a mean teacher (batch norm on), 5 epochs of which 2 warm-up."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("teacher")
    segments, _ = make_noisy_segments(str(folder / "data"), n_songs=16, segs_per_song=8, noise=0.3, seed=1)
    hp = tiny_hparams(str(folder / "run"), method="sssl", epochs=5, warmup=2, ema_decay=0.9)
    brain = make_brain(hp)
    dataset = datasets(segments)
    brain.fit(hp["epoch_counter"], dataset, None, train_loader_kwargs=LOADER)
    return brain, dataset, hp


def _probs(model, dataset):
    loader = sb.dataio.dataloader.make_dataloader(dataset, batch_size=64,
                                                  collate_fn=sb.dataio.batch.PaddedBatch)
    model.eval()
    with torch.no_grad():
        return torch.cat([torch.softmax(model(b.feats.data).float(), -1) for b in loader]).numpy()


def test_teacher_differs_from_the_student_and_serves_the_predictions(trained):
    brain, dataset, _ = trained
    assert brain.serving_model is brain.teacher.module
    assert int(brain.teacher.n_averaged) > 10  # one update per optimiser step
    teacher_probs = _probs(copy.deepcopy(brain.teacher.module), dataset)
    student_probs = _probs(copy.deepcopy(brain.student), dataset)
    assert np.abs(teacher_probs - student_probs).max() > 1e-3  # two different models
    np.testing.assert_allclose(brain.predict_probs(dataset), teacher_probs, rtol=1e-5, atol=1e-6)


def test_partition_pass_and_guesses_come_from_the_teacher(trained):
    brain, dataset, _ = trained
    losses, probs = brain.segment_losses(dataset)
    teacher_probs = _probs(copy.deepcopy(brain.teacher.module), dataset)
    np.testing.assert_allclose(probs, teacher_probs, rtol=1e-5, atol=1e-6)
    labels, _ = segment_labels(dataset)
    np.testing.assert_allclose(losses, -np.log(teacher_probs[np.arange(len(labels)), labels]), rtol=1e-4)
    x = dataset[0]["feats"].unsqueeze(0)
    brain.student.train()
    guess = brain.guess_probs(x)
    assert brain.student.training  # the guess leaves the student in train mode
    torch.testing.assert_close(guess, torch.from_numpy(teacher_probs[:1]), rtol=1e-5, atol=1e-6)


def test_validation_uses_the_teacher(trained):
    brain, dataset, _ = trained
    batch = next(iter(sb.dataio.dataloader.make_dataloader(dataset, batch_size=8,
                                                           collate_fn=sb.dataio.batch.PaddedBatch)))
    with torch.no_grad():
        valid = brain.compute_forward(batch, sb.Stage.VALID)
        torch.testing.assert_close(valid, brain.teacher.module(batch.feats.data))


def test_batch_norm_buffers_are_averaged():
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    teacher = MeanTeacher(student, decay=0.8)
    history = []
    for step in range(6):
        student(torch.randn(16, 3) + step)  # train mode: the running statistics move
        history.append(student[1].running_mean.clone())
        teacher.update_parameters(student)
    expected = history[0]
    for n, value in enumerate(history[1:], start=1):
        d = ema_decay_at(0.8, n)
        expected = d * expected + (1 - d) * value
    torch.testing.assert_close(teacher.module[1].running_mean, expected)
    assert not torch.allclose(teacher.module[1].running_mean, student[1].running_mean)
    assert int(teacher.module[1].num_batches_tracked) == int(student[1].num_batches_tracked)
    assert not any(p.requires_grad for p in teacher.parameters())


def test_teacher_is_checkpointed_and_exported_state_matches(trained):
    brain, _, hp = trained
    ckpts = [d for d in os.listdir(os.path.join(hp["output_folder"], "save")) if d.startswith("CKPT+")]
    path = os.path.join(hp["output_folder"], "save", ckpts[0], "teacher.ckpt")
    state = torch.load(path, weights_only=True)
    assert int(state["n_averaged"]) == int(brain.teacher.n_averaged)
    served = teacher_model_state(state)
    assert served.keys() == brain.student.state_dict().keys()
    for key, value in brain.teacher.module.state_dict().items():
        torch.testing.assert_close(served[key], value)


def test_resume_restores_the_teacher(tmp_path):
    torch.set_num_threads(1)
    segments, _ = make_noisy_segments(str(tmp_path / "data"), n_songs=8, segs_per_song=6, noise=0.3, seed=2)
    dataset = datasets(segments)
    hp = tiny_hparams(str(tmp_path / "run"), epochs=3, warmup=1, ema_decay=0.9)
    brain = make_brain(hp)
    brain.fit(hp["epoch_counter"], dataset, None, train_loader_kwargs=LOADER)
    again = make_brain(tiny_hparams(str(tmp_path / "run"), epochs=3, warmup=1, ema_decay=0.9, seed=5))
    again.checkpointer.recover_if_possible()
    for key, value in brain.teacher.state_dict().items():
        torch.testing.assert_close(again.teacher.state_dict()[key], value)


@pytest.mark.parametrize("value", [1.0, -0.1, "0.9", True])
def test_wrong_ema_decay_is_refused_by_name(value):
    with pytest.raises(ConfigError, match="ema_decay"):
        check_sssl_hparams(brain_hparams(ema_decay=value))
