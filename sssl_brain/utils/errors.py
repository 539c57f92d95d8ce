"""Typed errors of sssl-brain.

Every error raised on bad input is a subclass of :class:`SSSLError` and its
message names the file, row or option that is wrong.
"""

import contextlib
import sys


class SSSLError(Exception):
    """Base class of every error raised by sssl-brain."""


class DataError(SSSLError, ValueError):
    """Bad input data: an annotation row, a table, a cache file."""


class AudioError(DataError):
    """An audio file that cannot be read, is empty or holds non-finite samples."""


class ConfigError(SSSLError, ValueError):
    """A hyperparameter or command-line option with a wrong value."""


class ModelFolderError(SSSLError, ValueError):
    """An exported model folder that is incomplete or was tampered with."""


@contextlib.contextmanager
def exit_on_error():
    """Turns an :class:`SSSLError` (exit status 2) or a file error (1) into a one-line message.

    For command-line scripts: bad options and bad data stop the run with
    ``error: <message naming the option, file or row>`` on stderr instead of a
    traceback; other exceptions keep their traceback.

    Example
    -------
    >>> with exit_on_error():
    ...     raise ConfigError("tau=2: must be in (0, 1)")
    Traceback (most recent call last):
    ...
    SystemExit: 2
    """
    try:
        yield
    except SSSLError as err:
        sys.stderr.write(f"error: {err}\n")
        sys.exit(2)
    except OSError as err:  # disk full, permissions: the message names the file
        if err.filename is None:
            raise
        sys.stderr.write(f"error: {err}\n")
        sys.exit(1)
