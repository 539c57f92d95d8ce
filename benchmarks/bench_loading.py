"""Segment loading from the feature cache vs. the model's training throughput.

Prints segments/s of the data pipeline (SpeechBrain DynamicItemDataset +
DataLoader reading memory-mapped cache slices) beside the training
throughput (forward + backward) of the tiny and the full VGG16 model on the
same batches, and their ratio: a ratio well above 1 means loading never
starves training.

Usage: python benchmarks/bench_loading.py [--songs 20] [--seg-dur 1] [--full-batches 2]
"""

import argparse
import os
import tempfile

import speechbrain as sb
import torch
import torch.nn.functional as F
from common import Timer, build_cache, make_songs

from sssl_brain.dataio.dataset import build_segments, segment_dataset
from sssl_brain.lobes.vgg16 import VGG16


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--songs", type=int, default=20)
    ap.add_argument("--seg-dur", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--full-batches", type=int, default=2, help="batches timed for full VGG16")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "sssl_bench_loading"))
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    paths = make_songs(os.path.join(args.workdir, "audio"), args.songs)
    cache = build_cache(args.workdir, paths)
    songs = [{"song_id": f"s{i}", "path": p, "duration": 30.0, "valence": "1", "arousal": "0", "quadrant": ""}
             for i, p in enumerate(paths)]
    segments, _ = build_segments(songs, {p: cache.n_frames(p) for p in paths}, "valence", args.seg_dur,
                                 cache.config)
    dataset = segment_dataset(segments, cache)
    loader = sb.dataio.dataloader.make_dataloader(dataset, batch_size=args.batch_size, shuffle=True)
    with Timer() as t:
        n = sum(len(batch.id) for batch in loader)
    load_rate = n / t.seconds
    batch = next(iter(loader))
    rows = [("data loading (cache -> batch)", load_rate, None)]
    for name, model, reps in (("tiny VGG16 (width 1/16)", VGG16(2, width_mult=1 / 16, classifier_dim=64), 10),
                              ("full VGG16", VGG16(2), args.full_batches)):
        opt = torch.optim.Adam(model.parameters(), 1e-4)
        model.train()
        step = _train_step(model, opt)
        step(batch)  # warm-up
        with Timer() as t:
            for _ in range(reps):
                step(batch)
        rate = reps * len(batch.id) / t.seconds
        rows.append((f"training {name}", rate, load_rate / rate))
    print(f"{n} segments of {args.seg_dur:g} s from {args.songs} songs, batch {args.batch_size}, "
          f"{torch.get_num_threads()} torch threads")
    print(f"{'pipeline':40s} {'segments/s':>12s} {'loading / training':>20s}")
    for name, rate, ratio in rows:
        print(f"{name:40s} {rate:12.1f} {'' if ratio is None else f'{ratio:19.1f}x'}")


def _train_step(model, opt):
    def step(batch):
        opt.zero_grad()
        loss = F.cross_entropy(model(batch.feats.data), batch.label.data[:, 0])
        loss.backward()
        opt.step()
    return step


if __name__ == "__main__":
    main()
