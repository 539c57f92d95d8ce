"""Stage 2: Eq. 10 song features, song classifiers, per-fold metrics and results tables."""
