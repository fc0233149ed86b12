"""Fixtures of the ``edgevcf serve`` tests: small films from the generator, the tiny trained
model's onnx-cpu bundle, a PACS (dcmtk's storescp). Helpers are in ``peers.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers import Pacs, free_port

from edgevcf import deps


@pytest.fixture
def pacs(tmp_path: Path) -> Iterator[Pacs]:
    p = Pacs("PACS", free_port(), tmp_path / "pacs").start()
    yield p
    p.stop()


@pytest.fixture(scope="session")
def serve_bundle(export_bundle: Any) -> Path:
    """The tiny model's onnx-cpu bundle (trained, exported once per session)."""
    if not deps.available("pynetdicom"):
        pytest.skip("needs pynetdicom: pip install 'edgevcf[serve]'")
    _, bundle = export_bundle("onnx-cpu")
    return Path(bundle.path)


@pytest.fixture(scope="session")
def films(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Eight small synthetic DICOM films (CR, 16-bit), each its own SOP Instance UID."""
    if deps.missing("scipy"):
        pytest.skip("needs scipy (the generator)")
    from edgevcf import progress
    from edgevcf.data.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("serve_films")
    was = progress.enabled()
    progress.set_enabled(False)
    try:
        generate(out, 8, cfg=SynthConfig.fast(), seed=3, fmt="dicom", preview=False,
                 workers=1, val=0, test=0)  # fmt: skip
    finally:
        progress.set_enabled(was)
    found = sorted(out.glob("images/*.dcm"))
    assert len(found) >= 8
    return found
