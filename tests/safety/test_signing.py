"""Signed bundles: with a trust list, a cart runs only what the site's key released (issue 14).

Real crypto on real exported bundles: every way of passing off a bundle we could think of is
tried against ``Bundle.load``, ``Predictor.from_bundle`` and ``edgevcf verify --trust``, and
counted; genuine signed bundles load on every engine installed. OpenSSF's ``model_signing``
(the real package, a dev extra) verifies our signatures and we verify its.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_tamper import variants

from edgevcf import deps
from edgevcf.bundle import MANIFEST, Bundle, write_manifest
from edgevcf.cli import cli
from edgevcf.errors import BundleError, ConfigError
from edgevcf.runtime import Predictor
from edgevcf.signing import SIGNATURE_FILE, Trust, key_id, load_public_key, new_key, sign_bundle

pytestmark = [
    pytest.mark.requires_onnxruntime,
    pytest.mark.skipif(not deps.available("cryptography"), reason="needs cryptography"),
]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The site's key, a stranger's, and one on another curve (P-384)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    d = tmp_path_factory.mktemp("keys")
    out = {}
    for name in ("site", "stranger"):
        out[name], out[f"{name}.pub"], _ = new_key(d / name)
    k = ec.generate_private_key(ec.SECP384R1())
    (d / "p384").write_bytes(k.private_bytes(serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    (d / "p384.pub").write_bytes(k.public_key().public_bytes(serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    out["p384"], out["p384.pub"] = d / "p384", d / "p384.pub"
    k1 = ec.generate_private_key(ec.SECP256K1())
    (d / "k1.pub").write_bytes(k1.public_key().public_bytes(serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    out["k1.pub"] = d / "k1.pub"
    return out


def _signed_copy(bundle: Bundle, dest: Path, key: Path) -> Path:
    shutil.copytree(bundle.path, dest)
    sign_bundle(dest, key)
    return dest


def _refused(root: Path, trust: Trust, pub: list[Path], revoked: tuple[str, ...] = ()) -> list[str]:
    """Who accepted the bundle at ``root`` under ``trust`` (empty: all refused)."""
    accepted = []
    try:
        Bundle.load(root, trust=trust)
        accepted.append("Bundle.load")
    except BundleError:
        pass
    try:
        Predictor.from_bundle(root, trust=trust)
        accepted.append("Predictor.from_bundle")
    except BundleError:
        pass
    args = ["--quiet", "verify", str(root)]
    for p in pub:
        args += ["--trust", str(p)]
    for r in revoked:
        args += ["--revoked", r]
    res = CliRunner().invoke(cli, args)
    if res.exit_code != 7:
        accepted.append(f"edgevcf verify (exit {res.exit_code})")
    return accepted


def _threshold_attack(root: Path) -> None:
    """The attack of the issue: threshold 0.999, self-checksum recomputed, written as export."""
    m = json.loads((root / MANIFEST).read_text())
    m["threshold"]["value"] = 0.999
    for k in ("checksum",):
        m.pop(k, None)
    write_manifest(root, m)


def _edit_sig(fn: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        doc = json.loads((root / SIGNATURE_FILE).read_text())
        fn(doc)
        (root / SIGNATURE_FILE).write_text(json.dumps(doc, indent=2))

    return edit


def _flip_sig(doc: dict[str, Any]) -> None:
    sig = bytearray(base64.b64decode(doc["dsseEnvelope"]["signatures"][0]["sig"]))
    sig[len(sig) // 2] ^= 0x01
    doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()


def _edit_payload(doc: dict[str, Any]) -> None:
    stmt = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    stmt["predicate"]["resources"][0]["digest"] = "0" * 64
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()


def test_attacks_on_a_signed_bundle_are_all_refused(
    export_bundle: Any, keys: dict[str, Path], tmp_path: Path
) -> None:
    _, bundle = export_bundle("onnx-cpu")
    _, other = export_bundle("onnx-cpu", "int8")
    trust = Trust.load([keys["site.pub"]])
    site = key_id(load_public_key(keys["site.pub"]))
    genuine = _signed_copy(bundle, tmp_path / "genuine", keys["site"])
    other_signed = _signed_copy(other, tmp_path / "other", keys["site"])
    assert Bundle.load(genuine, trust=trust).signer_key_id == site
    assert _refused(genuine, trust, [keys["site.pub"]]) == [
        "Bundle.load",
        "Predictor.from_bundle",
        "edgevcf verify (exit 0)",
    ]  # the genuine bundle is accepted everywhere (no false refusal)

    def swap_file_and_resign(root: Path) -> None:
        name = next(n for n in Bundle.load(root).manifest["files"] if n.endswith(".onnx"))
        donor = next(n for n in Bundle.load(other_signed).manifest["files"] if n.endswith(".onnx"))
        (root / name).unlink()
        shutil.copy(other_signed / donor, root / name)
        m = json.loads((root / MANIFEST).read_text())
        m.pop("checksum", None)
        write_manifest(root, m)
        sign_bundle(root, keys["stranger"])

    cases: list[tuple[str, Callable[[Path], None]]] = [
        ("unsigned", lambda r: (r / SIGNATURE_FILE).unlink()),
        ("signed by another key", lambda r: sign_bundle(r, keys["stranger"])),
        ("signed by a key of another curve (P-384)", lambda r: sign_bundle(r, keys["p384"])),
        ("the right signature of another bundle",
         lambda r: shutil.copy(other_signed / SIGNATURE_FILE, r / SIGNATURE_FILE)),
        ("threshold 0.999, self-checksum recomputed (not re-signed)", _threshold_attack),
        ("threshold 0.999, re-signed by an untrusted key",
         lambda r: (_threshold_attack(r), sign_bundle(r, keys["stranger"]))),
        ("a model file swapped with another bundle's, manifest re-sealed and re-signed by an "
         "untrusted key", swap_file_and_resign),
        ("signature file truncated", lambda r: (r / SIGNATURE_FILE).write_bytes(
            (r / SIGNATURE_FILE).read_bytes()[:200])),
        ("signature file emptied", lambda r: (r / SIGNATURE_FILE).write_bytes(b"")),
        ("signature bit flipped", _edit_sig(_flip_sig)),
        ("signed statement edited (a digest)", _edit_sig(_edit_payload)),
        ("key hint removed, signature by a stranger",
         lambda r: (sign_bundle(r, keys["stranger"]), _edit_sig(
             lambda d: d["verificationMaterial"]["publicKey"].pop("hint"))(r))),
        ("key hint forged to the site's, signature by a stranger",
         lambda r: (sign_bundle(r, keys["stranger"]), _edit_sig(
             lambda d: d["verificationMaterial"]["publicKey"].__setitem__("hint", site))(r))),
        ("a file added after signing", lambda r: (r / "extra.txt").write_text("x")),
        ("signature moved into a sub-folder",
         lambda r: ((r / "sig").mkdir(), (r / SIGNATURE_FILE).rename(r / "sig" / SIGNATURE_FILE))),
    ]  # fmt: skip
    accepted = []
    for name, attack in cases:
        work = tmp_path / "work"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(genuine, work)
        attack(work)
        missed = _refused(work, trust, [keys["site.pub"]])
        if missed:
            accepted.append(f"{name}: accepted by {', '.join(missed)}")
    # a revoked key: the genuine bundle itself, with the site's key id revoked
    revoked = Trust.load([keys["site.pub"]], [site])
    if missed := _refused(genuine, revoked, [keys["site.pub"]], (site,)):
        accepted.append(f"revoked key: accepted by {', '.join(missed)}")
    assert not accepted, "\n".join(accepted)
    print(f"{len(cases) + 1} attacks tried, {len(cases) + 1} refused; genuine accepted")


def test_every_tamper_edit_is_refused_under_trust_too(
    export_bundle: Any, keys: dict[str, Path], tmp_path: Path
) -> None:
    """The byte-level edits of test_tamper, on a signed bundle (model.sig included). The one
    kind accepted by design: an edit of model.sig's JSON *layout* that keeps its content (the
    signed payload is inside it, base64; model-signing reads it the same way)."""
    _, bundle = export_bundle("onnx-cpu")
    genuine = _signed_copy(bundle, tmp_path / "genuine", keys["site"])
    trust = Trust.load([keys["site.pub"]])
    original = json.loads((genuine / SIGNATURE_FILE).read_text())
    work = tmp_path / "work"
    tried, refused, layout_only, accepted = 0, 0, 0, []
    for name, edit in variants(genuine):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(genuine, work)
        edit(work)
        tried += 1
        try:
            Bundle.load(work, trust=trust)
        except BundleError:
            refused += 1
            continue
        try:
            same = json.loads((work / SIGNATURE_FILE).read_text()) == original
        except (OSError, ValueError):
            same = False
        if name.startswith(SIGNATURE_FILE) and same:
            layout_only += 1
        else:
            accepted.append(name)
    assert not accepted, accepted
    assert tried >= 50 and refused + layout_only == tried
    print(f"{tried} edits: {refused} refused, {layout_only} layout-only edits of {SIGNATURE_FILE}")


@pytest.mark.parametrize(
    ("profile", "engine"),
    [("onnx-cpu", "onnxruntime"), ("openvino", "openvino"), ("mobile", "litert")],
)
def test_genuine_signed_bundles_load_and_name_their_signer(
    export_bundle: Any, keys: dict[str, Path], tmp_path: Path, profile: str, engine: str
) -> None:
    if not deps.available(engine):
        pytest.skip(f"needs {engine}")
    _, bundle = export_bundle(profile)
    signed = _signed_copy(bundle, tmp_path / "b", keys["site"])
    # rotation: the old key and the new one are both trusted
    trust = Trust.load([keys["stranger.pub"], keys["site.pub"]])
    pred = Predictor.from_bundle(signed, engine, trust=trust)
    p = pred.predict(bundle.golden().inputs[0, 0] * 0 + 0.5)
    assert p.signer_key_id == key_id(load_public_key(keys["site.pub"]))
    res = CliRunner().invoke(cli, ["verify", str(signed), "--trust", str(keys["site.pub"])])
    assert res.exit_code == 0, res.output
    assert "origin: signed by trusted key" in res.output
    res = CliRunner().invoke(cli, ["verify", str(signed)])
    assert res.exit_code == 0 and "origin: NOT checked" in res.output  # as before, said plainly


def test_signing_adds_one_file_and_changes_no_other_byte(
    export_bundle: Any, keys: dict[str, Path], tmp_path: Path
) -> None:
    _, bundle = export_bundle("onnx-cpu")
    work = tmp_path / "b"
    shutil.copytree(bundle.path, work)
    before = {p.name: p.read_bytes() for p in work.iterdir()}
    sign_bundle(work, keys["site"])
    first = (work / SIGNATURE_FILE).read_bytes()
    sign_bundle(work, keys["site"])  # re-signed: the same content, a new signature
    after = {p.name: p.read_bytes() for p in work.iterdir()}
    assert set(after) == set(before) | {SIGNATURE_FILE}
    assert all(after[n] == before[n] for n in before)
    assert json.loads(first)["dsseEnvelope"]["payload"] == json.loads(
        after[SIGNATURE_FILE])["dsseEnvelope"]["payload"]  # fmt: skip
    assert Bundle.load(work).id == bundle.id  # the model id does not change


def test_keys_and_trust_refuse_what_they_cannot_use(keys: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unsupported key"):
        Trust.load([keys["k1.pub"]])  # secp256k1: not a curve model-signing accepts
    with pytest.raises(ConfigError, match="not a readable PEM public key"):
        Trust.load([keys["site"]])  # a private key where a public one belongs
    with pytest.raises(ConfigError, match="64 hex"):
        Trust.load([keys["site.pub"]], ["abc"])
    with pytest.raises(ConfigError, match="never overwritten"):
        new_key(keys["site"])
    assert oct(keys["site"].stat().st_mode & 0o777) == "0o600"
    private, _, _ = new_key(tmp_path / "protected", passphrase="correct horse")
    with pytest.raises(ConfigError, match="passphrase"):
        sign_bundle(tmp_path, private)


# ------------------------------------------------------------------ OpenSSF model_signing
def _model_signing() -> Path:
    """OpenSSF's CLI: from `make install-dev`'s own venv (.venv-tools), or on PATH."""
    for tool in (ROOT / ".venv-tools" / "bin" / "model_signing", shutil.which("model_signing")):
        if tool and Path(tool).exists():
            return Path(tool)
    pytest.skip("needs OpenSSF model-signing: make install-dev (or pip install model-signing "
                "in a venv of its own)")  # fmt: skip


def test_model_signing_verifies_our_signature(
    export_bundle: Any, keys: dict[str, Path], tmp_path: Path
) -> None:
    tool = _model_signing()
    _, bundle = export_bundle("onnx-cpu")
    signed = _signed_copy(bundle, tmp_path / "b", keys["site"])
    (signed / "device").mkdir()  # what a device builds later is not the release's (ignore_paths)
    (signed / "device" / "model.engine").write_bytes(b"built on the cart")
    ok = subprocess.run([str(tool), "verify", "key", str(signed), "--signature",
                         str(signed / SIGNATURE_FILE), "--public_key", str(keys["site.pub"])],
                        capture_output=True, text=True, timeout=120)  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    wrong = subprocess.run([str(tool), "verify", "key", str(signed), "--signature",
                            str(signed / SIGNATURE_FILE), "--public_key",
                            str(keys["stranger.pub"])], capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    assert wrong.returncode != 0


def test_we_verify_a_bundle_signed_by_model_signing(
    export_bundle: Any, keys: dict[str, Path], tmp_path: Path
) -> None:
    tool = _model_signing()
    _, bundle = export_bundle("onnx-cpu")
    work = tmp_path / "b"
    shutil.copytree(bundle.path, work)
    res = subprocess.run([str(tool), "sign", "key", str(work), "--private_key", str(keys["site"]),
                          "--signature", str(work / SIGNATURE_FILE)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    trust = Trust.load([keys["site.pub"]])
    assert Bundle.load(work, trust=trust).signer_key_id == key_id(load_public_key(keys["site.pub"]))
    with pytest.raises(BundleError, match="not trusted"):
        Bundle.load(work, trust=Trust.load([keys["stranger.pub"]]))
    _threshold_attack(work)
    with pytest.raises(BundleError, match="not what was signed"):
        Bundle.load(work, trust=trust)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_re_export_with_the_same_inputs_signs_the_same_content(
    tiny_export: Any, profile_for: Any, keys: dict[str, Path], tmp_path: Path, precision: str
) -> None:
    """Same checkpoint, profile and data: every file of the bundle byte-identical, so the two
    signatures sign the same statement (a re-export needs no new review)."""
    from edgevcf.export import export_bundle as run_export
    from edgevcf.targets import get_target

    prof = profile_for("onnx-cpu", precision=precision)
    for name in ("a", "b"):
        run_export(get_target(prof.target), tiny_export.checkpoint, prof, tiny_export.manifest,
                                       tmp_path / name)  # fmt: skip
        sign_bundle(tmp_path / name, keys["site"])
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    a, b = tmp_path / "a", tmp_path / "b"
    differ = [
        f for f in files if f != SIGNATURE_FILE and (a / f).read_bytes() != (b / f).read_bytes()
    ]
    assert differ == []

    def payload(n: str) -> str:
        return json.loads((tmp_path / n / SIGNATURE_FILE).read_text())["dsseEnvelope"]["payload"]

    statement = json.loads(base64.b64decode(payload("a")))
    statement_b = json.loads(base64.b64decode(payload("b")))
    assert statement["predicate"] == statement_b["predicate"]  # subject name is the folder's
