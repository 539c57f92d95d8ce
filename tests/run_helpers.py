"""End-to-end reliability tests' helpers: run ``recipes/csv/train.py`` in a subprocess, kill it, compare.

Every run is a real process started in its own session (so its process
group is the job: the recipe and its feature-extraction workers), killed
with a real ``SIGKILL`` and started again with the same command.

Two ways to kill a run:

* from outside (:func:`kill_job`), once a marker file shows the run is
  where the test wants it (e.g. a fold's ``metrics.json``, written last):
  used where the window lasts seconds (between folds);
* from inside, for windows too short to hit reliably from outside (the
  prepare step, feature extraction of tiny songs, one training epoch of the
  tiny model: about 0.2 s, the write of one checkpoint file): this
  file is also a wrapper, ``python tests/run_helpers.py ARGS...``, that runs
  the recipe like ``python recipes/csv/train.py ARGS...`` but first installs
  the hook named by the environment variable ``SSSL_TEST_KILL_AT``, which
  sends SIGKILL to the whole process group at that precise point:

  - ``write:<file name>``: while the library writes that file through
    :func:`sssl_brain.utils.io_utils.atomic_write_bytes` (half of the bytes are in
    its temporary file, as in an interrupted write);
  - ``features:<k>``: once ``k`` songs of the feature cache are finished;
  - ``batch:<epoch>:<n>``: just before the ``n``-th training batch of epoch
    ``epoch`` (of the first fold that reaches it);
  - ``save:<file name>:<n>``: during the ``n``-th ``torch.save`` to a file of
    that name (a checkpoint file; half of its bytes are written).

  The hook lives here, in the tests; the library has none. Likewise
  ``SSSL_TEST_MAX_FILE_BYTES`` limits the size of the files the run can write
  (``RLIMIT_FSIZE``), so that a write fails for real as on a full disk.
"""

import functools
import glob
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
TRAIN = REPO / "recipes" / "csv" / "train.py"
HPARAMS = REPO / "hparams" / "vgg16_sssl.yaml"
KILL_ENV = "SSSL_TEST_KILL_AT"
FSIZE_ENV = "SSSL_TEST_MAX_FILE_BYTES"
RUN_TIMEOUT = 400  # s; generous: other test sessions may share the 2 cores

# The tiny experiment every reliability test runs (about 20 s on 2 CPU cores).
N_SONGS, SONG_SECONDS = 12, (6.0, 7.0)
TINY = {
    "n_folds": 2, "number_of_epochs": 2, "warmup_epochs": 1, "width_mult": 0.0625, "classifier_dim": 32,
    "seg_dur": 1, "target": "quadrant", "methods": "[sssl, inherit]", "svm_grid_search": False,
    "batch_size": 8, "plot_partition": False, "feature_jobs": 1,
}
# Files of an experiment folder that must be equal between equivalent runs.
TOP_FILES = ("folds.csv", "results.csv", "results.md")
FOLD_FILES = ("partition.csv", "epoch_stats.csv", "segment_predictions.csv", "song_predictions.csv",
              "metrics.json", "fold_config.json")


# ----------------------------------------------------------------------------- data and runs
_BASE = None


def scratch_dir(name):
    """A fresh folder under this session's scratch space (removed at exit)."""
    global _BASE
    if _BASE is None:
        import atexit

        _BASE = tempfile.mkdtemp(prefix="sssl-reliability-")
        atexit.register(shutil.rmtree, _BASE, ignore_errors=True)
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_BASE))
    return path


@functools.lru_cache(maxsize=None)
def dataset():
    """The tiny demo dataset shared by every run (read only: runs write under their results folder)."""
    from demo_data import generate_demo_dataset

    folder = scratch_dir("data") / "demo"
    generate_demo_dataset(str(folder), n_songs=N_SONGS, seed=0, min_duration=SONG_SECONDS[0],
                          max_duration=SONG_SECONDS[1], n_jobs=1, progress=False)
    return folder


def train_args(results, data=None, **overrides):
    """Command-line arguments of the recipe: the yaml, the tiny settings, ``overrides``."""
    options = {**TINY, "data_folder": str(data or dataset()), "results_folder": str(results), **overrides}
    return [str(HPARAMS)] + [f"--{k}={v}" for k, v in options.items()] + ["--device=cpu", "--noprogressbar"]


def start_train(args, log_path, kill_at=None, max_file_bytes=None):
    """Starts the recipe in its own session; stdout and stderr go to ``log_path``.

    ``kill_at``: a kill hook (see the module docstring). ``max_file_bytes``: the run cannot write a
    file larger than this (``RLIMIT_FSIZE``: writes fail with EFBIG, as on a full disk).
    """
    # One torch thread: the tiny model is fastest so, and oversubscribed cores (tests in parallel)
    # make multi-threaded torch 10x slower. Every run uses the same setting, so results compare exactly.
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop(KILL_ENV, None)
    env.pop(FSIZE_ENV, None)
    if kill_at:
        env[KILL_ENV] = kill_at
    if max_file_bytes:
        env[FSIZE_ENV] = str(int(max_file_bytes))
    log = open(log_path, "wb")
    try:
        command = [PYTHON, __file__, *args]
        return subprocess.Popen(command, cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    finally:
        log.close()


def kill_job(proc):
    """SIGKILL to the job's process group (the recipe and any worker), then reaps the recipe."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def run_train(args, log_path, kill_at=None, timeout=RUN_TIMEOUT, max_file_bytes=None):
    """Runs the recipe to its end; returns ``(returncode, output)``."""
    proc = start_train(args, log_path, kill_at=kill_at, max_file_bytes=max_file_bytes)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_job(proc)
        raise
    return proc.returncode, Path(log_path).read_text(errors="replace")


def run_ok(results, log_name="run.log", **overrides):
    """Runs the tiny experiment to completion into ``results``; fails the test with the log tail otherwise."""
    results = Path(results)
    results.mkdir(parents=True, exist_ok=True)
    rc, out = run_train(train_args(results, **overrides), results.parent / f"{results.name}-{log_name}")
    assert rc == 0, f"run into {results} failed (exit {rc}):\n{out[-4000:]}"
    return experiment_folder(results)


def wait_until(condition, proc, timeout=RUN_TIMEOUT, interval=0.02):
    """Polls ``condition()`` until it is true (True) or the process ends first (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        if proc.poll() is not None:
            return bool(condition())
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout} s")


@functools.lru_cache(maxsize=None)
def reference():
    """The uninterrupted reference run of the tiny experiment (computed once per test session)."""
    results = scratch_dir("reference") / "results"
    return run_ok(results)


# ----------------------------------------------------------------------------- layout
def prepared_folder(results):
    return Path(results) / "csv" / "prepared"


def feature_folder(results):
    """The feature cache folder of the (single) feature config under ``results``."""
    pattern = str(prepared_folder(results) / "features" / "*")
    folders = [Path(p) for p in glob.glob(pattern) if os.path.isdir(p)]
    assert len(folders) <= 1, folders
    return folders[0] if folders else None


def feature_entries(results):
    """``{entry name: bytes}`` of the finished feature cache entries (temporary files excluded)."""
    folder = feature_folder(results)
    if folder is None:
        return {}
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.npy")) if not p.name.startswith(".")}


def temp_files(folder):
    """Leftover temporary files of interrupted atomic writes under ``folder``."""
    return sorted(str(p) for p in Path(folder).rglob(".tmp-*"))


def experiment_folder(results):
    """``<results>/csv/<target>_seg<d>s_seed<seed>`` (exactly one expected)."""
    found = [p for p in glob.glob(str(Path(results) / "csv" / "*_seed*")) if os.path.isdir(p)]
    assert len(found) == 1, found
    return Path(found[0])


def fold_folders(exp):
    return sorted(Path(p) for p in glob.glob(str(Path(exp) / "*" / "fold_*")))


def result_files(exp):
    """``{relative path: bytes}`` of every output that equivalent runs must reproduce exactly."""
    exp = Path(exp)
    out = {}
    for name in TOP_FILES:
        out[name] = (exp / name).read_bytes()
    for fold in fold_folders(exp):
        for name in FOLD_FILES:
            path = fold / name
            if path.exists():
                out[str(path.relative_to(exp))] = path.read_bytes()
    return out


def checkpoints(fold):
    """Checkpoint folders of a fold that SpeechBrain sees (those with a CKPT.yaml)."""
    return sorted(p.parent for p in (Path(fold) / "save").glob("CKPT+*/CKPT.yaml"))


def checkpoint_meta(ckpt):
    """The meta data of a checkpoint (epoch, validation metrics) without its wall-clock time."""
    import yaml

    meta = yaml.safe_load((Path(ckpt) / "CKPT.yaml").read_text())
    meta.pop("unixtime", None)
    return meta


def checkpoint_tensors(ckpt):
    """``{file: state}`` of the model and the partition state of a checkpoint (loaded weights only)."""
    import torch

    names = [name for name in ("model.ckpt", "partition_state.ckpt") if (Path(ckpt) / name).exists()]
    return {name: torch.load(Path(ckpt) / name, weights_only=True) for name in names}


def states_equal(a, b):
    """Exact equality of nested dicts/lists of tensors and plain values."""
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype \
            and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(states_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(states_equal(x, y) for x, y in zip(a, b))
    return a == b


def kept_checkpoints(fold):
    """The fold's checkpoints by epoch: at most the best warm-up one, the best later one and the newest."""
    ckpts = sorted(checkpoints(fold), key=lambda c: int(checkpoint_meta(c)["epoch"]))
    assert 1 <= len(ckpts) <= 3, f"{fold}: expected 1-3 kept checkpoints, found {ckpts}"
    return ckpts


def final_checkpoint(fold):
    """The newest checkpoint of the fold (the last epoch)."""
    return kept_checkpoints(fold)[-1]


def assert_same_results(exp, ref, what="run"):
    """Every compared output file of ``exp`` equals the reference byte for byte; so do final checkpoints."""
    got, want = result_files(exp), result_files(ref)
    assert sorted(got) == sorted(want), f"{what}: different output files"
    different = [name for name in want if got[name] != want[name]]
    assert not different, f"{what}: files differ from the uninterrupted run: {different}"
    for fold, ref_fold in zip(fold_folders(exp), fold_folders(ref)):
        kept, ref_kept = kept_checkpoints(fold), kept_checkpoints(ref_fold)
        assert len(kept) == len(ref_kept), f"{what}: {fold}: {len(kept)} checkpoints, not {len(ref_kept)}"
        for ckpt, ref_ckpt in zip(kept, ref_kept):
            epoch = checkpoint_meta(ckpt)["epoch"]
            assert checkpoint_meta(ckpt) == checkpoint_meta(ref_ckpt), f"{what}: {fold} meta of epoch {epoch}"
            got, want = checkpoint_tensors(ckpt), checkpoint_tensors(ref_ckpt)
            if ckpt != kept[-1]:  # an earlier (e.g. restored warm-up) checkpoint: its weights
                got, want = got["model.ckpt"], want["model.ckpt"]
            assert states_equal(got, want), f"{what}: {fold} checkpoint of epoch {epoch} differs"


def last_epoch(fold):
    """Epoch of the newest checkpoint SpeechBrain would load, or 0 without one."""
    epochs = [int(checkpoint_meta(c)["epoch"]) for c in checkpoints(fold)]
    return max(epochs, default=0)


def partition_epochs(fold):
    path = Path(fold) / "partition.csv"
    if not path.exists():
        return []
    lines = path.read_text().splitlines()[1:]
    return [int(line.split(",")[0]) for line in lines if line]


# ----------------------------------------------------------------------------- kill hooks (wrapper side)
def _kill_group():
    """SIGKILL to this process's group: the job dies at once, workers included, like a scheduler's kill."""
    sys.stdout.flush()
    sys.stderr.flush()
    pgid = os.getpgid(0)
    if pgid == os.getpid():
        os.killpg(pgid, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _install_kill_hook(spec):
    kind, _, arg = spec.partition(":")
    if kind == "write":
        from sssl_brain.utils import io_utils

        real = io_utils.atomic_write_bytes

        def atomic_write_bytes(path, data):
            if os.path.basename(path) == arg:
                folder = os.path.dirname(os.path.abspath(path))
                os.makedirs(folder, exist_ok=True)
                fd, _ = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
                os.write(fd, data[: len(data) // 2])
                _kill_group()
            return real(path, data)

        io_utils.atomic_write_bytes = atomic_write_bytes
    elif kind == "features":
        from sssl_brain.dataio import features

        real_map_songs = features.map_songs
        limit = int(arg)

        def counted(*args, **kwargs):  # the cache build's per-song loop, killed after `limit` songs
            for k, item in enumerate(real_map_songs(*args, **kwargs), start=1):
                yield item
                if k >= limit:
                    _kill_group()

        features.map_songs = counted
    elif kind == "save":
        import torch

        name, _, nth = arg.partition(":")
        nth = int(nth or 1)
        real_save = torch.save
        calls = {"n": 0}

        def save(obj, f, *args, **kwargs):
            if isinstance(f, (str, os.PathLike)) and os.path.basename(os.fspath(f)) == name:
                calls["n"] += 1
                if calls["n"] == nth:
                    buf = io.BytesIO()
                    real_save(obj, buf, *args, **kwargs)
                    with open(f, "wb") as out:
                        out.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                    _kill_group()
            return real_save(obj, f, *args, **kwargs)

        torch.save = save
    elif kind == "batch":
        from sssl_brain.method.brain import SSSLBrain

        epoch, _, nth = arg.partition(":")
        epoch, nth = int(epoch), int(nth)
        real_fit_batch = SSSLBrain.fit_batch
        seen = {}

        def fit_batch(self, batch):
            current = int(self.hparams.epoch_counter.current)
            seen[current] = seen.get(current, 0) + 1
            if current == epoch and seen[current] == nth:
                _kill_group()
            return real_fit_batch(self, batch)

        SSSLBrain.fit_batch = fit_batch
    else:
        raise SystemExit(f"{KILL_ENV}={spec!r}: unknown hook")


def main(argv):
    """Runs recipes/csv/train.py with ``argv``, after installing the kill hook of ``SSSL_TEST_KILL_AT``."""
    import runpy

    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != here]
    sys.path.insert(0, str(REPO))
    if os.environ.get(FSIZE_ENV):
        import resource

        limit = int(os.environ[FSIZE_ENV])
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too large write fails with EFBIG (Python's default)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    spec = os.environ.get(KILL_ENV)
    if spec:
        _install_kill_hook(spec)
    sys.argv = [str(TRAIN), *argv]
    runpy.run_path(str(TRAIN), run_name="__main__")


def output_names_option(output, option):
    """True if ``output`` names ``option`` as an option (``tau=``, ``--tau`` or ``'tau'``)."""
    return re.search(rf"(?<![A-Za-z_]){re.escape(option)}(?![A-Za-z_])", output) is not None


if __name__ == "__main__":
    main(sys.argv[1:])
