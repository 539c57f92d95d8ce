"""Per-song work in worker processes, with a progress bar (the feature caches' builds)."""

import os
import warnings

import numpy as np
from tqdm.auto import tqdm

from sssl_brain.utils.errors import ConfigError


def check_jobs(n_jobs, option="n_jobs"):
    """A number of worker processes: a positive integer, or -1 for one per CPU core.

    Arguments
    ---------
    n_jobs : int
        The value given.
    option : str
        The option's name, for the error.

    Returns
    -------
    int

    Example
    -------
    >>> check_jobs(2)
    2
    >>> check_jobs(0, "feature_jobs")
    Traceback (most recent call last):
    ...
    sssl_brain.utils.errors.ConfigError: feature_jobs=0: must be a positive integer or -1
    """
    valid = not isinstance(n_jobs, bool) and isinstance(n_jobs, (int, np.integer))
    if not (valid and (n_jobs >= 1 or n_jobs == -1)):
        raise ConfigError(f"{option}={n_jobs!r}: must be a positive integer or -1")
    return (os.cpu_count() or 1) if n_jobs == -1 else int(n_jobs)


def map_songs(func, tasks, n_jobs, desc, progress=True):
    """Yields ``func(*task)`` for every task: in this process, or in joblib workers (in completion order).

    Use it in ``with contextlib.closing(map_songs(...)) as outputs:`` so that
    an error raised while consuming stops the workers and the bar at once.

    Arguments
    ---------
    func : callable
        A module-level function (pickled to the workers).
    tasks : list of tuple
        The arguments of each call.
    n_jobs : int
        Worker processes (1: in this process); see :func:`check_jobs`.
    desc : str
        Label of the tqdm progress bar (one step per task).
    progress : bool
        Show the bar.

    Example
    -------
    >>> sorted(map_songs(pow, [(2, 3), (3, 2)], n_jobs=1, desc="powers", progress=False))
    [8, 9]
    """
    bar = tqdm(total=len(tasks), desc=desc, unit="song", disable=not progress)
    try:
        if n_jobs == 1 or len(tasks) <= 1:
            for task in tasks:
                out = func(*task)
                bar.update(1)
                yield out
            return
        from joblib import Parallel, delayed

        parallel = Parallel(n_jobs=min(n_jobs, len(tasks)), return_as="generator_unordered")
        outputs = parallel(delayed(func)(*task) for task in tasks)
        with warnings.catch_warnings():
            # joblib warns that pending songs were cancelled when an error stops the build
            warnings.filterwarnings("ignore", message=".*still being processed.*cancelled")
            try:
                for out in outputs:
                    bar.update(1)
                    yield out
            finally:
                outputs.close()
    finally:
        bar.close()
