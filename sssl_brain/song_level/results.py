"""Cross-fold results tables, per-fold metrics and confusion-matrix plots (docs/output_contract.md).

Layout read by :func:`collect_results`::

    root/<method>/fold_<k>/song_predictions.csv      (required)
    root/<method>/fold_<k>/segment_predictions.csv   (optional)

The method of a fold is the path, relative to ``root``, of the folder that
holds the fold folders (``root/sssl/fold_0`` -> ``sssl``;
``root/pmemo/inherit/fold_3`` -> ``pmemo/inherit``; fold folders directly
under ``root`` take the name of ``root``). Metrics are recomputed from the
test rows (``split == "test"``) of every fold, then averaged over folds.

Rows of ``results.csv`` (one per method and aggregator; values in percent):
``method, aggregator, n_folds, n_test, acc_mean, acc_std, macro_f1_mean,
macro_f1_std, weighted_f1_mean, weighted_f1_std``. ``n_test`` is the number
of scored test items summed over folds. The standard deviation is the
sample standard deviation over folds (``ddof=1``), and 0 for a single fold.
Aggregators are those of ``song_predictions.csv`` (``svm``, ``majority``,
``mean``) plus, where ``segment_predictions.csv`` exists, ``segment``
(segment predictions against the inherited song label ``label``) and
``segment_truth`` (against the ``truth`` column, rows with an empty truth
skipped, where that column exists).

Run ``python -m sssl_brain.song_level.results ROOT`` to (re)write the tables.
"""

import argparse
import csv
import io
import os
from pathlib import Path

import numpy as np

from sssl_brain.song_level.features import AGGREGATORS
from sssl_brain.song_level.predictions import classification_metrics
from sssl_brain.utils.errors import DataError
from sssl_brain.utils.io_utils import (
    atomic_write_bytes,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
)

RESULT_FIELDS = [
    "method",
    "aggregator",
    "n_folds",
    "n_test",
    "acc_mean",
    "acc_std",
    "macro_f1_mean",
    "macro_f1_std",
    "weighted_f1_mean",
    "weighted_f1_std",
]
SEGMENT_AGGREGATORS = ("segment", "segment_truth")
AGGREGATOR_ORDER = AGGREGATORS + SEGMENT_AGGREGATORS
METRIC_KEYS = (("acc", "accuracy"), ("macro_f1", "macro_f1"), ("weighted_f1", "weighted_f1"))


def class_names_from_header(fieldnames, path="table"):
    """Class names from the ``p_<class>`` columns of a predictions table.

    Example
    -------
    >>> class_names_from_header(["song_id", "split", "label", "pred", "p_low", "p_high"])
    ['low', 'high']
    """
    names = [f[2:] for f in fieldnames or [] if f.startswith("p_")]
    if len(names) < 2:
        raise DataError(f"{path}: needs at least two p_<class> columns, found {names}")
    return names


def _read_predictions(path, required):
    path = str(path)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        fieldnames = list(reader.fieldnames or [])
    missing = [c for c in required if c not in fieldnames]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    return rows, class_names_from_header(fieldnames, path)


def _class_index(value, n_classes, path, line, column):
    try:
        k = int(str(value).strip())
    except ValueError:
        raise DataError(f"{path} line {line}: {column}={value!r} is not a class index") from None
    if not 0 <= k < n_classes:
        raise DataError(f"{path} line {line}: {column}={k} is not in 0..{n_classes - 1}")
    return k


def _score(rows, n_classes, path, truth_column="label", split="test"):
    """Metrics of the rows of one split; None when no row is scored.

    A segment whose truth is unknown (``truth`` -1: the truth table does not cover that second or
    that song) is left out of the ``segment_truth`` score.
    """
    y_true, y_pred = [], []
    for line, row in enumerate(rows, start=2):
        if row.get("split") != split:
            continue
        truth = "" if row.get(truth_column) is None else str(row.get(truth_column)).strip()
        if truth == "" or (truth_column == "truth" and truth == "-1"):  # -1: segment truth unknown
            continue
        y_true.append(_class_index(truth, n_classes, path, line, truth_column))
        y_pred.append(_class_index(row.get("pred"), n_classes, path, line, "pred"))
    if not y_true:
        return None
    return classification_metrics(y_true, y_pred, n_classes)


def fold_metrics_from_rows(song_rows, n_classes, segment_rows=None, split="test", source="predictions"):
    """Metrics of one fold per aggregator, from the rows of its prediction tables.

    Arguments
    ---------
    song_rows : list of dict
        Rows of ``song_predictions.csv`` (``split``, ``aggregator``,
        ``label``, ``pred``; values may be ints or strings).
    n_classes : int
        Number of classes.
    segment_rows : list of dict, optional
        Rows of ``segment_predictions.csv``.
    split : str
        Split to score.
    source : str
        Name used in error messages.

    Returns
    -------
    dict
        aggregator -> metrics of :func:`sssl_brain.song_level.predictions.classification_metrics`.

    Example
    -------
    >>> rows = [{"split": "test", "aggregator": "svm", "label": 1, "pred": 1},
    ...         {"split": "test", "aggregator": "svm", "label": 0, "pred": 1},
    ...         {"split": "train", "aggregator": "svm", "label": 0, "pred": 1}]
    >>> fold_metrics_from_rows(rows, 2)["svm"]["accuracy"]
    0.5
    """
    out = {}
    aggregators = sorted({r.get("aggregator") for r in song_rows}, key=_aggregator_key)
    for agg in aggregators:
        metrics = _score([r for r in song_rows if r.get("aggregator") == agg], n_classes, source, split=split)
        if metrics is not None:
            out[agg] = metrics
    if segment_rows:
        metrics = _score(segment_rows, n_classes, source, split=split)
        if metrics is not None:
            out["segment"] = metrics
        if "truth" in segment_rows[0]:
            metrics = _score(segment_rows, n_classes, source, truth_column="truth", split=split)
            if metrics is not None:
                out["segment_truth"] = metrics
    return out


def _aggregator_key(name):
    return (AGGREGATOR_ORDER.index(name), "") if name in AGGREGATOR_ORDER else (len(AGGREGATOR_ORDER), name)


def _method_of(fold_dir, root):
    parent = fold_dir.parent
    if parent == root:
        return root.name
    return parent.relative_to(root).as_posix()


def collect_fold_metrics(root):
    """Test metrics of every fold found under ``root``.

    Arguments
    ---------
    root : str or Path
        Folder scanned for ``**/fold_*/song_predictions.csv``.

    Returns
    -------
    list of dict
        One per fold and aggregator: ``method``, ``fold``, ``aggregator``,
        ``class_names`` and the metrics (fractions), sorted by method, fold
        and aggregator.
    """
    root = Path(root).resolve()
    found = []
    for path in sorted(root.glob("**/fold_*/song_predictions.csv")):
        fold_dir = path.parent
        song_rows, class_names = _read_predictions(path, ["song_id", "split", "aggregator", "label", "pred"])
        segment_rows = None
        seg_path = fold_dir / "segment_predictions.csv"
        if seg_path.exists():
            segment_rows, seg_names = _read_predictions(seg_path, ["song_id", "split", "label", "pred"])
            if seg_names != class_names:
                raise DataError(f"{seg_path}: classes {seg_names} differ from {class_names} in {path}")
        n = len(class_names)
        by_agg = fold_metrics_from_rows(song_rows, n, source=str(path))
        if segment_rows:
            by_agg.update(
                {k: v for k, v in fold_metrics_from_rows([], n, segment_rows, source=str(seg_path)).items()}
            )
        if not by_agg:
            raise DataError(f"{path}: no test rows (split == 'test') to score")
        method = _method_of(fold_dir, root)
        for agg, metrics in by_agg.items():
            found.append({"method": method, "fold": fold_dir.name, "aggregator": agg,
                          "class_names": class_names, **metrics})
    found.sort(key=lambda r: (r["method"], _fold_key(r["fold"]), _aggregator_key(r["aggregator"])))
    return found


def _fold_key(name):
    suffix = name[len("fold_"):]
    return (0, int(suffix), "") if suffix.isdigit() else (1, 0, suffix)


def mean_std(values):
    """Mean and standard deviation over folds (``ddof=1``; 0 for one value).

    Example
    -------
    >>> mean_std([80.0, 90.0]), mean_std([75.0])
    ((85.0, 7.0710678118654755), (75.0, 0.0))
    """
    values = np.asarray(values, dtype=np.float64)
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return float(values.mean()), std


def collect_results(root):
    """Fold mean and standard deviation of the test metrics, per method and aggregator.

    Arguments
    ---------
    root : str or Path
        Folder holding ``<method>/fold_<k>/song_predictions.csv``.

    Returns
    -------
    list of dict
        Rows with the columns ``RESULT_FIELDS`` (metrics in percent), sorted
        by method, then aggregator (svm, majority, mean, segment,
        segment_truth, others).

    Example
    -------
    >>> import tempfile
    >>> from sssl_brain.utils.io_utils import atomic_write_csv
    >>> root = tempfile.mkdtemp()
    >>> for k, preds in enumerate([[1, 1], [0, 1]]):
    ...     rows = [{"song_id": i, "split": "test", "aggregator": "svm", "label": 1, "pred": p,
    ...              "p_low": 1 - p, "p_high": p} for i, p in enumerate(preds)]
    ...     atomic_write_csv(f"{root}/sssl/fold_{k}/song_predictions.csv", rows, list(rows[0]))
    >>> r = collect_results(root)[0]
    >>> r["method"], r["aggregator"], r["n_folds"], r["acc_mean"], round(r["acc_std"], 2)
    ('sssl', 'svm', 2, 75.0, 35.36)
    """
    folds = collect_fold_metrics(root)
    groups = {}
    for row in folds:
        groups.setdefault((row["method"], row["aggregator"]), []).append(row)
    out = []
    for (method, agg), rows in sorted(groups.items(), key=lambda kv: (kv[0][0], _aggregator_key(kv[0][1]))):
        names = {tuple(r["class_names"]) for r in rows}
        if len(names) > 1:
            raise DataError(f"method {method!r}: folds disagree on the classes: {sorted(names)}")
        result = {"method": method, "aggregator": agg, "n_folds": len(rows)}
        result["n_test"] = sum(r["n"] for r in rows)
        for short, key in METRIC_KEYS:
            mean, std = mean_std([100.0 * r[key] for r in rows])
            result[f"{short}_mean"], result[f"{short}_std"] = mean, std
        out.append(result)
    return out


def results_markdown(rows, title="Results"):
    """The results table in Markdown, laid out like the paper's Table 3.

    Example
    -------
    >>> row = {"method": "sssl", "aggregator": "svm", "n_folds": 10, "acc_mean": 83.19, "acc_std": 1.5,
    ...        "macro_f1_mean": 82.31, "macro_f1_std": 2.0}
    >>> print(results_markdown([row]).splitlines()[4])
    | sssl | svm | 10 | 83.19 ± 1.50 | 82.31 ± 2.00 |
    """
    lines = [
        f"# {title}",
        "",
        "| Method | Aggregator | Folds | Acc (%) | F1 (%) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['aggregator']} | {r['n_folds']} "
            f"| {r['acc_mean']:.2f} ± {r['acc_std']:.2f} "
            f"| {r['macro_f1_mean']:.2f} ± {r['macro_f1_std']:.2f} |"
        )
    lines += [
        "",
        "Test split of each fold; mean ± sample standard deviation (ddof=1) over folds. "
        "F1 is the macro-averaged F1; the weighted F1 is in results.csv. "
        "Aggregators: svm = Eq. 10 features + SVM (for the features_svm baseline: hand-crafted song "
        "features + SVM); majority = majority vote of segment decisions; "
        "mean = mean segment probability; segment = segment accuracy against the inherited song label; "
        "segment_truth = segment accuracy against the segment truth.",
        "",
    ]
    return "\n".join(lines)


def write_results(root, rows=None, title="Results"):
    """Writes ``root/results.csv`` and ``root/results.md`` atomically.

    Arguments
    ---------
    root : str or Path
        Experiment folder.
    rows : list of dict, optional
        Rows of :func:`collect_results` (collected from ``root`` if None).
    title : str
        Heading of ``results.md``.

    Returns
    -------
    list of dict
        The rows written.
    """
    if rows is None:
        rows = collect_results(root)
    atomic_write_csv(os.path.join(root, "results.csv"), rows, RESULT_FIELDS)
    atomic_write_text(os.path.join(root, "results.md"), results_markdown(rows, title=title))
    return rows


def write_fold_metrics(fold_dir, song_rows, segment_rows=None, extra=None, class_names=None):
    """Writes ``fold_dir/metrics.json``: metrics of one fold per split and aggregator.

    Arguments
    ---------
    fold_dir : str or Path
        The fold's folder.
    song_rows : list of dict
        Rows of ``song_predictions.csv``.
    segment_rows : list of dict, optional
        Rows of ``segment_predictions.csv`` (adds ``segment`` and, with a
        ``truth`` column, ``segment_truth``).
    extra : dict, optional
        Merged into the top level (e.g. SVM parameters, seeds).
    class_names : list of str, optional
        Class names (default: from the ``p_<class>`` keys of the rows).

    Returns
    -------
    dict
        ``{"class_names": [...], "metrics": {aggregator: {split: metrics}}, **extra}``;
        metrics are fractions.

    Example
    -------
    >>> import tempfile, json, os
    >>> d = tempfile.mkdtemp()
    >>> rows = [{"song_id": "a", "split": "test", "aggregator": "mean", "label": 0, "pred": 0,
    ...          "p_low": 0.8, "p_high": 0.2}]
    >>> out = write_fold_metrics(d, rows, extra={"seed": 1})
    >>> json.load(open(os.path.join(d, "metrics.json")))["metrics"]["mean"]["test"]["accuracy"]
    1.0
    """
    if class_names is None:
        if not song_rows:
            raise DataError(f"{fold_dir}: no song rows to score")
        class_names = class_names_from_header(list(song_rows[0]), f"{fold_dir} song rows")
    n = len(class_names)
    splits = sorted({r.get("split") for r in song_rows} | {r.get("split") for r in segment_rows or []})
    metrics = {}
    for split in splits:
        by_agg = fold_metrics_from_rows(song_rows, n, segment_rows, split=split, source=str(fold_dir))
        for agg, m in by_agg.items():
            metrics.setdefault(agg, {})[split] = m
    out = {"class_names": list(class_names), "metrics": metrics}
    out.update(extra or {})
    atomic_write_json(os.path.join(fold_dir, "metrics.json"), out)
    return out


def plot_confusion_matrix(cm, class_names, path, title=None, normalize=False):
    """Saves a confusion-matrix plot (true rows, predicted columns) atomically.

    Arguments
    ---------
    cm : array-like
        Square matrix of counts, shape ``(K, K)``.
    class_names : list of str
        The K class names.
    path : str
        Image file; the format follows its extension (png, pdf, svg).
    title : str, optional
        Plot title.
    normalize : bool
        Show row-normalised fractions instead of counts.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "cm.png")
    >>> plot_confusion_matrix([[3, 1], [0, 4]], ["low", "high"], p)
    >>> open(p, "rb").read(4)
    b'\\x89PNG'
    """
    from matplotlib.figure import Figure  # no pyplot: headless, no global backend state
    from sklearn.metrics import ConfusionMatrixDisplay

    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape != (len(class_names), len(class_names)):
        raise DataError(f"{path}: confusion matrix of shape {cm.shape} for {len(class_names)} classes")
    if normalize:
        cm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(1.2 * len(class_names) + 2.5, 1.2 * len(class_names) + 2))
    ax = fig.subplots()
    ConfusionMatrixDisplay(cm, display_labels=list(class_names)).plot(
        ax=ax, cmap="Blues", colorbar=False, values_format=".2f" if normalize else ".0f"
    )
    if title:
        ax.set_title(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fmt = os.path.splitext(str(path))[1].lstrip(".").lower() or "png"
    fig.savefig(buf, format=fmt, dpi=100)
    atomic_write_bytes(path, buf.getvalue())


def main(argv=None):
    """Command line: ``python -m sssl_brain.song_level.results ROOT [--title T]``."""
    parser = argparse.ArgumentParser(description="Writes results.csv and results.md of the folds under ROOT.")
    parser.add_argument("root")
    parser.add_argument("--title", default="Results")
    args = parser.parse_args(argv)
    rows = write_results(args.root, title=args.title)
    print(results_markdown(rows, title=args.title), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
