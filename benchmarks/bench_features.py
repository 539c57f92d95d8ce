"""Speed of the log-mel features: librosa reference vs sssl_brain.dataio.features.log_mel.

Prints seconds of audio processed per second of wall time (higher is faster)
for the librosa recipe (melspectrogram + power_to_db) and for
``sssl_brain.dataio.features.log_mel``, side by side with their ratio and the
largest difference in dB; then the same for whole files (read + resample +
features) and for a cache build with 1 and 2 worker processes.

The side-by-side rows run with one BLAS thread (threadpoolctl), as in the
cache-build workers: librosa's mel product is a multi-threaded BLAS call whose
threads keep spinning after it returns and steal the CPU from whatever runs
next, which on a 2-core machine distorts an interleaved comparison.

Usage::

    python benchmarks/bench_features.py [--seconds 30] [--repeats 20] [--songs 16]
"""

import argparse
import os
import sys
import tempfile
import time

import librosa
import numpy as np
import soundfile as sf
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sssl_brain.dataio.audio import load_audio  # noqa: E402
from sssl_brain.dataio.features import FeatureCache, FeatureConfig, extract_file, log_mel  # noqa: E402


def librosa_log_mel(y, config):
    """The paper's recipe spelled out with librosa (the reference)."""
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=config.sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        window=config.window,
        n_mels=config.n_mels,
        power=2.0,
        center=True,
    )
    return librosa.power_to_db(mel, ref=config.ref, amin=config.amin, top_db=config.top_db).T


def librosa_extract(path, config):
    return librosa_log_mel(load_audio(path, config.sample_rate), config)


def music(seconds, sr, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = rng.choice([196.0, 262.0, 330.0, 440.0], size=int(seconds * 2) + 1)[(t * 2).astype(int)]
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2 + 0.01 * rng.standard_normal(t.size)
    return y.astype(np.float32)


def best_times(fn_ref, fn_new, repeats):
    """Best (wall, CPU) seconds of ``repeats`` runs of each, interleaved so that other load hits both."""
    fn_ref(), fn_new()  # warm-up: lazy imports, filterbank cache
    times = {fn_ref: [], fn_new: []}
    for _ in range(repeats):
        for fn in (fn_ref, fn_new):
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            times[fn].append((time.perf_counter() - wall, time.process_time() - cpu))
    best = {fn: (min(t[0] for t in ts), min(t[1] for t in ts)) for fn, ts in times.items()}
    return best[fn_ref], best[fn_new]


def row(name, seconds, t_ref, t_new, diff=None):
    ref, new = seconds / t_ref[0], seconds / t_new[0]
    ratio_cpu = t_ref[1] / t_new[1]
    extra = "" if diff is None else f"  max |diff| {diff:.1e} dB"
    print(f"{name:<28} {ref:>10.0f} {new:>10.0f} {new / ref:>7.2f}x {ratio_cpu:>7.2f}x{extra}")


def compare(args):
    config = FeatureConfig()
    print(f"log-mel {config}; song length {args.seconds:g} s; best of {args.repeats}")
    print("seconds of audio per second of wall time (best of the runs); ratio = sssl_brain / librosa")
    print(f"{'':<28} {'librosa':>10} {'sssl_brain':>10} {'ratio':>8} {'CPU ratio':>9}")

    y = music(args.seconds, config.sample_rate)
    diff = float(np.abs(log_mel(y, config) - librosa_log_mel(y, config)).max())
    t_ref, t_new = best_times(lambda: librosa_log_mel(y, config), lambda: log_mel(y, config), args.repeats)
    row("log_mel (in memory)", args.seconds, t_ref, t_new, diff)

    with tempfile.TemporaryDirectory() as folder:
        for native_sr, ext in [(22050, "wav"), (44100, "mp3"), (44100, "flac"), (48000, "ogg")]:
            path = os.path.join(folder, f"song_{native_sr}.{ext}")
            sf.write(path, np.stack([music(args.seconds, native_sr, s) for s in (1, 2)], axis=1), native_sr)
            repeats = max(3, args.repeats // 4)
            t_ref, t_new = best_times(
                lambda p=path: librosa_extract(p, config), lambda p=path: extract_file(p, config), repeats
            )
            row(f"file {ext} {native_sr // 1000} kHz stereo", args.seconds, t_ref, t_new)


def build(args):
    config = FeatureConfig()
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i in range(args.songs):
            path = os.path.join(folder, f"build_{i}.mp3")
            sf.write(path, music(args.seconds, 44100, seed=i), 44100)
            paths.append(path)
        total = args.seconds * len(paths)
        print(f"\ncache build of {len(paths)} songs of {args.seconds:g} s (mp3 44.1 kHz):")
        timings = {}
        runs = [(1, "n_jobs=1 (in process)"), (2, "n_jobs=2, cold workers"), (2, "n_jobs=2, warm workers")]
        for n_jobs, label in runs:
            cache = FeatureCache(os.path.join(folder, f"cache_{len(timings)}"), config)
            start = time.perf_counter()
            cache.build(paths, n_jobs=n_jobs, progress=False)
            timings[label] = time.perf_counter() - start
            print(f"  {label:<24} {total / timings[label]:8.0f} s of audio / s  ({timings[label]:.2f} s)")
        start = time.perf_counter()
        assert cache.build(paths, n_jobs=2, progress=False).computed == []
        print(f"  second build (all cached): {time.perf_counter() - start:.3f} s")
        first, warm = timings["n_jobs=1 (in process)"], timings["n_jobs=2, warm workers"]
        print(f"  speed-up of 2 warm workers over 1: {first / warm:.2f}x on {os.cpu_count()} CPU cores")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="song length (s)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--songs", type=int, default=48, help="songs in the cache-build test")
    args = parser.parse_args()
    with threadpool_limits(limits=1):
        compare(args)
    build(args)


if __name__ == "__main__":
    main()
