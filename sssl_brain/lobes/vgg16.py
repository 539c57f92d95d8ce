"""Segment classifier: VGG16 with one input channel and K outputs.

The paper uses VGG16 with "only the input channel and number of outputs
modified": configuration D of Simonyan & Zisserman (13 convolutions in 5
blocks, 3 fully connected layers), laid out like ``torchvision.models.vgg16``
(adaptive 7x7 average pooling before the classifier, dropout 0.5 after the
first two fully connected layers).

The model is split into :meth:`VGG16.trunk` (convolutions and pooling, no
dropout) and :meth:`VGG16.head` (the classifier, with dropout). R-Drop
(Eq. 8) needs two dropout passes of each sample; since the trunk holds no
dropout, both passes can share one trunk pass and only run the head twice.
"""

import numbers

import torch
import torch.nn.functional as F
from torch import nn

from sssl_brain.utils.errors import ConfigError, DataError

#: Configuration D (VGG16): channel counts, "M" = 2x2 max pooling.
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class SafeMaxPool2d(nn.Module):
    """2x2 max pooling (stride 2, floor mode) that never pools a dimension of size 1.

    Standard VGG pooling on inputs too small for five halvings (e.g. 10
    frames) would produce an empty tensor; here a dimension smaller than 2
    is left as it is, and larger ones are pooled exactly as ``nn.MaxPool2d(2)``.

    Example
    -------
    >>> SafeMaxPool2d()(torch.zeros(1, 3, 5, 1)).shape
    torch.Size([1, 3, 2, 1])
    """

    def forward(self, x):
        """Pools the last two dimensions of ``x`` (B, C, T, F)."""
        kt = 2 if x.shape[-2] >= 2 else 1
        kf = 2 if x.shape[-1] >= 2 else 1
        if kt == 1 and kf == 1:
            return x
        return F.max_pool2d(x, kernel_size=(kt, kf), stride=(kt, kf))


class VGG16(nn.Module):
    """VGG16 (configuration D) for log-mel segments: 1 input channel, K outputs.

    Arguments
    ---------
    n_classes : int
        Number of outputs K.
    in_channels : int
        Input channels (1 for a log-mel spectrogram).
    batch_norm : bool
        Insert BatchNorm2d after each convolution (VGG16-BN). Default False, as in VGG16.
    width_mult : float
        Scales every convolution's channel count (at least 1 channel); 1.0 is VGG16.
    classifier_dim : int
        Width of the two hidden fully connected layers (4096 in VGG16).
    dropout : float
        Dropout probability in the classifier (0.5 in VGG16).
    adaptive_pool : tuple of int
        Output size of the adaptive average pooling before the classifier
        ((7, 7) in torchvision), so any segment duration works.
    n_mels : int, optional
        Feature bins; with it the input normalisation holds one mean and
        standard deviation per bin, without it one of each for all bins.
    channels_last : bool
        Keep convolution weights and activations in channels-last memory
        format (same numbers, different layout); measured 1.7-2x faster for
        narrow models on a 2-core CPU (``benchmarks/bench_epoch.py``).

    Example
    -------
    >>> model = VGG16(n_classes=4, width_mult=1 / 16, classifier_dim=32)
    >>> model(torch.randn(2, 44, 128)).shape  # (batch, frames, mels): a 1 s segment
    torch.Size([2, 4])
    >>> model.trunk(torch.randn(2, 1, 10, 16)).shape  # 32 channels x 7 x 7
    torch.Size([2, 1568])
    """

    def __init__(
        self,
        n_classes,
        in_channels=1,
        batch_norm=False,
        width_mult=1.0,
        classifier_dim=4096,
        dropout=0.5,
        adaptive_pool=(7, 7),
        n_mels=None,
        channels_last=False,
    ):
        super().__init__()
        if not (isinstance(n_classes, numbers.Integral) and n_classes >= 1):
            raise ConfigError(f"n_classes={n_classes!r}: must be a positive integer")
        if not (isinstance(in_channels, numbers.Integral) and in_channels >= 1):
            raise ConfigError(f"in_channels={in_channels!r}: must be a positive integer")
        if not width_mult > 0:
            raise ConfigError(f"width_mult={width_mult!r}: must be > 0")
        if not (isinstance(classifier_dim, numbers.Integral) and classifier_dim >= 1):
            raise ConfigError(f"classifier_dim={classifier_dim!r}: must be a positive integer")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout={dropout!r}: must be in [0, 1)")
        pool = tuple(int(p) for p in adaptive_pool) if adaptive_pool is not None else ()
        if len(pool) != 2 or min(pool) < 1:
            raise ConfigError(f"adaptive_pool={adaptive_pool!r}: must be two positive integers, e.g. [7, 7]")
        n_classes, in_channels, classifier_dim = int(n_classes), int(in_channels), int(classifier_dim)
        self.n_classes = n_classes
        self.in_channels = in_channels

        layers = []
        channels = in_channels
        for item in VGG16_CFG:
            if item == "M":
                layers.append(SafeMaxPool2d())
                continue
            out = max(1, int(round(item * width_mult)))
            layers.append(nn.Conv2d(channels, out, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU(inplace=True))
            channels = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(pool)
        self.trunk_dim = channels * pool[0] * pool[1]
        self.classifier = nn.Sequential(
            nn.Linear(self.trunk_dim, classifier_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(classifier_dim, classifier_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(classifier_dim, n_classes),
        )
        self.init_weights()
        size = int(n_mels) if n_mels else 1
        # input normalisation (x - mean) / std, set from the training songs by set_input_normalization;
        # buffers, so they travel with the weights in checkpoints and exported models
        self.register_buffer("input_mean", torch.zeros(size))
        self.register_buffer("input_std", torch.ones(size))
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.features.to(memory_format=torch.channels_last)

    def init_weights(self):
        """torchvision's VGG initialisation."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def set_input_normalization(self, mean, std):
        """Sets the input normalisation (x - mean) / std (per feature bin or global).

        Arguments
        ---------
        mean, std : array-like
            Shape (n_mels,) or (1,), from the training songs' features.

        Example
        -------
        >>> model = VGG16(n_classes=2, width_mult=1 / 16, classifier_dim=8, n_mels=3)
        >>> model.set_input_normalization([1.0, 2.0, 3.0], [1.0, 1.0, 2.0])
        >>> model.input_std.tolist()
        [1.0, 1.0, 2.0]
        """
        mean = torch.as_tensor(mean, dtype=self.input_mean.dtype).reshape(-1)
        std = torch.as_tensor(std, dtype=self.input_std.dtype).reshape(-1)
        if mean.shape != self.input_mean.shape or std.shape != self.input_std.shape:
            raise ConfigError(f"input normalisation of shape {tuple(mean.shape)}, expected "
                              f"{tuple(self.input_mean.shape)} (n_mels of the model)")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
            raise DataError("input normalisation: mean/std must be finite and std > 0")
        self.input_mean.copy_(mean)
        self.input_std.copy_(std)

    def _as_image(self, x):
        x = (x - self.input_mean) / self.input_std  # broadcast over the last (feature) axis
        if x.dim() == 3:
            if self.in_channels != 1:
                raise DataError(
                    f"VGG16 got a (B, T, F) input {tuple(x.shape)} but in_channels={self.in_channels}; "
                    "pass (B, C, T, F)"
                )
            return x.unsqueeze(1)
        if x.dim() == 4:
            if x.shape[1] != self.in_channels:
                raise DataError(
                    f"VGG16 input {tuple(x.shape)} has {x.shape[1]} channels, expected {self.in_channels}"
                )
            return x
        raise DataError(f"VGG16 input must be (B, T, F) or (B, C, T, F), got shape {tuple(x.shape)}")

    def trunk(self, x):
        """Convolutional features, pooled to ``adaptive_pool`` and flattened (no dropout).

        Arguments
        ---------
        x : torch.Tensor
            (B, T, F) features (SpeechBrain convention) or (B, C, T, F).

        Returns
        -------
        torch.Tensor
            Shape (B, trunk_dim).
        """
        x = self._as_image(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.features(x)
        return torch.flatten(self.avgpool(h), 1)

    def head(self, h):
        """Classifier (three fully connected layers with dropout): logits, shape (B, K)."""
        return self.classifier(h)

    def forward(self, x):
        """Logits ``head(trunk(x))``, shape (B, K)."""
        return self.head(self.trunk(x))

    def count_parameters(self, trainable_only=False):
        """Number of parameters (all, or only those with ``requires_grad``).

        Example
        -------
        >>> VGG16(n_classes=2, width_mult=1 / 64, classifier_dim=8, adaptive_pool=(1, 1)).count_parameters()
        3828
        """
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
