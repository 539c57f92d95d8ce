"""Atomic writes: a file is either the previous valid version or the new one.

Every table, cache entry and result is written to a temporary file in the
same folder and then renamed over the target (``os.replace`` is atomic on
POSIX), so an interrupted or failed write never leaves a half-written file.
"""

import csv
import io
import json
import os
import tempfile

import numpy as np

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write_bytes(path, data):
    """Writes ``data`` to ``path`` atomically (temp file + rename).

    A failed write (disk full, permission denied...) removes its temporary
    file and raises an ``OSError`` of the same errno that names ``path``;
    the previous version of ``path``, if any, is left unchanged.

    Arguments
    ---------
    path : str
        Target file; its folder is created if needed.
    data : bytes
        Content.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> atomic_write_bytes(p, b"hi")
    >>> open(p, "rb").read()
    b'hi'
    >>> oct(os.stat(p).st_mode & 0o777) == oct(0o666 & ~_UMASK)
    True
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600: give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.errno is not None:
            # A disk-full or permission error from write/fsync does not name the file: name it.
            message = f"cannot write this file, left as it was ({err.strerror})"
            raise OSError(err.errno, message, path) from err
        raise


def atomic_write_text(path, text):
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj):
    """Writes ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_csv(path, rows, fieldnames):
    """Writes a list of dicts as CSV (LF line ends) to ``path`` atomically.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "t.csv")
    >>> atomic_write_csv(p, [{"a": 1, "b": "x"}], ["a", "b"])
    >>> open(p).read()
    'a,b\\n1,x\\n'
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    atomic_write_text(path, buf.getvalue())


def atomic_save_npy(path, array):
    """Saves a numpy array in ``.npy`` format atomically (never pickled)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def read_csv_dicts(path):
    """Reads a CSV file (UTF-8, any line ending) into a list of dicts."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
