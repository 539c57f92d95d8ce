"""Tests of the VGG16 segment classifier (sssl_brain.lobes.vgg16)."""

import pytest
import torch

from sssl_brain.lobes.vgg16 import VGG16
from sssl_brain.utils.errors import ConfigError, DataError

TINY = {"width_mult": 1 / 16, "classifier_dim": 32}


def _vgg16_param_count(in_channels, n_classes, batch_norm=False, pool=7, fc=4096):
    """Parameter count of configuration D written out layer by layer."""
    convs = [
        (in_channels, 64),
        (64, 64),
        (64, 128),
        (128, 128),
        (128, 256),
        (256, 256),
        (256, 256),
        (256, 512),
        (512, 512),
        (512, 512),
        (512, 512),
        (512, 512),
        (512, 512),
    ]
    total = 0
    for cin, cout in convs:
        total += cin * cout * 3 * 3 + cout  # weights + bias
        if batch_norm:
            total += 2 * cout  # gamma, beta (running stats are buffers)
    total += 512 * pool * pool * fc + fc
    total += fc * fc + fc
    total += fc * n_classes + n_classes
    return total


def test_full_vgg16_parameter_count_one_channel_four_classes():
    with torch.device("meta"):
        model = VGG16(n_classes=4)
    assert model.count_parameters() == _vgg16_param_count(1, 4)
    # torchvision's 138,357,544 minus 2 x 64 x 3 x 3 first-layer weights (3 -> 1 channel)
    # minus 996 x (4096 + 1) output weights and biases (1000 -> 4 classes).
    assert model.count_parameters() == 138_357_544 - 2 * 64 * 9 - 996 * 4097 == 134_275_780
    assert model.trunk_dim == 512 * 7 * 7


def test_parameter_count_matches_published_torchvision_vgg16():
    # torchvision's vgg16 / vgg16_bn (3 channels, 1000 classes) have 138,357,544 / 138,365,992 parameters.
    with torch.device("meta"):
        assert VGG16(n_classes=1000, in_channels=3).count_parameters() == 138_357_544
        assert VGG16(n_classes=1000, in_channels=3, batch_norm=True).count_parameters() == 138_365_992
    assert _vgg16_param_count(3, 1000) == 138_357_544


def test_count_trainable_only():
    model = VGG16(n_classes=2, **TINY)
    total = model.count_parameters()
    for p in model.features.parameters():
        p.requires_grad_(False)
    assert model.count_parameters(trainable_only=True) == total - sum(
        p.numel() for p in model.features.parameters()
    )


@pytest.mark.parametrize(
    "shape",
    [
        (2, 44, 128),  # 1 s segment: 44 frames x 128 mels
        (2, 130, 128),  # 3 s segment
        (3, 10, 16),  # tiny
        (1, 1, 1),  # a single frame and bin: no pooling may fail
        (2, 1, 44, 128),  # explicit channel dimension
        (2, 1, 7, 3),
    ],
)
def test_output_shape_for_many_input_sizes(shape):
    torch.manual_seed(0)
    model = VGG16(n_classes=4, **TINY).eval()
    with torch.no_grad():
        out = model(torch.randn(*shape))
    assert out.shape == (shape[0], 4)
    assert torch.isfinite(out).all()


def test_trunk_and_head_compose_to_forward():
    torch.manual_seed(0)
    model = VGG16(n_classes=3, **TINY).eval()
    x = torch.randn(2, 44, 128)
    with torch.no_grad():
        h = model.trunk(x)
        assert h.shape == (2, model.trunk_dim) == (2, 32 * 7 * 7)
        torch.testing.assert_close(model.head(h), model(x))


def test_channels_last_input_gives_the_same_output():
    torch.manual_seed(0)
    model = VGG16(n_classes=2, **TINY).eval()
    x = torch.randn(2, 1, 20, 24)
    with torch.no_grad():
        ref = model(x)
        out = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_in_channels_and_outputs_modified_only():
    model = VGG16(n_classes=5, in_channels=2, **TINY)
    assert model.features[0].in_channels == 2
    assert model.classifier[-1].out_features == 5
    assert model(torch.randn(1, 2, 12, 12)).shape == (1, 5)
    with pytest.raises(DataError, match="channels"):
        model(torch.randn(1, 12, 12))
    with pytest.raises(DataError, match="3 channels"):
        model(torch.randn(1, 3, 12, 12))
    with pytest.raises(DataError, match="shape"):
        model(torch.randn(12, 12))


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"n_classes": 0}, "n_classes"),
        ({"n_classes": 2, "width_mult": 0}, "width_mult"),
        ({"n_classes": 2, "dropout": 1.0}, "dropout"),
        ({"n_classes": 2, "adaptive_pool": (7,)}, "adaptive_pool"),
        ({"n_classes": 2, "classifier_dim": 0}, "classifier_dim"),
    ],
)
def test_bad_options_raise_config_error(kwargs, option):
    with pytest.raises(ConfigError, match=option):
        VGG16(**kwargs)


def test_width_mult_keeps_at_least_one_channel():
    model = VGG16(n_classes=2, width_mult=1e-4, classifier_dim=4)
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 13
    assert all(c.out_channels == 1 for c in convs)
    assert model(torch.randn(1, 8, 8)).shape == (1, 2)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_rdrop_passes_can_share_one_trunk_pass(batch_norm):
    """Train mode: the head (dropout) differs between passes, the trunk does not."""
    torch.manual_seed(0)
    model = VGG16(n_classes=4, batch_norm=batch_norm, **TINY).train()
    x = torch.randn(4, 20, 32)
    h1, h2 = model.trunk(x), model.trunk(x)
    torch.testing.assert_close(h1, h2, rtol=0, atol=0)
    z1, z2 = model.head(h1), model.head(h1)
    assert not torch.allclose(z1, z2)
    # Both passes back-propagate into the shared trunk.
    (z1.square().mean() + z2.square().mean()).backward()
    assert model.features[0].weight.grad is not None
    assert model.features[0].weight.grad.abs().sum() > 0


def test_no_dropout_makes_head_deterministic_and_eval_is_deterministic():
    torch.manual_seed(0)
    model = VGG16(n_classes=4, dropout=0.0, **TINY).train()
    h = torch.randn(3, model.trunk_dim)
    torch.testing.assert_close(model.head(h), model.head(h))
    model = VGG16(n_classes=4, batch_norm=True, **TINY).eval()
    x = torch.randn(3, 12, 20)
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


def test_construction_is_deterministic_under_a_seed():
    torch.manual_seed(123)
    a = VGG16(n_classes=2, **TINY)
    torch.manual_seed(123)
    b = VGG16(n_classes=2, **TINY)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
