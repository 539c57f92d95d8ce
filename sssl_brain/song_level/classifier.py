"""The stage 2 song classifier, as scikit-learn estimators (paper Eq. 10; docs/method.md, "Stage 2").

:class:`SongClassifier` is the classifier of stage 2: it takes the songs as
their segment-probability matrices ``(S, K)``, turns each into the Eq. 10
statistics (:func:`sssl_brain.song_level.features.song_features`, with its
``theta``) and classifies them with a StandardScaler and an RBF SVC with
Platt-calibrated probabilities. ``theta`` is a parameter of the model, so a
saved classifier (``song_classifier.skops``) needs nothing else to classify a
song: ``clf.predict_proba([P])``.

:class:`SongSVM` is the same classifier over song feature vectors given as
they are (the ``features_svm`` baseline's hand-crafted features,
:mod:`sssl_brain.song_level.handcrafted`).

Both follow scikit-learn's conventions: ``__init__`` takes keyword-only
arguments and stores them unchanged (``get_params``, ``set_params`` and
``sklearn.base.clone`` work), the seed is ``random_state``, ``fit`` checks
them and its input (``check_classification_targets``; ``validate_data`` for
the feature matrix of :class:`SongSVM`) and sets the fitted state, in
attributes ending in ``_``:

- ``estimator_``: the fitted scikit-learn model (a ``Pipeline`` of
  ``scaler`` and ``svm``; a ``CalibratedClassifierCV`` over a frozen one
  when the rarest class has a single song; a
  ``sklearn.dummy.DummyClassifier`` when the training songs have one class);
- ``classes_``: the classes seen in training (sorted), the columns of ``predict_proba``;
- ``best_params_``: the SVM parameters used (``{"C": ..., "gamma": ...}``, or
  ``{"constant": label}`` for the one-class case);
- ``n_features_in_``: length of the song feature vectors the SVM sees (``7 K`` for :class:`SongClassifier`).
"""

import logging
import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.dummy import DummyClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from sssl_brain.song_level.features import check_probs, song_features
from sssl_brain.utils.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

#: Candidate values of C and gamma of the grid search (the yaml's ``svm_C_grid`` / ``svm_gamma_grid``).
DEFAULT_C_GRID = (0.1, 1, 10, 100)
DEFAULT_GAMMA_GRID = ("scale", 0.01, 0.1, 1)


def make_song_svm(C=1.0, gamma="scale", kernel="rbf", random_state=0, calibration_folds=5):
    """One SVM of the song classifier: StandardScaler, then an SVC with Platt-scaled probabilities.

    scikit-learn 1.9 deprecates ``SVC(probability=True)``; its replacement,
    ``CalibratedClassifierCV(SVC(), method="sigmoid", ensemble=False)``, is
    used: one SVC is fitted on all training songs and a sigmoid maps its
    decision values to probabilities, fitted on decision values predicted
    by a seeded, shuffled ``StratifiedKFold`` of the training songs.
    ``predict`` is the argmax of ``predict_proba``.

    Arguments
    ---------
    C : float
        SVM regularisation.
    gamma : float or str
        RBF kernel width (``"scale"`` is sklearn's default).
    kernel : str
        SVC kernel.
    random_state : int
        Seed of the calibration folds and of the SVC.
    calibration_folds : int or None
        Folds of the probability calibration; ``None`` gives a plain SVC
        without ``predict_proba`` (used by the grid search).

    Returns
    -------
    sklearn.pipeline.Pipeline
        Steps ``scaler`` and ``svm``.

    Example
    -------
    >>> clf = make_song_svm(C=10)
    >>> [name for name, _ in clf.steps], clf.named_steps["svm"].estimator.C
    (['scaler', 'svm'], 10)
    """
    svc = SVC(C=C, gamma=gamma, kernel=kernel, random_state=random_state)
    if calibration_folds is None:
        return Pipeline([("scaler", StandardScaler()), ("svm", svc)])
    cv = StratifiedKFold(n_splits=int(calibration_folds), shuffle=True, random_state=random_state)
    calibrated = CalibratedClassifierCV(svc, method="sigmoid", cv=cv, ensemble=False)
    return Pipeline([("scaler", StandardScaler()), ("svm", calibrated)])


def _warn(msg):
    warnings.warn(msg, stacklevel=3)
    logger.warning(msg)


class SongSVM(ClassifierMixin, BaseEstimator):
    """Song classifier over song feature vectors: StandardScaler + calibrated SVC, optionally tuned C, gamma.

    ``fit`` sees only the songs it is given: pass the training songs only.
    With ``grid_search`` the grid ``C_grid x gamma_grid`` is scored by
    ``scoring`` over a seeded, shuffled ``StratifiedKFold`` of these songs
    (plain SVC, no calibration), then the best pair is refitted with
    calibrated probabilities (:func:`make_song_svm`) on all of them.
    Fallbacks, each with a ``UserWarning`` and a log line:

    - fewer songs in the rarest class than ``cv_folds``: the number of
      folds drops to that count (same for ``calibration_folds``, logged
      only);
    - the rarest class has a single song: no grid search (``C``/``gamma``
      are used) and the sigmoid is fitted on the training decision values
      of the SVC fitted on all songs (optimistic probabilities);
    - only one class among the training songs: a
      ``sklearn.dummy.DummyClassifier`` predicting that class.

    Arguments
    ---------
    C, gamma, kernel : float, float or str, str
        SVC parameters when there is no grid search (gamma ``"scale"`` is sklearn's default).
    grid_search : bool
        Tune C and gamma by cross-validation on the training songs.
    C_grid, gamma_grid : sequence
        Candidate values of the grid search.
    cv_folds : int
        Folds of the grid search.
    scoring : str
        sklearn scorer of the grid search.
    calibration_folds : int
        Folds of the probability calibration.
    random_state : int
        Seed of the CV splits, of the calibration folds and of the SVC (``seed`` before; a
        classifier saved with ``seed`` loads with it as ``random_state``).

    Example
    -------
    >>> X = [[0.0], [0.1], [0.2], [1.0], [1.1], [1.2]]
    >>> clf = SongSVM(C=10, calibration_folds=3).fit(X, [0, 0, 0, 1, 1, 1])
    >>> clf.predict([[0.05], [1.15]]).tolist(), clf.best_params_
    ([0, 1], {'C': 10, 'gamma': 'scale'})
    """

    def __init__(self, *, C=1.0, gamma="scale", kernel="rbf", grid_search=False, C_grid=DEFAULT_C_GRID,
                 gamma_grid=DEFAULT_GAMMA_GRID, cv_folds=5, scoring="accuracy", calibration_folds=5,
                 random_state=0):
        self.C = C
        self.gamma = gamma
        self.kernel = kernel
        self.grid_search = grid_search
        self.C_grid = C_grid
        self.gamma_grid = gamma_grid
        self.cv_folds = cv_folds
        self.scoring = scoring
        self.calibration_folds = calibration_folds
        self.random_state = random_state

    def __setstate__(self, state):
        # a classifier saved before the rename holds its seed as ``seed``
        if "seed" in state and "random_state" not in state:
            state = dict(state)
            state["random_state"] = state.pop("seed")
        super().__setstate__(state)

    def song_vectors(self, X):
        """The feature vectors the SVM sees, shape ``(N, D)`` float64: here ``X`` itself, checked."""
        try:
            return check_array(X, dtype=np.float64)
        except ValueError as err:
            raise DataError(f"song classifier: song features: {err}") from None

    def _validated_vectors(self, X, reset):
        """:meth:`song_vectors` of ``X``; ``n_features_in_`` set (``reset``) or checked.

        Here ``X`` is the feature matrix itself, checked by ``validate_data``
        (2-D, at least one song, finite, float64).
        """
        try:
            return validate_data(self, X, reset=reset, dtype=np.float64)
        except ValueError as err:
            raise DataError(f"song classifier: song features: {err}") from None

    def _check_params(self):
        for name in ("cv_folds", "calibration_folds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 2:
                raise ConfigError(f"{name}={value!r}: needs a whole number of at least 2 folds")

    def fit(self, X, y):
        """Fits the classifier on the training songs ``X`` with labels ``y`` (ints); returns ``self``."""
        self._check_params()
        X = self._validated_vectors(X, reset=True)
        y = np.asarray(y)
        if y.shape != (len(X),):
            raise DataError(f"song classifier: {len(X)} songs but labels of shape {y.shape}")
        try:
            check_classification_targets(y)
        except ValueError as err:
            raise DataError(f"song classifier: labels must be classes ({err})") from None
        classes, counts = np.unique(y, return_counts=True)
        rarest = int(counts.min())
        self.classes_ = classes
        if len(classes) == 1:
            _warn(f"song classifier: all {len(y)} training songs have class {classes[0]}; "
                  "using a constant predictor")
            self.estimator_ = DummyClassifier(strategy="most_frequent").fit(X, y)
            self.best_params_ = {"constant": int(classes[0])}
            return self

        params = {"C": self.C, "gamma": self.gamma}
        if self.grid_search and rarest < 2:
            _warn(f"song classifier: the rarest training class has 1 song; grid search skipped, "
                  f"using C={self.C}, gamma={self.gamma}")
        elif self.grid_search:
            n_splits = min(int(self.cv_folds), rarest)
            if n_splits < self.cv_folds:
                _warn(f"song classifier: the rarest training class has {rarest} songs; "
                      f"grid search uses {n_splits} folds instead of {self.cv_folds}")
            search = GridSearchCV(
                make_song_svm(kernel=self.kernel, random_state=self.random_state, calibration_folds=None),
                {"svm__C": list(self.C_grid), "svm__gamma": list(self.gamma_grid)},
                cv=StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=self.random_state),
                scoring=self.scoring,
                n_jobs=1,
            )
            search.fit(X, y)
            params = {"C": search.best_params_["svm__C"], "gamma": search.best_params_["svm__gamma"]}

        if rarest < 2:
            _warn("song classifier: the rarest training class has 1 song; "
                  "probabilities calibrated on the training songs themselves")
            svm = make_song_svm(C=params["C"], gamma=params["gamma"], kernel=self.kernel,
                                random_state=self.random_state, calibration_folds=None).fit(X, y)
            everything = np.arange(len(y))  # one "split": decision values of the songs it was fitted on
            estimator = CalibratedClassifierCV(FrozenEstimator(svm), method="sigmoid",
                                               cv=[(everything, everything)])
            estimator.fit(X, y)
        else:
            n_cal = min(int(self.calibration_folds), rarest)
            if n_cal < self.calibration_folds:
                logger.info(f"song classifier: the rarest training class has {rarest} songs; probability "
                            f"calibration uses {n_cal} folds instead of {self.calibration_folds}")
            estimator = make_song_svm(C=params["C"], gamma=params["gamma"], kernel=self.kernel,
                                      random_state=self.random_state, calibration_folds=n_cal).fit(X, y)
        self.estimator_ = estimator
        self.best_params_ = params
        return self

    def predict(self, X):
        """Class of each song, shape ``(N,)``."""
        check_is_fitted(self, "estimator_")
        X = self._validated_vectors(X, reset=False)
        return self.estimator_.predict(X)

    def predict_proba(self, X):
        """Class probabilities of each song, shape ``(N, len(classes_))`` (columns follow ``classes_``)."""
        check_is_fitted(self, "estimator_")
        X = self._validated_vectors(X, reset=False)
        return self.estimator_.predict_proba(X)


class SongClassifier(SongSVM):
    """The stage 2 classifier: songs given as segment probabilities -> Eq. 10 features (``theta``) -> SongSVM.

    ``X`` is a sequence of songs, each a matrix ``(S, K)`` of its segments'
    class probabilities (S may differ between songs, K may not). Each song
    becomes the ``7 K`` statistics of
    :func:`~sssl_brain.song_level.features.song_features` with this model's
    ``theta`` (:meth:`song_vectors`), classified as :class:`SongSVM` does.

    Arguments
    ---------
    theta : float
        Threshold of the Eq. 10 fraction statistic.
    C, gamma, kernel, grid_search, C_grid, gamma_grid, cv_folds, scoring, calibration_folds, random_state
        See :class:`SongSVM`.

    Example
    -------
    >>> songs = [[[0.9, 0.1], [0.7, 0.3]], [[0.8, 0.2]], [[0.6, 0.4], [0.9, 0.1]],
    ...          [[0.2, 0.8]], [[0.1, 0.9], [0.4, 0.6]], [[0.3, 0.7], [0.2, 0.8]]]
    >>> clf = SongClassifier(theta=0.5, C=10, calibration_folds=3).fit(songs, [0, 0, 0, 1, 1, 1])
    >>> clf.predict([[[0.95, 0.05]], [[0.15, 0.85], [0.3, 0.7]]]).tolist(), clf.n_features_in_
    ([0, 1], 14)
    """

    def __init__(self, *, theta=0.5, C=1.0, gamma="scale", kernel="rbf", grid_search=False,
                 C_grid=DEFAULT_C_GRID, gamma_grid=DEFAULT_GAMMA_GRID, cv_folds=5, scoring="accuracy",
                 calibration_folds=5, random_state=0):
        super().__init__(C=C, gamma=gamma, kernel=kernel, grid_search=grid_search, C_grid=C_grid,
                         gamma_grid=gamma_grid, cv_folds=cv_folds, scoring=scoring,
                         calibration_folds=calibration_folds, random_state=random_state)
        self.theta = theta

    def _check_params(self):
        super()._check_params()
        if isinstance(self.theta, bool) or not isinstance(self.theta, numbers.Real):
            raise ConfigError(f"theta={self.theta!r}: must be a number (the Eq. 10 threshold)")

    def song_vectors(self, X):
        """The Eq. 10 features of the songs ``X`` (segment-probability matrices), shape ``(N, 7 K)``.

        Example
        -------
        >>> SongClassifier(theta=0.65).song_vectors([[[0.9, 0.1], [0.6, 0.4]]]).round(3).tolist()
        [[0.9, 0.6, 0.675, 0.75, 0.825, 0.75, 0.5, 0.4, 0.1, 0.175, 0.25, 0.325, 0.25, 0.0]]
        """
        if isinstance(X, np.ndarray) and X.ndim == 2:
            raise DataError(f"song classifier: got one matrix of shape {X.shape}; pass a list of songs, "
                            "each a matrix of segment probabilities (S, K)")
        songs = [check_probs(P, name=f"song {i}") for i, P in enumerate(X)]
        if not songs:
            raise DataError("song classifier: no songs")
        widths = {P.shape[1] for P in songs}
        if len(widths) > 1:
            raise DataError(f"song classifier: songs with different numbers of classes {sorted(widths)}")
        return np.stack([song_features(P, theta=self.theta) for P in songs])

    def _validated_vectors(self, X, reset):
        # not validate_data: X is a list of (S, K) matrices with S differing between songs, not a 2-D
        # feature matrix; song_vectors checks each matrix (check_probs) and the widths, and
        # n_features_in_ is the 7 K of the Eq. 10 vectors, set or checked here
        X = self.song_vectors(X)
        if reset:
            self.n_features_in_ = int(X.shape[1])
        elif X.shape[1] != self.n_features_in_:
            raise DataError(f"song classifier: songs with {X.shape[1]} features, but it was fitted on "
                            f"{self.n_features_in_}")
        return X


def predict_song_proba(clf, X, n_classes):
    """Class probabilities of a fitted song classifier over all ``n_classes``.

    Classes absent from the training songs get probability 0 (the
    classifier's columns follow ``clf.classes_``).

    Example
    -------
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     clf = SongSVM().fit([[0.0], [1.0]], [2, 2])
    >>> predict_song_proba(clf, [[0.5]], 3).tolist()
    [[0.0, 0.0, 1.0]]
    """
    proba = clf.predict_proba(X)
    out = np.zeros((len(proba), n_classes))
    out[:, np.asarray(clf.classes_, dtype=np.int64)] = proba
    return out
