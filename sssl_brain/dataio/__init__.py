"""Data: audio reading, features and their cache, segments, labels, songs tables, prepare."""
