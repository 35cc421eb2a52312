"""Temporary folders of all tests and doctests go under pytest's tmp_path.

Doctests call ``tempfile.mkdtemp()``; pointing ``tempfile`` at the test's
``tmp_path`` (which pytest prunes) keeps repeated runs from filling the
system's temporary folder.
"""

import tempfile

import pytest


@pytest.fixture(autouse=True)
def _tempfile_under_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
