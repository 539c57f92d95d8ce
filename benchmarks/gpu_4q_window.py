"""The paper's full VGG16 on real 4Q (quadrants, 1 s segments) in one GPU window, from a feature pack.

One prepared command for the GPU machine that is sometimes lent to this
project (one H200, no network, 64 MiB per transfer, 15 minutes in all). It

1. unpacks the feature pack written here by ``recipes/pack_features.py``
   (a missing or changed part is refused by name);
2. measures the **raw train step** of the full VGG16 (forward, loss,
   backward, Adam on a fixed batch; bf16 autocast, channels_last) in one
   process and in ``--share`` processes side by side on the one GPU:
   segments/s and the achieved share of the bf16 dense peak (FLOPs counted
   by torch's ``FlopCounterMode``);
3. trains the folds with the recipe itself, ``recipes/4q/train.py
   hparams/vgg16_sssl.yaml --feature_pack=... --device_features=True
   --precision=bf16`` (the exact command is printed and saved), ``--fold-jobs``
   folds at a time as processes sharing the GPU, group after group while the
   wall-clock ``--budget-s`` allows (a group still running at the budget is
   stopped; only finished folds are reported, and the report says which);
4. writes ``results.md`` / ``results.csv`` (the recipe's tables over the
   finished folds), ``gpu_4q.json`` (throughput: raw step, the real loop's
   training segments/s from each fold's ``timing.json`` and its share of the
   bf16 peak, the folds and epochs run, each command) and the recipe's logs
   under ``--out``.

``--dry-run`` runs the same chain on the CPU with a tiny VGG16 and few
epochs (``tests/integration/test_gpu_window.py``).

Usage on the GPU machine (the pack's parts staged in one folder)::

    python benchmarks/gpu_4q_window.py --pack /tmp/stage --out $OUT/gpu4q --budget-s 300
"""

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_epoch import frames_of, raw_step_throughput, sync, train_flops_per_segment  # noqa: E402
from trace_summary import format_summary, summarize_trace  # noqa: E402

from sssl_brain.dataio.pack import unpack  # noqa: E402
from sssl_brain.lobes.vgg16 import VGG16  # noqa: E402
from sssl_brain.song_level.results import collect_results, write_results  # noqa: E402
from sssl_brain.utils.io_utils import atomic_write_json  # noqa: E402

H200_BF16_DENSE_TFLOPS = 989.0  # NVIDIA H200 SXM datasheet, dense (without sparsity)
#: The tiny model and schedule of --dry-run (CPU).
DRY_RUN = {"width_mult": 1 / 16, "classifier_dim": 32, "batch_size": 16, "number_of_epochs": 2,
           "warmup_epochs": 1, "partition_batch_size": 64, "plot_partition": False,
           "svm_grid_search": False}


def model_kwargs(dry_run):
    return {k: DRY_RUN[k] for k in ("width_mult", "classifier_dim")} if dry_run else {}


def _raw_worker(kwargs, frames, batch_size, steps, device, precision, queue):
    torch.manual_seed(0)
    model = VGG16(4, channels_last=True, **kwargs)
    queue.put(raw_step_throughput(model, frames, batch_size, steps, device, precision))


def shared_raw_steps(n_procs, kwargs, frames, batch_size, steps, device, precision):
    """Total segments/s of ``n_procs`` processes each running the raw train step side by side."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    work = (kwargs, frames, batch_size, steps, device, precision, queue)
    procs = [ctx.Process(target=_raw_worker, args=work) for _ in range(n_procs)]
    for p in procs:
        p.start()
    rates = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


def recipe_command(args, unpacked, folds):
    """The recipe's command line for ``folds``."""
    opts = {
        "data_folder": unpacked, "feature_pack": unpacked, "device_features": True, "target": "quadrant",
        "seg_dur": 1, "n_folds": args.n_folds, "folds": "[" + ",".join(str(k) for k in folds) + "]",
        "methods": f"[{args.methods}]", "results_folder": args.results, "number_of_epochs": args.epochs,
        "warmup_epochs": args.warmup, "batch_size": args.batch_size, "fold_jobs": 1,
    }
    if args.dry_run:
        opts.update({k: v for k, v in DRY_RUN.items() if k not in ("number_of_epochs", "warmup_epochs")})
    cmd = [sys.executable, os.path.join(ROOT, "recipes", "4q", "train.py"),
           os.path.join(ROOT, "hparams", "vgg16_sssl.yaml")]
    cmd += [f"--{k}={v}" for k, v in opts.items()]
    cmd += [f"--device={args.device}", f"--precision={args.precision}", "--noprogressbar"]
    return cmd + args.extra.split()


def train_groups(args, unpacked, start):
    """Runs the folds ``--fold-jobs`` at a time while the budget allows; returns the commands run."""
    folds = [int(k) for k in args.folds.split(",")]
    groups = [folds[i:i + args.fold_jobs] for i in range(0, len(folds), args.fold_jobs)]
    runs, last_wall = [], None
    os.makedirs(args.out, exist_ok=True)
    for group in groups:
        left = args.budget_s - (time.time() - start)
        if last_wall is not None and last_wall > left:
            print(f"folds {group}: not started ({left:.0f} s of the budget left, the last group took "
                  f"{last_wall:.0f} s)", flush=True)
            break
        t0 = time.time()
        procs = []
        for fold in group:
            cmd = recipe_command(args, unpacked, [fold])
            print(f"fold {fold}: {' '.join(cmd[1:])}", flush=True)
            log = open(os.path.join(args.out, f"fold_{fold}.log"), "wb")
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
            procs.append((fold, cmd, log, proc))
        for fold, cmd, log, proc in procs:
            try:
                code = proc.wait(timeout=max(1.0, args.budget_s - (time.time() - start)))
            except subprocess.TimeoutExpired:
                proc.kill()
                code = f"stopped at the budget ({args.budget_s} s)"
            log.close()
            runs.append({"fold": fold, "command": cmd, "exit": code, "wall_s": time.time() - t0})
            print(f"fold {fold}: exit {code} after {time.time() - t0:.0f} s", flush=True)
        last_wall = time.time() - t0
    return runs


def profile_loop(args, unpacked):
    """Profiles ``--profile-steps`` training steps of the real loop (fold 0, inherit, after
    ``--profile-warmup`` steps) with SpeechBrain's ``--profile_training``; summarises the trace
    (``trace_summary.py``)."""
    results = os.path.join(args.results, "profile")
    cmd = recipe_command(argparse.Namespace(**{**vars(args), "results": results, "methods": "inherit",
                                               "epochs": 1, "warmup": 1}), unpacked, [0])
    cmd += ["--profile_training", f"--profile_warmup={args.profile_warmup}",
            f"--profile_steps={args.profile_steps}"]
    print(f"profile: {' '.join(cmd[1:])}", flush=True)
    with open(os.path.join(args.out, "profile.log"), "wb") as log:
        subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=300)
    traces = []
    for folder, _, files in os.walk(results):
        traces += [os.path.join(folder, f) for f in files if ".pt.trace.json" in f]
    if not traces:
        print("profile: no trace written (see profile.log)", flush=True)
        return None
    summary = summarize_trace(max(traces, key=os.path.getmtime))
    print(format_summary(summary), flush=True)
    return summary


def loop_figures(exp, flops, peak):
    """Training segments/s of the real loop per finished fold and method (from each fold's timing.json)."""
    rows = []
    for method in sorted(os.listdir(exp)) if os.path.isdir(exp) else []:
        folder = os.path.join(exp, method)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            path = os.path.join(folder, name, "timing.json")
            if not os.path.isfile(path):
                continue
            with open(path, encoding="utf-8") as f:
                t = json.load(f)
            done = os.path.isfile(os.path.join(folder, name, "metrics.json"))
            rate = t["train_segments_seen"] / t["train_step_seconds"] if t["train_step_seconds"] else None
            metrics = {}
            if done:
                with open(os.path.join(folder, name, "metrics.json"), encoding="utf-8") as f:
                    metrics = json.load(f)
            rows.append({"method": method, "fold": name, "finished": done, **t,
                         "loop_train_seg_per_s": rate,
                         "loop_share_of_bf16_peak": None if rate is None else rate * flops / (peak * 1e12),
                         "selected_epoch": metrics.get("selected_epoch"),
                         "selected_in_warmup": metrics.get("selected_in_warmup")})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack", required=True, help="folder of pack.json and its parts")
    ap.add_argument("--out", required=True, help="tables, logs and gpu_4q.json")
    ap.add_argument("--results", default=None,
                    help="the recipe's results_folder (default: <out>/results; /dev/shm: checkpoints in RAM)")
    ap.add_argument("--unpacked", default=None, help="where the pack is unpacked (default: <results>/pack)")
    ap.add_argument("--budget-s", type=float, default=300.0, help="wall-clock budget of the training")
    ap.add_argument("--folds", default="0,1,2")
    ap.add_argument("--n-folds", type=int, default=10, help="the paper's 10-fold CV")
    ap.add_argument("--methods", default="inherit,sssl")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64, help="the yaml's")
    ap.add_argument("--fold-jobs", type=int, default=3, help="fold processes sharing the GPU")
    ap.add_argument("--share", type=int, default=3, help="processes of the shared raw-step measure (0: none)")
    ap.add_argument("--steps", type=int, default=40, help="raw train steps timed")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    ap.add_argument("--peak-tflops", type=float, default=H200_BF16_DENSE_TFLOPS)
    ap.add_argument("--profile-steps", type=int, default=0,
                    help="after the folds, profile this many steps of the real loop (0: none)")
    ap.add_argument("--profile-warmup", type=int, default=5, help="steps before the profiled ones")
    ap.add_argument("--extra", default="", help="space-separated overrides added to every recipe run")
    ap.add_argument("--dry-run", action="store_true", help="tiny model and epochs on the CPU (a test)")
    args = ap.parse_args(argv)
    if args.dry_run:
        args.device, args.precision, args.epochs, args.warmup = "cpu", "fp32", 2, 1
        args.batch_size, args.steps = DRY_RUN["batch_size"], 2
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; --dry-run runs the chain on the CPU")
    args.results = args.results or os.path.join(args.out, "results")
    start = time.time()
    unpacked = args.unpacked or os.path.join(args.results, "pack")
    t0 = time.time()
    features = unpack(args.pack, unpacked)
    unpack_s = time.time() - t0
    print(f"unpacked {len(features.manifest['songs'])} songs in {unpack_s:.1f} s to {unpacked}", flush=True)

    name = torch.cuda.get_device_name() if torch.device(args.device).type == "cuda" else "cpu"
    frames = frames_of(1.0)
    kwargs = model_kwargs(args.dry_run)
    flops = train_flops_per_segment(VGG16(4, channels_last=True, **kwargs), frames, args.device)
    torch.manual_seed(0)
    raw = raw_step_throughput(VGG16(4, channels_last=True, **kwargs), frames, args.batch_size, args.steps,
                              args.device, args.precision)
    torch.manual_seed(0)
    raw_synced = raw_step_throughput(VGG16(4, channels_last=True, **kwargs), frames, args.batch_size,
                                     args.steps, args.device, args.precision, host_sync=True)
    sync(args.device)
    if torch.device(args.device).type == "cuda":
        torch.cuda.empty_cache()
    shared = (shared_raw_steps(args.share, kwargs, frames, args.batch_size, args.steps, args.device,
                               args.precision) if args.share > 1 else None)
    throughput = {
        "device": name, "precision": args.precision, "batch_size": args.batch_size, "frames": frames,
        "train_gflop_per_segment": flops / 1e9, "peak_tflops": args.peak_tflops,
        "raw_seg_per_s": raw, "raw_share_of_bf16_peak": raw * flops / (args.peak_tflops * 1e12),
        # the same step reading its loss on the host every step, as SpeechBrain's loop does (a sync)
        "raw_host_sync_seg_per_s": raw_synced, "host_sync_over_raw": raw_synced / raw,
        "shared_processes": args.share if shared else None, "shared_raw_seg_per_s": shared,
        "shared_over_single": None if shared is None else shared / raw,
    }
    print(f"{name}: raw train step {raw:.0f} seg/s ({100 * throughput['raw_share_of_bf16_peak']:.1f} % of "
          f"the bf16 peak, {flops / 1e9:.2f} GFLOP per segment)"
          + f"; reading the loss every step {raw_synced:.0f} seg/s ({raw_synced / raw:.2f}x)"
          + (f"; {args.share} processes side by side: {shared:.0f} seg/s ({shared / raw:.2f}x)"
             if shared else ""),
          flush=True)

    train_start = time.time()
    runs = train_groups(args, unpacked, train_start)
    exp = os.path.join(args.results, "4q", "quadrant_seg1s_seed1986")  # as the yaml names it for --seg_dur=1
    rows = collect_results(exp) if os.path.isdir(exp) else []
    if rows:
        write_results(exp, rows, title=f"4q (real audio, feature pack): quadrant, 1 s segments, seed 1986, "
                                       f"full VGG16, {args.epochs} epochs ({args.warmup} warm-up)")
        for table in ("results.md", "results.csv"):
            shutil.copy(os.path.join(exp, table), os.path.join(args.out, table))
    loop = loop_figures(exp, flops, args.peak_tflops)
    for row in loop:
        rate = row["loop_train_seg_per_s"]
        row["loop_over_raw"] = None if rate is None else rate / raw
    profile = profile_loop(args, unpacked) if args.profile_steps > 0 else None
    report = {"throughput": throughput, "loop": loop, "runs": runs, "unpack_s": unpack_s, "profile": profile,
              "train_wall_s": time.time() - train_start, "total_wall_s": time.time() - start,
              "epochs": args.epochs, "warmup_epochs": args.warmup, "fold_jobs": args.fold_jobs,
              "budget_s": args.budget_s, "pack": {k: features.manifest[k] for k in
                                                  ("db_min", "db_max", "max_error_db", "compressed_bytes",
                                                   "total_frames", "clipped_low", "clipped_high")}}
    atomic_write_json(os.path.join(args.out, "gpu_4q.json"), report)
    for row in loop:
        print(f"{row['method']} {row['fold']}: {row['epochs_run']} epochs, loop "
              f"{row['loop_train_seg_per_s'] or 0:.0f} train seg/s ({row['loop_over_raw'] or 0:.2f}x the raw "
              f"step), selected epoch {row['selected_epoch']}", flush=True)
    if rows:
        with open(os.path.join(args.out, "results.md"), encoding="utf-8") as f:
            print(f.read())
    return report


if __name__ == "__main__":
    main()
