"""Song labels from the canonical songs table (docs/method.md, "Labels and segments").

A binary label is ``value >= threshold``; a quadrant follows from the two
binary labels where the table has no quadrant column: Q1 V+A+, Q2 V-A+,
Q3 V-A-, Q4 V+A-.
"""

from sssl_brain.utils.errors import ConfigError, DataError

TARGETS = ("valence", "arousal", "quadrant")
CLASS_NAMES = {
    "valence": ["low", "high"],
    "arousal": ["low", "high"],
    "quadrant": ["Q1", "Q2", "Q3", "Q4"],
}
QUADRANT_OF = {(1, 1): "Q1", (0, 1): "Q2", (0, 0): "Q3", (1, 0): "Q4"}


def check_target(target):
    """Raises a ConfigError naming ``target`` if it is not a known task.

    Example
    -------
    >>> check_target("arousal")
    'arousal'
    """
    if target not in TARGETS:
        raise ConfigError(f"target={target!r}: unknown target, choose one of {', '.join(TARGETS)}")
    return target


def _value(song, column):
    raw = song.get(column)
    if raw is None or str(raw).strip() == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise DataError(f"song {song.get('song_id')!r}: {column}={raw!r} is not a number") from None


def binary_label(value, threshold):
    """Binary label of a continuous rating: 1 if ``value >= threshold``.

    Example
    -------
    >>> binary_label(0.5, 0.5), binary_label(4.9, 5)
    (1, 0)
    """
    return int(value >= threshold)


def song_class(song, target, valence_threshold=0.5, arousal_threshold=0.5):
    """Class index of a song (a row of the songs table) for a target.

    Arguments
    ---------
    song : dict
        Row with ``valence``, ``arousal`` and/or ``quadrant`` (strings or numbers).
    target : str
        ``valence``, ``arousal`` or ``quadrant``.
    valence_threshold, arousal_threshold : float
        Thresholds of the binary labels.

    Returns
    -------
    int
        Index into ``CLASS_NAMES[target]``.

    Example
    -------
    >>> song_class({"song_id": "a", "valence": "0.7", "arousal": "0.2"}, "quadrant")
    3
    >>> song_class({"song_id": "b", "quadrant": "Q2"}, "valence")
    0
    """
    check_target(target)
    quadrant = (song.get("quadrant") or "").strip()
    if quadrant and quadrant not in CLASS_NAMES["quadrant"]:
        raise DataError(f"song {song.get('song_id')!r}: quadrant={quadrant!r} is not one of Q1..Q4")
    val, aro = _value(song, "valence"), _value(song, "arousal")
    if target == "quadrant":
        if quadrant:
            return CLASS_NAMES["quadrant"].index(quadrant)
        if val is None or aro is None:
            raise DataError(f"song {song.get('song_id')!r}: no quadrant and no valence/arousal to derive it")
        key = (binary_label(val, valence_threshold), binary_label(aro, arousal_threshold))
        return CLASS_NAMES["quadrant"].index(QUADRANT_OF[key])
    value = val if target == "valence" else aro
    if value is not None:
        return binary_label(value, valence_threshold if target == "valence" else arousal_threshold)
    if quadrant:
        high = {"valence": ("Q1", "Q4"), "arousal": ("Q1", "Q2")}[target]
        return int(quadrant in high)
    raise DataError(f"song {song.get('song_id')!r}: no {target} value and no quadrant")


def n_classes_of(target):
    """Number of classes of a target (used by the yaml).

    Example
    -------
    >>> n_classes_of("valence"), n_classes_of("quadrant")
    (2, 4)
    """
    return len(CLASS_NAMES[check_target(target)])
