"""Saving and loading the song-level classifier without pickle.

The stage 2 classifier (:class:`sssl_brain.song_level.classifier.SongClassifier`,
or :class:`~sssl_brain.song_level.classifier.SongSVM` for the features_svm
baseline: a StandardScaler and a calibrated SVC, or a
``sklearn.dummy.DummyClassifier``, in ``estimator_``) is stored with
``skops.io``: a zip of a JSON schema and ``.npy`` arrays, read back without
unpickling. Before loading, every type named in the file that skops does not
trust by default (:func:`skops.io.get_untrusted_types`) must be in
:data:`TRUSTED_TYPES`, an explicit allowlist of the two song classifier
classes and the few private sklearn helpers they hold; anything else is
refused with a :class:`~sssl_brain.utils.errors.ModelFolderError` naming the
file and the types, before any object is built. After loading, the object
must be one of :data:`SONG_CLASSIFIERS` and every estimator in it one of
:data:`ALLOWED_ESTIMATORS`.

Also here: :func:`sha256_file`, used by the model folder's manifest.
"""

import hashlib
import os

from sssl_brain.utils.errors import ModelFolderError
from sssl_brain.utils.io_utils import atomic_write_bytes

#: The classes of a saved song classifier (the object at the top of the file).
SONG_CLASSIFIERS = (
    "sssl_brain.song_level.classifier.SongClassifier",
    "sssl_brain.song_level.classifier.SongSVM",
)

#: Types the song classifier holds that skops does not trust by default; nothing else is accepted.
TRUSTED_TYPES = SONG_CLASSIFIERS + (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.model_selection._split.StratifiedKFold",
)

#: Estimator classes a loaded song classifier may be made of (module.name of each estimator in it).
ALLOWED_ESTIMATORS = SONG_CLASSIFIERS + (
    "sklearn.pipeline.Pipeline",
    "sklearn.dummy.DummyClassifier",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.svm._classes.SVC",
    "sklearn.frozen._frozen.FrozenEstimator",
    "sklearn.model_selection._split.StratifiedKFold",
)


def sha256_file(path, chunk_size=1 << 20):
    """Hexadecimal SHA-256 of a file, read in chunks.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> _ = open(p, "wb").write(b"abc")
    >>> sha256_file(p)[:16]
    'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def _type_name(obj):
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_part(obj):
    """True for the objects whose type is checked: estimators, CV splitters, fitted calibrators."""
    if obj is None or isinstance(obj, (str, bytes, int, float, type)):
        return False
    return any(hasattr(obj, attr) for attr in ("fit", "get_n_splits", "predict_proba", "predict"))


def _estimators_in(clf):
    """Every estimator-like object inside ``clf``: itself, parameters, steps, fitted calibrators."""
    seen, stack, out = set(), [clf], []
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        out.append(obj)
        children = []
        if hasattr(obj, "get_params"):
            try:
                children += list(obj.get_params(deep=False).values())
            except Exception:  # a malformed object: its own type is still checked
                pass
        children += [step for _, step in getattr(obj, "steps", None) or []]
        children += list(getattr(obj, "calibrated_classifiers_", None) or [])
        children += list(getattr(obj, "calibrators", None) or [])
        children += [getattr(obj, "estimator", None), getattr(obj, "estimator_", None)]
        stack += [child for child in children if _is_part(child)]
    return out


def check_song_classifier(clf, name="song classifier"):
    """Checks that ``clf`` is a fitted song classifier (:data:`SONG_CLASSIFIERS`) built only of
    :data:`ALLOWED_ESTIMATORS`.

    Arguments
    ---------
    clf : object
        A fitted classifier.
    name : str
        Names the classifier (e.g. its file) in error messages.

    Raises
    ------
    ModelFolderError
        If it is not a song classifier, holds another kind of estimator or is not fitted.

    Example
    -------
    >>> import warnings
    >>> from sssl_brain.song_level.classifier import SongSVM
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     check_song_classifier(SongSVM().fit([[0.0], [1.0]], [1, 1]))  # a DummyClassifier inside
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> check_song_classifier(DecisionTreeClassifier().fit([[0], [1]], [0, 1]))
    Traceback (most recent call last):
    ...
    sssl_brain.utils.errors.ModelFolderError: song classifier: holds sklearn.tree...DecisionTreeClassifier...
    """
    bad = sorted({_type_name(e) for e in _estimators_in(clf)} - set(ALLOWED_ESTIMATORS))
    if bad:
        raise ModelFolderError(f"{name}: holds {', '.join(bad)}, which is not part of a song classifier "
                               f"(allowed: {', '.join(ALLOWED_ESTIMATORS)})")
    if _type_name(clf) not in SONG_CLASSIFIERS:
        raise ModelFolderError(f"{name}: a {_type_name(clf)}, not a song classifier "
                               f"({' or '.join(SONG_CLASSIFIERS)})")
    if not (hasattr(clf, "estimator_") and hasattr(clf, "classes_")):
        raise ModelFolderError(f"{name}: not a fitted song classifier (needs estimator_ and classes_)")


def dumps_song_classifier(clf):
    """The song classifier as skops bytes, checked to load back with :data:`TRUSTED_TYPES` only.

    Raises
    ------
    ModelFolderError
        If the classifier holds a type outside the allowlists (it could not be loaded again).
    """
    import skops.io as sio

    check_song_classifier(clf)
    data = sio.dumps(clf)
    untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
    if untrusted:
        raise ModelFolderError(f"song classifier: holds types outside the allowlist: {', '.join(untrusted)}")
    return data


def save_song_classifier(clf, path):
    """Saves a fitted song classifier to ``path`` with skops (no pickle), atomically.

    Arguments
    ---------
    clf : object
        A fitted :class:`~sssl_brain.song_level.classifier.SongClassifier` (or ``SongSVM``).
    path : str
        Target file, e.g. ``<fold>/song_classifier.skops``.

    Example
    -------
    >>> import tempfile, os
    >>> from sssl_brain.song_level.classifier import SongClassifier
    >>> songs = [[[0.9, 0.1]], [[0.8, 0.2]], [[0.7, 0.3]], [[0.2, 0.8]], [[0.1, 0.9]], [[0.3, 0.7]]]
    >>> clf = SongClassifier(theta=0.5, C=10, calibration_folds=3).fit(songs, [0, 0, 0, 1, 1, 1])
    >>> path = os.path.join(tempfile.mkdtemp(), "song_classifier.skops")
    >>> save_song_classifier(clf, path)
    >>> loaded = load_song_classifier(path)
    >>> loaded.predict([[[0.85, 0.15]], [[0.15, 0.85]]]).tolist(), loaded.theta
    ([0, 1], 0.5)
    """
    atomic_write_bytes(os.fspath(path), dumps_song_classifier(clf))


def load_song_classifier(path):
    """Loads a song classifier saved by :func:`save_song_classifier`; no code from the file runs.

    The types named in the file are checked against skops' defaults and
    :data:`TRUSTED_TYPES` before anything is built; the loaded object is
    checked by :func:`check_song_classifier`.

    Arguments
    ---------
    path : str
        A ``.skops`` file.

    Returns
    -------
    object
        The fitted classifier.

    Raises
    ------
    ModelFolderError
        Missing or unreadable file, a type outside the allowlist, or not a song classifier;
        the message names the file.
    """
    import skops.io as sio

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFolderError(f"{path}: song classifier file not found")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as err:  # not a zip, no schema, bad JSON...
        raise ModelFolderError(
            f"{path}: not a skops song classifier file ({type(err).__name__}: {err})") from None
    refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if refused:
        raise ModelFolderError(
            f"{path}: refused to load, the file names untrusted types: {', '.join(refused)}")
    try:
        clf = sio.load(path, trusted=list(untrusted))
    except Exception as err:
        raise ModelFolderError(
            f"{path}: cannot load the song classifier ({type(err).__name__}: {err})") from None
    check_song_classifier(clf, name=path)
    return clf
