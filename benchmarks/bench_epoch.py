"""Where an epoch's time goes: the raw model, SpeechBrain's loop, the partition and validation passes.

Side by side in one run, for the demo-size VGG16 (width 1/8, classifier 64,
batch norm) and the paper's full VGG16, on generated segments (1 s = 44
frames x 128 mels, or ``--seg-durs``):

* **raw train step**: the model alone (forward, cross-entropy, backward,
  Adam) on pre-collated batches: the compute floor;
* one **plain cross-entropy epoch** (inherit; SSSL's warm-up) and one
  **SSSL epoch** of the real ``SSSLBrain.fit``, broken down into the
  training steps (``fit_batch``), the data loading around them, the
  partition pass (no-grad forward over every training segment, Eq. 3's
  mixture), the partition plot, the validation pass and the checkpoint, in
  segments/s and as a share of the epoch;
* the ratios the throughput targets are about: the loop's training
  throughput over the raw model's, and the SSSL epoch (partition included)
  over the inherit epoch;
* ``--layouts``: the same raw train step of the demo-size model as one
  process with N threads and as N one-thread processes side by side (what
  ``fold_jobs`` does), in segments/s of the whole machine.

The unlabeled share U of the SSSL epoch is forced to ``--u-share`` (the demo
data's quadrant noise, 0.265) so that the R-Drop cost is a realistic one.
``--device cuda --precision bf16`` measures a GPU (see ``bench_gpu.py``).

Usage::

    python benchmarks/bench_epoch.py                       # both models, 1 s segments, 2 threads
    python benchmarks/bench_epoch.py --threads 1 --layouts 2
    python benchmarks/bench_epoch.py --models demo --segments 4096 --json out.json
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import speechbrain as sb
import torch
from common import Timer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from synthetic import datasets, make_brain, make_noisy_segments, tiny_hparams  # noqa: E402

import sssl_brain.utils.plots  # noqa: E402
from sssl_brain.lobes.vgg16 import VGG16  # noqa: E402

#: The benchmarked segment models: name -> VGG16 keyword arguments.
MODELS = {
    "demo": {"width_mult": 1 / 8, "classifier_dim": 64, "batch_norm": True},
    "full": {},
}
FRAMES_PER_SECOND = 22050 / 512  # the yaml's sample rate and hop


def frames_of(seconds):
    """Feature frames of a segment of ``seconds`` (centred frames: duration * sr / hop + 1)."""
    return int(seconds * FRAMES_PER_SECOND) + 1


def make_model(name, n_classes=4):
    return VGG16(n_classes, channels_last=True, **MODELS[name])


def raw_step_throughput(model, frames, batch_size, steps, device, precision="fp32", host_sync=False):
    """Segments/s of the model alone: forward, cross-entropy, backward, Adam, on fixed random batches.

    ``host_sync``: read the loss on the host after every step (``loss.item()``, as a training loop that
    logs it does), which waits for the device each step.
    """
    model = model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(batch_size, frames, 128, device=device)
    y = torch.randint(0, 4, (batch_size,), device=device)
    dtype = torch.bfloat16 if precision == "bf16" else None

    def step():
        with torch.autocast(device_type=torch.device(device).type, dtype=dtype, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if host_sync:
            loss.item()

    step()  # kernels, allocator
    sync(device)
    with Timer() as t:
        for _ in range(steps):
            step()
        sync(device)
    return steps * batch_size / t.seconds


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def train_flops_per_segment(model, frames, device):
    """FLOPs of one training step per segment (forward + backward), counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    model = model.to(device).train()
    x = torch.randn(2, frames, 128, device=device)
    y = torch.randint(0, 4, (2,), device=device)
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


class EpochProfile:
    """Wraps a brain's methods with timers; ``epochs[e]`` holds the seconds of each part of epoch e."""

    PARTS = ("train_steps", "data_loading", "partition_pass", "partition_fit", "partition_plot",
             "validation", "checkpoint")

    def __init__(self, brain, device):
        self.brain, self.device, self.epochs, self.epoch = brain, device, {}, None
        self._wrap("fit_batch", "train_steps")
        self._wrap("evaluate_batch", "validation")
        self._wrap("segment_losses", "partition_pass")
        self._wrap("compute_partition", "partition_all")
        save = brain.checkpointer.save_and_keep_only
        brain.checkpointer.save_and_keep_only = self._timed(save, "checkpoint")
        original_plot = sssl_brain.utils.plots.plot_partition_histogram
        sssl_brain.utils.plots.plot_partition_histogram = self._timed(original_plot, "partition_plot")
        start, end = brain.on_stage_start, brain.on_stage_end

        def on_stage_start(stage, epoch=None):
            if stage == sb.Stage.TRAIN:
                self.epoch = epoch
                self.epochs[epoch] = {"start": time.perf_counter()}
            out = start(stage, epoch)
            if stage == sb.Stage.TRAIN:
                self.epochs[epoch]["train_start"] = time.perf_counter()
            return out

        def on_stage_end(stage, stage_loss, epoch=None):
            if stage == sb.Stage.TRAIN:
                self.epochs[epoch]["train_end"] = time.perf_counter()
            out = end(stage, stage_loss, epoch)
            sync(self.device)
            self.epochs[epoch]["end"] = time.perf_counter()
            return out

        brain.on_stage_start, brain.on_stage_end = on_stage_start, on_stage_end

    def _timed(self, fn, part):
        def wrapper(*args, **kwargs):
            begin = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if part in ("train_steps", "validation"):
                    sync(self.device)
                if self.epoch is not None:
                    parts = self.epochs[self.epoch]
                    parts[part] = parts.get(part, 0.0) + time.perf_counter() - begin
        return wrapper

    def _wrap(self, name, part):
        setattr(self.brain, name, self._timed(getattr(self.brain, name), part))

    def breakdown(self, epoch):
        """Seconds of each part of an epoch and its wall time."""
        e = self.epochs[epoch]
        wall = e["end"] - e["start"]
        found = dict(e)
        found["data_loading"] = (e["train_end"] - e["train_start"]) - e.get("train_steps", 0.0)
        if "partition_all" in e:
            found["partition_fit"] = (e["partition_all"] - e.get("partition_pass", 0.0)
                                      - e.get("partition_plot", 0.0))
        out = {part: found[part] for part in self.PARTS if part in found}
        out["other"] = wall - sum(out.values())
        out["wall"] = wall
        return out


def profile_epochs(name, n_train, n_valid, seconds, batch_size, u_share, device, precision, work):
    """One plain-CE epoch then one SSSL epoch of SSSLBrain.fit; returns the two breakdowns."""
    frames = frames_of(seconds)
    songs = max(4, (n_train + n_valid) // 16)
    per_song = max(1, (n_train + n_valid) // songs)
    segments, _ = make_noisy_segments(os.path.join(work, f"{name}_{seconds:g}"), n_songs=songs,
                                      segs_per_song=per_song, seg_frames=frames, n_mels=128, n_classes=4,
                                      noise=u_share)
    valid, train = segments[:n_valid], segments[n_valid:]
    torch.manual_seed(0)
    hp = tiny_hparams(os.path.join(work, f"{name}_{seconds:g}_run"), method="sssl", epochs=2, warmup=1,
                      n_classes=4, plot_partition=True, partition_batch_size=128)
    hp["model"] = make_model(name)
    hp["checkpointer"] = sb.utils.checkpoints.Checkpointer(
        os.path.join(work, f"{name}_{seconds:g}_run", "save"),
        {"model": hp["model"], "counter": hp["epoch_counter"], "partition_state": hp["partition_state"]})
    run_opts = {"device": device, "noprogressbar": True, "precision": precision, "eval_precision": precision}
    brain = make_brain(hp, run_opts)
    profile = EpochProfile(brain, device)
    forced = {}
    original_partition = brain.compute_partition

    def partition_with_u_share(epoch, *args, **kwargs):  # the real pass and fit, then a realistic U share
        result, probs = original_partition(epoch, *args, **kwargs)
        rng = np.random.default_rng(0)
        result.clean = rng.random(len(train)) >= u_share
        forced["u"] = 1 - result.clean.mean()
        return result, probs

    brain.compute_partition = partition_with_u_share
    loader = {"batch_size": batch_size, "shuffle": True}
    brain.fit(hp["epoch_counter"], datasets(train), datasets(valid), train_loader_kwargs=loader,
              valid_loader_kwargs={"batch_size": 128})
    return profile.breakdown(1), profile.breakdown(2), len(train), len(valid)


def print_breakdown(title, parts, n_train, n_valid):
    wall = parts["wall"]
    print(f"  {title}: {wall:.2f} s")
    rate = {"train_steps": n_train, "partition_pass": n_train, "validation": n_valid}
    for part, seconds in parts.items():
        if part == "wall" or seconds <= 0 and part not in rate:
            continue
        per_s = f"{rate[part] / seconds:10.0f} seg/s" if part in rate and seconds > 0 else " " * 16
        print(f"    {part:16s} {seconds:8.2f} s {per_s} {100 * seconds / wall:6.1f} %")


def layouts(n_procs, steps, batch_size, seconds):
    """Raw train steps of the demo model: one process with n threads vs n one-thread processes."""
    cmd = [sys.executable, os.path.abspath(__file__), "--raw-only", "--steps", str(steps),
           "--batch-size", str(batch_size), "--seg-durs", str(seconds)]
    out = {}
    for label, procs, threads in ((f"1 process x {n_procs} threads", 1, n_procs),
                                  (f"{n_procs} processes x 1 thread", n_procs, 1)):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        running = [subprocess.Popen(cmd + ["--threads", str(threads)], env=env, stdout=subprocess.PIPE,
                                    text=True) for _ in range(procs)]
        rates = [float(p.communicate()[0].strip().splitlines()[-1]) for p in running]
        out[label] = sum(rates)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="demo,full", help="comma-separated: demo, full")
    ap.add_argument("--segments", type=int, default=2048, help="training segments of the demo-model epochs")
    ap.add_argument("--full-segments", type=int, default=128, help="training segments, full VGG16")
    ap.add_argument("--valid-share", type=float, default=0.1, help="validation segments / training segments")
    ap.add_argument("--seg-durs", default="1", help="comma-separated segment durations in s")
    ap.add_argument("--u-share", type=float, default=0.265)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20, help="raw train steps timed (demo model)")
    ap.add_argument("--full-steps", type=int, default=3, help="raw train steps timed (full VGG16)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--layouts", type=int, default=0, help="compare 1 x N threads, N x 1 thread")
    ap.add_argument("--raw-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    durations = [float(d) for d in args.seg_durs.split(",")]
    if args.raw_only:  # one process of --layouts: print the demo model's raw segments/s
        torch.manual_seed(0)
        print(raw_step_throughput(make_model("demo"), frames_of(durations[0]), args.batch_size, args.steps,
                                  args.device))
        return None
    work = tempfile.mkdtemp(prefix="sssl_bench_epoch_")
    print(f"device {args.device}, {args.precision}, {torch.get_num_threads()} torch threads, batch "
          f"{args.batch_size}, U share {args.u_share}")
    report = []
    for name in args.models.split(","):
        for seconds in durations:
            n_train = args.segments if name == "demo" else args.full_segments
            n_valid = max(8, int(n_train * args.valid_share))
            torch.manual_seed(0)
            frames = frames_of(seconds)
            steps = args.steps if name == "demo" else args.full_steps
            raw = raw_step_throughput(make_model(name), frames, args.batch_size, steps, args.device,
                                      args.precision)
            flops = train_flops_per_segment(make_model(name), frames, args.device)
            base, sssl, n_train, n_valid = profile_epochs(name, n_train, n_valid, seconds, args.batch_size,
                                                          args.u_share, args.device, args.precision, work)
            loop = n_train / (base["train_steps"] + base["data_loading"])  # the whole training stage
            row = {"model": name, "seg_dur": seconds, "frames": frames, "n_train": n_train,
                   "n_valid": n_valid,
                   "raw_seg_per_s": raw, "train_gflop_per_seg": flops / 1e9,
                   "raw_gflop_per_s": raw * flops / 1e9, "loop_seg_per_s": loop, "loop_over_raw": loop / raw,
                   "inherit_epoch": base, "sssl_epoch": sssl,
                   "sssl_over_inherit": sssl["wall"] / base["wall"],
                   # Eq. 3 needs the current model's loss on every training segment each epoch: with the
                   # training steps, loading and validation as cheap as inherit's, the ratio is still this
                   "sssl_floor": 1.0 + (sssl["partition_pass"] + sssl["partition_fit"]) / base["wall"],
                   "sssl_steps_over_inherit": sssl["train_steps"] / base["train_steps"]}
            report.append(row)
            print(f"\n{name} VGG16, {seconds:g} s segments ({frames} frames), {n_train} training + {n_valid} "
                  f"validation segments; {flops / 1e9:.3f} GFLOP per training segment")
            print(f"  raw train step (model alone): {raw:8.0f} seg/s = {raw * flops / 1e9:7.1f} GFLOP/s")
            print_breakdown("inherit / warm-up epoch", base, n_train, n_valid)
            print_breakdown("SSSL epoch", sssl, n_train, n_valid)
            print(f"  loop / raw model (training stage of the inherit epoch, data loading included): "
                  f"{loop:.0f} / {raw:.0f} seg/s = {loop / raw:.2f}x")
            print(f"  SSSL epoch / inherit epoch (partition included): {row['sssl_over_inherit']:.2f}x")
            print(f"    SSSL training steps / inherit's: {row['sssl_steps_over_inherit']:.2f}x (U share "
                  f"{args.u_share}: U's R-Drop passes through the trunk beside the mixed batch)")
            print(f"    floor of the ratio with free R-Drop (1 + partition pass and fit / inherit epoch): "
                  f"{row['sssl_floor']:.2f}x")
    if args.layouts:
        figures = layouts(args.layouts, args.steps, args.batch_size, durations[0])
        print(f"\nprocess layouts, raw train steps of the demo model, whole machine "
              f"({os.cpu_count()} cores):")
        first = next(iter(figures.values()))
        for label, rate in figures.items():
            print(f"  {label:28s} {rate:8.0f} seg/s  {rate / first:5.2f}x")
        report.append({"layouts": figures})
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
