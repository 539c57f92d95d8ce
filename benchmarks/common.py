"""Shared helpers of the benchmarks: generated songs and their feature cache."""

import os
import sys
import time

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sssl_brain.dataio.features import FeatureCache, FeatureConfig  # noqa: E402


def make_songs(folder, n_songs=20, duration=30.0, sr=22050, seed=0):
    """Writes ``n_songs`` noisy chord-like WAV songs; returns their paths and durations."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n_songs):
        path = os.path.join(folder, f"song_{i:04d}.wav")
        if not os.path.exists(path):
            t = np.arange(int(duration * sr)) / sr
            f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
            y = sum(np.sin(2 * np.pi * f0 * r * t) for r in (1, 1.25, 1.5)) / 4
            envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 4) * t)
            y = y * envelope + 0.02 * rng.standard_normal(t.size)
            sf.write(path, y.astype(np.float32), sr)
        paths.append(path)
    return paths


def build_cache(folder, paths, n_jobs=2):
    """Feature cache of the songs (computed once, reused by later runs)."""
    cache = FeatureCache(os.path.join(folder, "features"), FeatureConfig())
    cache.build(paths, n_jobs=n_jobs, progress=False)
    return cache


class Timer:
    """Wall-clock timer as a context manager."""

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
