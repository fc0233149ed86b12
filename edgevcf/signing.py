"""Signed bundles: who released a model, checked on the cart before anything is scored.

A bundle's checksums prove integrity, not origin: anyone can edit ``manifest.json`` and
recompute them. A signature by the site's key over every file of the bundle proves both.

The format is OpenSSF model-signing's (``model_signing sign key`` / ``verify key``), so either
tool verifies the other's bundles: ``model.sig`` in the bundle is a Sigstore bundle (media type
v0.3, JSON) holding a DSSE envelope over an in-toto statement v1 whose predicate
(``https://model_signing/signature/v1.0``) lists each file's SHA-256 (serialisation ``files``,
sorted POSIX paths, ``model.sig`` and git files ignored) and whose subject digest is SHA-256
over those digests in order; the signature is ECDSA (P-256 / SHA-256, P-384, P-521) over the
DSSE pre-authentication encoding; ``verificationMaterial.publicKey.hint`` is the key id.

A **key id** is the SHA-256 (hex) of the public key in PEM SubjectPublicKeyInfo form: the value
model-signing writes as its hint, shown wherever edgevcf names a key.

Only ``cryptography`` is needed here (the ``signing`` extra), never model-signing's Sigstore
stack, and it is imported when a key or a signature is touched, not with ``edgevcf``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevcf.errors import BundleError, ConfigError

SIGNATURE_FILE = "model.sig"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
#: Where a device puts what it builds from a bundle (a TensorRT engine): signed apart, by the
#: device's key, because the release key never saw those bytes.
DEVICE_DIR = "device"
#: What model-signing leaves out of a signed folder by default, and the device folder; written
#: into the statement, which model-signing's verifier honours.
IGNORED = (".gitattributes", ".git", SIGNATURE_FILE, ".github", ".gitignore", DEVICE_DIR)
CURVES = {"secp256r1": "SHA256", "secp384r1": "SHA384", "secp521r1": "SHA512"}


def _crypto() -> Any:
    from edgevcf.deps import require

    require("cryptography", "signed bundles")
    from cryptography.hazmat.primitives import serialization

    return serialization


def _hash_for(public_key: Any) -> Any:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name not in CURVES:
        name = getattr(getattr(public_key, "curve", None), "name", type(public_key).__name__)
        raise ConfigError(
            f"unsupported key type {name}",
            hint="use an ECDSA key on P-256 (edgevcf keys new), P-384 or P-521",
        )
    return getattr(hashes, CURVES[public_key.curve.name])()


def key_id(public_key: Any) -> str:
    """The key id: SHA-256 of the public key's PEM SubjectPublicKeyInfo (model-signing's hint)."""
    serialization = _crypto()
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(pem).hexdigest()


def load_public_key(path: str | os.PathLike[str]) -> Any:
    """A PEM public key (a ``.pub`` from ``edgevcf keys new`` or ``openssl ec -pubout``).

    Raises:
        ConfigError: unreadable, not a public key, or of an unsupported type.
    """
    serialization = _crypto()
    p = Path(path)
    try:
        key = serialization.load_pem_public_key(p.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{p}: not a readable PEM public key ({exc})",
            hint="pass the .pub file written by `edgevcf keys new`",
        ) from None
    _hash_for(key)
    return key


def load_private_key(path: str | os.PathLike[str], passphrase: str | None = None) -> Any:
    """A PEM private key, decrypted with ``passphrase`` when it is protected.

    Raises:
        ConfigError: unreadable, wrong passphrase, or an unsupported key type.
    """
    serialization = _crypto()
    p = Path(path)
    try:
        key = serialization.load_pem_private_key(
            p.read_bytes(), passphrase.encode() if passphrase else None
        )
    except TypeError:
        raise ConfigError(
            f"{p} is passphrase-protected", hint="give its passphrase (--passphrase-env VAR)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{p}: not a usable PEM private key ({exc})") from None
    _hash_for(key.public_key())
    return key


def new_key(out: str | os.PathLike[str], passphrase: str | None = None) -> tuple[Path, Path, str]:
    """Write a new P-256 key pair: ``out`` (private, mode 0600) and ``out.pub``; its key id.

    Raises:
        ConfigError: ``out`` exists (a key is never overwritten).
    """
    serialization = _crypto()
    from cryptography.hazmat.primitives.asymmetric import ec

    private = Path(out)
    public = private.with_name(private.name + ".pub")
    for p in (private, public):
        if p.exists():
            raise ConfigError(
                f"{p} exists: a key is never overwritten", hint="choose another --out"
            )
    key = ec.generate_private_key(ec.SECP256R1())
    enc = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    private.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public, key_id(key.public_key())


# ------------------------------------------------------------------ the signed statement
def _files(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` but the ignored ones, by sorted POSIX path."""
    from edgevcf.hashing import sha256_file

    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel.split("/")[0] in IGNORED or not p.is_file():
            continue
        if p.is_symlink():
            raise BundleError(f"{root}: {rel} is a symbolic link (a bundle holds files only)")
        out[rel] = sha256_file(p)
    return out


def _statement(root: Path, files: dict[str, str]) -> dict[str, Any]:
    names = sorted(files)
    root_digest = hashlib.sha256(b"".join(bytes.fromhex(files[n]) for n in names)).hexdigest()
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": root.resolve().name, "digest": {"sha256": root_digest}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "resources": [{"algorithm": "sha256", "digest": files[n], "name": n} for n in names],
            "serialization": {
                "ignore_paths": list(IGNORED),
                "allow_symlinks": False,
                "method": "files",
                "hash_type": "sha256",
            },
        },
    }


def _pae(payload: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """DSSE v1 pre-authentication encoding (what is actually signed)."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def sign_payload(
    payload: bytes, private_key: str | os.PathLike[str], payload_type: str,
    passphrase: str | None = None,
) -> dict[str, str]:  # fmt: skip
    """A detached DSSE signature of ``payload`` (e.g. a promotion record): ``{"keyid", "sig"}``
    (base64), checked by :func:`verify_payload` against a cart's :class:`Trust`."""
    from cryptography.hazmat.primitives.asymmetric import ec

    key = load_private_key(private_key, passphrase)
    sig = key.sign(_pae(payload, payload_type), ec.ECDSA(_hash_for(key.public_key())))
    return {"keyid": key_id(key.public_key()), "sig": base64.b64encode(sig).decode()}


def verify_payload(payload: bytes, signature: dict[str, Any], trust: Trust,
                   payload_type: str) -> str:  # fmt: skip
    """The key id that signed ``payload`` (see :func:`sign_payload`).

    Raises:
        BundleError: not signed by a trusted, unrevoked key, or a signature that does not verify.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec

    kid = str(signature.get("keyid", ""))
    if kid in trust.revoked or kid not in trust.keys:
        raise BundleError(f"signed by key {kid[:16] or '(none)'}, which is not trusted here "
                          f"(trusted: {trust.names()})")  # fmt: skip
    key = trust.keys[kid]
    try:
        sig = base64.b64decode(str(signature.get("sig", "")), validate=True)
        key.verify(sig, _pae(payload, payload_type), ec.ECDSA(_hash_for(key)))
    except (InvalidSignature, ValueError):
        raise BundleError("the signature does not verify: the record was altered") from None
    return kid


def sign_bundle(
    root: str | os.PathLike[str], private_key: str | os.PathLike[str], passphrase: str | None = None
) -> str:
    """Sign every file of the bundle at ``root`` into ``root/model.sig``; returns the key id.

    Only ``model.sig`` is written (atomically); no other byte of the bundle changes. A bundle
    signed before is signed again (rotation).
    """
    from cryptography.hazmat.primitives.asymmetric import ec

    folder = Path(root)
    key = load_private_key(private_key, passphrase)
    payload = json.dumps(_statement(folder, _files(folder)), indent=2).encode()
    sig = key.sign(_pae(payload), ec.ECDSA(_hash_for(key.public_key())))
    kid = key_id(key.public_key())
    envelope = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": kid}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(sig).decode(), "keyid": ""}],
        },
    }
    tmp = folder / f".{SIGNATURE_FILE}.tmp"
    tmp.write_text(json.dumps(envelope, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, folder / SIGNATURE_FILE)
    return kid


# ------------------------------------------------------------------ trust on the cart
@dataclass(frozen=True)
class Trust:
    """The keys a cart accepts bundles from (several: rotation) and the key ids it no longer
    accepts (revoked), however they are otherwise listed."""

    keys: dict[str, Any] = field(default_factory=dict)  # key id -> public key
    revoked: frozenset[str] = frozenset()

    @classmethod
    def load(
        cls, paths: list[str | os.PathLike[str]], revoked: list[str] | tuple[str, ...] = ()
    ) -> Trust:
        """Public keys from files and folders (every ``*.pub`` and ``*.pem`` in a folder).

        Raises:
            ConfigError: a path is missing or not a key; no key at all.
        """
        keys: dict[str, Any] = {}
        for raw in paths:
            p = Path(raw)
            if p.is_dir():
                found = sorted([*p.glob("*.pub"), *p.glob("*.pem")])
                if not found:
                    raise ConfigError(f"trust folder {p} holds no *.pub or *.pem key")
            elif p.is_file():
                found = [p]
            else:
                raise ConfigError(f"trusted key {p} does not exist")
            for f in found:
                key = load_public_key(f)
                keys[key_id(key)] = key
        bad = [r for r in revoked if len(r) != 64 or not all(c in "0123456789abcdef" for c in r)]
        if bad:
            raise ConfigError(f"revoked key id(s) {', '.join(bad)} are not 64 hex digits")
        if not keys:
            raise ConfigError("no trusted key given")
        return cls(keys, frozenset(revoked))

    def names(self) -> str:
        """The trusted key ids, short, for messages."""
        return ", ".join(k[:16] for k in sorted(self.keys)) or "none"


def verify_signature(
    root: str | os.PathLike[str],
    trust: Trust,
    digests: dict[str, str] | None = None,
    *,
    hint: str = "only bundles signed by a trusted key run here: sign with "
    "`edgevcf sign BUNDLE --key`",
) -> str:
    """Check ``root/model.sig`` against ``trust`` and the files on disk; the signer's key id.

    ``digests``, when given, receives the SHA-256 of every file as hashed here (so the caller's
    own checks need not read the files again).

    Raises:
        BundleError: unsigned; the signature file unreadable; signed by a key not trusted or
            revoked; a signature that does not verify; or files that differ from what was signed
            (each message says which).
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec

    folder = Path(root)
    sig_path = folder / SIGNATURE_FILE
    if not sig_path.is_file():
        raise BundleError(f"bundle {folder} is not signed (no {SIGNATURE_FILE})", hint=hint)
    try:
        doc = json.loads(sig_path.read_text(encoding="utf-8"))
        if doc.get("mediaType") != BUNDLE_MEDIA_TYPE:
            raise ValueError(f"media type {doc.get('mediaType')!r}")
        env = doc["dsseEnvelope"]
        payload = base64.b64decode(env["payload"], validate=True)
        sig = base64.b64decode(env["signatures"][0]["sig"], validate=True)
        if env.get("payloadType") != PAYLOAD_TYPE:
            raise ValueError(f"payload type {env.get('payloadType')!r}")
        claimed = str(doc.get("verificationMaterial", {}).get("publicKey", {}).get("hint") or "")
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise BundleError(
            f"{sig_path} is damaged or not a model-signing signature ({exc})", hint=hint
        ) from None
    if claimed in trust.revoked:
        raise BundleError(f"bundle {folder} is signed by revoked key {claimed[:16]}", hint=hint)
    candidates = [claimed] if claimed in trust.keys else ([] if claimed else list(trust.keys))
    if not candidates:
        raise BundleError(
            f"bundle {folder} is signed by key {claimed[:16]}, which is not trusted here "
            f"(trusted: {trust.names()})",
            hint=hint,
        )
    signer = ""
    for kid in candidates:
        key = trust.keys[kid]
        try:
            key.verify(sig, _pae(payload), ec.ECDSA(_hash_for(key)))
        except InvalidSignature:
            continue
        signer = kid
        break
    if not signer:
        raise BundleError(
            f"the signature of bundle {folder} does not verify: {SIGNATURE_FILE} was altered or "
            "made for other content",
            hint=hint,
        )
    if signer in trust.revoked:
        raise BundleError(f"bundle {folder} is signed by revoked key {signer[:16]}", hint=hint)
    present = _check_signed_files(folder, payload)
    if digests is not None:
        digests.update(present)
    return signer


def _check_signed_files(folder: Path, payload: bytes) -> dict[str, str]:
    try:
        stmt = json.loads(payload)
        if stmt["_type"] != STATEMENT_TYPE or stmt["predicateType"] != PREDICATE_TYPE:
            raise ValueError("not a model-signing v1.0 statement")
        resources = stmt["predicate"]["resources"]
        if any(r["algorithm"] != "sha256" for r in resources):
            raise ValueError("a resource is not hashed with sha256")
        signed = {str(r["name"]): str(r["digest"]) for r in resources}
        # the subject digest is over the digests in the order listed (model-signing's rule)
        digest = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in resources)).hexdigest()
        if digest != stmt["subject"][0]["digest"]["sha256"]:
            raise ValueError("its subject digest does not match its resources")
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise BundleError(f"the signed statement of bundle {folder} is invalid ({exc})") from None
    present = _files(folder)
    problems = [f"{n} not signed" for n in sorted(set(present) - set(signed))]
    problems += [f"{n} signed but missing" for n in sorted(set(signed) - set(present))]
    problems += [f"{n} differs from what was signed" for n in sorted(set(signed) & set(present))
                 if signed[n] != present[n]]  # fmt: skip
    if problems:
        raise BundleError(
            f"bundle {folder} is not what was signed: " + "; ".join(problems[:6]),
            hint="the bundle was altered after signing: copy the signed bundle again",
        )
    return present


def signer_hint(root: str | os.PathLike[str]) -> str | None:
    """The key id a signature *claims* (unverified: for messages only), or None if unsigned."""
    try:
        doc = json.loads((Path(root) / SIGNATURE_FILE).read_text(encoding="utf-8"))
        return str(doc["verificationMaterial"]["publicKey"]["hint"]) or None
    except (OSError, ValueError, KeyError, TypeError):
        return None


__all__ = [
    "DEVICE_DIR", "SIGNATURE_FILE", "Trust", "key_id", "load_private_key", "load_public_key",
    "new_key", "sign_bundle", "signer_hint", "verify_signature",
]  # fmt: skip
