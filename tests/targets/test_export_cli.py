"""`edgevcf export` from the command line: the happy path and every refused input, each with
its own exit code and a message a user can act on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from edgevcf import deps
from edgevcf.bundle import Bundle
from edgevcf.cli import cli
from edgevcf.data.manifest import Manifest, Study

pytestmark = pytest.mark.requires_onnxruntime


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["--quiet", *args], catch_exceptions=False)


def _export(tiny: Any, out: Path, *extra: str, target: str = "onnx-cpu") -> Result:
    return _run(
        "export",
        "--target",
        target,
        "--checkpoint",
        str(tiny.checkpoint),
        "--calib",
        str(tiny.manifest),
        "--out",
        str(out),
        *extra,
    )


def test_several_targets_json(tiny_export: Any, tmp_path: Path) -> None:
    ov = tmp_path / "ov-quick.toml"  # no accuracy-control fallback: minutes on a weak model
    ov.write_text('target = "openvino"\n[quantize]\naccuracy_fallback = false\n')
    res = _export(tiny_export, tmp_path / "b", "--json", target=f"onnx,jetson,{ov}")
    assert res.exit_code in (0, 4), res.output  # 4: the tiny model may miss the gate
    rows = json.loads(res.stdout)  # stdout is JSON only: toolchain prints are kept off it
    assert [r["profile"] for r in rows] == ["onnx-cpu", "jetson-orin-nano", "ov-quick"]
    for r in rows:
        Bundle.load(r["bundle"])
    assert rows[1]["size_bytes"] < 0.5 * rows[1]["fp32_onnx_bytes"]


def test_unknown_target_lists_valid(tiny_export: Any, tmp_path: Path) -> None:
    res = _export(tiny_export, tmp_path / "b", target="coral")
    assert res.exit_code == 3
    assert "unknown target 'coral'" in res.output and "jetson" in res.output


def test_missing_backend_has_hint_and_own_exit_code(
    tiny_export: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = deps.available
    monkeypatch.setattr(deps, "available", lambda name: name != "openvino" and real(name))
    res = _export(tiny_export, tmp_path / "b", target="onnx-cpu,openvino")
    assert res.exit_code == 6
    assert "openvino is not installed" in res.output and "edgevcf[openvino]" in res.output
    assert not (tmp_path / "b").exists(), "nothing exported before the missing backend is found"


def test_existing_output_needs_force(tiny_export: Any, tmp_path: Path) -> None:
    out = tmp_path / "b"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    res = _export(tiny_export, out)
    assert res.exit_code == 3 and "--force" in res.output
    assert (out / "keep.txt").read_text() == "mine"
    res = _export(tiny_export, out, "--force")
    assert res.exit_code in (0, 4), res.output
    Bundle.load(out)


def test_corrupt_checkpoint(tiny_export: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(tiny_export.checkpoint.read_bytes()[:5000])
    res = _run(
        "export", "--target", "onnx", "--checkpoint", str(bad),
        "--calib", str(tiny_export.manifest), "--out", str(tmp_path / "b"),
    )  # fmt: skip
    assert res.exit_code == 12, res.output
    assert not (tmp_path / "b").exists()


def test_corrupt_onnx(tiny_export: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 50)
    res = _export(tiny_export, tmp_path / "b", "--onnx", str(bad))
    assert res.exit_code == 8, res.output
    assert "not a valid ONNX model" in res.output
    assert not (tmp_path / "b").exists()
    assert not list(tmp_path.glob(".b.partial*")), "staging folder left behind"


def test_calibration_sharing_a_patient_with_test_is_refused(
    tiny_export: Any, tmp_path: Path
) -> None:
    m = Manifest.load(tiny_export.manifest)
    test_patient = next(s for s in m.studies if s.split == "test")
    train_img = next(s for s in m.studies if s.split == "train")
    leak = Study(train_img.path, test_patient.patient_id, train_img.label, "train")
    leaky = Manifest([leak if s is train_img else s for s in m.studies], m.root)
    path = leaky.save(tmp_path / "leaky.csv")
    res = _run(
        "export", "--target", "jetson", "--checkpoint", str(tiny_export.checkpoint),
        "--calib", str(path), "--out", str(tmp_path / "b"),
    )  # fmt: skip
    assert res.exit_code == 9, res.output
    assert "shares 1 patient" in res.output


def test_too_few_calibration_images(tiny_export: Any, tmp_path: Path) -> None:
    recipe = tmp_path / "big.toml"
    recipe.write_text("samples = 5000\nmin_samples = 5000\n")
    prof = tmp_path / "p.toml"
    prof.write_text(f'target = "jetson"\n[quantize]\ncalibration = "{recipe}"\n')
    res = _export(tiny_export, tmp_path / "b", target=str(prof))
    assert res.exit_code == 9, res.output
    assert "needs at least 5000" in res.output and "random" in res.output


def test_profile_with_unknown_key(tiny_export: Any, tmp_path: Path) -> None:
    prof = tmp_path / "p.toml"
    prof.write_text('target = "onnx"\n[bench]\nthread = 2\n')
    res = _export(tiny_export, tmp_path / "b", target=str(prof))
    assert res.exit_code == 3
    assert "thread" in res.output and "threads" in res.output


def test_targets_command() -> None:
    res = _run("targets", "--json")
    assert res.exit_code == 0
    rows = {r["profile"]: r for r in json.loads(res.stdout)}
    assert rows["onnx-cpu"]["exports_here"]
    assert "engine" in rows["jetson-orin-nano"]["runs_here"]


def test_sigterm_mid_export_leaves_nothing(tiny_export: Any, tmp_path: Path) -> None:
    """A stopped export (service manager, kill) removes its staging folder: no half bundle."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "b"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgevcf", "--quiet", "export", "--target", "jetson",
         "--checkpoint", str(tiny_export.checkpoint), "--calib", str(tiny_export.manifest),
         "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".b.partial-*")) and proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("export never started staging")
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("export finished before it could be interrupted")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_users_own_fp32_onnx_is_parity_checked(tiny_export: Any, tmp_path: Path) -> None:
    from edgevcf.models import load_checkpoint
    from edgevcf.onnx_export import export_onnx

    model, meta = load_checkpoint(tiny_export.checkpoint)
    mine = tmp_path / "mine.onnx"
    export_onnx(model, meta.preprocess, mine, opset=18, batch=1)
    res = _export(tiny_export, tmp_path / "b", "--onnx", str(mine), "--json")
    assert res.exit_code in (0, 4), res.output
    b = Bundle.load(tmp_path / "b")
    assert b.manifest["metrics"]["parity"]["max_abs_logit_diff"] <= 1e-3

    other = tmp_path / "other.onnx"  # a different network's graph: parity must fail
    torch_model, _ = load_checkpoint(tiny_export.checkpoint)
    import torch

    with torch.no_grad():
        for p in torch_model.parameters():
            p.mul_(0.5)
    export_onnx(torch_model, meta.preprocess, other, batch=1)
    res = _export(tiny_export, tmp_path / "c", "--onnx", str(other))
    assert res.exit_code == 8 and "differ from PyTorch" in res.output


def test_the_site_workflow_key_export_sign_trust(
    tiny_export: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """keys new (passphrase from the environment) -> export --sign -> verify --trust; a wrong
    passphrase fails before any export work."""
    if not deps.available("cryptography"):
        pytest.skip("needs cryptography: pip install 'edgevcf[signing]'")
    monkeypatch.setenv("SITE_PASS", "correct horse battery")
    res = _run("keys", "new", "--out", str(tmp_path / "site"), "--passphrase-env", "SITE_PASS")
    assert res.exit_code == 0, res.output
    kid = res.output.split("key id:")[1].split()[0]
    monkeypatch.setenv("WRONG_PASS", "nope")
    res = CliRunner().invoke(cli, [
        "export", "--target", "onnx-cpu", "--checkpoint", str(tiny_export.checkpoint),
        "--calib", str(tiny_export.manifest), "--out", str(tmp_path / "x"),
        "--sign", str(tmp_path / "site"), "--passphrase-env", "WRONG_PASS",
    ])  # fmt: skip
    assert res.exit_code == 3 and not (tmp_path / "x").exists(), res.output
    res = _export(tiny_export, tmp_path / "b", "--sign", str(tmp_path / "site"),
                  "--passphrase-env", "SITE_PASS")  # fmt: skip
    assert res.exit_code in (0, 4), res.output
    if res.exit_code == 4:  # a bundle that failed its gate is never signed
        assert not (tmp_path / "b" / "model.sig").exists()
        return
    assert f"signed with key {kid}" in res.output
    res = _run("verify", str(tmp_path / "b"), "--trust", str(tmp_path / "site.pub"))
    assert res.exit_code == 0 and f"signed by trusted key {kid}" in res.output
    _run("keys", "new", "--out", str(tmp_path / "other"))
    res = CliRunner().invoke(cli, ["verify", str(tmp_path / "b"), "--trust",
                                   str(tmp_path / "other.pub")])  # fmt: skip
    assert res.exit_code == 7 and "not trusted" in res.output
    res = _run("sign", str(tmp_path / "b"), "--key", str(tmp_path / "other"))  # re-signed
    assert res.exit_code == 0
    res = CliRunner().invoke(cli, ["verify", str(tmp_path / "b"), "--trust",
                                   str(tmp_path / "other.pub")])  # fmt: skip
    assert res.exit_code == 0, res.output
