"""Cost of one training epoch: SSSL (partition pass included) vs. the inherit baseline.

Side by side in one run on the same segments: the baseline epoch (plain
cross-entropy, SpeechBrain's fit_batch) and the SSSL epoch (the no-grad
partition pass over every training segment + GMM fit, then fit_batch with
pseudo-labels, mixup and R-Drop), for the tiny and the full VGG16. The
unlabeled share U is set to the demo data's label-noise level (default
0.265, the quadrant noise of the demo data), so the R-Drop cost is that of
a realistic partition. Target: SSSL at most 1.8x the baseline.

Usage: python benchmarks/bench_epoch.py [--segments 512] [--full-segments 64] [--u-share 0.265]
"""

import argparse
import os
import sys
import tempfile

import numpy as np
import speechbrain as sb
import torch
from common import Timer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from synthetic import datasets, make_brain, make_noisy_segments, tiny_hparams  # noqa: E402

from sssl_brain.models import VGG16  # noqa: E402
from sssl_brain.partition import partition_segments  # noqa: E402
from sssl_brain.sssl import normalize_losses  # noqa: E402


def epoch_times(model, segments, u_share, batch_size, workdir):
    """Seconds of one baseline epoch and of one SSSL epoch (partition pass included)."""
    hp = tiny_hparams(workdir, method="sssl", epochs=1, warmup=0, n_classes=4, plot_partition=False)
    hp["model"] = model
    brain = make_brain(hp)
    dataset = datasets(segments)
    brain.train_dataset = dataset
    brain.train_labels = np.array([s["label"] for s in segments])
    loader = sb.dataio.dataloader.make_dataloader(dataset, batch_size=batch_size, shuffle=True)
    batches = list(loader)
    brain.init_optimizers()
    brain.modules.train()
    brain.fit_batch(batches[0])  # warm-up of kernels and allocator
    with Timer() as base:
        brain.clean_mask = None
        for batch in batches:
            brain.step += 1
            brain.fit_batch(batch)
    rng = np.random.default_rng(0)
    with Timer() as sssl:
        losses, _ = brain.segment_losses(dataset)
        partition_segments(normalize_losses(losses), brain.train_labels, 4, seed=0)
        # a realistic partition: u_share of the segments unlabeled
        brain.clean_mask = torch.as_tensor(rng.random(len(segments)) >= u_share)
        for batch in batches:
            brain.step += 1
            brain.fit_batch(batch)
    return base.seconds, sssl.seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segments", type=int, default=512, help="segments of the tiny-model epoch")
    ap.add_argument("--full-segments", type=int, default=64, help="segments of the full VGG16 epoch")
    ap.add_argument("--u-share", type=float, default=0.265)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = tempfile.mkdtemp(prefix="sssl_bench_epoch_")
    print(f"1 s segments (44 frames x 128 mels), batch {args.batch_size}, U share {args.u_share}, "
          f"{torch.get_num_threads()} torch threads")
    print(f"{'model':32s} {'segments':>8s} {'inherit s':>10s} {'SSSL s':>10s} {'SSSL / inherit':>15s}")
    for name, n, make in (
        ("tiny VGG16 (width 1/8, BN)", args.segments,
         lambda: VGG16(4, width_mult=1 / 8, classifier_dim=64, batch_norm=True, channels_last=True)),
        ("full VGG16 (paper)", args.full_segments, lambda: VGG16(4, channels_last=True)),
    ):
        songs = max(4, n // 16)
        folder = os.path.join(work, name[:4])
        segments, _ = make_noisy_segments(folder, n_songs=songs, segs_per_song=n // songs, seg_frames=44,
                                          n_mels=128, n_classes=4, noise=args.u_share)
        torch.manual_seed(0)
        base, sssl = epoch_times(make(), segments, args.u_share, args.batch_size, folder)
        print(f"{name:32s} {len(segments):8d} {base:10.2f} {sssl:10.2f} {sssl / base:14.2f}x")


if __name__ == "__main__":
    main()
