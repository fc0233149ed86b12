"""Promotion records: which bundle a cart serves is a signed decision, never a switch by itself.

A *deployment* folder holds ``promotions/NNNNNN.json``, one record per decision, each signed
(:func:`edgevcf.signing.sign_payload`): who, when, which bundle (its id and the sha256 of its
manifest), the one it replaces, and the evidence — a shadow report whose promotion rule held for
that very candidate (``edgevcf shadow report``), or for the first record of a deployment the words
"initial deployment". A rollback is a new record naming the bundle of the record before the
latest. ``edgevcf serve --deployment DIR`` serves the bundle of the newest record that verifies
against the cart's trusted keys and whose bundle still matches it (:func:`current`); a record that
does not verify is skipped and said, never obeyed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from edgevcf.errors import BundleError, ConfigError, DataError

PAYLOAD_TYPE = "application/vnd.edgevcf.promotion+json"
SCHEMA = "edgevcf.promotion"


def _records(deployment: Path) -> list[Path]:
    folder = deployment / "promotions"
    return sorted(folder.glob("[0-9][0-9][0-9][0-9][0-9][0-9].json")) if folder.is_dir() else []


def _manifest_sha(bundle: Path) -> str:
    from edgevcf.hashing import sha256_file

    return sha256_file(bundle / "manifest.json")


def _payload(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


def promote(
    deployment: str | os.PathLike[str],
    bundle: str | os.PathLike[str] | None,
    key: str | os.PathLike[str],
    *,
    by: str,
    report: dict[str, Any] | None = None,
    rollback: bool = False,
    note: str = "",
    passphrase: str | None = None,
) -> Path:
    """Write the next signed record of ``deployment``; its path.

    Raises:
        ConfigError: no evidence (a report whose rule held for this bundle, or the first record),
            a rollback with nothing to go back to, or a bundle that is not one.
    """
    from edgevcf.bundle import Bundle
    from edgevcf.signing import sign_payload

    dep = Path(deployment)
    existing = _records(dep)
    history = [json.loads(p.read_text(encoding="utf-8"))["record"] for p in existing]
    latest = history[-1] if history else None
    if rollback:
        if len(history) < 2:
            raise ConfigError("nothing to roll back to: the deployment has fewer than two records")
        target = history[-2]["bundle"]
        path = Path(target["path"])
        evidence: dict[str, Any] = {
            "kind": "rollback",
            "of_sequence": latest["sequence"] if latest else None,
        }
    else:
        if bundle is None:
            raise ConfigError("which bundle? give --bundle BUNDLE")
        path = Path(bundle).resolve()
        b = Bundle.load(path)
        if report is not None:
            if report.get("candidate") != b.id:
                raise ConfigError(
                    f"the report is about candidate {str(report.get('candidate'))[:12]}, not "
                    f"this bundle ({b.id[:12]})"
                )
            if not report.get("promote"):
                failed = [c["check"] for c in report.get("checks", []) if not c.get("passed")]
                raise ConfigError(
                    f"the shadow report's promotion rule does not hold: {', '.join(failed)}",
                    hint="keep the candidate in shadow until `edgevcf shadow report` says promote",
                )
            evidence = {"kind": "shadow report", "checks": report.get("checks"),
                        "label_free": report.get("label_free"),
                        "labelled": {k: v for k, v in (report.get("labelled") or {}).items()
                                     if k != "subgroups"}}  # fmt: skip
        elif not history:
            evidence = {"kind": "initial deployment"}
        else:
            raise ConfigError(
                "a promotion needs evidence: --report shadow.json (from `edgevcf shadow report`)",
                hint="only the first record of a deployment may go without one",
            )
        target = {"path": str(path), "id": b.id, "manifest_sha256": _manifest_sha(path)}
    record = {
        "schema": SCHEMA,
        "sequence": len(history) + 1,
        "bundle": target,
        "replaces": latest["bundle"] if latest else None,
        "by": by,
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "note": note,
        "evidence": evidence,
    }
    signature = sign_payload(_payload(record), key, PAYLOAD_TYPE, passphrase)
    out = dep / "promotions" / f"{record['sequence']:06d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"record": record, "signature": signature}, indent=2) + "\n",
                   encoding="utf-8")  # fmt: skip
    os.replace(tmp, out)
    return out


def current(
    deployment: str | os.PathLike[str], trust: Any
) -> tuple[Path, dict[str, Any], list[str]]:
    """The bundle to serve: that of the newest record that verifies against ``trust`` and whose
    bundle's manifest still has the recorded sha256; with the record and what was skipped why.

    Raises:
        DataError: no record of the deployment verifies.
    """
    from edgevcf.signing import verify_payload

    skipped: list[str] = []
    for p in reversed(_records(Path(deployment))):
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
            record = doc["record"]
            kid = verify_payload(_payload(record), doc["signature"], trust, PAYLOAD_TYPE)
            path = Path(record["bundle"]["path"])
            if not (path / "manifest.json").is_file():
                raise BundleError(f"its bundle {path} is gone")
            if _manifest_sha(path) != record["bundle"]["manifest_sha256"]:
                raise BundleError(f"its bundle {path} is not the one promoted (manifest changed)")
        except (OSError, ValueError, KeyError, TypeError, BundleError) as exc:
            skipped.append(f"{p.name}: {getattr(exc, 'message', exc)}")
            continue
        return path, {**record, "signer_key_id": kid, "file": str(p)}, skipped
    raise DataError(
        f"no valid promotion record in {deployment}"
        + (f" ({'; '.join(skipped)})" if skipped else ""),
        hint="write one with `edgevcf promote --deployment DIR --bundle BUNDLE --sign KEY`",
    )
