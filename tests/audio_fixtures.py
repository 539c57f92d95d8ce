"""Short generated audio files for tests (the real datasets' audio is not here)."""

import os

import numpy as np
import soundfile as sf


def tone(duration, sr=22050, freq=440.0, channels=1, amplitude=0.3, seed=0):
    """A deterministic tone plus a little noise, shape (samples,) or (samples, channels)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(duration * sr))) / sr
    y = amplitude * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    y = y.astype(np.float32)
    if channels > 1:
        y = np.stack([y * (1.0 - 0.2 * c) for c in range(channels)], axis=1)
    return y


def write_audio(path, duration=3.0, sr=22050, freq=440.0, channels=1, seed=0):
    """Writes a generated tone; the format follows the extension (wav, flac, ogg, mp3)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    sf.write(path, tone(duration, sr, freq, channels, seed=seed), sr)
    return path
