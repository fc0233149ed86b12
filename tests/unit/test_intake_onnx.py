"""Foreign ONNX classifiers normalised to edgevcf's canonical form (issue 26, the ONNX way in):
NHWC or NCHW, 1 or 3 channels, fixed or dynamic batch, and every output kind, each turned into
the one logit of "fresh" exactly — checked with ONNX Runtime against the original graph — and
declarations the graph contradicts refused before any export work.

The graphs are written here with onnx's helper the way tf2onnx writes a Keras classifier (an
NHWC input transposed inside, a softmax at the end) or torch a plain one; what is tested is the
graph surgery, so their weights are random (no accuracy is measured on them).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgevcf.errors import ConfigError
from edgevcf.intake.onnx_graph import check_declaration, inspect, normalise
from edgevcf.intake.spec import load_model_spec, parse_model_spec

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

SIZE = 32


def foreign(path: Path, *, layout: str, channels: int, out: str, batch: int | str = "N",
            in_name: str = "image", out_name: str = "scores") -> Path:  # fmt: skip
    """A small conv classifier: [layout] input -> conv -> pool -> dense -> ``out`` kind."""
    rng = np.random.default_rng(0)
    width = 1 if out in ("logit", "probability") else 2
    shape = [batch, channels, SIZE, SIZE] if layout == "NCHW" else [batch, SIZE, SIZE, channels]
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (4, channels, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(0, 1.0, (4, width)).astype(np.float32), "fc"),
        numpy_helper.from_array(rng.normal(0, 0.1, (width,)).astype(np.float32), "fcb"),
    ]
    nodes = []
    x = in_name
    if layout == "NHWC":  # as tf2onnx writes a Keras model
        nodes.append(helper.make_node("Transpose", [x], ["nchw"], perm=[0, 3, 1, 2]))
        x = "nchw"
    nodes += [
        helper.make_node("Conv", [x, "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["z" if out != "logit" else out_name]),
    ]
    if out == "probability":
        nodes.append(helper.make_node("Sigmoid", ["z"], [out_name]))
    elif out == "softmax":
        nodes.append(helper.make_node("Softmax", ["z"], [out_name], axis=1))
    elif out == "two_logits":
        nodes.append(helper.make_node("Identity", ["z"], [out_name]))
    graph = helper.make_graph(
        nodes, "foreign", [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [batch, width])], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def spec(**tables: Any) -> Any:
    data = {"input": {"size": SIZE, "channels": 3, "layout": "NCHW"}, "output": {"kind": "logit"}}
    for k, v in tables.items():
        data[k] = {**data[k], **v}
    return parse_model_spec(data, "model.toml")


def run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {sess.get_inputs()[0].name: x})[0], dtype=np.float64)


CASES = [  # layout, channels, output kind, batch, input name, output name
    ("NHWC", 3, "softmax", "N", "image", "scores"),  # a Keras classifier via tf2onnx
    ("NCHW", 1, "two_logits", 4, "image", "scores"),
    ("NCHW", 3, "probability", "N", "image", "prob"),
    ("NCHW", 3, "logit", "N", "input", "logit"),  # names that collide with ours
]


@pytest.mark.parametrize(("layout", "channels", "kind", "batch", "iname", "oname"), CASES)
def test_each_form_becomes_the_one_logit_of_fresh_exactly(
    tmp_path: Path, layout: str, channels: int, kind: str, batch: Any, iname: str, oname: str
) -> None:
    src = foreign(tmp_path / "m.onnx", layout=layout, channels=channels, out=kind, batch=batch,
                  in_name=iname, out_name=oname)  # fmt: skip
    facts = inspect(src)
    assert (facts.layout, facts.output_kind) == (layout, kind)  # recognised from the graph
    s = spec(input={"channels": channels, "layout": layout}, output={"kind": kind})
    dest = tmp_path / "canonical.onnx"
    normalise(src, dest, s)
    x = np.random.default_rng(1).random((4, channels, SIZE, SIZE), dtype=np.float32)
    got = run(dest, x)
    assert got.shape == (4, 1)
    raw = run(src, x if layout == "NCHW" else x.transpose(0, 2, 3, 1).copy())
    want = {
        "logit": lambda r: r[:, :1],
        "two_logits": lambda r: r[:, 1:2] - r[:, :1],
        "softmax": lambda r: np.log(r[:, 1:2]) - np.log(r[:, :1]),
        "probability": lambda r: np.log(r) - np.log1p(-r),
    }[kind](raw)
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)
    sess = ort.InferenceSession(str(dest), providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert (inp.name, out.name) == ("input", "logit")
    assert inp.shape[1:] == [channels, SIZE, SIZE]


def test_positive_index_0_swaps_the_classes(tmp_path: Path) -> None:
    src = foreign(tmp_path / "m.onnx", layout="NCHW", channels=3, out="two_logits")
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    normalise(src, a, spec(output={"kind": "two_logits"}))
    normalise(src, b, spec(output={"kind": "two_logits", "positive_index": 0}))
    x = np.random.default_rng(2).random((3, 3, SIZE, SIZE), dtype=np.float32)
    np.testing.assert_allclose(run(a, x), -run(b, x), atol=1e-6)


@pytest.mark.parametrize(
    ("graph", "declared", "message"),
    [
        ({"layout": "NHWC", "channels": 3, "out": "softmax"}, {"input": {"layout": "NCHW"},
         "output": {"kind": "softmax"}}, "NHWC; you declared layout = 'NCHW'"),
        ({"layout": "NCHW", "channels": 3, "out": "softmax"}, {"output": {"kind": "two_logits"}},
         "ends in Softmax: that is 'softmax'"),
        ({"layout": "NCHW", "channels": 3, "out": "softmax"}, {"output": {"kind": "logit"}},
         "kind = 'logit' needs width 1"),
        ({"layout": "NCHW", "channels": 1, "out": "logit"}, {"input": {"channels": 3}},
         "1 channel(s); you declared channels = 3"),
        ({"layout": "NCHW", "channels": 3, "out": "logit"}, {"input": {"size": 64}},
         "32 x 32; you declared size = 64"),
        ({"layout": "NCHW", "channels": 3, "out": "logit"}, {"output": {"kind": "probability"}},
         "that is 'logit'"),
    ],
    ids=["nhwc-said-nchw", "softmax-said-logits", "two-said-one", "1ch-said-3", "size",
         "logit-said-probability"],
)  # fmt: skip
def test_wrong_declarations_are_refused_with_what_to_declare(
    tmp_path: Path, graph: dict[str, Any], declared: dict[str, Any], message: str
) -> None:
    src = foreign(tmp_path / "m.onnx", **graph)
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        check_declaration(inspect(src), spec(**declared))
    assert err.value.hint or "needs width" in message
    with pytest.raises(ConfigError):
        normalise(src, tmp_path / "never.onnx", spec(**declared))
    assert not (tmp_path / "never.onnx").exists()


def test_the_spec_file_is_strict_and_byte_scaling_converts(tmp_path: Path) -> None:
    f = tmp_path / "model.toml"
    f.write_text('[input]\nsize = 224\nscale = "byte"\nmean = [123.675, 116.28, 103.53]\n'
                 'std = [58.395, 57.12, 57.375]\n[output]\nkind = "softmax"\n')  # fmt: skip
    s = load_model_spec(f)
    mean, std = s.input.unit_mean_std()
    np.testing.assert_allclose(mean, (0.485, 0.456, 0.406), atol=1e-6)
    np.testing.assert_allclose(std, (0.229, 0.224, 0.225), atol=1e-6)
    grey = parse_model_spec({"input": {"channels": 1}}, "t").input.unit_mean_std()
    assert grey == ((0.449,), (0.226,))  # ImageNet's channel average where none is declared
    for bad, message in (
        ({"input": {"sise": 224}}, "unknown key"),
        ({"input": {"layout": "CHW"}}, "layout must be one of"),
        ({"input": {"channels": 1, "mean": [0.5, 0.5, 0.5]}}, "mean needs 1 or 1 values"),
        ({"input": {"std": [0.2, 0.0, 0.2]}}, "std must be > 0"),
        ({"output": {"kind": "sigmoid"}}, "kind must be one of"),
        ({"preprocess": {}}, "unknown table"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_model_spec(bad, "model.toml")
