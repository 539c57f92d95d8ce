"""Errors, atomic file writing, checkpoints, safe model files, plots, DDP gathering, training-loop helpers."""
