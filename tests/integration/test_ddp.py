"""Multi-process training: every rank holds the identical partition (2 CPU processes, gloo)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from sssl_brain.method.partition import partition_segments

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/


def test_two_ranks_hold_identical_partition_equal_to_single_process(tmp_path):
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    if not os.path.exists(torchrun):
        pytest.fail(f"torchrun not found beside {sys.executable}")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    script = os.path.join(HERE, "ddp_partition_script.py")
    cmd = [torchrun, "--nproc_per_node=2", "--master_port=29517", script, str(tmp_path),
           "--distributed_backend=gloo"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    losses = [np.load(tmp_path / f"losses_rank{r}.npy") for r in (0, 1)]
    clean = [np.load(tmp_path / f"clean_rank{r}.npy") for r in (0, 1)]
    labels = np.load(tmp_path / "labels_rank0.npy")
    assert losses[0].shape == (72,)  # the losses of all segments were gathered, not one shard
    np.testing.assert_array_equal(losses[0], losses[1])
    np.testing.assert_array_equal(clean[0], clean[1])
    single = partition_segments(losses[0], labels, 2, tau=0.5, seed=0 + 2)  # seed + epoch, as the Brain
    np.testing.assert_array_equal(np.asarray(single.clean), clean[0])
    assert 0 < clean[0].sum() <= clean[0].size
