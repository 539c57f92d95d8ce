"""Input normalisation: statistics of the fold's training songs, applied inside the model."""

import numpy as np
import torch

from sssl_brain.dataio.experiment import feature_stats
from sssl_brain.lobes.vgg16 import VGG16


class ArrayCache:
    """Stand-in for FeatureCache.load over in-memory arrays."""

    def __init__(self, arrays):
        self.arrays = arrays

    def load(self, path):
        return self.arrays[path]


def test_feature_stats_pool_every_frame_of_each_song_once():
    rng = np.random.default_rng(0)
    arrays = {
        "a": rng.normal(3, 2, (50, 4)).astype(np.float32),
        "b": rng.normal(-1, 1, (30, 4)).astype(np.float32),
    }
    mean, std = feature_stats(ArrayCache(arrays), ["b", "a", "a", "b"])  # segments repeat songs
    frames = np.concatenate([arrays["a"], arrays["b"]]).astype(np.float64)
    np.testing.assert_allclose(mean, frames.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(std, frames.std(axis=0), rtol=1e-8)


def test_model_normalises_its_input_per_mel_bin():
    torch.manual_seed(0)
    model = VGG16(2, width_mult=1 / 16, classifier_dim=8, n_mels=16).eval()
    x = torch.randn(3, 12, 16) * 20 - 50
    mean, std = x.mean(dim=(0, 1)), x.std(dim=(0, 1))
    reference = model(((x - mean) / std))  # identity normalisation so far
    model.set_input_normalization(mean, std)
    torch.testing.assert_close(model(x), reference)
    assert "input_mean" in model.state_dict()  # travels with checkpoints and exported models
