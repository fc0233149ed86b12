"""``edgevcf serve`` on the command line: help, clean errors for a user's mistakes (no traceback),
a full run as a cart would start it (SIGTERM stops it cleanly), and no toolchain imported."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from peers import BIN, Pacs, echoscu, free_port, source_uid, storescu, wait_for


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "edgevcf"), *args], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def test_help_names_what_it_does() -> None:
    out = _cli("serve", "--help")
    assert out.returncode == 0
    for word in ("Storage SCP", "--allow", "--forward", "--config", "results.jsonl", "SIGTERM"):
        assert word in out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "[[allowed]] is empty"),
        (("--allow", "CART"), "is not AE@HOST"),
        (("--allow", "CART@127.0.0.1", "--forward", "PACS@host"), "needs a port"),
        (("--allow", "ABCDEFGHIJKLMNOPQ@127.0.0.1"), "is not an AE title"),
    ],
)
def test_user_mistakes_are_clean_errors(
    serve_bundle: Path, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    out = _cli("serve", str(serve_bundle), "--spool", str(tmp_path / "s"), *args)
    assert out.returncode == 3, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr


def test_unknown_config_key_and_missing_bundle(serve_bundle: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "serve.toml"
    cfg.write_text('[listen]\nae_titel = "X"\n[[allowed]]\nae_title = "A"\nhost = "h"\n')
    out = _cli("serve", str(serve_bundle), "--config", str(cfg))
    assert out.returncode == 3 and "ae_titel" in out.stderr and "Traceback" not in out.stderr
    out = _cli("serve", str(tmp_path / "nothing"), "--allow", "A@h")
    assert out.returncode != 0 and "Traceback" not in out.stderr


def test_a_cart_run_from_start_to_sigterm(
    serve_bundle: Path, films: list[Path], pacs: Pacs, tmp_path: Path
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "edgevcf"), "serve", str(serve_bundle), "--port", str(port),
         "--allow", "CART@127.0.0.1", "--forward", f"PACS@127.0.0.1:{pacs.port}",
         "--spool", str(tmp_path / "spool"), "--journal", str(tmp_path / "j.sqlite"),
         "--http-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: echoscu(port).returncode == 0, timeout=90, every=0.5)
        assert storescu(port, *films[:2]).returncode == 0
        wait_for(lambda: len(pacs.reports()) == 2)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"EDGEVCF on 127.0.0.1:{port}" in out and "results to: PACS@127.0.0.1" in out
    assert "stopped (2 film(s) received" in out
    assert "Traceback" not in err
    assert len({source_uid(r) for r in pacs.reports()}) == 2


def test_the_node_imports_no_toolchain(serve_bundle: Path, tmp_path: Path) -> None:
    """A cart has numpy, pydicom, pynetdicom and one engine: serving imports nothing else."""
    code = textwrap.dedent(
        f"""
        import sys
        for name in ("torch", "torchvision", "nncf", "litert_torch", "onnx", "scipy",
                     "matplotlib", "highdicom"):
            sys.modules[name] = None  # any import of these now fails
        from edgevcf.serve.config import parse_serve_config
        from edgevcf.serve.service import Service
        cfg = parse_serve_config({{
            "listen": {{"port": 0}}, "http": {{"port": 0}},
            "allowed": [{{"ae_title": "CART", "host": "127.0.0.1"}}],
            "storage": {{"spool": {str(tmp_path / "s")!r}, "journal": {str(tmp_path / "j")!r}}},
        }}, "t")
        svc = Service({str(serve_bundle)!r}, cfg)
        svc.start()
        svc.stop()
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")


def test_with_trust_only_a_signed_bundle_serves_and_its_sr_names_the_signer(
    serve_bundle: Path, films: list[Path], pacs: Pacs, tmp_path: Path
) -> None:
    import shutil

    import pydicom
    from peers import config, running

    from edgevcf.errors import BundleError
    from edgevcf.serve.service import Service
    from edgevcf.signing import new_key, sign_bundle

    _, pub, kid = new_key(tmp_path / "site")
    dest = [{"ae_title": "PACS", "host": "127.0.0.1", "port": pacs.port}]
    cfg = config(tmp_path, destinations=dest, trust={"keys": [str(pub)]})
    with pytest.raises(BundleError, match="not signed"):
        Service(serve_bundle, cfg).start()  # unsigned: refused before a port opens
    signed = tmp_path / "signed"
    shutil.copytree(serve_bundle, signed)
    sign_bundle(signed, tmp_path / "site")
    with running(signed, cfg) as svc:
        assert svc.status()["signer_key_id"] == kid
        assert storescu(svc.addresses.dicom[1], films[0]).returncode == 0
        wait_for(lambda: len(pacs.reports()) == 1)
    (sr,) = pacs.reports()
    texts = {i.ConceptNameCodeSequence[0].CodeMeaning: getattr(i, "TextValue", None)
             for i in sr.ContentSequence}  # fmt: skip
    assert texts["Signer key id"] == kid
    assert isinstance(sr, pydicom.Dataset)
