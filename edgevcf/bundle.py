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

What a device builds from a bundle (a TensorRT engine, ``edgevcf build``) goes into its
``device/`` folder and never changes the exported files, so the export's signature stays valid:
``device/model.json`` records the engine's files, the device and the SHA-256 of the exported
ONNX it was built from (it must still be in the bundle, unchanged), sealed with its own
checksum; ``device/model.sig``, by the device's key, signs that folder apart (a release key
never saw those bytes).
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

from edgevcf.data.preprocess import InputSpec, Preprocess
from edgevcf.errors import BundleError, ConfigError, OutputError
from edgevcf.hashing import sha256_file
from edgevcf.signing import DEVICE_DIR, SIGNATURE_FILE

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


def _canonical(d: dict[str, Any]) -> bytes:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _checksum(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return hashlib.sha256(_canonical(body)).hexdigest()


def _render(manifest: dict[str, Any]) -> bytes:
    """The exact bytes of manifest.json as export writes them (JSON round-trips exactly)."""
    return (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode("ascii")


def _read_object(path: Path) -> tuple[dict[str, Any], bytes]:
    """A JSON object file and its bytes as read."""
    try:
        raw = path.read_bytes()
        doc = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is unreadable or not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BundleError(f"{path} is not a JSON object")
    return doc, raw


def _check_sealed(path: Path, doc: dict[str, Any], raw: bytes | None, by: str, redo: str) -> None:
    """Refuse a sealed JSON file (manifest, device record) that differs from what ``by`` wrote;
    ``redo`` says how to make it again."""
    if _checksum(doc) != doc.get("checksum"):
        raise BundleError(
            f"{path} was modified after {by} (checksum mismatch)",
            hint=f"{redo}; never edit a bundle by hand",
        )
    if raw is not None and raw != _render(doc):
        # Same JSON meaning, other bytes (whitespace, line endings, key order): still an edit,
        # and the bundle promises that any byte changed anywhere is detected.
        raise BundleError(
            f"{path} was modified after {by} (its text differs from what {by} wrote: "
            "whitespace, line endings or key order)",
            hint=f"copy the bundle as binary files (no line-ending conversion) or {redo}",
        )


def _present(root: Path, skip: tuple[str, ...]) -> set[str]:
    """Every file under ``root`` by POSIX path, but those named or under a folder in ``skip``."""
    return {
        rel
        for p in root.rglob("*")
        if p.is_file() and (rel := p.relative_to(root).as_posix()) not in skip
        and rel.split("/")[0] not in skip
    }  # fmt: skip


def _file_problems(root: Path, listed: dict[str, str], present: set[str],
                   known: dict[str, str]) -> list[str]:  # fmt: skip
    """Missing, unexpected and changed files of ``root`` against ``listed`` (name -> sha256)."""
    problems = [f"missing file {n}" for n in sorted(set(listed) - present)]
    problems += [f"unexpected file {n}" for n in sorted(present - set(listed))]
    for name in sorted(set(listed) & present):
        if (known.get(name) or sha256_file(root / name)) != listed[name]:
            problems.append(f"{name} changed (sha256 mismatch)")
    return problems


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
        #: The engine a device built from this bundle (``device/``), if any.
        self.device: DeviceBuild | None = None

    # -------------------------------------------------------------- reading
    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        verify: bool = True,
        trust: Trust | None = None,
        device: bool = True,
    ) -> Bundle:
        """Open a bundle, checking schema, its own checksum and every file's sha256; with
        ``trust``, its signature too (who released it), before anything else reads it.
        ``device``: also open what a device built from it (``device/``; see :class:`DeviceBuild`).

        Raises:
            BundleError: not a bundle, unknown schema, any checksum / file-list mismatch; with
                ``trust``: unsigned, signed by a key not trusted or revoked, a signature that
                does not verify, or files other than those signed; a device build that does
                not check out.
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
        manifest, raw = _read_object(mpath)
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
        if device and (root / DEVICE_DIR).exists():
            bundle.device = DeviceBuild.load(bundle, trust)
        return bundle

    def verify_files(self, digests: dict[str, str] | None = None) -> None:
        """Check the manifest's own checksum, then each listed file; refuse extra files.

        ``digests``: SHA-256 of files already hashed in this load (by the signature check).
        """
        _check_sealed(self.path / MANIFEST, self.manifest, self._raw, "export", "re-export it")
        # the signature signs the bundle, and what a device built is checked on its own
        present = _present(self.path, (MANIFEST, SIGNATURE_FILE, DEVICE_DIR))
        problems = _file_problems(self.path, self.manifest["files"], present, digests or {})
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
    def site_calibration(self) -> str | None:
        """One line naming the site calibration this bundle carries (``edgevcf validate
        --rethreshold``), or None for a bundle as exported: the cart shows it beside the model."""
        lin = self.manifest.get("site_calibration")
        if not lin:
            return None
        parent = lin.get("parent", {})
        return (
            f"site calibration {str(lin.get('site', {}).get('fingerprint', ''))[:12]} "
            f"({lin.get('objective', '')}; threshold {parent.get('threshold', float('nan')):.4f}"
            f" -> {self.threshold:.4f}), parent {str(parent.get('model_id', ''))[:12]}"
        )

    @property
    def artifacts(self) -> dict[str, Artifact]:
        """Runnable files by name (a device-built engine first)."""
        arts = {k: Artifact.from_dict(k, v) for k, v in self.manifest["artifacts"].items()}
        return {self.device.artifact.name: self.device.artifact, **arts} if self.device else arts

    def artifact(self, name: str | None = None) -> Artifact:
        """The named artifact, or the default one (a device-built engine, if there is one)."""
        arts = self.artifacts
        name = name or (self.device.artifact.name if self.device else None)
        name = name or self.manifest["default_artifact"]
        if name not in arts:
            raise ConfigError(
                f"bundle has no artifact {name!r}", hint=f"artifacts: {', '.join(arts)}"
            )
        return arts[name]

    def golden(self) -> Golden:
        """The golden vectors."""
        return Golden.load(self.path / GOLDEN)


#: The device record, next to the engine in ``device/`` (where the TensorRT backend reads it).
DEVICE_RECORD = "model.json"
DEVICE_SCHEMA = "edgevcf.device-build"
_REBUILD = "build it again: edgevcf build --force BUNDLE"
_DEVICE_TRUST_HINT = (
    "under a trust list an engine runs only if the device that built it signed it: "
    "`edgevcf build BUNDLE --key DEVICE_KEY` (or `edgevcf sign BUNDLE/device --key DEVICE_KEY`) "
    "and add that key's .pub to the trust list; or remove BUNDLE/device to run the signed ONNX"
)


@dataclass(frozen=True)
class DeviceBuild:
    """The engine a device built from a bundle (``device/``), bound to the exported ONNX it was
    built from; signed, if at all, by the device's key."""

    folder: Path
    record: dict[str, Any]
    #: The key id that signed ``device/``, once checked against a trust list (else None).
    signer_key_id: str | None = None

    @property
    def artifact(self) -> Artifact:
        """The engine as an artefact of the bundle (its file relative to the bundle)."""
        return Artifact.from_dict("engine", self.record["artifact"])

    @property
    def source(self) -> dict[str, str]:
        """The exported file the engine was built from: ``file`` and its ``sha256``."""
        return dict(self.record["source"])

    @classmethod
    def load(cls, bundle: Bundle, trust: Trust | None = None) -> DeviceBuild:
        """Check ``bundle``'s device folder: with ``trust``, its signature first; then its
        sealed record, every file it lists, and that the ONNX it names is the bundle's own.

        Raises:
            BundleError: no record (trtexec's engine not yet adopted); with ``trust``: not
                signed by a trusted key; an edited record or engine; built from another model.
        """
        folder = bundle.path / DEVICE_DIR
        rpath = folder / DEVICE_RECORD
        if not rpath.is_file():
            raise BundleError(
                f"{folder} holds no engine record ({DEVICE_RECORD})",
                hint="record trtexec's engine with `edgevcf build --adopt BUNDLE`, "
                "or remove the device folder",
            )
        signer, digests = None, dict[str, str]()
        if trust is not None:
            from edgevcf.signing import verify_signature

            signer = verify_signature(folder, trust, digests, hint=_DEVICE_TRUST_HINT)
        record, raw = _read_object(rpath)
        if record.get("schema") != DEVICE_SCHEMA:
            raise BundleError(f"{rpath}: schema {record.get('schema')!r} is not {DEVICE_SCHEMA!r}")
        _check_sealed(rpath, record, raw, "the build", _REBUILD)
        try:
            files, source = dict(record["files"]), dict(record["source"])
            art = Artifact.from_dict("engine", record["artifact"])
            listed = art.file.removeprefix(f"{DEVICE_DIR}/") in files
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BundleError(f"{rpath} is incomplete ({exc})", hint=_REBUILD) from None
        problems = _file_problems(folder, files, _present(folder, (DEVICE_RECORD, SIGNATURE_FILE)),
                                  digests)  # fmt: skip
        if not listed:
            problems.insert(0, f"its engine {art.file} is not one of its files")
        if problems:
            raise BundleError(
                f"the device build in {folder} failed verification: " + "; ".join(problems[:6]),
                hint=f"the engine was altered or copied incompletely: {_REBUILD}",
            )
        if bundle.manifest["files"].get(source.get("file")) != source.get("sha256"):
            raise BundleError(
                f"the engine in {folder} was built from another {source.get('file')} than the "
                "one this bundle holds",
                hint=_REBUILD,
            )
        return cls(folder, record, signer)


def write_device_record(folder: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Seal ``record`` with the SHA-256 of every file in ``folder`` (a staged device folder) and
    write it as ``model.json`` there: the last file a build writes."""
    skip = (DEVICE_RECORD, SIGNATURE_FILE)
    files = {n: sha256_file(folder / n) for n in sorted(_present(folder, skip))}
    out = {"schema": DEVICE_SCHEMA, **record, "files": files}
    out["checksum"] = _checksum(out)
    (folder / DEVICE_RECORD).write_bytes(_render(out))
    return out


def new_manifest(
    *,
    target: str,
    profile: dict[str, Any],
    backbone: str,
    input: InputSpec,
    preprocess: Preprocess,
    threshold: float,
    threshold_method: str,
    artifacts: list[Artifact],
    metrics: dict[str, Any],
    calibration: dict[str, Any] | None,
    checkpoint: dict[str, Any],
    golden_atol: dict[str, float],
    tuning_split: str,
    target_facts: dict[str, Any],
    notes: list[str],
    versions: dict[str, str],
    quality_gate: dict[str, Any] | None,
    patients: dict[str, Any],
    threshold_envelope: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A new bundle's manifest, in schema order (:func:`write_manifest` adds files and checksum).

    The first of ``artifacts`` is the default; the model's output is one logit for ``fresh``.
    """
    import platform

    default = artifacts[0]
    return {
        "target": target,
        "profile": profile,
        "precision": default.precision,
        "backbone": backbone,
        "input": input.to_dict(),
        "preprocess": preprocess.to_dict(),
        "classes": list(CLASSES),
        "output": {"kind": "logit", "positive_class": CLASSES[1], "probability": "sigmoid"},
        "threshold": {
            "value": threshold,
            "method": threshold_method,
            **({"envelope": threshold_envelope} if threshold_envelope else {}),
        },
        "artifacts": {a.name: a.to_dict() for a in artifacts},
        "default_artifact": default.name,
        "metrics": metrics,
        "calibration": calibration,
        "checkpoint": checkpoint,
        "golden": {"file": GOLDEN, "atol_logit": golden_atol, "tuning_split": tuning_split},
        "target_facts": target_facts,
        "notes": notes,
        "versions": versions,
        "machine": {"platform": platform.platform(), "processor": platform.machine()},
        "quality_gate": quality_gate,
        "patients": patients,
    }


def finalize_manifest(root: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Add schema, file hashes and the self-checksum to ``manifest`` for the files in ``root``."""
    files = {
        str(p.relative_to(root)).replace(os.sep, "/"): sha256_file(p)
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
