"""Typed errors of sssl-brain.

Every error raised on bad input is a subclass of :class:`SSSLError` and its
message names the file, row or option that is wrong.
"""


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
