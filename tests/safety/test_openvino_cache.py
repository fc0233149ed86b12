"""A corrupted OpenVINO model cache is detected and rebuilt, never trusted or fatal (issue 7,
section 4).

OpenVINO itself rebuilds a blob whose header is broken, but loads one whose weights have a few
bytes changed and computes other scores with it. The backend records each blob's sha256 and
deletes a blob that does not match before compiling; every case below must give exactly the
logits of a clean start and leave a blob that matches its record.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgevcf.backends.openvino import CACHE_RECORD
from edgevcf.hashing import sha256_file
from edgevcf.runtime import Predictor

pytestmark = pytest.mark.requires_openvino


def _flip(at: float) -> Callable[[Path, Path], None]:
    def edit(blob: Path, other: Path) -> None:
        data = bytearray(blob.read_bytes())
        i = int(at * len(data)) if at < 1 else int(at)
        data[min(i, len(data) - 1)] ^= 0xFF
        _write(blob, bytes(data))

    return edit


def _write(path: Path, data: bytes) -> None:
    path.chmod(0o644)  # OpenVINO writes its blobs read-only
    path.write_bytes(data)


CORRUPTIONS: dict[str, Callable[[Path, Path], None]] = {
    **{f"byte {at} flipped": _flip(at) for at in (512, 1024, 2048, 4096, 16384, 1_000_000)},
    "byte at the middle flipped": _flip(0.5),
    "last byte flipped": _flip(0.999999),
    "truncated to half": lambda b, o: _write(b, b.read_bytes()[: b.stat().st_size // 2]),
    "emptied": lambda b, o: _write(b, b""),
    "garbage of the same size": lambda b, o: _write(
        b, np.random.default_rng(0).bytes(b.stat().st_size)
    ),
    "another compilation's blob under its name": lambda b, o: _write(b, o.read_bytes()),
    "record of hashes garbage": lambda b, o: (b.parent / CACHE_RECORD).write_text("{not json"),
    "record of hashes deleted": lambda b, o: (b.parent / CACHE_RECORD).unlink(),
    "a foreign blob planted": lambda b, o: shutil.copy(o, b.parent / "123.blob"),
}


@pytest.fixture(scope="module")
def ov_bundle(export_bundle: Any) -> Any:
    _, bundle = export_bundle("openvino")
    art = bundle.artifact()
    assert art.runtime == "openvino" and art.options.get("model_cache") is True
    return bundle


@pytest.fixture(scope="module")
def other_blob(ov_bundle: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid blob of another compilation (bf16) of the same IR: the "wrong blob" case."""
    import openvino as ov

    cache = tmp_path_factory.mktemp("other-cache")
    core = ov.Core()
    model = core.read_model(str(ov_bundle.path / ov_bundle.artifact().file))
    core.compile_model(model, "CPU", {"CACHE_DIR": str(cache), "INFERENCE_PRECISION_HINT": "bf16"})
    (blob,) = cache.glob("*.blob")
    return blob


#: A representative subset runs in CI; every case runs with --runslow.
CI_CASES = {
    "byte 1024 flipped",
    "byte 1000000 flipped",
    "truncated to half",
    "garbage of the same size",
    "another compilation's blob under its name",
    "record of hashes garbage",
    "a foreign blob planted",
}


def _logits(bundle: Any) -> tuple[np.ndarray, Path]:
    pred = Predictor.from_bundle(bundle.path)
    cache = Path(str(pred.backend.cache_dir))  # type: ignore[attr-defined]
    return pred.logits(bundle.golden().inputs), cache


@pytest.fixture(scope="module")
def primed(ov_bundle: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, Path]:
    """Logits of a cold start, and the cache folder it left (recorded), kept pristine."""
    root = tmp_path_factory.mktemp("ov-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEVCF_CACHE", str(root))
        clean, cache = _logits(ov_bundle)  # compiles, writes and records the blob
        (blob,) = cache.glob("*.blob")
        assert json.loads((cache / CACHE_RECORD).read_text()) == {blob.name: sha256_file(blob)}
        warm, _ = _logits(ov_bundle)  # from the cache
        assert np.array_equal(warm, clean)
    return clean, root


@pytest.mark.parametrize(
    "name", [n if n in CI_CASES else pytest.param(n, marks=pytest.mark.slow) for n in CORRUPTIONS]
)
def test_corrupted_cache_is_rebuilt(
    ov_bundle: Any,
    primed: tuple[np.ndarray, Path],
    other_blob: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    name: str,
) -> None:
    clean, pristine = primed
    shutil.copytree(pristine, tmp_path / "cache")
    monkeypatch.setenv("EDGEVCF_CACHE", str(tmp_path / "cache"))
    (blob,) = (tmp_path / "cache").glob("openvino-cache/*/*.blob")
    cache = blob.parent
    CORRUPTIONS[name](blob, other_blob)
    with caplog.at_level(logging.WARNING, logger="edgevcf.backends.openvino"):
        after, used = _logits(ov_bundle)
    assert used == cache
    assert np.array_equal(after, clean), f"{name}: {after} != {clean}"
    record = json.loads((cache / CACHE_RECORD).read_text())
    assert sorted(record) == sorted(b.name for b in cache.glob("*.blob"))
    assert all(sha256_file(cache / n) == h for n, h in record.items())
    assert "corrupt or unrecorded; rebuilding" in caplog.text


def test_unusable_cache_folder_costs_only_time(
    ov_bundle: Any, primed: tuple[np.ndarray, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache path taken by a file: OpenVINO cannot create it (this raised before); the
    model is compiled without a cache, same logits."""
    clean, _ = primed
    monkeypatch.setenv("EDGEVCF_CACHE", str(tmp_path))
    (tmp_path / "openvino-cache").write_text("not a folder")
    got, _ = _logits(ov_bundle)
    assert np.array_equal(got, clean)
