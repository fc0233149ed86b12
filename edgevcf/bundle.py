"""The deployment bundle: one self-describing, checksummed folder.

``manifest.json`` (schema version 1) says what the model is (backbone, input, preprocessing,
classes, decision threshold), how it was made (profile, calibration fingerprint, tool and
backend versions), what it measured at export (FP32 vs deployed AUC on the tuning split) and
the sha256 of every other file. The manifest carries a checksum of its own canonical form and
must be byte for byte what export wrote, so a byte changed anywhere — model, golden vectors or
manifest, whitespace included — is detected, as is a file added or removed. ``golden.npz`` holds a
few real preprocessed inputs with the outputs the validated runtime computed, so a cart can
prove its runtime computes the same (``edgevcf verify``).

Bundles are written into a temporary sibling folder and renamed into place at the end: an
interrupted export never leaves a folder that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevcf.data.preprocess import Preprocess
from edgevcf.errors import BundleError, ConfigError, OutputError
from edgevcf.onnx_export import InputSpec
from edgevcf.signing import SIGNATURE_FILE

if TYPE_CHECKING:
    from edgevcf.signing import Trust

log = logging.getLogger(__name__)

SCHEMA = "edgevcf.bundle"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
GOLDEN = "golden.npz"
CLASSES = ("not_fresh", "fresh")
_REQUIRED: tuple[str, ...] = (
    *("schema", "schema_version", "target", "precision", "backbone", "input", "preprocess"),
    *("threshold", "artifacts", "default_artifact", "files", "checksum"),
)


def sha256_path(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _canonical(d: dict[str, Any]) -> bytes:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _checksum(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return hashlib.sha256(_canonical(body)).hexdigest()


def _render(manifest: dict[str, Any]) -> bytes:
    """The exact bytes of manifest.json as export writes them (JSON round-trips exactly)."""
    return (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode("ascii")


@dataclass(frozen=True)
class Artifact:
    """One runnable file of a bundle."""

    name: str
    file: str
    runtime: str
    precision: str
    options: dict[str, Any]
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "file": self.file,
            "runtime": self.runtime,
            "precision": self.precision,
            "options": self.options,
            "note": self.note,
        }

    def files(self) -> list[str]:
        """Every file the artefact consists of (an OpenVINO IR is ``.xml`` + ``.bin``)."""
        if self.file.endswith(".xml"):
            return [self.file, self.file[: -len(".xml")] + ".bin"]
        return [self.file]

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any]) -> Artifact:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name,
            d["file"],
            d["runtime"],
            d["precision"],
            dict(d.get("options", {})),
            d.get("note", ""),
        )


@dataclass(frozen=True)
class Golden:
    """Golden vectors: inputs (graph form), FP32 logits, and expected logits per artifact."""

    inputs: np.ndarray
    fp32: np.ndarray
    expected: dict[str, np.ndarray]

    def save(self, path: Path) -> None:
        """Write as a plain (pickle-free) npz."""
        arrays = {"inputs": self.inputs, "fp32": self.fp32}
        arrays.update({f"expected__{k}": v for k, v in self.expected.items()})
        with open(path, "wb") as f:
            np.savez_compressed(f, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: Path) -> Golden:
        """Read a golden file (never unpickles)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                exp = {k.split("__", 1)[1]: z[k] for k in z.files if k.startswith("expected__")}
                return cls(z["inputs"], z["fp32"], exp)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise BundleError(f"golden vectors {path.name} unreadable: {exc}") from None


class Bundle:
    """A verified bundle on disk (construct with :meth:`load`)."""

    def __init__(self, path: Path, manifest: dict[str, Any], raw: bytes | None = None) -> None:
        self.path = path
        self.manifest = manifest
        self._raw = raw  # manifest.json as read, to refuse edits that keep its JSON meaning
        #: The key id that signed the bundle, once checked against a trust list (else None:
        #: origin not checked).
        self.signer_key_id: str | None = None

    # -------------------------------------------------------------- reading
    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, verify: bool = True, trust: Trust | None = None
    ) -> Bundle:
        """Open a bundle, checking schema, its own checksum and every file's sha256; with
        ``trust``, its signature too (who released it), before anything else reads it.

        Raises:
            BundleError: not a bundle, unknown schema, any checksum / file-list mismatch; with
                ``trust``: unsigned, signed by a key not trusted or revoked, a signature that
                does not verify, or files other than those signed.
        """
        root = Path(path)
        mpath = root / MANIFEST
        if not root.is_dir():
            raise BundleError(f"{root} is not a bundle folder", hint="give the folder export wrote")
        signer = None
        digests: dict[str, str] = {}
        if trust is not None:  # origin first: nothing unsigned is even parsed
            from edgevcf.signing import verify_signature

            signer = verify_signature(root, trust, digests)
        if not mpath.is_file():
            raise BundleError(f"{root} has no {MANIFEST}: not a (complete) bundle")
        try:
            raw = mpath.read_bytes()
            manifest = json.loads(raw.decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{mpath} is unreadable or not JSON: {exc}") from None
        if not isinstance(manifest, dict):
            raise BundleError(f"{mpath} is not a JSON object")
        missing = [k for k in _REQUIRED if k not in manifest]
        if missing:
            raise BundleError(f"{mpath}: missing field(s) {', '.join(missing)}")
        if manifest["schema"] != SCHEMA:
            raise BundleError(f"{mpath}: schema {manifest['schema']!r} is not {SCHEMA!r}")
        if manifest["schema_version"] != SCHEMA_VERSION:
            raise BundleError(
                f"bundle schema version {manifest['schema_version']} is not supported "
                f"(this edgevcf reads {SCHEMA_VERSION})",
                hint="export the bundle again with this edgevcf, or upgrade edgevcf",
            )
        bundle = cls(root, manifest, raw)
        if verify:
            bundle.verify_files(digests)
        bundle.signer_key_id = signer
        return bundle

    def verify_files(self, digests: dict[str, str] | None = None) -> None:
        """Check the manifest's own checksum, then each listed file; refuse extra files.

        ``digests``: SHA-256 of files already hashed in this load (by the signature check).
        """
        known = digests or {}
        if _checksum(self.manifest) != self.manifest["checksum"]:
            raise BundleError(
                f"{self.path / MANIFEST} was modified after export (checksum mismatch)",
                hint="re-export the bundle; never edit a bundle by hand",
            )
        if self._raw is not None and self._raw != _render(self.manifest):
            # Same JSON meaning, other bytes (whitespace, line endings, key order): still an edit,
            # and the bundle promises that any byte changed anywhere is detected.
            raise BundleError(
                f"{self.path / MANIFEST} was modified after export (its text differs from what "
                "export wrote: whitespace, line endings or key order)",
                hint="copy the bundle as binary files (no line-ending conversion) or re-export it",
            )
        listed: dict[str, str] = self.manifest["files"]
        present = {
            str(p.relative_to(self.path)).replace(os.sep, "/")
            for p in self.path.rglob("*")
            if p.is_file()
        } - {MANIFEST, SIGNATURE_FILE}  # the signature signs the bundle: it is not in it
        problems = [f"missing file {n}" for n in sorted(set(listed) - present)]
        problems += [f"unexpected file {n}" for n in sorted(present - set(listed))]
        for name in sorted(set(listed) & present):
            if (known.get(name) or sha256_path(self.path / name)) != listed[name]:
                problems.append(f"{name} changed (sha256 mismatch)")
        if problems:
            raise BundleError(
                f"bundle {self.path} failed verification: " + "; ".join(problems[:6]),
                hint="the bundle was altered or copied incompletely: copy or export it again",
            )

    # -------------------------------------------------------------- views
    @property
    def id(self) -> str:
        """Model id: the manifest checksum (covers every file's hash)."""
        return str(self.manifest["checksum"])

    @property
    def input(self) -> InputSpec:
        """The deployed graph's input."""
        return InputSpec.from_dict(self.manifest["input"])

    @property
    def preprocess(self) -> Preprocess:
        """The preprocessing the model was trained with."""
        return Preprocess.from_dict(self.manifest["preprocess"])

    @property
    def threshold(self) -> float:
        """Decision threshold on P(fresh)."""
        return float(self.manifest["threshold"]["value"])

    @property
    def artifacts(self) -> dict[str, Artifact]:
        """Runnable files by name."""
        return {k: Artifact.from_dict(k, v) for k, v in self.manifest["artifacts"].items()}

    def artifact(self, name: str | None = None) -> Artifact:
        """The named artifact, or the default one."""
        arts = self.artifacts
        name = name or self.manifest["default_artifact"]
        if name not in arts:
            raise ConfigError(
                f"bundle has no artifact {name!r}", hint=f"artifacts: {', '.join(arts)}"
            )
        return arts[name]

    def golden(self) -> Golden:
        """The golden vectors."""
        return Golden.load(self.path / GOLDEN)


def finalize_manifest(root: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Add schema, file hashes and the self-checksum to ``manifest`` for the files in ``root``."""
    files = {
        str(p.relative_to(root)).replace(os.sep, "/"): sha256_path(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).as_posix() not in (MANIFEST, SIGNATURE_FILE)
    }
    out = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **manifest, "files": files}
    out["checksum"] = _checksum(out)
    return out


@contextmanager
def staging(out: str | os.PathLike[str], *, force: bool = False) -> Iterator[Path]:
    """A temporary folder beside ``out``; renamed to ``out`` only when the block completes.

    On any exception the temporary folder is removed and ``out`` is untouched. An existing
    ``out`` is refused unless ``force`` (then replaced only after the new bundle is complete).

    Raises:
        ConfigError: ``out`` exists and ``force`` is false.
        OutputError: the bundle could not be written (disk full, ...); nothing is left of it.
    """
    out = Path(out)
    if out.exists() and not force:
        raise ConfigError(f"{out} already exists", hint="choose another --out or pass --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; a bundle is shared like any folder
    try:
        yield tmp
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except OSError as exc:  # disk full, file too large, read-only: a user's problem, not a bug
        if exc.errno in OutputError.ERRNOS:
            raise OutputError.from_os_error(f"the bundle {out}", exc) from exc
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_manifest(root: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Finalize and write ``manifest.json`` (the last file written into a staged bundle)."""
    final = finalize_manifest(root, manifest)
    (root / MANIFEST).write_bytes(_render(final))
    return final
