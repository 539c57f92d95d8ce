"""Inference speed of EmotionRecognizer: channels-last vs. contiguous convolutions, on the CPU.

For each VGG16 width, a model folder is built by hand (untrained weights,
an SVM on random Eq. 10 features; tests/model_fixtures.fold_by_hand) and
exported; one generated song is classified with ``channels_last`` on and
off. Prints seconds per song (model only: the log-mel features are computed
once and shared), the speed-up and the largest difference of the segment
probabilities (should be ~1e-7: same numbers, other memory layout). Both layouts run in
turn within each repeat and the best time of each is kept, so a busy machine
slows them alike.

Usage: python benchmarks/bench_inference.py [--duration 60] [--seg_dur 1] [--widths 0.0625 0.25 1.0]
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from audio_fixtures import write_audio  # noqa: E402
from model_fixtures import fold_by_hand  # noqa: E402

from sssl_brain.dataio.audio import audio_duration  # noqa: E402
from sssl_brain.dataio.features import extract_file  # noqa: E402
from sssl_brain.inference.export import export_fold  # noqa: E402
from sssl_brain.inference.recognizer import EmotionRecognizer  # noqa: E402


def best_seconds(recognizers, feats, duration, repeats):
    """Best of ``repeats`` runs of each recognizer's segment classifier over one song's features.

    The recognizers run in turn within each repeat, so a busy machine slows them alike.
    """
    best, probs = [float("inf")] * len(recognizers), [None] * len(recognizers)
    for rec in recognizers:
        rec.song_segment_probs(feats, duration)  # warm-up
    for _ in range(repeats):
        for i, rec in enumerate(recognizers):
            start = time.perf_counter()
            _, _, probs[i] = rec.song_segment_probs(feats, duration)
            best[i] = min(best[i], time.perf_counter() - start)
    return best, probs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="song duration (s)")
    parser.add_argument("--seg_dur", type=float, default=1.0)
    parser.add_argument("--widths", type=float, nargs="+", default=[0.0625, 0.25, 1.0])
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; song {args.duration:g} s, "
          f"segments {args.seg_dur:g} s, batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as tmp:
        song = write_audio(os.path.join(tmp, "song.wav"), duration=args.duration, freq=330.0)
        duration = audio_duration(song)
        print(f"{'width':>8} {'segments':>8} {'contiguous s':>13} {'channels_last s':>16} {'speed-up':>9} "
              f"{'max |dp|':>9}")
        for width in args.widths:
            folder = os.path.join(tmp, f"w{width}")
            fold = fold_by_hand(os.path.join(folder, "fold"), seg_dur=args.seg_dur, width_mult=width,
                                classifier_dim=4096 if width >= 1 else 64)
            export_fold(fold, os.path.join(folder, "model"))
            model_dir = os.path.join(folder, "model")
            recs = [EmotionRecognizer.from_hparams(source=model_dir, run_opts={"device": "cpu"},
                                                   channels_last=layout, batch_size=args.batch_size)
                    for layout in (False, True)]
            feats = extract_file(song, recs[0].feature_config)
            times, probs = best_seconds(recs, feats, duration, args.repeats)
            diff = float(np.abs(probs[1] - probs[0]).max())
            print(f"{width:>8g} {len(probs[1]):>8d} {times[0]:>13.3f} {times[1]:>16.3f} "
                  f"{times[0] / times[1]:>8.2f}x {diff:>9.1e}")


if __name__ == "__main__":
    main()
