"""Export a trained fold as a self-contained model folder (:mod:`sssl_brain.inference.model_folder`).

The folder is written atomically: it is built in a temporary folder next to
the target and renamed into place, so an interrupted export leaves no
half-written model.

Command line (also the ``sssl-export`` console script)::

    python -m sssl_brain.inference.export FOLD_DIR OUT_DIR [--checkpoint CKPT+...] [--overwrite]
"""

import argparse
import datetime
import io
import json
import logging
import os
import shutil
import sys
import tempfile

import torch
import yaml

from sssl_brain import __version__
from sssl_brain.inference.model_folder import (
    CLASSIFIER_FILE,
    FORMAT,
    FORMAT_VERSION,
    HPARAMS_FILE,
    MANIFEST_FILE,
    README_FILE,
    REQUIRED_FILES,
    WEIGHTS_FILE,
    build_model,
    check_classifier_fits,
    hparams_from_fold_config,
    load_weights,
    read_weights,
)
from sssl_brain.method.teacher import TEACHER_FILE, teacher_model_state
from sssl_brain.utils.errors import ModelFolderError, SSSLError
from sssl_brain.utils.io_utils import atomic_write_bytes, atomic_write_json, atomic_write_text
from sssl_brain.utils.model_io import dumps_song_classifier, load_song_classifier, sha256_file

logger = logging.getLogger(__name__)

#: Name of the song classifier in a trained fold folder.
FOLD_CLASSIFIER_FILE = "song_classifier.skops"


def find_checkpoint(fold_dir, checkpoint=None):
    """The ``save/CKPT+*`` folder of a trained fold holding ``model.ckpt``.

    Arguments
    ---------
    fold_dir : str
        A trained fold folder.
    checkpoint : str, optional
        Name of one checkpoint folder; default: the one selected on
        validation (the checkpoint of ``selected_epoch`` in the fold's
        ``metrics.json``, the model that wrote ``segment_predictions.csv``),
        else the most recent one (its ``CKPT.yaml`` ``unixtime``, else its name).

    Returns
    -------
    str
    """
    save = os.path.join(fold_dir, "save")
    selected_epoch = None
    if checkpoint is None:
        try:
            with open(os.path.join(fold_dir, "metrics.json"), encoding="utf-8") as f:
                selected_epoch = json.load(f).get("selected_epoch")
        except (OSError, ValueError, AttributeError):
            selected_epoch = None
    if checkpoint is not None:
        path = checkpoint if os.path.isabs(checkpoint) else os.path.join(save, checkpoint)
        if not os.path.isfile(os.path.join(path, "model.ckpt")):
            raise ModelFolderError(f"{path}: no model.ckpt in this checkpoint")
        return path
    found = []
    if os.path.isdir(save):
        for name in sorted(os.listdir(save)):
            path = os.path.join(save, name)
            if name.startswith("CKPT+") and os.path.isfile(os.path.join(path, "model.ckpt")):
                when, epoch = 0.0, None
                try:
                    with open(os.path.join(path, "CKPT.yaml"), encoding="utf-8") as f:
                        meta = yaml.safe_load(f) or {}
                    when, epoch = float(meta.get("unixtime", 0.0)), meta.get("epoch")
                except (OSError, yaml.YAMLError, TypeError, ValueError, AttributeError):
                    pass
                found.append((when, name, path, epoch))
    if not found:
        raise ModelFolderError(
            f"{save}: no checkpoint with a model.ckpt; is {fold_dir} a trained fold folder?")
    if selected_epoch is not None:
        chosen = [f for f in found if f[3] == selected_epoch]
        if not chosen:
            raise ModelFolderError(f"{save}: no checkpoint of the selected epoch {selected_epoch} "
                                   f"(metrics.json); pass the checkpoint's name")
        return max(chosen)[2]
    return max(found)[2]


def _fold_model(hp, ckpt, source):
    """The fold's served VGG16 of checkpoint folder ``ckpt``: the mean teacher (``teacher.ckpt``, with
    ``ema_decay``) where it was trained, else ``model.ckpt``; records in ``hp`` the input normalisation
    size its weights hold."""
    weights_path = os.path.join(ckpt, TEACHER_FILE)
    if os.path.isfile(weights_path):
        state = teacher_model_state(read_weights(weights_path))
    else:
        weights_path = os.path.join(ckpt, "model.ckpt")
        state = read_weights(weights_path)
    mean = state.get("input_mean")
    hp["model"]["n_mels"] = int(mean.numel()) if mean is not None and mean.numel() > 1 else None
    model = build_model(hp, source=source)
    load_weights(model, state, weights_path, source)
    return model


def _readme(hp, files, fold_dir, checkpoint, metrics):
    names = ", ".join(hp["class_names"])
    seg, feat, model = hp["segments"], hp["features"], hp["model"]
    lines = [
        f"# sssl-brain model: {hp['target']} ({names})",
        "",
        "Music emotion recognition with semi-supervised self-learning (SSSL): a VGG16 segment classifier",
        "(stage 1) and an SVM over the Eq. 10 statistics of the segment probabilities (stage 2).",
        "",
        "## Use",
        "",
        "```bash",
        "sssl-classify THIS_FOLDER song.mp3 other_songs/ --csv predictions.csv --plot song.png",
        "```",
        "",
        "```python",
        "from sssl_brain.inference.recognizer import EmotionRecognizer",
        "model = EmotionRecognizer.from_hparams(source=\"THIS_FOLDER\")",
        "result = model.classify_file(\"song.mp3\")",
        "print(result.label, result.probs)",
        "```",
        "",
        "A song is classified whole; `--max_duration SECONDS` (`max_duration=` in Python) uses only its",
        "first SECONDS, and a song it cuts is reported as truncated.",
        "",
        "Loading needs neither the training data nor network access and runs no code from this folder:",
        "settings are plain YAML (`yaml.safe_load`), weights are read with `torch.load(weights_only=True)`,",
        "the song classifier with skops and an explicit type allowlist; every file is checked against",
        f"its SHA-256 in `{MANIFEST_FILE}`.",
        "",
        "## Settings",
        "",
        f"- target: {hp['target']}; classes: {names}",
        f"- segments: {seg['seg_dur']:g} s, "
        + ("hop 1 s" if seg["seg_overlap"] is None else f"overlap {seg['seg_overlap']:g} s")
        + ("" if seg["max_song_duration"] is None
           else f"; trained on the first {seg['max_song_duration']:g} s of each song"),
        f"- features: {feat['n_mels']}-bin log-mel, {feat['window']} window {feat['n_fft']}, hop "
        f"{feat['hop_length']}, {feat['sample_rate']} Hz, dB re {feat['ref']}",
        f"- model: VGG16, width x{model['width_mult']:g}, classifier {model['classifier_dim']}, "
        f"batch norm {model['batch_norm']}",
        f"- song level: Eq. 10 with theta {hp['song_level']['theta']:g}, SVM",
        "",
        "## Source",
        "",
        f"- fold folder: `{fold_dir}`",
        f"- checkpoint: `{os.path.basename(checkpoint)}`",
        f"- training: {json.dumps(hp.get('training', {}), sort_keys=True)}",
        f"- exported by sssl-brain {__version__} on {datetime.date.today().isoformat()}",
    ]
    test = (metrics or {}).get("metrics", {})
    rows = [(agg, split_metrics["test"]) for agg, split_metrics in sorted(test.items())
            if isinstance(split_metrics, dict) and isinstance(split_metrics.get("test"), dict)]
    if rows:
        lines += ["", "## Test metrics of the fold", "", "| aggregator | accuracy | macro F1 | songs |",
                  "|---|---:|---:|---:|"]
        for agg, m in rows:
            lines.append(f"| {agg} | {100 * m.get('accuracy', float('nan')):.2f} | "
                         f"{100 * m.get('macro_f1', float('nan')):.2f} | {m.get('n', '')} |")
    lines += ["", "## Files", "", "| file | bytes | sha256 |", "|---|---:|---|"]
    lines += [f"| {name} | {entry['bytes']} | `{entry['sha256']}` |" for name, entry in files.items()]
    return "\n".join(lines) + "\n"


def _file_entry(path):
    return {"sha256": sha256_file(path), "bytes": os.path.getsize(path)}


def export_fold(fold_dir, out_dir, checkpoint=None, overwrite=False):
    """Packages a trained fold into a self-contained model folder (written atomically).

    Arguments
    ---------
    fold_dir : str
        A trained fold folder (``fold_config.json``, ``save/CKPT+*/model.ckpt``,
        ``song_classifier.skops``).
    out_dir : str
        The model folder to create.
    checkpoint : str, optional
        Checkpoint folder name (default: the one selected on validation, see :func:`find_checkpoint`).
    overwrite : bool
        Replace an existing ``out_dir``.

    Returns
    -------
    dict
        The manifest written.

    Raises
    ------
    ModelFolderError
        If the fold folder is incomplete or ``out_dir`` exists (without ``overwrite``).
    """
    fold_dir = os.path.abspath(os.fspath(fold_dir))
    out_dir = os.path.abspath(os.fspath(out_dir))
    if not os.path.isdir(fold_dir):
        raise ModelFolderError(f"{fold_dir}: fold folder not found")
    if os.path.exists(out_dir) and not overwrite:
        raise ModelFolderError(f"{out_dir}: already exists (pass overwrite=True / --overwrite to replace it)")
    config_path = os.path.join(fold_dir, "fold_config.json")
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        raise ModelFolderError(f"{config_path}: not found; is {fold_dir} a trained fold folder?") from None
    except json.JSONDecodeError as err:
        raise ModelFolderError(f"{config_path}: not valid JSON ({err})") from None
    hp = hparams_from_fold_config(config, source=config_path)
    ckpt = find_checkpoint(fold_dir, checkpoint)
    model = _fold_model(hp, ckpt, config_path)

    clf_path = os.path.join(fold_dir, FOLD_CLASSIFIER_FILE)
    if not os.path.isfile(clf_path):
        raise ModelFolderError(f"{clf_path}: not found; is stage 2 of {fold_dir} finished (its "
                               "metrics.json)? recipes/evaluate.py re-runs stage 2 on a fold")
    classifier = load_song_classifier(clf_path)
    check_classifier_fits(classifier, hp, clf_path)
    classifier_bytes = dumps_song_classifier(classifier)
    metrics = None
    metrics_path = os.path.join(fold_dir, "metrics.json")
    if os.path.isfile(metrics_path):
        try:
            with open(metrics_path, encoding="utf-8") as f:
                metrics = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError):
            logger.warning("%s: not valid JSON; the README lists no metrics", metrics_path)

    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".tmp-{os.path.basename(out_dir)}-")
    try:
        header = ("# sssl-brain exported model: plain settings, read with yaml.safe_load (no tags).\n"
                  f"# Files and checksums: {MANIFEST_FILE}; usage: {README_FILE}.\n")
        atomic_write_text(os.path.join(tmp, HPARAMS_FILE),
                          header + yaml.safe_dump(hp, sort_keys=False, default_flow_style=None))
        buf = _state_dict_bytes(model)
        atomic_write_bytes(os.path.join(tmp, WEIGHTS_FILE), buf)
        atomic_write_bytes(os.path.join(tmp, CLASSIFIER_FILE), classifier_bytes)
        files = {name: _file_entry(os.path.join(tmp, name)) for name in REQUIRED_FILES}
        readme = _readme(hp, files, fold_dir, ckpt, metrics)
        atomic_write_text(os.path.join(tmp, README_FILE), readme)
        files[README_FILE] = _file_entry(os.path.join(tmp, README_FILE))
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "sssl_brain_version": __version__,
                    "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "source": {"fold_dir": fold_dir, "checkpoint": os.path.basename(ckpt),
                               "song_classifier": FOLD_CLASSIFIER_FILE},
                    "files": files}
        atomic_write_json(os.path.join(tmp, MANIFEST_FILE), manifest)
        _make_readable(tmp)
        _replace_folder(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _make_readable(folder):
    """Temporary files are private (0600); a model folder is meant to be shared: 0755/0644 less umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o755 & ~umask)
    for name in os.listdir(folder):
        os.chmod(os.path.join(folder, name), 0o644 & ~umask)


def _state_dict_bytes(model):
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, buf)
    return buf.getvalue()


def _replace_folder(tmp, out_dir):
    """Renames ``tmp`` to ``out_dir``; an existing ``out_dir`` is moved aside first and then removed."""
    old = None
    if os.path.exists(out_dir):
        old = tempfile.mkdtemp(dir=os.path.dirname(out_dir), prefix=f".old-{os.path.basename(out_dir)}-")
        os.rmdir(old)
        os.replace(out_dir, old)
    try:
        os.replace(tmp, out_dir)
    except BaseException:
        if old is not None:
            os.replace(old, out_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- command line
def main(argv=None):
    """``sssl-export FOLD_DIR OUT_DIR``: exports a trained fold and prints what it wrote."""
    parser = argparse.ArgumentParser(
        prog="sssl-export", description="Export a trained sssl-brain fold as a self-contained model folder.")
    parser.add_argument("fold_dir", help="trained fold folder, e.g. results/<dataset>/<exp>/sssl/fold_0")
    parser.add_argument("out_dir", help="model folder to create")
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint folder name (default: the one selected on validation)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        manifest = export_fold(args.fold_dir, args.out_dir, checkpoint=args.checkpoint,
                               overwrite=args.overwrite)
    except SSSLError as err:
        print(f"sssl-export: error: {err}", file=sys.stderr)
        return 1
    out = os.path.abspath(args.out_dir)
    source = manifest["source"]
    print(f"exported {source['fold_dir']} (checkpoint {source['checkpoint']}) to {out}:")
    written = [*manifest["files"].items(), (MANIFEST_FILE, _file_entry(os.path.join(out, MANIFEST_FILE)))]
    for name, entry in written:
        print(f"  {name:<24} {entry['bytes']:>10} bytes  sha256 {entry['sha256'][:16]}")
    print(f"use it: sssl-classify {out} SONG_OR_FOLDER ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
