"""Fixtures of the safety tests (issue 7): a scratch seed corpus for the reader fuzzer.

The fuzzer itself is :mod:`edgevcf.testing`. ``tiny_export`` / ``export_bundle`` (one trained
model, bundles exported once per session) come from ``tests/conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgevcf import deps
from edgevcf.testing.fuzz_corpus import build_seeds


@pytest.fixture(scope="session")
def fuzz_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work folder holding the seed corpus (synthetic films need scipy)."""
    if not deps.available("scipy"):
        pytest.skip(f"needs scipy for the synthetic seeds: {deps.DEPENDENCIES['scipy'].hint}")
    work = tmp_path_factory.mktemp("fuzz")
    build_seeds(work)
    return work
