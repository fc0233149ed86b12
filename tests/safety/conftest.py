"""Fixtures of the safety tests (issue 7): the fuzzing harness as a module, a scratch corpus.

``tiny_export`` / ``export_bundle`` (one trained model, bundles exported once per session) come
from ``tests/conftest.py``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from edgevcf import deps

ROOT = Path(__file__).resolve().parents[2]


def load_script(name: str) -> ModuleType:
    """A script of benchmarks/ as a module (registered, so its dataclasses work)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def fuzz() -> ModuleType:
    """benchmarks/fuzz_readers.py."""
    return load_script("fuzz_readers")


@pytest.fixture(scope="session")
def fuzz_work(fuzz: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work folder holding the seed corpus (synthetic films need scipy)."""
    if not deps.available("scipy"):
        pytest.skip(f"needs scipy for the synthetic seeds: {deps.BACKENDS['scipy'].hint}")
    work = tmp_path_factory.mktemp("fuzz")
    fuzz.build_seeds(work)
    return work
