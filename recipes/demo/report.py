"""A readable summary of one experiment folder (used by ``make demo``).

Three tables, all recomputed from the files of the run:

1. song level: accuracy and macro-F1 per method and aggregator (``results.csv``);
2. segment level on the test songs, against the segment truth, beside the
   reference "every segment takes its song's label" (1 - label-noise rate):
   a segment classifier trained on inherited labels has learned nothing
   beyond the song label until it beats this reference; then the same per fold, with the
   accuracy of the two axes of a quadrant (valence, arousal), which shows a fold whose
   model learned one axis only;
3. the clean-set precision and recall per epoch (``partition.csv``), mean over folds.
"""

import collections
import glob
import os

import numpy as np

from sssl_brain.dataio.labels import CLASS_NAMES, QUADRANT_OF
from sssl_brain.utils.io_utils import atomic_write_text, read_csv_dicts
from sssl_brain.utils.plots import plot_clean_precision


def _folds(root, method):
    return sorted(glob.glob(os.path.join(root, method, "fold_*")))


def _methods(root):
    return sorted(d for d in os.listdir(root) if _folds(root, d))


def segment_truth_table(per_fold):
    """Per method: test-segment accuracy against the truth and the inherit-the-song-label reference,
    pooled over the folds of :func:`segment_truth_by_fold`.

    Arguments
    ---------
    per_fold : list of dict
        The rows of :func:`segment_truth_by_fold`.

    Returns
    -------
    list of dict
        ``method, n_segments, acc_truth, reference`` (percent, pooled over folds), or an empty
        list when the segment predictions carry no truth.
    """
    pooled = {}
    for r in per_fold:
        n, hits, ref = pooled.get(r["method"], (0, 0, 0))
        pooled[r["method"]] = (n + r["n_segments"], hits + r["hits"], ref + r["reference_hits"])
    return [{"method": method, "n_segments": n, "acc_truth": 100.0 * hits / n, "reference": 100.0 * ref / n}
            for method, (n, hits, ref) in pooled.items()]


def _axes_of_quadrant_index():
    """Class index of the quadrant target -> its (valence, arousal) pair."""
    pair_of = {q: pair for pair, q in QUADRANT_OF.items()}
    return {i: pair_of[q] for i, q in enumerate(CLASS_NAMES["quadrant"])}


def segment_truth_by_fold(root):
    """Per method and fold: test-segment accuracy against the truth and, for the quadrant target,
    the accuracy of each of its axes (valence, arousal).

    The quadrant target is recognised by its probability columns ``p_Q1..p_Q4``. A quadrant model
    can be right on arousal and at chance on valence (about 50 % on that axis): the pooled accuracy
    alone does not show which.

    Arguments
    ---------
    root : str
        Experiment folder (``<method>/fold_<k>/segment_predictions.csv``).

    Returns
    -------
    list of dict
        ``method, fold, n_segments, acc_truth, reference, valence_acc, arousal_acc`` (percent;
        the two axes None for a binary target) and the counts ``hits``, ``reference_hits``;
        folds without truth are left out.

    Example
    -------
    >>> import os, tempfile
    >>> root = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(root, "sssl", "fold_0"))
    >>> rows = ["song_id,segment,split,label,pred,truth,p_Q1,p_Q2,p_Q3,p_Q4",
    ...         "s1,0,test,0,0,0,1,0,0,0", "s1,1,test,0,1,3,0,1,0,0", "s1,2,train,0,0,1,1,0,0,0"]
    >>> with open(os.path.join(root, "sssl", "fold_0", "segment_predictions.csv"), "w") as f:
    ...     _ = f.write("\\n".join(rows) + "\\n")
    >>> r = segment_truth_by_fold(root)[0]
    >>> r["fold"], r["n_segments"], r["acc_truth"], r["valence_acc"], r["arousal_acc"]
    (0, 2, 50.0, 50.0, 50.0)
    """
    axes = _axes_of_quadrant_index()
    out = []
    for method in _methods(root):
        for fold in _folds(root, method):
            path = os.path.join(fold, "segment_predictions.csv")
            if not os.path.isfile(path):
                continue
            rows = [r for r in read_csv_dicts(path)
                    if r["split"] == "test" and r.get("truth", "") not in ("", "-1")]
            if not rows:
                continue
            pred = [int(r["pred"]) for r in rows]
            truth = [int(r["truth"]) for r in rows]
            quadrant = all(f"p_{q}" in rows[0] for q in CLASS_NAMES["quadrant"])
            hits = sum(p == t for p, t in zip(pred, truth))
            reference_hits = sum(r["label"] == r["truth"] for r in rows)
            row = {"method": method, "fold": int(os.path.basename(fold).split("_")[-1]),
                   "n_segments": len(rows), "hits": hits, "reference_hits": reference_hits,
                   "acc_truth": 100.0 * hits / len(rows), "reference": 100.0 * reference_hits / len(rows),
                   "valence_acc": None, "arousal_acc": None}
            if quadrant:
                for k, name in enumerate(("valence_acc", "arousal_acc")):
                    hits = [axes[p][k] == axes[t][k] for p, t in zip(pred, truth)]
                    row[name] = 100.0 * float(np.mean(hits))
            out.append(row)
    return out


def clean_precision_by_epoch(root, method):
    """Mean over folds of the clean-set precision and recall per epoch (None where undefined)."""
    per_epoch = collections.defaultdict(lambda: ([], []))
    for fold in _folds(root, method):
        path = os.path.join(fold, "partition.csv")
        if not os.path.isfile(path):
            continue
        for r in read_csv_dicts(path):
            if r.get("clean_precision", "") != "":
                per_epoch[int(r["epoch"])][0].append(float(r["clean_precision"]))
                per_epoch[int(r["epoch"])][1].append(float(r["clean_recall"]))
    epochs = sorted(per_epoch)
    precision = [float(np.mean(per_epoch[e][0])) for e in epochs]
    recall = [float(np.mean(per_epoch[e][1])) for e in epochs]
    return epochs, precision, recall


def experiment_summary(root, plot_folder=None):
    """Markdown summary of an experiment folder; optionally writes the precision plots.

    Arguments
    ---------
    root : str
        Experiment folder (holding ``results.csv`` and ``<method>/fold_<k>/``).
    plot_folder : str, optional
        Where to write ``clean_precision_<method>.png``.

    Returns
    -------
    str
    """
    lines = ["Song level (test songs; mean ± std over folds; F1 = macro-F1)", "",
             "| method | aggregator | folds | accuracy % | F1 % |", "|---|---|---|---|---|"]
    for r in read_csv_dicts(os.path.join(root, "results.csv")):
        if r["aggregator"] in ("svm", "majority", "mean"):
            lines.append(f"| {r['method']} | {r['aggregator']} | {r['n_folds']} | "
                         f"{float(r['acc_mean']):.1f} ± {float(r['acc_std']):.1f} | "
                         f"{float(r['macro_f1_mean']):.1f} ± {float(r['macro_f1_std']):.1f} |")
    per_fold = segment_truth_by_fold(root)  # every fold's predictions read once, for both tables
    seg = segment_truth_table(per_fold)
    if seg:
        lines += ["", "Segment level (test segments of all folds, against the segment truth)", "",
                  "| method | segments | accuracy vs truth % | reference: song label for every segment % |",
                  "|---|---|---|---|"]
        lines += [f"| {r['method']} | {r['n_segments']} | {r['acc_truth']:.1f} | {r['reference']:.1f} |"
                  for r in seg]
    if per_fold:
        axes = per_fold[0]["valence_acc"] is not None
        note = "; valence, arousal: accuracy on each axis of the quadrant, 50 is chance" if axes else ""
        lines += ["", f"Segment level per fold (test segments, accuracy vs truth %{note})",
                  "", "| method | fold | segments | accuracy vs truth % | reference % |"
                  + (" valence % | arousal % |" if axes else ""),
                  "|---|---|---|---|---|" + ("---|---|" if axes else "")]
        for r in per_fold:
            cells = [r["method"], str(r["fold"]), str(r["n_segments"]), f"{r['acc_truth']:.1f}",
                     f"{r['reference']:.1f}"]
            if axes:
                cells += [f"{r['valence_acc']:.1f}", f"{r['arousal_acc']:.1f}"]
            lines.append("| " + " | ".join(cells) + " |")
    for method in _methods(root):
        epochs, precision, recall = clean_precision_by_epoch(root, method)
        if not epochs:
            continue
        lines += ["", f"Clean set X of {method} per epoch (training segments; mean over folds)", "",
                  "| epoch | " + " | ".join(str(e) for e in epochs) + " |",
                  "|---|" + "---|" * len(epochs),
                  "| precision % | " + " | ".join(f"{100 * p:.1f}" for p in precision) + " |",
                  "| recall % | " + " | ".join(f"{100 * r:.1f}" for r in recall) + " |"]
        if plot_folder:
            plot_clean_precision(epochs, precision, recall,
                                 os.path.join(plot_folder, f"clean_precision_{method}.png"))
    text = "\n".join(lines) + "\n"
    atomic_write_text(os.path.join(root, "summary.md"), text)
    return text
