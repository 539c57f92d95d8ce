#!/usr/bin/env python3
"""Recipe: SSSL music emotion recognition on PMEmo2019.

Prepares the songs table, then runs stage 1 (SSSLBrain) and stage 2 (SVM on
Eq. 10 features) for every fold and method, and writes results.md/.csv.

Usage:
    python recipes/pmemo/train.py hparams/vgg16_sssl.yaml --data_folder=/path/to/data
    python recipes/pmemo/train.py hparams/vgg16_sssl.yaml --data_folder=... --target=valence --seg_dur=3
    torchrun --nproc_per_node=2 recipes/pmemo/train.py hparams/vgg16_sssl.yaml --data_folder=...

See pmemo_prepare.py for the expected layout of the data folder.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pmemo_prepare import AROUSAL_THRESHOLD, VALENCE_THRESHOLD, prepare_pmemo  # noqa: E402

from sssl_brain.experiment import recipe_main  # noqa: E402

if __name__ == "__main__":
    recipe_main(sys.argv[1:], prepare_pmemo, VALENCE_THRESHOLD, AROUSAL_THRESHOLD, dataset="pmemo")
