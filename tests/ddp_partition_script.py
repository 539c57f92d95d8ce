"""Run by test_ddp.py under torchrun: trains a tiny SSSLBrain on 2 CPU processes (gloo).

Each rank saves the normalised losses and the partition it holds after the
first SSSL epoch, so the test can compare the ranks with each other and with
a single-process computation on the same losses.
"""

import os
import sys

import numpy as np
import speechbrain as sb
import torch.distributed

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from synthetic import datasets, make_brain, make_noisy_segments, tiny_hparams  # noqa: E402

if __name__ == "__main__":
    import faulthandler
    faulthandler.dump_traceback_later(50, exit=True)
    out = sys.argv[1]
    hparams_file, run_opts, _ = sb.parse_arguments([os.devnull] + sys.argv[2:])
    sb.utils.distributed.ddp_init_group(run_opts)
    rank = int(os.environ["RANK"])
    segments, _ = make_noisy_segments(os.path.join(out, f"data{rank}"), n_songs=12, segs_per_song=6, seed=3)
    hp = tiny_hparams(os.path.join(out, "exp"), epochs=2, warmup=1, seed=0, plot_partition=False,
                      batch_norm=False)  # SpeechBrain makes BN SyncBatchNorm, GPU-only
    opts = {k: run_opts[k] for k in run_opts.overridden_args}
    opts.update(device="cpu", noprogressbar=True)
    brain = make_brain(hp, opts)
    partitions = []  # what compute_partition returns: (PartitionResult, probs) per SSSL epoch
    compute_partition = brain.compute_partition

    def recorded(epoch, *args, **kwargs):
        partitions.append(compute_partition(epoch, *args, **kwargs))
        return partitions[-1]

    brain.compute_partition = recorded
    brain.fit(hp["epoch_counter"], datasets(segments), None,
              train_loader_kwargs={"batch_size": 8, "shuffle": True})
    result, _ = partitions[-1]
    np.save(os.path.join(out, f"losses_rank{rank}.npy"), result.losses)
    np.save(os.path.join(out, f"clean_rank{rank}.npy"), np.asarray(result.clean))
    np.save(os.path.join(out, f"labels_rank{rank}.npy"), brain.train_labels)
    # Under load, torch 2.11's C++ teardown at interpreter exit can abort a rank
    # after everything was saved ("terminate called without an active exception",
    # no Python frame; seen in CI). Leave the group, flush, and skip that teardown.
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    faulthandler.cancel_dump_traceback_later()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
