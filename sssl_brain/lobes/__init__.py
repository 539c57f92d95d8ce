"""Segment classifiers (VGG16)."""
