"""A bundle edited after export is refused, every time (issue 7, section 4).

For real exported bundles, every file gets single-byte flips at several offsets, a byte appended,
a byte cut, an emptied copy, deletion and renaming; the folder gets extra files (visible, hidden,
in a new sub-folder) and manifest.json gets edits that keep its JSON meaning (whitespace, line
endings, key layout) as well as ones that change it. Each variant must be refused by
``Bundle.load``, by ``Predictor.from_bundle`` and by ``edgevcf verify`` (exit code 7).
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgevcf import deps
from edgevcf.bundle import MANIFEST, Bundle
from edgevcf.cli import cli
from edgevcf.errors import BundleError
from edgevcf.runtime import Predictor

pytestmark = pytest.mark.requires_onnxruntime

Variant = tuple[str, Callable[[Path], None]]


def _flip(name: str, at: int) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        p = root / name
        data = bytearray(p.read_bytes())
        data[at % len(data)] ^= 0x01
        p.write_bytes(bytes(data))

    return edit


def _bytes_edit(name: str, fn: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        p = root / name
        p.write_bytes(fn(p.read_bytes()))

    return edit


def _manifest_text_edit(fn: Callable[[str], str]) -> Callable[[Path], None]:
    return _bytes_edit(MANIFEST, lambda b: fn(b.decode()).encode())


def _manifest_value_edit(fn: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        p = root / MANIFEST
        m = json.loads(p.read_text())
        fn(m)
        p.write_text(json.dumps(m, indent=2) + "\n")

    return edit


def _to_folder(name: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        (root / name).unlink()
        (root / name).mkdir()

    return edit


def _add(name: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")

    return edit


def variants(root: Path) -> Iterator[Variant]:
    """Every edit tried on the bundle at ``root`` (names say what was done)."""
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    rnd = random.Random(7)
    for name in files:
        size = (root / name).stat().st_size
        offsets = sorted({0, 1, size // 3, size // 2, size - 2, size - 1,
                          *(rnd.randrange(size) for _ in range(3))})  # fmt: skip
        for at in offsets:
            yield f"{name}: byte {at} of {size} flipped", _flip(name, at)
        yield f"{name}: a byte appended", _bytes_edit(name, lambda b: b + b"\n")
        yield f"{name}: last byte cut", _bytes_edit(name, lambda b: b[:-1])
        yield f"{name}: emptied", _bytes_edit(name, lambda b: b"")
        yield f"{name}: deleted", lambda r, n=name: (r / n).unlink()
        yield f"{name}: renamed", lambda r, n=name: (r / n).rename(r / f"{n}.orig")
        yield f"{name}: replaced by a folder", _to_folder(name)
    first = next(f for f in files if f != MANIFEST)
    yield "extra file added", lambda r: (r / "notes.txt").write_text("hello")
    yield "hidden file added", lambda r: (r / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    yield "file added in a new folder", _add("extra/model.onnx")
    yield "copy of a model file added", lambda r: shutil.copy(r / first, r / f"copy-{first}")
    # manifest.json edits that keep its JSON meaning: a byte changed is a byte changed
    yield "manifest: trailing space", _manifest_text_edit(lambda t: t + " ")
    yield "manifest: final newline removed", _manifest_text_edit(lambda t: t.rstrip("\n"))
    yield "manifest: CRLF line endings", _manifest_text_edit(lambda t: t.replace("\n", "\r\n"))
    yield "manifest: tab indentation", _manifest_text_edit(lambda t: t.replace("  ", "\t"))
    yield (
        "manifest: one space becomes a tab",
        _manifest_text_edit(lambda t: t.replace(": ", ":\t", 1)),
    )
    yield (
        "manifest: re-serialised compactly",
        _manifest_text_edit(lambda t: json.dumps(json.loads(t), separators=(",", ":"))),
    )
    # ... and edits that change it (the checksum is not recomputed)
    yield (
        "manifest: threshold moved",
        _manifest_value_edit(lambda m: m["threshold"].__setitem__("value", 0.01)),
    )
    yield (
        "manifest: a file's hash replaced",
        _manifest_value_edit(lambda m: m["files"].__setitem__(first, "0" * 64)),
    )
    yield (
        "manifest: a file dropped from the list",
        _manifest_value_edit(lambda m: m["files"].pop(first)),
    )
    yield (
        "manifest: default artefact switched",
        _manifest_value_edit(lambda m: m.__setitem__("default_artifact", "other")),
    )
    yield "manifest: checksum field removed", _manifest_value_edit(lambda m: m.pop("checksum"))


def _refused_everywhere(root: Path) -> list[str]:
    """What did not refuse the bundle at ``root`` (empty when all did)."""
    missed = []
    try:
        Bundle.load(root)
        missed.append("Bundle.load")
    except BundleError:
        pass
    try:
        Predictor.from_bundle(root)
        missed.append("Predictor.from_bundle")
    except BundleError:
        pass
    res = CliRunner().invoke(cli, ["--quiet", "verify", str(root)])
    if res.exit_code != 7 or "Error:" not in res.output:
        missed.append(f"edgevcf verify (exit {res.exit_code})")
    return missed


def _restore(work: Path, original: Path) -> None:
    shutil.rmtree(work)
    shutil.copytree(original, work)


@pytest.mark.parametrize(
    ("profile", "precision", "engine"),
    [("onnx-cpu", None, "onnxruntime"), ("openvino", None, "openvino"), ("mobile", None, "litert")],
)
def test_every_edit_is_refused(
    export_bundle: Any, tmp_path: Path, profile: str, precision: str | None, engine: str
) -> None:
    if not deps.available(engine):
        pytest.skip(f"needs {engine}")
    _, bundle = export_bundle(profile, precision)
    work = tmp_path / "bundle"
    shutil.copytree(bundle.path, work)
    Bundle.load(work)  # the untouched copy loads
    tried, accepted = 0, []
    for name, edit in variants(bundle.path):
        edit(work)
        tried += 1
        missed = _refused_everywhere(work)
        if missed:
            accepted.append(f"{name}: accepted by {', '.join(missed)}")
        _restore(work, bundle.path)
    assert tried >= 40
    assert not accepted, f"{len(accepted)} of {tried} edits were not refused:\n" + "\n".join(
        accepted
    )
    print(f"{profile}: {tried} edits tried, {tried} refused")  # the closing note's figure


def test_reordered_manifest_keys_are_not_detected(export_bundle: Any, tmp_path: Path) -> None:
    """The one edit that is *not* refused, by design: the manifest's keys re-ordered. JSON
    objects are unordered; detecting it needs a writer with a fixed key order (sorted), which
    would refuse every bundle exported so far. Nothing the runtime reads changes (same id)."""
    _, bundle = export_bundle("onnx-cpu")
    work = tmp_path / "bundle"
    shutil.copytree(bundle.path, work)
    text = (work / MANIFEST).read_text()
    (work / MANIFEST).write_text(json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n")
    assert Bundle.load(work).id == bundle.id
