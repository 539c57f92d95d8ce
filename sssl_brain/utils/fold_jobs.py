"""``fold_jobs``: folds trained in processes side by side, sharing the CPU threads."""

import logging
import multiprocessing

import torch

from sssl_brain.utils.errors import SSSLError

logger = logging.getLogger(__name__)


def fold_job_folds(folds, jobs):
    """The folds of each of ``jobs`` processes: round robin, so each job gets every ``jobs``-th fold.

    Example
    -------
    >>> fold_job_folds([0, 1, 2, 3, 4], 2)
    [[0, 2, 4], [1, 3]]
    """
    return [list(folds[i::jobs]) for i in range(jobs)]


def _fold_job(target, threads, folds, args):
    """One process of ``fold_jobs``: ``target(folds, *args)`` with ``threads`` torch threads."""
    torch.set_num_threads(threads)
    target(folds, *args)


def run_fold_jobs(jobs, folds, target, args=()):
    """Trains the folds in ``jobs`` processes side by side (``fold_jobs``), sharing the threads.

    Each process gets ``max(1, torch.get_num_threads() // jobs)`` torch threads
    and calls ``target(its_folds, *args)`` (:func:`fold_job_folds` deals the
    folds); on a 2-core CPU two one-thread processes train more segments per
    second than one process with two threads (``benchmarks/bench_epoch.py``).
    A fold's results depend on the thread count, not on the job layout:
    ``fold_jobs: 2`` with one thread each gives the numbers of a serial run
    with one thread. Not with DDP (``torchrun`` already runs one process per
    device; refused at start-up).

    Arguments
    ---------
    jobs : int
        Number of processes.
    folds : list of int
        Folds to train.
    target : callable
        ``target(folds, *args)`` trains every method of ``folds``; a module-level function (the
        processes are spawned, so it is pickled by name: the recipe's own function when the recipe
        runs as a script).
    args : tuple
        Further arguments of ``target`` (picklable).
    """
    threads = max(1, torch.get_num_threads() // jobs)
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch thread pools
    procs = []
    for part in fold_job_folds(folds, jobs):
        logger.info("fold job: folds %s in a process with %d torch thread(s)", part, threads)
        proc = ctx.Process(target=_fold_job, args=(target, threads, part, args))
        proc.start()
        procs.append((part, proc))
    failed = []
    for part, proc in procs:
        proc.join()
        if proc.exitcode != 0:
            failed.append(f"folds {part} (exit code {proc.exitcode})")
    if failed:
        raise SSSLError(f"fold_jobs: the process of {', '.join(failed)} failed; its error is printed above, "
                        "the finished folds are kept and a new run resumes the others")
