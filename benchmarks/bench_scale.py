"""Scale: feature-extraction throughput, cache size and peak memory of a training epoch vs number of songs.

Generates a dataset of thousands of songs (cheap synthetic audio: 16-bit
WAV at 22050 Hz, each song a gain-scaled, circularly shifted copy of one of
8 generated chord signals), prepares it with the generic CSV recipe, then
for each size (the first N songs):

1. builds the feature cache of the songs not cached yet (incremental, in a
   subprocess, ``--jobs`` worker processes): seconds of audio per second of
   wall time (x real time), the cache size on disk, peak resident memory of
   the build process and of its worker processes;
2. runs one SSSL training epoch (no warm-up: the epoch includes the
   partition pass over every training segment) of a tiny VGG16 on fold 0 of
   10 with 1 s segments, in a fresh subprocess: its peak resident memory
   (``VmHWM``; the smallest and largest of ``--repeats`` runs: transient
   allocations make it vary by a few hundred MiB from run to run), its
   resident memory before training (songs, segments, folds, dataset index)
   and at the end (anonymous memory + mapped files: libraries and the
   memory-mapped feature files, at most 64 songs open at once), the number
   of training segments and the epoch time.

Features are memory-mapped per song (``sssl_brain.dataio.dataset``), so the memory of
the epoch must grow with the songs only by the per-segment index (a few KB
per segment), far less than the features themselves; the last lines print
that growth next to the size of the features it would take to hold them.

Usage::

    python benchmarks/bench_scale.py                           # 500, 1000 and 2000 songs of 30 s
    python benchmarks/bench_scale.py --songs 500 1000 --folder /tmp/bench_scale

The dataset and cache stay in ``--folder`` (default: a temporary folder,
removed at the end unless ``--keep``); a second run reuses the audio and the
cache (delete ``<folder>/songs_<d>s/features`` to measure the extraction
again).
"""

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, REPO)

SR = 22050
QUADRANTS = ("Q1", "Q2", "Q3", "Q4")
HPARAMS = os.path.join(REPO, "hparams", "vgg16_sssl.yaml")


# ----------------------------------------------------------------------------- memory
def proc_status(pid="self"):
    """``VmRSS``, ``VmHWM`` (peak), ``RssAnon`` and ``RssFile`` (mapped files) of a process, in MiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) / 1024
    return out


def child_pids(pid="self"):
    """Live child processes (e.g. joblib's workers)."""
    pids = []
    task_dir = f"/proc/{pid}/task"
    for task in os.listdir(task_dir):
        try:
            with open(f"{task_dir}/{task}/children") as f:
                pids.extend(int(p) for p in f.read().split())
        except OSError:
            pass
    return pids


# ----------------------------------------------------------------------------- dataset
def generate(folder, n_songs, duration, seed=0):
    """Writes ``n_songs`` WAV songs and ``annotations.csv`` (balanced quadrants); reuses existing files."""
    import soundfile as sf

    audio = os.path.join(folder, "audio")
    os.makedirs(audio, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = int(duration * SR)
    t = np.arange(n) / SR
    pool = []
    for k in range(8):
        f0 = 110 * 2 ** (k * 3 / 12)
        y = sum(np.sin(2 * np.pi * f0 * r * t) for r in (1, 1.25, 1.5)) / 4
        y *= 0.5 + 0.5 * np.sin(2 * np.pi * (1 + k / 3) * t)
        pool.append((y + 0.02 * rng.standard_normal(n)).astype(np.float32))
    rows = []
    started = time.perf_counter()
    for i in range(n_songs):
        name = f"song_{i:05d}.wav"
        path = os.path.join(audio, name)
        song_rng = np.random.default_rng(seed * 100003 + i)
        if not os.path.exists(path):
            y = np.roll(pool[i % 8], int(song_rng.integers(n))) * song_rng.uniform(0.3, 1.0)
            tmp = path + ".part.wav"
            sf.write(tmp, y, SR, subtype="PCM_16")
            os.replace(tmp, path)
        rows.append({"song_id": f"song_{i:05d}", "path": f"audio/{name}", "quadrant": QUADRANTS[i % 4]})
    with open(os.path.join(folder, "annotations.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, ["song_id", "path", "quadrant"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return time.perf_counter() - started


def subset_table(songs_csv, n_songs, out_csv):
    """The first ``n_songs`` rows of the songs table (canonical format)."""
    from sssl_brain.dataio.songs import SONG_COLUMNS
    from sssl_brain.utils.io_utils import atomic_write_csv, read_csv_dicts

    rows = read_csv_dicts(songs_csv)[:n_songs]
    atomic_write_csv(out_csv, rows, SONG_COLUMNS)
    return rows


# ----------------------------------------------------------------------------- workers (subprocesses)
def worker_features(args):
    """Builds the cache of the songs of ``args.table``; prints a JSON line of figures."""
    from sssl_brain.dataio.features import FeatureCache, FeatureConfig
    from sssl_brain.dataio.songs import read_songs_table

    songs = read_songs_table(args.table)
    cache = FeatureCache(args.cache, FeatureConfig())
    todo = [s for s in songs if not cache.has(s["path"])]
    started = time.perf_counter()
    result = cache.build([s["path"] for s in songs], n_jobs=args.jobs, progress=False)
    seconds = time.perf_counter() - started
    workers = [proc_status(pid)["VmHWM"] for pid in child_pids() if os.path.exists(f"/proc/{pid}/status")]
    print(json.dumps({
        "computed": len(result.computed), "audio_s": sum(s["duration"] for s in todo), "wall_s": seconds,
        "peak_main_mb": proc_status()["VmHWM"], "peak_worker_mb": max(workers, default=0.0),
    }))


def worker_epoch(args):
    """One SSSL epoch (partition pass + training) on fold 0; prints a JSON line of figures."""
    import torch

    torch.set_num_threads(args.threads)
    from sssl_brain.dataio.dataset import segment_dataset
    from sssl_brain.dataio.experiment import Experiment
    from sssl_brain.method.brain import SSSLBrain
    from sssl_brain.utils.hparams import load_hparams

    overrides = {
        "data_folder": args.folder, "results_folder": os.path.join(args.folder, "results"), "seg_dur": 1.0,
        "n_folds": 10, "folds": [0], "methods": ["sssl"], "number_of_epochs": 1, "warmup_epochs": 0,
        "width_mult": 0.0625, "classifier_dim": 32, "batch_size": 64, "plot_partition": False,
        "feature_cache": args.cache, "feature_jobs": 1, "dataset": "scale",
        "valence_threshold": 0.5, "arousal_threshold": 0.5,
    }
    hp = load_hparams(HPARAMS, overrides)
    started = time.perf_counter()
    exp = Experiment(hp, args.table)
    train = exp.fold_segments(0)["train"]
    train_ds = segment_dataset(train, exp.cache)
    setup = {"setup_s": time.perf_counter() - started, "rss_setup_mb": proc_status()["VmRSS"]}
    brain = SSSLBrain(modules=hp["modules"], opt_class=hp["opt_class"], hparams=hp,
                      run_opts={"device": "cpu", "noprogressbar": True}, checkpointer=None)
    started = time.perf_counter()
    brain.fit(hp["epoch_counter"], train_ds, None, train_loader_kwargs=hp["train_dataloader_opts"])
    end = proc_status()
    print(json.dumps({
        **setup, "segments": len(exp.segments), "train_segments": len(train),
        "epoch_s": time.perf_counter() - started, "peak_mb": end["VmHWM"], "rss_end_mb": end["VmRSS"],
        "anon_end_mb": end["RssAnon"], "file_end_mb": end["RssFile"],
    }))


def run_worker(kind, **kwargs):
    """Runs a worker in a fresh Python process; returns its figures."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", kind]
    for key, value in kwargs.items():
        command += [f"--{key}", str(value)]
    env = dict(os.environ, OMP_NUM_THREADS=str(kwargs.get("threads", 1)), PYTHONWARNINGS="ignore")
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def du_mb(folder):
    """Bytes on disk of a folder's files (file sizes), in MiB."""
    total = 0
    for top, _, files in os.walk(folder):
        total += sum(os.path.getsize(os.path.join(top, f)) for f in files)
    return total / 2**20


# ----------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--songs", type=int, nargs="+", default=[500, 1000, 2000], help="dataset sizes")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per song")
    ap.add_argument("--jobs", type=int, default=2, help="feature worker processes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the training epoch")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each epoch (peak RSS: min and max)")
    ap.add_argument("--folder", default=None, help="dataset and cache folder (default: temporary)")
    ap.add_argument("--keep", action="store_true", help="keep a temporary --folder")
    ap.add_argument("--worker", choices=["features", "epoch"], help=argparse.SUPPRESS)
    ap.add_argument("--table", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "features":
        return worker_features(args)
    if args.worker == "epoch":
        return worker_epoch(args)

    sys.path.insert(0, os.path.join(REPO, "recipes", "csv"))
    import logging

    from csv_prepare import prepare_csv

    logging.disable(logging.WARNING)
    sizes = sorted(set(args.songs))
    temporary = args.folder is None
    root = os.path.abspath(args.folder or tempfile.mkdtemp(prefix="sssl-bench-scale-"))
    folder = os.path.join(root, f"songs_{args.duration:g}s")  # audio of one duration, reused by later runs
    cache = os.path.join(folder, "features")
    try:
        print(f"generating {sizes[-1]} songs of {args.duration:g} s in {folder} ...", flush=True)
        print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)", flush=True)
        gen_s = generate(folder, sizes[-1], args.duration)
        started = time.perf_counter()
        songs_csv = prepare_csv(folder, os.path.join(folder, f"prepared_{sizes[-1]}"))
        print(f"  generated in {gen_s:.1f} s; prepare step (songs table from audio headers): "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        rows = []
        for n in sizes:
            table = os.path.join(folder, f"prepared_{sizes[-1]}", f"songs_{n}.csv")
            subset_table(songs_csv, n, table)
            feats = run_worker("features", table=table, cache=cache, jobs=args.jobs)
            feats["cache_mb"] = du_mb(cache)
            runs = [run_worker("epoch", table=table, cache=cache, folder=folder, threads=args.threads)
                    for _ in range(args.repeats)]
            epoch = dict(runs[0], peak_mb=min(r["peak_mb"] for r in runs),
                         peak_max_mb=max(r["peak_mb"] for r in runs),
                         epoch_s=min(r["epoch_s"] for r in runs))
            rows.append({"songs": n, "hours": n * args.duration / 3600, **feats, **epoch})
            print(f"  {n} songs: features {feats['wall_s']:.1f} s for {feats['computed']} new songs, "
                  f"epoch {epoch['epoch_s']:.1f} s, peak {epoch['peak_mb']:.0f} MiB", flush=True)
        report(rows, args)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        if temporary and not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def report(rows, args):
    print()
    print(f"Feature extraction ({args.jobs} worker processes; incremental: each size computes the songs "
          "the smaller one did not have)")
    print("| songs | audio (h) | new songs | wall (s) | x real time | cache (MiB) | MiB/song "
          "| peak RSS main (MiB) | peak RSS worker (MiB) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        speed = r["audio_s"] / r["wall_s"] if r["wall_s"] else float("nan")
        print(f"| {r['songs']} | {r['hours']:.2f} | {r['computed']} | {r['wall_s']:.1f} | {speed:.0f} "
              f"| {r['cache_mb']:.0f} | {r['cache_mb'] / r['songs']:.2f} | {r['peak_main_mb']:.0f} "
              f"| {r['peak_worker_mb']:.0f} |")
    print()
    print(f"One SSSL training epoch (partition pass + training), tiny VGG16, fold 0 of 10, 1 s segments, "
          f"batch 64, {args.threads} torch thread(s)")
    print("| songs | segments | training segments | setup (s) | epoch (s) | RSS before training (MiB) "
          f"| peak RSS, min-max of {args.repeats} (MiB) | RSS at the end: anonymous + mapped files (MiB) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['songs']} | {r['segments']} | {r['train_segments']} | {r['setup_s']:.1f} "
              f"| {r['epoch_s']:.1f} | {r['rss_setup_mb']:.0f} | {r['peak_mb']:.0f}-{r['peak_max_mb']:.0f} "
              f"| {r['anon_end_mb']:.0f} + {r['file_end_mb']:.0f} |")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        kib, d_songs, d_segs = 1024, b["songs"] - a["songs"], b["segments"] - a["segments"]
        per_song = (b["cache_mb"] - a["cache_mb"]) * kib / d_songs
        print()
        print(f"From {a['songs']} to {b['songs']} songs (x{b['songs'] / a['songs']:g}): cache "
              f"{a['cache_mb']:.0f} -> {b['cache_mb']:.0f} MiB, {per_song:.0f} KiB of features per song; "
              "the epoch's memory grows by")
        measures = (("resident before training (songs, segments, folds, dataset index)", "rss_setup_mb"),
                    ("anonymous memory at the end of the epoch", "anon_end_mb"),
                    ("peak resident (smallest of the repeats)", "peak_mb"))
        for label, key in measures:
            delta = (b[key] - a[key]) * kib
            share = 100 * delta / d_songs / per_song
            print(f"  {label}: {a[key]:.0f} -> {b[key]:.0f} MiB, {delta / d_segs:+.2f} KiB per extra "
                  f"segment, {delta / d_songs:+.0f} KiB per extra song ({share:+.1f}% of its features)")

if __name__ == "__main__":
    main()
