"""``sssl-classify``: classify the emotion of audio files with an exported model.

Usage::

    sssl-classify MODEL_DIR PATH [PATH ...] [--json [FILE]] [--csv [FILE]] [--segments_csv FILE]
                  [--plot OUT.png] [--max_duration SECONDS] [--device cpu] [--batch_size 64]
                  [--no_progress]

``PATH`` is an audio file or a folder (searched recursively for files with
the extensions of :data:`AUDIO_EXTENSIONS`). Without ``--json``/``--csv`` to
standard output, a table (file, label, majority, mean, class probabilities,
segments) is printed: ``label`` is the SVM's decision, ``majority`` and
``mean`` those of the majority vote and of the mean segment probability (the
JSON and the CSV carry the same three decisions). ``--json`` and ``--csv``
write to a file, or to standard output when given no file (or ``-``).
``--plot out.png`` draws the class probabilities of each segment over time
(the paper's Figure 2) with the song's decisions in the title; with several
files, one PNG per file named ``out_<file stem>.png``.

Each file is classified whole. ``--max_duration SECONDS`` classifies only
the first SECONDS of each file (the training cap ``max_song_duration`` of
the model is not applied unless given here); a song it cuts is reported in
the table (column ``used``: seconds used / seconds in the file), in the JSON
(``used_s``, ``truncated``, ``max_duration_s``), in the CSV (``used_s``), in
the plot's title and on standard error.

A file that cannot be classified (unreadable, too short) is reported on
standard error and skipped; the exit status is then 1. A model folder that
cannot be loaded gives exit status 2.
"""

import argparse
import csv
import io
import json
import os
import re
import sys

from tqdm import tqdm

from sssl_brain.utils.errors import SSSLError
from sssl_brain.utils.io_utils import atomic_write_text

#: File extensions searched for in folders (soundfile reads all of them).
AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff")


def find_audio_files(paths):
    """Expands files and folders into a list of audio files, and lists the paths that yield none.

    Files given explicitly are kept whatever their extension; folders are
    searched recursively (sorted) for :data:`AUDIO_EXTENSIONS`.

    Arguments
    ---------
    paths : list of str
        Files and folders.

    Returns
    -------
    files : list of str
        Audio files, in the order given, each once.
    problems : list of (str, str)
        Paths that are missing or folders without audio, and why.

    Example
    -------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> for name in ("b.mp3", "a.wav", "notes.txt"):
    ...     _ = open(os.path.join(d, name), "w").write("x")
    >>> files, problems = find_audio_files([d, os.path.join(d, "missing.wav")])
    >>> [os.path.basename(f) for f in files], [why for _, why in problems]
    (['a.wav', 'b.mp3'], ['not found'])
    """
    files, problems, seen = [], [], set()

    def add(path):
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            files.append(path)

    for path in paths:
        if os.path.isdir(path):
            found = []
            for root, dirs, names in os.walk(path):
                dirs.sort()
                found += [os.path.join(root, n) for n in sorted(names)
                          if n.lower().endswith(AUDIO_EXTENSIONS) and not n.startswith(".")]
            if not found:
                problems.append((path, f"folder holds no audio file ({', '.join(AUDIO_EXTENSIONS)})"))
            for f in found:
                add(f)
        elif os.path.isfile(path):
            add(path)
        else:
            problems.append((path, "not found"))
    return files, problems


def plot_paths(out, files):
    """PNG path per file: ``out`` itself for one file, else ``<out stem>_<file stem><ext>`` (unique).

    Example
    -------
    >>> plot_paths("fig.png", ["a/song.mp3"])
    ['fig.png']
    >>> plot_paths("out/fig.png", ["a/song 1.mp3", "b/song 1.wav", "c.ogg"])
    ['out/fig_song_1.png', 'out/fig_song_1_2.png', 'out/fig_c.png']
    """
    if len(files) == 1:
        return [out]
    root, ext = os.path.splitext(out)
    ext = ext or ".png"
    paths, used = [], set()
    for f in files:
        stem = re.sub(r"[^A-Za-z0-9_.+-]", "_", os.path.splitext(os.path.basename(f))[0]) or "audio"
        candidate, k = f"{root}_{stem}{ext}", 1
        while candidate in used:
            k += 1
            candidate = f"{root}_{stem}_{k}{ext}"
        used.add(candidate)
        paths.append(candidate)
    return paths


def song_rows(results, class_names):
    """One CSV row per song: file, label, n_segments, duration_s, used_s, p_<class> (SVM), majority, mean."""
    rows = []
    for r in results:
        row = {"file": r.path, "label": r.label, "n_segments": r.n_segments,
               "duration_s": round(r.duration, 3), "used_s": round(r.used_duration, 3)}
        row.update({f"p_{c}": round(float(p), 6) for c, p in zip(class_names, r.probs)})
        row.update(majority=r.aggregations["majority"]["label"], mean=r.aggregations["mean"]["label"])
        rows.append(row)
    return rows


def song_columns(class_names):
    """Columns of the ``--csv`` output.

    Example
    -------
    >>> song_columns(["low", "high"])
    ['file', 'label', 'n_segments', 'duration_s', 'used_s', 'p_low', 'p_high', 'majority', 'mean']
    """
    probs = [f"p_{c}" for c in class_names]
    return ["file", "label", "n_segments", "duration_s", "used_s"] + probs + ["majority", "mean"]


def segment_rows(results, class_names):
    """One CSV row per segment: file, segment, start_s, end_s, pred, p_<class>."""
    rows = []
    for r in results:
        for k, (s, e, p) in enumerate(zip(r.segment_starts, r.segment_ends, r.segment_probs)):
            row = {"file": r.path, "segment": k, "start_s": float(s), "end_s": float(e),
                   "pred": class_names[int(p.argmax())]}
            row.update({f"p_{c}": round(float(v), 6) for c, v in zip(class_names, p)})
            rows.append(row)
    return rows


def _csv_text(rows, columns):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def format_table(results, class_names):
    """The terminal table: file, label (SVM), majority and mean decisions, SVM probabilities, segments.

    ``label`` is the song's decision (the SVM over the Eq. 10 statistics);
    ``majority`` (majority vote of the segment decisions) and ``mean``
    (argmax of the mean segment probability) are the two baselines, as in
    the plot's title; ``p_<class>`` are the SVM's probabilities. When a song
    was truncated (``max_duration``), a last column ``used`` gives the seconds
    used of the seconds in the file (``-`` for a song used whole).

    Example
    -------
    >>> import numpy as np
    >>> from sssl_brain.inference.recognizer import SongResult
    >>> agg = {"majority": {"label": "low"}, "mean": {"label": "high"}}
    >>> r = SongResult("a.wav", "high", 1, np.array([0.25, 0.75]), ["low", "high"], agg,
    ...                np.zeros(3), np.ones(3), np.zeros((3, 2)), 3.0)
    >>> print(format_table([r], ["low", "high"]))
    file   label  majority  mean  p_low  p_high  segments
    a.wav  high   low       high  0.250   0.750         3
    >>> r.duration, r.max_duration = 163.2, 20.0
    >>> print(format_table([r], ["low", "high"]))
    file   label  majority  mean  p_low  p_high  segments  used
    a.wav  high   low       high  0.250   0.750         3  20.0 s / 163.2 s
    """
    header = ["file", "label", "majority", "mean"] + [f"p_{c}" for c in class_names] + ["segments"]
    body = [[r.path, r.label, r.aggregations["majority"]["label"], r.aggregations["mean"]["label"]]
            + [f"{p:.3f}" for p in r.probs] + [str(r.n_segments)] for r in results]
    if any(r.truncated for r in results):
        header.append("used")
        for row, r in zip(body, results):
            row.append(f"{r.used_duration:.1f} s / {r.duration:.1f} s" if r.truncated else "-")
    widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]
    right = set(range(4, 4 + len(class_names) + 1))

    def fmt(row):
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return "  ".join(cells).rstrip()

    return "\n".join(fmt(row) for row in [header] + body)


def _write(target, text):
    if target in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write_text(target, text)


def build_parser():
    """The argument parser of ``sssl-classify``."""
    parser = argparse.ArgumentParser(
        prog="sssl-classify",
        description="Classify the emotion of songs with an exported sssl-brain model "
                    "(VGG16 segment classifier + SVM over Eq. 10 statistics).")
    parser.add_argument("model_dir",
                        help="exported model folder (python -m sssl_brain.inference.export FOLD_DIR OUT_DIR)")
    parser.add_argument("paths", nargs="+", help="audio files (MP3, WAV, FLAC, OGG) or folders of them")
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                        help="write the results (with segments) as JSON to FILE, or to stdout")
    parser.add_argument("--csv", nargs="?", const="-", default=None, metavar="FILE",
                        help="write one row per song as CSV to FILE, or to stdout")
    parser.add_argument("--segments_csv", "--segments-csv", default=None, metavar="FILE",
                        help="write one row per segment as CSV to FILE (or - for stdout)")
    parser.add_argument("--plot", default=None, metavar="OUT.png",
                        help="plot segment probabilities over time (one PNG per file when several)")
    parser.add_argument("--max_duration", "--max-duration", type=float, default=None, metavar="SECONDS",
                        help="classify only the first SECONDS of each file; a song it cuts is reported "
                             "as truncated (default: the whole file)")
    parser.add_argument("--device", default=None,
                        help="torch device, e.g. cpu or cuda:0 (default: cuda:0 if available, else cpu)")
    parser.add_argument("--batch_size", "--batch-size", type=int, default=64,
                        help="segments per forward pass (default: 64)")
    parser.add_argument("--no_progress", "--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv=None):
    """Entry point of ``sssl-classify``; returns the exit status (0 ok, 1 some file failed, 2 no model)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    to_stdout = [name for name, value in (("--json", args.json), ("--csv", args.csv),
                                          ("--segments_csv", args.segments_csv)) if value == "-"]
    if len(to_stdout) > 1:
        parser.error(f"only one of {', '.join(to_stdout)} can write to standard output")
    if args.batch_size < 1:
        parser.error(f"--batch_size={args.batch_size}: must be >= 1")
    if args.max_duration is not None and not args.max_duration > 0:
        parser.error(f"--max_duration={args.max_duration:g}: must be > 0 seconds")

    # torch and speechbrain are slow to import: only after the arguments are checked
    from sssl_brain.inference.recognizer import EmotionRecognizer, plot_segment_probabilities

    try:
        run_opts = {"device": args.device} if args.device else None
        model = EmotionRecognizer.from_hparams(source=args.model_dir, run_opts=run_opts,
                                               batch_size=args.batch_size, max_duration=args.max_duration)
    except SSSLError as err:
        print(f"sssl-classify: cannot load the model: {err}", file=sys.stderr)
        return 2
    names = model.class_names
    files, problems = find_audio_files(args.paths)
    failures = list(problems)
    for path, why in problems:
        print(f"sssl-classify: {path}: {why}", file=sys.stderr)

    results = []
    plots = dict(zip(files, plot_paths(args.plot, files))) if args.plot and files else {}
    bar = tqdm(files, desc="classifying", unit="file", disable=args.no_progress or not files, file=sys.stderr)
    for path in bar:
        try:
            result = model.classify_file(path)
            if result.truncated:
                tqdm.write(f"sssl-classify: {path}: truncated, {result.usage_note()} "
                           f"(--max_duration {args.max_duration:g})", file=sys.stderr)
            if path in plots:
                os.makedirs(os.path.dirname(os.path.abspath(plots[path])), exist_ok=True)
                plot_segment_probabilities(result, plots[path])
        except (SSSLError, OSError) as err:  # OSError: a plot that cannot be written
            message = str(err) if path in str(err) else f"{path}: {err}"
            failures.append((path, message))
            tqdm.write(f"sssl-classify: skipped {message}", file=sys.stderr)
            continue
        results.append(result)
    bar.close()

    if not to_stdout:
        if results:
            print(format_table(results, names))
        print(f"{len(results)} file(s) classified, {len(failures)} failed", file=sys.stderr)
    if args.json is not None:
        payload = {"model": os.path.abspath(args.model_dir), "class_names": names,
                   "results": [r.to_dict() for r in results],
                   "errors": [{"file": f, "error": why} for f, why in failures]}
        _write(args.json, json.dumps(payload, indent=2) + "\n")
    if args.csv is not None:
        _write(args.csv, _csv_text(song_rows(results, names), song_columns(names)))
    if args.segments_csv is not None:
        columns = ["file", "segment", "start_s", "end_s", "pred"] + [f"p_{c}" for c in names]
        _write(args.segments_csv, _csv_text(segment_rows(results, names), columns))
    for path in plots.values():
        if os.path.isfile(path) and not to_stdout:
            print(f"plot: {path}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
