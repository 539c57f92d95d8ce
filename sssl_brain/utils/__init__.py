"""Errors, atomic file writing, checkpoints, safe model files, plots."""
