"""Bundle format: atomic writes, checksums of every file and of the manifest itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgevcf.bundle import Bundle, Golden, staging, write_manifest
from edgevcf.data.preprocess import Preprocess
from edgevcf.errors import BundleError, ConfigError


def _make(out: Path, *, force: bool = False) -> Path:
    with staging(out, force=force) as work:
        (work / "model.onnx").write_bytes(b"\x08\x01model-bytes" * 100)
        Golden(np.zeros((2, 3, 8, 8), np.float32), np.ones((2, 1), np.float32),
               {"model": np.ones((2, 1), np.float32)}).save(work / "golden.npz")  # fmt: skip
        write_manifest(
            work,
            {
                "target": "onnx",
                "precision": "fp32",
                "backbone": "mobilenet_v3_small",
                "input": {"shape": [1, 3, 8, 8], "kind": "normalised"},
                "preprocess": Preprocess(input_size=16).to_dict(),
                "threshold": {"value": 0.4, "method": "youden"},
                "artifacts": {
                    "model": {
                        "file": "model.onnx",
                        "runtime": "onnxruntime",
                        "precision": "fp32",
                        "options": {},
                    }
                },
                "default_artifact": "model",
            },
        )
    return out


def test_roundtrip(tmp_path: Path) -> None:
    b = Bundle.load(_make(tmp_path / "b"))
    assert b.threshold == 0.4 and b.artifact().file == "model.onnx"
    assert b.preprocess.input_size == 16 and b.input.shape == (1, 3, 8, 8)
    assert len(b.id) == 64
    assert b.golden().expected["model"].shape == (2, 1)


def _flip_byte(p: Path, at: int = 20) -> None:
    data = bytearray(p.read_bytes())
    data[at] ^= 0x01
    p.write_bytes(bytes(data))


@pytest.mark.parametrize("victim", ["model.onnx", "golden.npz", "manifest.json"])
def test_one_byte_changed_is_refused(tmp_path: Path, victim: str) -> None:
    out = _make(tmp_path / "b")
    if victim == "manifest.json":  # a meaningful edit: move the threshold
        m = json.loads((out / victim).read_text())
        m["threshold"]["value"] = 0.1
        (out / victim).write_text(json.dumps(m, indent=2))
    else:
        _flip_byte(out / victim)
    with pytest.raises(BundleError):
        Bundle.load(out)


def test_every_byte_position_of_the_manifest(tmp_path: Path) -> None:
    """Any single-byte change of manifest.json is refused (parse error or checksum)."""
    out = _make(tmp_path / "b")
    original = (out / "manifest.json").read_bytes()
    step = max(1, len(original) // 200)
    for at in range(0, len(original), step):
        data = bytearray(original)
        data[at] = (data[at] + 1) % 256
        (out / "manifest.json").write_bytes(bytes(data))
        with pytest.raises(BundleError):
            Bundle.load(out)


def test_file_removed_or_added_is_refused(tmp_path: Path) -> None:
    out = _make(tmp_path / "b")
    (out / "extra.bin").write_bytes(b"x")
    with pytest.raises(BundleError, match=r"unexpected file extra\.bin"):
        Bundle.load(out)
    (out / "extra.bin").unlink()
    (out / "golden.npz").unlink()
    with pytest.raises(BundleError, match=r"missing file golden\.npz"):
        Bundle.load(out)


def test_schema_version_and_not_a_bundle(tmp_path: Path) -> None:
    out = _make(tmp_path / "b")
    m = json.loads((out / "manifest.json").read_text())
    m["schema_version"] = 99
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="schema version 99"):
        Bundle.load(out)
    with pytest.raises(BundleError):
        Bundle.load(tmp_path)
    with pytest.raises(BundleError):
        Bundle.load(tmp_path / "nothing")


def test_interrupted_write_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "b"

    def interrupted() -> None:
        with staging(out) as work:
            (work / "model.onnx").write_bytes(b"half")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        interrupted()
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force(tmp_path: Path) -> None:
    out = _make(tmp_path / "b")
    with pytest.raises(ConfigError, match="already exists"):
        _make(out)
    first = Bundle.load(out).id
    _make(out, force=True)
    assert Bundle.load(out).id == first  # same content, same id

    def interrupted() -> None:
        with staging(out, force=True) as work:
            (work / "x").write_bytes(b"1")
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        interrupted()
    assert Bundle.load(out).id == first  # the old bundle survives a failed replace
