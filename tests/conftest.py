"""Shared test set-up: import paths and the session fixtures several test files use.

``tests/unit/`` holds the tests of single functions and classes (no recipe run),
``tests/integration/`` the tests that run recipes, kill runs, compare runs,
launch DDP or export and load models. The helper modules beside this file
(``audio_fixtures``, ``prepare_fixtures``, ``model_fixtures``, ``run_helpers``,
``synthetic``) are imported by name; the demo's data generator lives in
``recipes/demo/`` (demo-only code stays out of the library).
"""

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
for folder in (TESTS, TESTS.parent / "recipes" / "demo"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from model_fixtures import exported_model, trained_fold  # noqa: E402


@pytest.fixture(scope="session")
def fold_and_songs(tmp_path_factory):
    """``(fold_dir, songs)`` of a tiny csv-recipe run, trained once per session (:func:`trained_fold`)."""
    return trained_fold(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def fold(fold_and_songs):
    """The tiny run's fold folder."""
    return fold_and_songs[0]


@pytest.fixture(scope="session")
def model_dir(fold_and_songs, tmp_path_factory):
    """The tiny run's fold exported as a model folder (:func:`exported_model`)."""
    return exported_model(tmp_path_factory.getbasetemp())
