"""One contract every target meets, subclassed per target; plus each target's own checks.

Every target's bundle must: verify (checksums, schema), load its artefacts with the torch-free
backends, reproduce its golden vectors here, record the measured comparison with the FP32
reference and the calibration fingerprint, and be smaller than FP32 when quantized.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from edgevcf.backends import open_backend
from edgevcf.bundle import Bundle
from edgevcf.pipeline import ExportResult


class TargetContract:
    """Subclasses set ``profile`` (and ``precision``); the fixture exports once per class."""

    profile: ClassVar[str] = ""
    precision: ClassVar[str | None] = None

    @pytest.fixture
    def exported(self, export_bundle: Any) -> tuple[ExportResult, Bundle]:
        result: tuple[ExportResult, Bundle] = export_bundle(self.profile, self.precision)
        return result

    def test_bundle_verifies_and_describes_itself(self, exported: Any) -> None:
        _, bundle = exported
        m = bundle.manifest
        assert m["schema_version"] == 1
        assert m["backbone"] == "mobilenet_v3_small"
        assert m["input"]["shape"][1:] == [3, 64, 64]
        assert m["preprocess"]["input_size"] == 64
        assert m["classes"] == ["not_fresh", "fresh"]
        assert 0 < bundle.threshold < 1
        assert set(m["files"]) == {
            str(p.relative_to(bundle.path)) for p in bundle.path.rglob("*") if p.is_file()
        } - {"manifest.json"}
        assert m["metrics"]["parity"]["max_abs_logit_diff"] <= 1e-3
        assert not list(bundle.path.parent.glob(".*partial*")), "staging folder left behind"

    def test_every_artifact_reproduces_its_golden_vectors(self, exported: Any) -> None:
        _, bundle = exported
        golden = bundle.golden()
        assert len(golden.inputs) >= 4
        assert golden.inputs.shape[1:] == tuple(bundle.input.shape[1:])
        for name, art in bundle.artifacts.items():
            backend = open_backend(art.runtime, bundle.path / art.file, **art.options)
            got = backend.run_all(golden.inputs)
            np.testing.assert_allclose(got, golden.expected[name], atol=1e-4, rtol=0)

    def test_measured_against_fp32_on_the_tuning_split(self, exported: Any) -> None:
        res, bundle = exported
        m = bundle.manifest["metrics"]
        assert m["split"] == "val"
        assert m["reference"] == "PyTorch eager FP32"
        default = bundle.manifest["default_artifact"]
        art = m["artifacts"][default]
        assert 0 <= art["flips"]["flip_rate"]["value"] <= 1
        assert art["gate"]["max_auc_drop"] == 0.01
        if m["n_pos"] and m["n_pos"] < m["n"]:
            assert art["paired"]["ci_low"] <= art["paired"]["diff"] <= art["paired"]["ci_high"]
            assert isinstance(art["gate"]["passed"], bool)
        assert res.gate_passed == art["gate"]["passed"]

    def test_calibration_is_recorded_when_quantized(self, exported: Any) -> None:
        res, bundle = exported
        cal = bundle.manifest["calibration"]
        if bundle.manifest["precision"] != "int8":
            assert cal is None
            return
        assert cal["recipe"]["split"] == "train"
        assert cal["n_pos"] > 0 and cal["n_neg"] > 0
        assert len(cal["fingerprint"]) == 64
        assert res.size_bytes < 0.5 * res.fp32_size_bytes


@pytest.mark.requires_onnxruntime
class TestOnnxCpuFP32(TargetContract):
    profile = "onnx-cpu"

    def test_fp32_matches_pytorch(self, exported: Any) -> None:
        _, bundle = exported
        art = bundle.manifest["metrics"]["artifacts"]["model"]
        assert art["max_abs_prob_diff"] < 1e-4
        assert art["flips"]["flips"] == 0


@pytest.mark.requires_onnxruntime
class TestOnnxCpuINT8(TargetContract):
    profile = "onnx-cpu"
    precision = "int8"

    def test_computes_in_integers_here(self, exported: Any) -> None:
        _, bundle = exported
        census = bundle.manifest["target_facts"]["integer_check"]["model"]
        assert census["by_op"].get("QLinearConv", 0) > 0
        assert census["integer_ops"] > census["float_ops"]


@pytest.mark.requires_onnxruntime
class TestJetson(TargetContract):
    profile = "jetson"

    def test_qdq_follows_tensorrt_rules_and_plan_is_written(self, exported: Any) -> None:
        _, bundle = exported
        facts = bundle.manifest["target_facts"]
        assert facts["trt_qdq_validation"]["passed"]
        assert facts["trt_qdq_validation"]["conv_gemm_left_in_float"] == 0
        plan = json.loads((bundle.path / "build_plan.json").read_text())
        assert plan["strongly_typed"] and plan["onnx"] == "model.qdq.onnx"
        assert "--stronglyTyped" in (bundle.path / "trtexec.sh").read_text()
        from edgevcf.targets.jetson import validate_trt_qdq

        validate_trt_qdq(bundle.path / "model.qdq.onnx")  # re-validate what was shipped


@pytest.mark.requires_onnxruntime
class TestJetsonFP16(TargetContract):
    profile = "jetson-fp16"

    def test_plan_asks_for_fp16(self, exported: Any) -> None:
        _, bundle = exported
        plan = json.loads((bundle.path / "build_plan.json").read_text())
        assert plan["fp16"] and not plan["strongly_typed"]
        assert "--fp16" in plan["trtexec"]


@pytest.mark.requires_openvino
class TestOpenVINO(TargetContract):
    profile = "openvino"

    def test_ir_is_int8_and_precision_explicit(self, exported: Any) -> None:
        _, bundle = exported
        art = bundle.artifact()
        assert art.options["inference_precision"] == "f32"
        assert (bundle.path / "model.bin").is_file()
        census = bundle.manifest["target_facts"]["integer_check"]["model"]
        assert census["fake_quantize"] > 0 and census["integer_ops"] > 0
        assert bundle.manifest["target_facts"]["float_weights"]["mode"] == "int8"


@pytest.mark.requires_openvino
@pytest.mark.parametrize("mode", ["int8", "fp16"])
def test_float_weights_stored_compactly(tmp_path: Path, mode: str) -> None:
    """Weight-only storage of float convolutions: smaller .bin, outputs within rounding."""
    import openvino as ov
    import openvino.opset13 as ops

    from edgevcf.targets.openvino import compress_float_weights

    rng = np.random.default_rng(0)
    x = ops.parameter([1, 16, 8, 8], np.float32, name="x")
    w = rng.normal(0, 0.1, (32, 16, 3, 3)).astype(np.float32)
    conv = ops.convolution(x, ops.constant(w), [1, 1], [1, 1], [1, 1], [1, 1])
    model = ov.Model([conv], [x])
    inp = rng.normal(size=(1, 16, 8, 8)).astype(np.float32)
    core = ov.Core()
    ref = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(inp)[0]
    ov.save_model(model, str(tmp_path / "a.xml"), compress_to_fp16=False)
    done = compress_float_weights(model, mode)
    assert done == {"tensors": 1, "values": w.size}
    ov.save_model(model, str(tmp_path / "b.xml"), compress_to_fp16=False)
    got = core.compile_model(str(tmp_path / "b.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(
        inp
    )[0]
    ratio = (tmp_path / "b.bin").stat().st_size / (tmp_path / "a.bin").stat().st_size
    assert ratio < (0.3 if mode == "int8" else 0.55)
    # int8: error per weight <= scale / 2 = max|w| / 254, summed over 144 inputs of ~unit size
    bound = 144 * np.abs(w).max() / 254 if mode == "int8" else 144 * np.abs(w).max() * 2**-11
    assert np.abs(got - ref).max() < bound


@pytest.mark.requires_litert
@pytest.mark.requires_onnxruntime
class TestMobile(TargetContract):
    profile = "mobile"

    def test_three_files_all_integer(self, exported: Any) -> None:
        _, bundle = exported
        assert set(bundle.artifacts) == {"model", "ort", "tflite"}
        census = bundle.manifest["target_facts"]["integer_check"]
        assert census["model"]["integer_ops"] > 0
        assert census["model"]["by_op"]["Conv"]["float"] == 0
        assert census["tflite"]["integer_ops"] > 0
        assert census["tflite"]["float_ops"] == 0


def test_paths_are_relative_to_the_bundle(tmp_path: Path) -> None:
    """Guard for the contract above: the file list uses forward slashes and no folders."""
    from edgevcf.bundle import finalize_manifest

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.bin").write_bytes(b"1")
    m = finalize_manifest(tmp_path, {"target": "onnx"})
    assert list(m["files"]) == ["a/x.bin"]


@pytest.mark.requires_onnxruntime
def test_layer_groups_cover_every_quantizable_node(export_bundle: Any) -> None:
    import onnx

    from edgevcf.targets.mixed import layer_groups

    _, bundle = export_bundle("onnx-cpu")
    path = bundle.path / bundle.artifact().file
    groups = layer_groups(path)
    nodes = [n.name for n in onnx.load(str(path)).graph.node if n.op_type in ("Conv", "Gemm")]
    assert sorted(n for v in groups.values() for n in v) == sorted(nodes)
    assert 3 < len(groups) < len(nodes)  # blocks, not single layers


@pytest.mark.parametrize("prefix", ["", "/net", "/net/net"])
def test_layer_groups_see_through_an_import_wrapper(prefix: str, tmp_path: Path) -> None:
    """An imported network sits inside edgevcf's adapters (``/net/...``, ``/net/net/...``): its
    blocks are still the stages, never the whole backbone (a "block kept in float" that is the
    network would make an "INT8" bundle a float one); flat names are single nodes."""
    from onnx import TensorProto, helper

    from edgevcf.targets.mixed import layer_groups

    names = [f"{prefix}/features/{i}/block/{j}/Conv" for i in range(4) for j in range(2)]
    names.append(f"{prefix}/classifier/0/Gemm")
    nodes = [helper.make_node("Conv" if n.endswith("Conv") else "Gemm", ["x"], [f"y{k}"], name=n)
             for k, n in enumerate(names)]  # fmt: skip
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    ys = [helper.make_tensor_value_info(f"y{k}", TensorProto.FLOAT, [1]) for k in range(len(names))]
    import onnx

    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], ys)), str(tmp_path / "m.onnx"))
    groups = layer_groups(tmp_path / "m.onnx")
    assert sorted(groups) == sorted([f"{prefix}/features/{i}" for i in range(4)]
                                    + [f"{prefix}/classifier/0"])  # fmt: skip
    flat = [helper.make_node("Conv", ["x"], [f"y{k}"], name=f"/net/Conv_{k}") for k in range(3)]
    flat_model = helper.make_model(helper.make_graph(flat, "g", [x], ys[:3]))
    onnx.save(flat_model, str(tmp_path / "f.onnx"))
    assert sorted(layer_groups(tmp_path / "f.onnx")) == [f"/net/Conv_{k}" for k in range(3)]


@pytest.mark.requires_onnxruntime
def test_mixed_precision_fallback_restores_int8_when_nothing_passes(
    tiny_export: Any, profile_for: Any, only_blocks: Any, tmp_path: Path
) -> None:
    """A gate no quantized model can meet (no AUC loss, no flip allowed, CI lower bound > 0):
    the search ranks the blocks, tries the worst ones in float, records them, and ships the
    plain INT8 file, marked failed. (Only three blocks are left to search, for speed: blocks
    already excluded by the profile are not searched.)"""
    import dataclasses

    from edgevcf.export import export_bundle as run_export
    from edgevcf.targets import get_target

    keep, excluded = only_blocks(lambda groups: sorted(groups)[:3])
    prof = profile_for(
        "onnx-cpu", precision="int8", accuracy_fallback=True, excluded_layers=excluded
    )
    prof = dataclasses.replace(
        prof, tolerance=dataclasses.replace(prof.tolerance, max_auc_drop=0.0, max_flip_rate=0.0)
    )
    res = run_export(
        get_target("onnx"), tiny_export.checkpoint, prof, tiny_export.manifest, tmp_path / "b"
    )
    bundle = Bundle.load(tmp_path / "b")
    facts = bundle.manifest["target_facts"]["mixed_precision"]
    assert facts["float_blocks"] == []
    assert sorted(facts["rank_mae_logit"]) == keep
    ranked = sorted(keep, key=facts["rank_mae_logit"].__getitem__)
    assert [t["float_blocks"] for t in facts["tried"]] == [ranked[:1], ranked[:2], ranked[:3]]
    assert res.gate_passed is False
    assert any("did not make it pass" in n for n in bundle.manifest["notes"])
    assert bundle.manifest["target_facts"]["integer_check"]["model"]["integer_ops"] > 0


@pytest.mark.requires_onnxruntime
def test_mobile_fallback_skips_a_block_the_quantiser_cannot_keep_in_float(
    tiny_export: Any, profile_for: Any, only_blocks: Any, tmp_path: Path
) -> None:
    """ONNX Runtime's quantiser writes an invalid graph when the classifier's Gemm stays float
    with int8 asymmetric activations (seen in the demo: "Gemm_bias_dq" missing an input). The
    search must treat such a block as no candidate, not end the export."""
    import dataclasses

    from edgevcf.export import export_bundle as run_export
    from edgevcf.targets import get_target

    keep, excluded = only_blocks(
        lambda groups: {*(k for k in groups if k.startswith("classifier")), sorted(groups)[0]}
    )
    prof = profile_for("mobile-arm", accuracy_fallback=True, excluded_layers=excluded)
    prof = dataclasses.replace(
        prof,
        tolerance=dataclasses.replace(prof.tolerance, max_auc_drop=0.0, max_flip_rate=0.0),
        options={**prof.options, "tflite": False},
    )
    target = get_target("mobile")
    run_export(target, tiny_export.checkpoint, prof, tiny_export.manifest, tmp_path / "b")
    facts = Bundle.load(tmp_path / "b").manifest["target_facts"]["mixed_precision"]
    assert set(facts["rank_mae_logit"]) | set(facts["unusable"]) == set(keep)
    assert all(reason for reason in facts["unusable"].values())
