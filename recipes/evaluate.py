#!/usr/bin/env python3
"""Re-runs stage 2 (song level) on a finished experiment: new song predictions, metrics and tables.

For every ``<experiment>/<method>/fold_<k>/`` with a ``segment_predictions.csv``,
builds the Eq. 10 features of the songs, fits the SVM on the fold's training
songs and rewrites ``song_predictions.csv``, ``song_classifier.skops``,
``confusion_matrix.png`` and ``metrics.json``
(:func:`sssl_brain.song_level.evaluate.evaluate_fold`, the code training runs),
then ``results.md`` / ``results.csv``. Stage 1 is not touched: no model is
trained or run. The ``features_svm`` folds (hand-crafted song features, no
segment predictions) are skipped.

Settings are each fold's (``fold_config.json``); these options replace them::

    --theta=0.6 (or --song_theta)   threshold of the Eq. 10 fraction statistic
    --svm_grid_search=False         grid search of C and gamma on the training songs
    --svm_C=10  --svm_gamma=0.1     SVM parameters without the grid search
    --svm_C_grid=[1,10]  --svm_gamma_grid=[scale,0.1]

Usage:
    python recipes/evaluate.py EXPERIMENT_FOLDER [--theta=..] [--svm_grid_search=..] [--out=FOLDER]

With ``--out`` the per-fold outputs and the tables go to ``FOLDER/<method>/fold_<k>/``
and ``FOLDER/results.*``; the experiment is left untouched.
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import yaml  # noqa: E402

from sssl_brain.song_level.evaluate import SONG_LEVEL_OPTIONS, evaluate_experiment  # noqa: E402
from sssl_brain.utils.errors import ConfigError, SSSLError  # noqa: E402

#: Command-line names of the overrides (``--theta`` is ``song_theta``).
ALIASES = {"theta": "song_theta"}


def _value(name, text):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"--{name}={text!r}: not a yaml value") from None


def parse_args(argv):
    """The experiment folder, ``--out`` and the stage 2 overrides (yaml values) of the command line."""
    parser = argparse.ArgumentParser(prog="recipes/evaluate.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment_folder",
                        help="a finished experiment, e.g. results/csv/quadrant_seg1s_seed1986")
    parser.add_argument("--out", default=None, help="write the outputs here instead of in the experiment")
    parser.add_argument("--noprogressbar", action="store_true", help="no progress bar over the folds")
    for name in ("theta",) + SONG_LEVEL_OPTIONS:
        if name != "seed":
            parser.add_argument(f"--{name}", default=None, help=f"override {ALIASES.get(name, name)}")
    args = parser.parse_args(argv)
    overrides = {}
    for name in ("theta",) + SONG_LEVEL_OPTIONS:
        text = getattr(args, name, None)
        if text is not None:
            key = ALIASES.get(name, name)
            if key in overrides:
                raise ConfigError(f"--{name}: {key} is given twice")
            overrides[key] = _value(name, text)
    return args, overrides


def main(argv=None):
    """Command line; returns the exit status (2 with a one-line message for a bad option or folder)."""
    try:
        args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
        evaluate_experiment(args.experiment_folder, out=args.out, overrides=overrides,
                            progress=not args.noprogressbar)
    except SSSLError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    with open(os.path.join(args.out or args.experiment_folder, "results.md"), encoding="utf-8") as f:
        sys.stdout.write(f.read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
