"""``--precision auto`` and the fallbacks that answer whichever gate criterion failed, on the tiny
trained model (plumbing and selection rules, never its accuracy)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgevcf.backends import open_backend
from edgevcf.bundle import Bundle


def _wide(prof: Any) -> Any:
    """A tolerance the tiny model's 20-odd tuning films can meet, so that selection among
    passing candidates is what is tested (the default margins need a real tuning split)."""
    tol = dataclasses.replace(
        prof.tolerance,
        max_auc_drop=0.45,
        max_flip_rate=0.9,
        max_sensitivity_drop=0.95,
        max_specificity_drop=0.95,
    )
    return dataclasses.replace(prof, tolerance=tol)


@pytest.mark.requires_openvino
def test_auto_keeps_the_fastest_candidate_that_passes_and_records_all(
    tiny_export: Any, profile_for: Any, tmp_path: Path
) -> None:
    from edgevcf.export import export_bundle as run_export
    from edgevcf.targets import get_target
    from edgevcf.targets.openvino import cpu_capabilities

    prof = _wide(profile_for("openvino-auto"))
    res = run_export(
        get_target("openvino"), tiny_export.checkpoint, prof, tiny_export.manifest, tmp_path / "b"
    )
    bundle = Bundle.load(tmp_path / "b")
    rec = bundle.manifest["target_facts"]["precision_search"]
    caps = cpu_capabilities()
    by = {c["precision"]: c for c in rec["candidates"]}
    assert list(by) == ["int8", "bf16", "fp16", "fp32"]  # every candidate, in expected order
    for prec, need in (("bf16", "BF16"), ("fp16", "FP16")):
        if need not in caps:  # refused with the reason, never silently
            assert by[prec]["status"] == "skipped" and need in by[prec]["why"]
    tried = [c for c in by.values() if c["status"] in ("pass", "fail")]
    assert {"int8", "fp32"} <= {c["precision"] for c in tried}
    for c in tried:
        lat = c["latency_ms"]
        assert lat["n"] == 5 * 40 and len(lat["round_medians_ms"]) == 5
        assert "delta_auc" in c["gate"] and "delta_sensitivity" in c["gate"]
        assert c["gate"]["passed"] is (c["status"] == "pass")
    passing = [c for c in tried if c["status"] == "pass"]
    assert passing, "the wide tolerance lets the candidates pass"
    fastest = min(passing, key=lambda c: c["latency_ms"]["median_ms"])
    assert rec["winner"] == fastest["precision"] == bundle.manifest["precision"]
    assert res.precision == rec["winner"] and res.gate_passed
    assert rec["winner"] in rec["why"] and rec["machine"]
    assert bundle.manifest["profile"]["quantize"]["precision"] == rec["winner"]
    # the winner's files are the bundle's, and it reproduces its golden vectors
    golden = bundle.golden()
    for name, art in bundle.artifacts.items():
        got = open_backend(art.runtime, bundle.path / art.file, **art.options).run_all(
            golden.inputs
        )
        np.testing.assert_allclose(got, golden.expected[name], atol=1e-4, rtol=0)
    if rec["winner"] == "bf16":
        assert bundle.artifact().options["inference_precision"] == "bf16"


@pytest.mark.requires_onnxruntime
def test_auto_with_nothing_passing_keeps_fp32_and_fails_loudly(
    tiny_export: Any, profile_for: Any, tmp_path: Path
) -> None:
    """Default margins on the tiny tuning split: no candidate can show non-inferiority (too
    few films), so the most precise one is kept, the gate fails and the record says why."""
    from edgevcf.export import export_bundle as run_export
    from edgevcf.targets import get_target

    prof = profile_for("onnx-cpu", precision="auto")
    res = run_export(
        get_target("onnx"), tiny_export.checkpoint, prof, tiny_export.manifest, tmp_path / "b"
    )
    rec = Bundle.load(tmp_path / "b").manifest["target_facts"]["precision_search"]
    assert [c["precision"] for c in rec["candidates"]] == ["int8", "fp32"]
    if all(c["status"] == "fail" for c in rec["candidates"]):
        assert rec["winner"] == "fp32" and res.gate_passed is False
        assert rec["why"].startswith("no candidate passes")
    else:  # a tuning split that happens to show it: then the rule above holds instead
        assert res.gate_passed


def test_auto_is_refused_for_the_jetson() -> None:
    from edgevcf.errors import ConfigError
    from edgevcf.profiles import load_profile

    with pytest.raises(ConfigError, match="Jetson"):
        load_profile("jetson").with_overrides(precision="auto")
    with pytest.raises(ConfigError, match="openvino"):
        load_profile("onnx-cpu").with_overrides(precision="bf16")


@pytest.mark.requires_openvino
def test_openvino_fallback_answers_a_failed_operating_point_with_float_blocks(
    tiny_export: Any, profile_for: Any, only_blocks: Any, tmp_path: Path
) -> None:
    """INT8 failing the gate for any reason (here every criterion is out of reach) runs the
    ranked float-block search through NNCF's ignored scopes, records what it answered, and
    ships the plain INT8 IR when nothing passes (three blocks searched, for speed)."""
    from edgevcf.export import export_bundle as run_export
    from edgevcf.targets import get_target

    keep, excluded = only_blocks(lambda groups: sorted(groups)[:3])
    prof = profile_for("openvino", accuracy_fallback=True, excluded_layers=excluded)
    prof = dataclasses.replace(
        prof,
        tolerance=dataclasses.replace(
            prof.tolerance, max_auc_drop=0.0, max_flip_rate=0.0, max_sensitivity_drop=0.0
        ),
    )
    res = run_export(
        get_target("openvino"), tiny_export.checkpoint, prof, tiny_export.manifest, tmp_path / "b"
    )
    m = Bundle.load(tmp_path / "b").manifest
    facts = m["target_facts"]["mixed_precision"]
    assert facts["answered"] and "sensitivity" in facts["answered"]
    assert sorted(facts["rank_mae_logit"]) == keep, facts["unusable"]
    assert facts["tried"][0]["float_blocks"] == [min(keep, key=facts["rank_mae_logit"].__getitem__)]
    assert res.gate_passed is False
    assert m["target_facts"]["integer_check"]["model"]["fake_quantize"] > 0
    # the float blocks really were float in the tried IRs: NNCF's ignored scope matched them
    assert "ignored" not in m["target_facts"]["nncf"]  # the shipped IR is the plain one


@pytest.mark.requires_openvino
@pytest.mark.requires_torch
def test_quantisation_aware_training_ships_a_fake_quantised_ir(
    tiny_export: Any, profile_for: Any, tmp_path: Path
) -> None:
    """QAT (here from the start, one epoch): NNCF fake quantisers fine-tuned on the training
    split, converted to an INT8 IR that computes in integers here, measured on the tuning split
    and reproducing its golden vectors like any other bundle."""
    from edgevcf.export import export_bundle as run_export
    from edgevcf.targets import get_target

    prof = profile_for("openvino-qat", qat_epochs=1)
    res = run_export(
        get_target("openvino"), tiny_export.checkpoint, prof, tiny_export.manifest, tmp_path / "b"
    )
    bundle = Bundle.load(tmp_path / "b")
    facts = bundle.manifest["target_facts"]
    assert facts["qat"]["epochs"] == 1 and facts["qat"]["train_images"] > 0
    assert "quantisation-aware training" in facts["nncf"]
    census = facts["integer_check"]["model"]
    assert census["fake_quantize"] > 0 and census["integer_ops"] > census["float_ops"]
    assert any("quantisation-aware training" in n for n in bundle.manifest["notes"])
    assert res.precision == "int8" and isinstance(res.gate_passed, bool)
    golden = bundle.golden()
    art = bundle.artifact()
    got = open_backend(art.runtime, bundle.path / art.file, **art.options).run_all(golden.inputs)
    np.testing.assert_allclose(got, golden.expected[art.name], atol=1e-4, rtol=0)
    import openvino as ov

    shape = ov.Core().read_model(str(bundle.path / art.file)).input(0).get_partial_shape()
    assert shape[0].is_dynamic
    assert [d.get_length() for d in list(shape)[1:]] == list(golden.inputs.shape[1:])


def test_qat_settings_are_checked() -> None:
    from edgevcf.errors import ConfigError
    from edgevcf.profiles import parse_profile

    with pytest.raises(ConfigError, match="qat_epochs >= 1"):
        parse_profile({"target": "openvino", "quantize": {"qat": True}}, "x.toml")
    with pytest.raises(ConfigError, match="for openvino"):
        parse_profile({"target": "onnx", "quantize": {"qat_epochs": 2}}, "x.toml")


@pytest.mark.requires_openvino
@pytest.mark.parametrize("precision", ["bf16", "f16"])
def test_openvino_refuses_to_compute_in_a_precision_other_than_validated(
    tmp_path: Path, precision: str
) -> None:
    """OpenVINO compiles an f16 request as bf16 on a CPU with BF16 but no FP16 (measured), and
    bf16 as f32 on a CPU without BF16: the first would run a bundle in a precision nobody
    validated (refused), the second is only slower (runs, says what it computes in)."""
    import openvino as ov
    import openvino.opset13 as ops

    from edgevcf.backends.openvino import OpenVINOBackend
    from edgevcf.errors import BundleError
    from edgevcf.targets.openvino import cpu_capabilities

    x = ops.parameter([1, 4, 8, 8], np.float32, name="x")
    w = np.random.default_rng(0).normal(size=(2, 4, 3, 3)).astype(np.float32)
    conv = ops.convolution(x, ops.constant(w), [1, 1], [1, 1], [1, 1], [1, 1])
    ov.save_model(ov.Model([conv], [x]), str(tmp_path / "m.xml"))
    core = ov.Core()
    compiled = core.compile_model(str(tmp_path / "m.xml"), "CPU",
                                  {"INFERENCE_PRECISION_HINT": precision})  # fmt: skip
    got = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    need = {"bf16": "BF16", "f16": "FP16"}[precision]
    assert (got == precision) == (need in cpu_capabilities())
    if got not in (precision, "f32"):
        with pytest.raises(BundleError, match="validated in"):
            OpenVINOBackend(tmp_path / "m.xml", inference_precision=precision)
        return
    be = OpenVINOBackend(tmp_path / "m.xml", inference_precision=precision)
    assert be.effective_precision == got
    assert be.run(np.zeros((1, 4, 8, 8), np.float32)).shape == (1, 2 * 8 * 8)


@pytest.mark.requires_openvino
def test_float_block_copy_gives_the_blocks_their_float_inputs_back(export_bundle: Any) -> None:
    """The OpenVINO ranking's per-block models (one nncf.quantize, then copies): every op given
    back its float inputs is the FP32 network again (weights and biases restored, every
    FakeQuantize bypassed); a pattern that matches nothing leaves the INT8 model as it was."""
    import nncf
    import openvino as ov

    from edgevcf.targets.openvino import float_block_copy

    _, fp32 = export_bundle("onnx-cpu")
    onnx_file = str(fp32.path / fp32.artifact().file)
    x = fp32.golden().inputs
    ref = open_backend("onnxruntime", onnx_file).run_all(x)
    quantized = nncf.quantize(
        ov.convert_model(onnx_file),
        nncf.Dataset([x[i : i + 1] for i in range(len(x))]),
        subset_size=len(x),
    )
    float_ops = {op.get_friendly_name(): op for op in ov.convert_model(onnx_file).get_ordered_ops()}
    core = ov.Core()

    def run(model: Any) -> np.ndarray:
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return np.concatenate([compiled(x[i : i + 1])[0] for i in range(len(x))])

    as_float, touched = float_block_copy(quantized, float_ops, (".*",))
    assert touched > 0
    np.testing.assert_allclose(run(as_float), ref, atol=1e-4, rtol=0)
    untouched, none = float_block_copy(quantized, float_ops, ("/no/such/block/.*",))
    assert none == 0
    np.testing.assert_array_equal(run(untouched), run(quantized))
    assert np.abs(run(quantized) - ref).max() > 1e-3  # the INT8 model really differs
