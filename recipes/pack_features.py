#!/usr/bin/env python3
"""Writes a dataset's cached log-mel features into a compact, checked pack (``sssl_brain.dataio.pack``).

For a machine that cannot read the audio (the GPU machine takes 64 MiB per
transfer): uint8 codes over ``[pack_db_min, pack_db_max]`` dB, xz
compression, parts of at most ``pack_part_mib`` MiB, and ``pack.json`` with
the songs table, the feature settings and each part's SHA-256. The
features come from the cache a training run built (computed here where
missing). On the other machine, train from the pack with
``--feature_pack=FOLDER`` after :func:`sssl_brain.dataio.pack.unpack`
(``benchmarks/gpu_4q_window.py`` does both).

Usage (the dataset's recipe yaml gives its name, prepare step and thresholds)::

    python recipes/pack_features.py recipes/4q hparams/vgg16_sssl.yaml \\
        --data_folder=/data/MER_audio_taffc_dataset --pack_out=results/4q/pack
"""

import os
import sys

import speechbrain as sb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "recipes"))

from sssl_brain.dataio.features import FeatureCache, FeatureConfig  # noqa: E402
from sssl_brain.dataio.pack import write_pack  # noqa: E402
from sssl_brain.dataio.songs import read_songs_table  # noqa: E402
from sssl_brain.utils.errors import ConfigError, exit_on_error  # noqa: E402
from sssl_brain.utils.hparams import load_hparams, parse_overrides  # noqa: E402


def main(argv):
    """``RECIPE_DIR HPARAMS [--overrides] --pack_out=FOLDER``: prepares (where needed) and packs."""
    if len(argv) < 2 or not os.path.isdir(argv[0]):
        raise ConfigError("usage: pack_features.py RECIPE_DIR HPARAMS_FILE --data_folder=... "
                          "--pack_out=FOLDER")
    recipe_dir = os.path.abspath(argv[0])
    sys.path.insert(0, recipe_dir)
    from sssl_train import load_dataset_hparams  # noqa: E402  (recipes/sssl_train.py)

    hparams_file, _, overrides = sb.parse_arguments(argv[1:])
    overrides = parse_overrides(overrides)
    out = overrides.pop("pack_out", None)
    if not out:
        raise ConfigError("pack_out: required, pass --pack_out=FOLDER")
    prepare, dataset_defaults = load_dataset_hparams(recipe_dir)
    hp = load_hparams(hparams_file, {**dataset_defaults, **overrides})
    prepare(data_folder=hp["data_folder"], save_folder=hp["prepare_folder"], skip_prep=hp["skip_prep"])
    songs = read_songs_table(os.path.join(hp["prepare_folder"], "songs.csv"))
    cache = FeatureCache(hp["feature_cache"], FeatureConfig.from_hparams(hp))
    cache.build([s["path"] for s in songs], n_jobs=int(hp["feature_jobs"]))
    manifest = write_pack(out, songs, cache, hp["pack_db_min"], hp["pack_db_max"], hp["pack_part_mib"])
    parts = ", ".join(f"{p['name']} {p['bytes'] / 2 ** 20:.1f} MiB" for p in manifest["parts"])
    print(f"{out}: {len(manifest['songs'])} songs, {manifest['total_frames']} frames, "
          f"{manifest['uncompressed_bytes'] / 2 ** 20:.1f} MiB of uint8 codes -> {parts}; quantisation "
          f"step {manifest['step_db']:.3f} dB (error <= {manifest['max_error_db']:.3f} dB), "
          f"clipped {manifest['clipped_low']} low / {manifest['clipped_high']} high "
          f"of {manifest['n_values']}")
    return manifest


if __name__ == "__main__":
    with exit_on_error():
        main(sys.argv[1:])
