"""The static TensorRT Q/DQ validator: passes what the jetson target writes, refuses each rule
broken on purpose. (Graph rules only: a small random network is fine here, no accuracy is read.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgevcf.errors import QuantizationError

pytestmark = [pytest.mark.requires_torch, pytest.mark.requires_onnxruntime]


@pytest.fixture(scope="module")
def qdq_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from edgevcf.targets.jetson import QUANTIZED_OPS
    from edgevcf.targets.qdq import quantize_qdq

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1, groups=8),
        torch.nn.Hardswish(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 1),
    ).eval()
    d = tmp_path_factory.mktemp("qdq")
    fp32 = d / "fp32.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, 16, 16),), str(fp32), opset_version=17, dynamo=False)
    out = d / "qdq.onnx"
    calib = np.random.default_rng(0).normal(size=(8, 3, 16, 16)).astype(np.float32)
    quantize_qdq(
        fp32,
        out,
        calib,
        activation_type="int8",
        symmetric_activations=True,
        op_types=QUANTIZED_OPS,
        quantize_bias=False,
    )
    return out


def test_jetson_settings_pass(qdq_model: Path) -> None:
    from edgevcf.targets.jetson import validate_trt_qdq

    report = validate_trt_qdq(qdq_model)
    assert report["passed"] and report["conv_gemm_left_in_float"] == 0
    assert report["weight_dq_per_channel_axis0"] == 3


def _mutated(src: Path, dst: Path, edit: Callable[[Any], None]) -> Path:
    import onnx

    m = onnx.load(str(src))
    edit(m)
    onnx.save(m, str(dst))
    return dst


def _init(m: Any, pred: Callable[[str], bool]) -> Any:
    return next(i for i in m.graph.initializer if pred(i.name))


def _set_zero_point(value: int, dtype: Any) -> Callable[[Any], None]:
    def edit(m: Any) -> None:
        from onnx import numpy_helper

        q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear")
        zp = _init(m, lambda name: name == q.input[2])
        arr = numpy_helper.to_array(zp)
        zp.CopyFrom(numpy_helper.from_array(np.full(arr.shape, value, dtype=dtype), zp.name))

    return edit


def _negative_scale(m: Any) -> None:
    from onnx import numpy_helper

    q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear")
    s = _init(m, lambda name: name == q.input[1])
    s.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(s), s.name))


def _per_tensor_weights(m: Any) -> None:
    from onnx import numpy_helper

    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    dq = next(n for n in m.graph.node if n.output[0] == conv.input[1])
    s = _init(m, lambda name: name == dq.input[1])
    s.CopyFrom(numpy_helper.from_array(np.asarray(numpy_helper.to_array(s).max()), s.name))
    zp = _init(m, lambda name: name == dq.input[2])
    zp.CopyFrom(numpy_helper.from_array(np.asarray(0, dtype=np.int8), zp.name))
    for a in list(dq.attribute):
        if a.name == "axis":
            dq.attribute.remove(a)


def _unsupported_op(m: Any) -> None:
    from onnx import helper

    out = m.graph.output[0]
    m.graph.node.append(helper.make_node("Einsum", [out.name], ["e"], equation="ij->ij"))
    out.name = "e"


def _dynamic_input(m: Any) -> None:
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (_set_zero_point(3, np.int8), "zero point is not 0"),
        (_set_zero_point(128, np.uint8), "TensorRT needs int8"),
        (_negative_scale, "finite and positive"),
        (_per_tensor_weights, "per-channel"),
        (_unsupported_op, "Einsum"),
        (_dynamic_input, "dynamic shape"),
    ],
)
def test_each_broken_rule_is_refused(
    qdq_model: Path, tmp_path: Path, edit: Callable[[Any], None], needle: str
) -> None:
    from edgevcf.targets.jetson import validate_trt_qdq

    bad = _mutated(qdq_model, tmp_path / "bad.onnx", edit)
    with pytest.raises(QuantizationError) as err:
        validate_trt_qdq(bad)
    assert needle in err.value.message


def test_ort_default_quantization_is_not_tensorrt_style(qdq_model: Path, tmp_path: Path) -> None:
    """ONNX Runtime's defaults (u8 asymmetric activations) must not pass as a TensorRT file."""
    from edgevcf.targets.jetson import validate_trt_qdq
    from edgevcf.targets.qdq import quantize_qdq

    fp32 = qdq_model.with_name("fp32.onnx")
    out = tmp_path / "u8.onnx"
    calib = np.random.default_rng(1).normal(size=(8, 3, 16, 16)).astype(np.float32)
    quantize_qdq(fp32, out, calib, activation_type="uint8", symmetric_activations=False)
    with pytest.raises(QuantizationError):
        validate_trt_qdq(out)


def test_engine_built_elsewhere_is_refused() -> None:
    from edgevcf.backends.tensorrt import check_engine_compatible
    from edgevcf.errors import BundleError

    check_engine_compatible(
        {"tensorrt": "10.3.0", "sm": "8.7"}, {"tensorrt": "10.3.0", "sm": "8.7"}
    )
    with pytest.raises(BundleError, match=r"sm: engine built with '8\.7'"):
        check_engine_compatible(
            {"tensorrt": "10.3.0", "sm": "8.7"}, {"tensorrt": "10.3.0", "sm": "9.0"}
        )
    with pytest.raises(BundleError, match="tensorrt"):
        check_engine_compatible({"tensorrt": "10.3.0"}, {"tensorrt": "8.6.2"})


@pytest.mark.requires_tensorrt
def test_engine_build_on_device(qdq_model: Path, tmp_path: Path) -> None:  # pragma: no cover
    """Runs only where TensorRT imports (a Jetson): build the Q/DQ engine from a plan."""
    import shutil

    from edgevcf.profiles import load_profile
    from edgevcf.targets.jetson import build_engine, build_plan

    shutil.copy2(qdq_model, tmp_path / "model.qdq.onnx")
    facts = build_engine(build_plan(load_profile("jetson"), "model.qdq.onnx", "int8"), tmp_path)
    assert (tmp_path / "model.engine").stat().st_size > 0 and facts["tensorrt"]
