"""Bring your own network, the torch ways in (issue 26): TorchScript, a ``torch.export``
program, a zoo backbone with a replaced head and a one-channel stem, and a timm backbone — each
imported with its declaration, checked, exported to a target and verified, the bundle carrying
the reference's provenance. Together with the ONNX way in (test_import_model.py) each target is
reached once: TorchScript -> jetson, .pt2 -> mobile (with its .tflite), changed head ->
openvino, timm -> onnx-cpu.

The foreign networks are the tiny *trained* network of ``tests/conftest.py`` written the way
other tools write them (:mod:`edgevcf.testing.foreign`), and a timm backbone trained here
briefly (``train --arch timm:NAME``): gates are measured on networks that have learned.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgevcf import deps
from edgevcf.cli import cli

pytestmark = pytest.mark.skipif(
    bool(deps.missing("torch", "onnx", "onnxruntime")), reason="needs torch, onnx, onnxruntime"
)


@pytest.fixture(scope="module")
def trained(tiny_export: Any) -> tuple[Any, Any]:
    from edgevcf.models import load_checkpoint

    return load_checkpoint(tiny_export.checkpoint)


def _import(src: Path, out: Path, *args: str) -> str:
    run = CliRunner().invoke(cli, ["import-model", str(src), *args, "--out", str(out)])
    assert run.exit_code == 0, run.output
    assert "matches the original to" in run.output
    return run.output


def _export(ref: Path, target: str, profile: Any, manifest: Path, out: Path) -> Any:
    from edgevcf.bundle import Bundle
    from edgevcf.export import export_bundle
    from edgevcf.targets import get_target

    prof = profile(target)
    res = export_bundle(get_target(prof.target), ref, prof, manifest, out)
    bundle = Bundle.load(out)
    run = CliRunner().invoke(cli, ["verify", str(out)])
    assert run.exit_code == 0, run.output
    assert bundle.threshold != 0.5  # tuned on val (at import or at export), never from nowhere
    return res, bundle


def test_torchscript_nhwc_two_logits_reaches_jetson(
    trained: Any, tiny_export: Any, tmp_path: Path, profile_for: Any
) -> None:
    from edgevcf.hashing import sha256_file
    from edgevcf.testing.foreign import torchscript

    model, meta = trained
    src, _ = torchscript(model, meta.preprocess, tmp_path / "net.pt")
    ref = tmp_path / "ref.pt"
    out = _import(src, ref, "--check", str(tiny_export.manifest))  # net.toml read beside it
    assert "Reference on val" in out
    res, bundle = _export(ref, "jetson", profile_for, tiny_export.manifest, tmp_path / "b")
    m = bundle.manifest
    assert m["checkpoint"]["imported_from"]["sha256"] == sha256_file(src)
    assert m["metrics"]["reference"] == "PyTorch FP32 (an imported TorchScript program)"
    assert res.fp32_auc == pytest.approx(_zoo_auc(tiny_export), abs=1e-3)  # the same network


def _zoo_auc(tiny_export: Any) -> float:
    """The original checkpoint's AUC on val (what a faithful import must reproduce)."""
    from edgevcf import metrics
    from edgevcf.data.manifest import Manifest
    from edgevcf.dataset import load_split
    from edgevcf.models import load_checkpoint, predict

    model, meta = load_checkpoint(tiny_export.checkpoint)
    val = load_split(Manifest.load(tiny_export.manifest), "val", meta.preprocess)
    return float(metrics.auc(val.labels, predict(model, val.units, meta.preprocess)))


def test_an_exported_program_reaches_mobile_with_its_tflite(
    trained: Any, tiny_export: Any, tmp_path: Path, profile_for: Any
) -> None:
    if deps.missing("litert", "litert_torch"):
        pytest.skip("needs ai-edge-litert and litert-torch")
    from edgevcf.testing.foreign import exported_program

    model, meta = trained
    src, _ = exported_program(model, meta.preprocess, tmp_path / "net.pt2", output="logit")
    ref = tmp_path / "ref.pt2"
    _import(src, ref)
    res, bundle = _export(ref, "mobile", profile_for, tiny_export.manifest, tmp_path / "b")
    files = {a.file for a in bundle.artifacts.values()}
    assert any(f.endswith(".tflite") for f in files), (files, res.notes)
    assert "tuned at export" in bundle.manifest["threshold"]["method"]
    # a probability output (batch fixed at 1, torch.export's default) imports exactly too; its
    # LOG ops keep the .tflite out (said in the notes), the ONNX files are built
    prob, _ = exported_program(model, meta.preprocess, tmp_path / "p.pt2")
    _import(prob, tmp_path / "refp.pt2")
    from edgevcf.intake.reference import load_reference

    _, pmeta, _ = load_reference(tmp_path / "refp.pt2")
    assert pmeta.structure["batch"] == 1 and pmeta.structure["output"] == "probability"


def test_a_changed_head_and_grey_stem_reach_openvino(
    trained: Any, tiny_export: Any, tmp_path: Path, profile_for: Any
) -> None:
    if deps.missing("openvino", "nncf"):
        pytest.skip("needs openvino and nncf")
    from edgevcf.testing.foreign import changed_head_state_dict

    model, meta = trained
    src, toml = changed_head_state_dict(model, meta.preprocess, "classifier", tmp_path / "w.pth")
    ref = tmp_path / "ref.safetensors"
    _import(src, ref, "--arch", "mobilenet_v3_small", "--spec", str(toml))
    from edgevcf.models import load_checkpoint

    net, rmeta = load_checkpoint(ref)
    assert rmeta.preprocess.channels == 1 and net.features[0][0].in_channels == 1
    assert len(net.classifier) == 6 and net.classifier[5].out_features == 1
    res, bundle = _export(ref, "openvino", profile_for, tiny_export.manifest, tmp_path / "b")
    assert bundle.manifest["input"]["shape"][1] == 1
    # the network computes what the zoo one did, up to the stem's border: the same AUC nearly
    assert res.fp32_auc == pytest.approx(_zoo_auc(tiny_export), abs=0.05)


def test_a_timm_backbone_trains_and_its_state_dict_reaches_onnx_cpu(
    tiny_export: Any, tmp_path: Path, profile_for: Any
) -> None:
    if not deps.available("timm"):
        pytest.skip(deps.DEPENDENCIES["timm"].hint)
    import torch

    from edgevcf.models import load_checkpoint

    arch = "timm:mobilenetv3_small_050"
    run = CliRunner().invoke(cli, ["train", "--arch", arch, "--data", str(tiny_export.manifest),
                                   "--epochs", "2", "--input-size", "64", "--out",
                                   str(tmp_path / "run")])  # fmt: skip
    assert run.exit_code == 0, run.output
    net, _ = load_checkpoint(tmp_path / "run" / "model.safetensors")
    torch.save({"state_dict": net.state_dict()}, tmp_path / "timm.pth")  # as a timm user saves
    (tmp_path / "timm.toml").write_text("[input]\nsize = 64\n")
    ref = tmp_path / "ref.safetensors"
    _import(tmp_path / "timm.pth", ref, "--arch", arch, "--check", str(tiny_export.manifest))
    _, bundle = _export(ref, "onnx-cpu", profile_for, tiny_export.manifest, tmp_path / "b")
    assert bundle.manifest["checkpoint"]["arch"] == arch
    man = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert man["preprocess"]["input_size"] == 64


def test_torch_declarations_are_refused_before_any_work(trained: Any, tmp_path: Path) -> None:
    from edgevcf.testing.foreign import changed_head_state_dict, torchscript

    model, meta = trained
    src, toml = torchscript(model, meta.preprocess, tmp_path / "net.pt")
    ref = tmp_path / "ref.pt"
    for old, new, words in (
        ('"NHWC"', '"NCHW"', "does not take a NCHW input"),
        ('"two_logits"', '"logit"', "returns 2 value(s) per image"),
        ('"two_logits"', '"softmax"', "do not sum to 1"),
    ):
        toml.write_text(toml.read_text().replace(old, new))
        run = CliRunner().invoke(cli, ["import-model", str(src), "--out", str(ref)])
        toml.write_text(toml.read_text().replace(new, old))
        assert run.exit_code != 0 and words in run.output, run.output
        assert "Traceback" not in run.output and not ref.exists()
    w, _ = changed_head_state_dict(model, meta.preprocess, "classifier", tmp_path / "w.pth")
    (tmp_path / "w.toml").unlink()  # the head not declared: the weights do not fit the zoo's
    run = CliRunner().invoke(cli, ["import-model", str(w), "--arch", "mobilenet_v3_small",
                                   "--out", str(tmp_path / "r.safetensors")])  # fmt: skip
    assert run.exit_code != 0 and "[head]" in run.output and "Traceback" not in run.output
    run = CliRunner().invoke(cli, ["import-model", str(w), "--out", str(tmp_path / "r.pt")])
    assert run.exit_code != 0 and "needs --arch" in run.output
