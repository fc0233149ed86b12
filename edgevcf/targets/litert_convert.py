"""PyTorch -> LiteRT (``.tflite``) conversion: full-integer INT8 via PT2E, FP32 for comparison.

A phone NPU/DSP or an int8-only microcontroller kernel set runs a model only if *every* compute
op is integer; one float op left in the graph sends the tensor back to the CPU through
DEQUANTIZE/QUANTIZE and the "int8 model" silently becomes a mixed one. So this module does not
stop at "the converter succeeded": :func:`tflite_op_census` reads the flatbuffer and counts, op
by op, whether the arithmetic runs on integer or float tensors, and :func:`convert_tflite_int8`
refuses a result that still computes in float.

Quantisation follows the TFLite int8 spec through ``litert-torch``'s own PT2E quantizer: int8
weights per output channel and symmetric, int8 activations per tensor and asymmetric, biases left
to the converter (int32). Two gaps of that quantizer (litert-torch 0.10 with torch 2.14) are
closed here, because both leave float islands in MobileNetV3/EfficientNet-style networks:

* its ``add``/``mul``/pooling annotators find nodes through ``source_fn_stack`` metadata that
  ``torch.export`` no longer records, so residual additions and squeeze-excitation products were
  quantised only where the converter happened to fuse a DEQUANTIZE-op-QUANTIZE triple (chained
  residual additions stayed float); here they are annotated by ATen target instead;
* ``hardsigmoid`` (and ``silu``) have no int8 TFLite kernel and are decomposed by the converter
  into several float ops *after* quantisation; here they are decomposed *before* observers are
  placed (``relu6(x + 3) / 6`` and ``x * sigmoid(x)``), so each piece gets its own int8 range.

torch, litert-torch and ai-edge-litert are imported inside the functions, so importing this
module is light.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevcf.errors import (
    CalibrationError,
    DataError,
    EdgeVCFError,
    ExportError,
    QuantizationError,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "convert_tflite_fp32",
    "convert_tflite_int8",
    "tflite_op_census",
]

_INT8_HINT = (
    "check that the model runs in eval mode on a CPU float32 tensor of the given input shape and "
    "exports with torch.export (no data-dependent control flow); convert_tflite_fp32 on the same "
    "model separates export problems from quantisation problems"
)
_FP32_HINT = (
    "check that the model runs in eval mode on a CPU float32 tensor of the given input shape and "
    "exports with torch.export (no data-dependent control flow)"
)

# TFLite ops that only move, reshape or reinterpret data: they neither decide nor reveal whether
# the arithmetic is integer, so the census keeps them apart from the compute ops.
_LAYOUT_OPS = frozenset(
    {
        "BROADCAST_TO",
        "CONCATENATION",
        "DEPTH_TO_SPACE",
        "EXPAND_DIMS",
        "GATHER",
        "GATHER_ND",
        "PACK",
        "PAD",
        "PADV2",
        "RESHAPE",
        "SHAPE",
        "SLICE",
        "SPACE_TO_DEPTH",
        "SPLIT",
        "SPLIT_V",
        "SQUEEZE",
        "STRIDED_SLICE",
        "TILE",
        "TRANSPOSE",
        "UNPACK",
    }
)


# --------------------------------------------------------------------------- conversion
def convert_tflite_int8(
    model: torch.nn.Module,
    input_shape: tuple[int, ...],
    calibration: Iterable[np.ndarray],
    out_path: Path,
    *,
    allow_float_ops: bool = False,
) -> Path:
    """Convert ``model`` to a full-integer INT8 ``.tflite`` by PT2E post-training quantisation.

    Steps: ``torch.export`` at the fixed ``input_shape`` -> ``prepare_pt2e`` with litert-torch's
    ``PT2EQuantizer`` (int8 weights per-channel symmetric, int8 activations per-tensor
    asymmetric: the TFLite quantisation spec; activation ranges from histogram observers),
    extended as the module docstring explains -> one forward pass per calibration input ->
    ``convert_pt2e`` -> ``litert_torch.convert`` in static QDQ mode. The file is then censused;
    a model whose compute ops are not all integer is refused and deleted (unless
    ``allow_float_ops``), because a mixed model is not what an int8 target runs.

    Interface: litert-torch's default is kept, and that default is an **int8 input and int8
    output** (not float32): the converter folds the input QUANTIZE and output DEQUANTIZE into the
    signature, with scale/zero point on the tensors. The input keeps the torch signature's
    **NCHW** layout (a TRANSPOSE to NHWC is the first op inside the graph). The LiteRT backend
    (:mod:`edgevcf.backends.litert`) quantises and dequantises at that interface; a deployment
    must do the same.

    The model's train/eval mode is restored afterwards; its weights are not changed.

    Args:
        model: A CPU float32 network taking one NCHW tensor.
        input_shape: The exported input shape, batch first and 1, e.g. ``(1, 3, 224, 224)``.
        calibration: Already normalised float32 network inputs, each of shape ``input_shape``
            or ``input_shape[1:]``; an ``(N, C, H, W)`` array can be passed as is (it iterates
            over its rows). They set every activation range, so they must be real training-split
            images, never the split an accuracy claim is made on.
        out_path: Where to write the ``.tflite`` (parent folders are created).
        allow_float_ops: Keep a result whose census still shows float compute ops (for
            diagnosis) instead of raising.

    Returns:
        ``out_path``.

    Raises:
        CalibrationError: No calibration input, or one of the wrong shape.
        QuantizationError: Export, calibration or conversion failed, or float ops remain.
        BackendUnavailableError: torch or litert-torch is not installed.
    """
    torch, litert_torch = _require_torch_and_litert("INT8 LiteRT conversion")
    from litert_torch.quantize import pt2e_quantizer as pt2eq
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    shape = _check_input_shape(input_shape)
    out_path = Path(out_path)
    was_training = model.training
    model.eval()
    try:
        example = (torch.zeros(shape, dtype=torch.float32),)
        try:
            graph = torch.export.export(model, example).module()
        except Exception as exc:
            raise _wrap(QuantizationError, "torch.export of the model failed", exc) from exc

        quantizer = _full_integer_quantizer().set_global(
            pt2eq.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
        )
        try:
            prepared = prepare_pt2e(graph, quantizer)
        except Exception as exc:
            raise _wrap(QuantizationError, "PT2E prepare (observer insertion) failed", exc) from exc

        n = 0
        with torch.no_grad():
            for x in _calibration_inputs(calibration, shape):
                try:
                    prepared(torch.from_numpy(x))
                except Exception as exc:
                    raise _wrap(
                        QuantizationError, f"calibration forward pass {n} failed", exc
                    ) from exc
                n += 1
        if n == 0:
            raise CalibrationError(
                "no calibration inputs were given for INT8 quantisation",
                hint="pass normalised training-split images; every activation range comes from "
                "them",
            )

        try:
            quantized = convert_pt2e(prepared, fold_quantize=False)
            move_exported_model_to_eval(quantized)
            # An exported GraphModule reports training=True whatever the source module said;
            # nn.Module.eval() is not supported on it, so clear the flag the converter checks.
            for sub in quantized.modules():
                sub.training = False
            with _quiet_litert():
                edge = litert_torch.convert(
                    quantized, example, quant_config=QuantConfig(pt2e_quantizer=quantizer)
                )
                out_path.parent.mkdir(parents=True, exist_ok=True)
                edge.export(str(out_path))
        except Exception as exc:
            raise _wrap(QuantizationError, "litert-torch INT8 conversion failed", exc) from exc
    finally:
        model.train(was_training)

    census = tflite_op_census(out_path)
    if census["float_ops"] and not allow_float_ops:
        floats = sorted(op for op, c in census["by_op"].items() if c["float"])
        out_path.unlink(missing_ok=True)  # a mixed model must not pass for the INT8 artefact
        raise QuantizationError(
            f"the INT8 .tflite still computes in float: {census['float_ops']} float op(s) "
            f"({', '.join(floats)}) next to {census['integer_ops']} integer op(s)",
            hint="an op without an int8 annotation or kernel is left between DEQUANTIZE and "
            "QUANTIZE; replace it in the network, or pass allow_float_ops=True to keep the file "
            "and inspect it",
        )
    return out_path


def convert_tflite_fp32(
    model: torch.nn.Module, input_shape: tuple[int, ...], out_path: Path
) -> Path:
    """Convert ``model`` to a float32 ``.tflite`` with ``litert_torch.convert``.

    The reference for the INT8 file: same exporter, same layout handling, so any difference
    between the two is quantisation, not conversion. Input is float32 NCHW (the torch signature),
    output float32. The model's train/eval mode is restored afterwards.

    Args:
        model: A CPU float32 network taking one NCHW tensor.
        input_shape: The exported input shape, batch first and 1, e.g. ``(1, 3, 224, 224)``.
        out_path: Where to write the ``.tflite`` (parent folders are created).

    Returns:
        ``out_path``.

    Raises:
        ExportError: Export or conversion failed.
        BackendUnavailableError: torch or litert-torch is not installed.
    """
    torch, litert_torch = _require_torch_and_litert("FP32 LiteRT conversion")
    shape = _check_input_shape(input_shape)
    out_path = Path(out_path)
    was_training = model.training
    model.eval()
    try:
        example = (torch.zeros(shape, dtype=torch.float32),)
        with _quiet_litert():
            edge = litert_torch.convert(model, example)
            out_path.parent.mkdir(parents=True, exist_ok=True)
            edge.export(str(out_path))
    except Exception as exc:
        raise _wrap(ExportError, "litert-torch FP32 conversion failed", exc) from exc
    finally:
        model.train(was_training)
    return out_path


# --------------------------------------------------------------------------- inspection
def tflite_op_census(path: Path) -> dict[str, Any]:
    """Count a ``.tflite``'s compute ops by whether they compute on integer or float tensors.

    This is the proof that an "INT8" file is one: an op is integer when its main input (the
    first input that is not a constant, i.e. the activation) is int8, uint8, int16 or int4, and
    float when it is float32/float16/bfloat16. The file is parsed with the flatbuffer schema that
    ai-edge-litert ships, so no interpreter or delegate is involved and every subgraph is seen.

    Args:
        path: A ``.tflite`` file.

    Returns:
        ``{'integer_ops': n, 'float_ops': m, 'by_op': {op: {'int': a, 'float': b}},
        'quantize_ops': q, 'dequantize_ops': d, 'layout_ops': {op: {'int': a, 'float': b}},
        'other_ops': k}``. ``by_op`` holds the compute ops only (conv, depthwise conv, fully
        connected, add, mul, mean, hard-swish, ...). QUANTIZE/DEQUANTIZE are counted apart, not
        as compute ops; so are data-movement ops (``layout_ops``: reshape, transpose, pad, ...).
        ``other_ops`` counts compute ops on other types (int32 shape arithmetic, bool).

    Raises:
        DataError: The file is missing or is not a TFLite flatbuffer.
        BackendUnavailableError: ai-edge-litert is not installed.
    """
    from edgevcf.deps import require

    require("litert", "reading a .tflite file")
    from ai_edge_litert import schema_py_generated as schema

    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise DataError(f"{path} is not a TFLite flatbuffer (no TFL3 identifier)")

    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    int_types = {
        schema.TensorType.INT8,
        schema.TensorType.UINT8,
        schema.TensorType.INT16,
        schema.TensorType.INT4,
    }
    float_types = {
        schema.TensorType.FLOAT32,
        schema.TensorType.FLOAT16,
        schema.TensorType.BFLOAT16,
    }

    fb = schema.Model.GetRootAs(buf, 0)
    by_op: dict[str, dict[str, int]] = {}
    layout: dict[str, dict[str, int]] = {}
    n_int = n_float = n_other = n_q = n_dq = 0
    for s in range(fb.SubgraphsLength()):
        sg = fb.Subgraphs(s)
        # Tensors computed at run time: subgraph inputs and op outputs. Everything else an op
        # reads is a constant (weights, bias, shape), which is not what it computes on.
        live = {int(sg.Inputs(i)) for i in range(sg.InputsLength())}
        ops = [sg.Operators(j) for j in range(sg.OperatorsLength())]
        for op in ops:
            live.update(int(op.Outputs(i)) for i in range(op.OutputsLength()))
        for op in ops:
            code = fb.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            if builtin == schema.BuiltinOperator.CUSTOM and code.CustomCode():
                name = f"CUSTOM:{code.CustomCode().decode()}"
            else:
                name = op_names.get(builtin, f"BUILTIN_{builtin}")
            if name == "QUANTIZE":
                n_q += 1
                continue
            if name == "DEQUANTIZE":
                n_dq += 1
                continue
            inputs = [int(op.Inputs(i)) for i in range(op.InputsLength())]
            inputs = [i for i in inputs if i >= 0]
            main = next((i for i in inputs if i in live), inputs[0] if inputs else None)
            ttype = sg.Tensors(main).Type() if main is not None else None
            kind = "int" if ttype in int_types else "float" if ttype in float_types else None
            table = layout if name in _LAYOUT_OPS else by_op
            entry = table.setdefault(name, {"int": 0, "float": 0})
            if kind is not None:
                entry[kind] += 1
            if table is layout:
                continue
            if kind == "int":
                n_int += 1
            elif kind == "float":
                n_float += 1
            else:
                n_other += 1
    return {
        "integer_ops": n_int,
        "float_ops": n_float,
        "by_op": dict(sorted(by_op.items())),
        "quantize_ops": n_q,
        "dequantize_ops": n_dq,
        "layout_ops": dict(sorted(layout.items())),
        "other_ops": n_other,
    }


# --------------------------------------------------------------------------- helpers
def _require_torch_and_litert(purpose: str) -> tuple[Any, Any]:
    from edgevcf.deps import require

    torch = require("torch", purpose)
    litert_torch = require("litert_torch", purpose)
    return torch, litert_torch


def _check_input_shape(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(int(d) for d in input_shape)
    if len(shape) < 2 or shape[0] != 1 or any(d <= 0 for d in shape):
        raise ValueError(
            f"input_shape must be batch-1 and positive, e.g. (1, 3, 224, 224): {shape}"
        )
    return shape


def _calibration_inputs(
    calibration: Iterable[np.ndarray], shape: tuple[int, ...]
) -> Iterator[np.ndarray]:
    """Calibration inputs as contiguous float32 arrays of ``shape`` (batch 1)."""
    for i, item in enumerate(calibration):
        a = np.asarray(item, dtype=np.float32)
        if a.shape == shape[1:]:
            a = a[None]
        if a.shape == shape:
            yield np.ascontiguousarray(a)
        elif a.ndim == len(shape) and a.shape[1:] == shape[1:]:
            for row in a:  # a batch: feed it one item at a time (the graph is batch 1)
                yield np.ascontiguousarray(row[None])
        else:
            raise CalibrationError(
                f"calibration input {i} has shape {a.shape}, expected {shape}",
                hint="calibrate on images preprocessed exactly like the exported input",
            )


def _wrap(cls: type[EdgeVCFError], what: str, exc: Exception) -> EdgeVCFError:
    """Short message for a converter failure; the full one stays in ``__cause__``."""
    first = (str(exc).strip().splitlines() or [""])[0]
    if len(first) > 300:
        first = first[:297] + "..."
    message = f"{what}: {type(exc).__name__}: {first}" if first else f"{what}: {type(exc).__name__}"
    hint = _INT8_HINT if cls is QuantizationError else _FP32_HINT
    return cls(message, hint=hint)


@contextlib.contextmanager
def _quiet_litert() -> Iterator[None]:
    """Silence litert-torch's progress printing (to stdout) for the duration of a conversion.

    litert-torch reads the switch from the environment at each step; the previous value is
    restored so a user who asked for progress elsewhere keeps it.
    """
    key = "LITERT_TORCH_SHOW_PROGRESS"
    old = os.environ.get(key)
    os.environ[key] = "n"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def _full_integer_quantizer() -> Any:
    """litert-torch's ``PT2EQuantizer`` with the gaps that leave float ops closed.

    Built inside a function so torch and litert-torch stay unimported until a conversion runs.
    """
    import torch
    from litert_torch.quantize import pt2e_quantizer as pt2eq
    from litert_torch.quantize import pt2e_quantizer_utils as pqu
    from torch.fx import Node
    from torchao.quantization.pt2e.quantizer import (
        FixedQParamsQuantizationSpec,
        QuantizationAnnotation,
        SharedQuantizationSpec,
    )

    aten = torch.ops.aten
    # Elementwise/pooling ops with int8 TFLite kernels that the base annotators can miss.
    plain = {
        aten.add.Tensor,
        aten.add_.Tensor,
        aten.sub.Tensor,
        aten.sub_.Tensor,
        aten.mul.Tensor,
        aten.mul_.Tensor,
        aten.hardswish.default,
        aten.hardswish_.default,
        aten.relu.default,
        aten.relu_.default,
        aten.adaptive_avg_pool2d.default,
        aten.mean.dim,
    }
    # Ops whose int8 TFLite kernel needs the output range equal to the input range.
    same_scale = {aten.max_pool2d.default, aten.avg_pool2d.default}
    # Ops whose int8 TFLite kernel has a fixed output range [0, 1).
    fixed = {aten.sigmoid.default, aten.sigmoid_.default}
    hardsigmoid = {aten.hardsigmoid.default, aten.hardsigmoid_.default}
    silu = {aten.silu.default, aten.silu_.default}

    def is_annotated(node: Node) -> bool:
        ann = node.meta.get("quantization_annotation")
        return ann is not None and bool(ann._annotated)

    def input_specs(node: Node, default: Any) -> dict[Node, Any]:
        """Float tensor inputs -> qspec: the producer's own output qspec when it has one.

        Reusing it lets prepare_pt2e share the producer's observer instead of adding a second
        one, which would become an int8 -> int8 requantisation (e.g. after a fixed-range
        sigmoid) and lose precision for nothing.
        """
        specs = {}
        for a in node.args:
            if not isinstance(a, Node):
                continue
            val = a.meta.get("val")
            if val is not None and not (isinstance(val, torch.Tensor) and val.is_floating_point()):
                continue
            ann = a.meta.get("quantization_annotation")
            produced = ann.output_qspec if ann is not None else None
            specs[a] = produced if produced is not None else default
        return specs

    def with_val(node: Node, fn: Any, *args: Any) -> None:
        """Give a new node the FakeTensor metadata prepare_pt2e needs to observe its output."""
        vals = [a.meta.get("val") if isinstance(a, Node) else a for a in args]
        fake = next((v for v in vals if isinstance(v, torch.Tensor)), None)
        if fake is None or not hasattr(fake, "fake_mode"):
            return
        with fake.fake_mode:
            node.meta["val"] = fn(*vals)

    class FullIntegerQuantizer(pt2eq.PT2EQuantizer):
        def transform_for_annotation(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            graph = model.graph
            for n in list(graph.nodes):
                if n.op != "call_function" or n.target not in hardsigmoid | silu:
                    continue
                x = n.args[0]
                with graph.inserting_before(n):
                    if n.target in hardsigmoid:  # relu6(x + 3) * (1/6): ADD(+RELU6) and MUL
                        a = graph.call_function(aten.add.Tensor, (x, 3.0))
                        with_val(a, aten.add.Tensor, x, 3.0)
                        r = graph.call_function(aten.hardtanh.default, (a, 0.0, 6.0))
                        with_val(r, aten.hardtanh.default, a, 0.0, 6.0)
                        new = graph.call_function(aten.mul.Tensor, (r, 1.0 / 6.0))
                        with_val(new, aten.mul.Tensor, r, 1.0 / 6.0)
                    else:  # x * sigmoid(x): LOGISTIC and MUL
                        s = graph.call_function(aten.sigmoid.default, (x,))
                        with_val(s, aten.sigmoid.default, x)
                        new = graph.call_function(aten.mul.Tensor, (x, s))
                        with_val(new, aten.mul.Tensor, x, s)
                new.meta.update(
                    {k: v for k, v in n.meta.items() if k not in ("val", "tensor_meta")}
                )
                n.replace_all_uses_with(new)
                graph.erase_node(n)
            graph.lint()
            model.recompile()
            return super().transform_for_annotation(model)  # scalars -> constant tensors

        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            model = super().annotate(model)
            cfg = self.global_config
            if cfg is None or cfg.input_activation is None:  # dynamic: weights only
                return model
            in_spec = pqu.get_input_act_qspec(cfg)
            out_spec = pqu.get_output_act_qspec(cfg)
            fixed_spec = pqu.get_fixed_qparams_qspec(cfg)
            for n in model.graph.nodes:
                if n.op != "call_function" or is_annotated(n):
                    continue
                if n.target in plain:
                    in_map, spec = input_specs(n, in_spec), out_spec
                elif n.target in fixed:
                    in_map, spec = input_specs(n, in_spec), fixed_spec
                elif n.target in same_scale and isinstance(n.args[0], Node):
                    x = n.args[0]
                    in_map = input_specs(n, in_spec)
                    spec = SharedQuantizationSpec(x if is_annotated(x) else (x, n))
                    in_map[x] = spec if is_annotated(x) else in_spec
                else:
                    continue
                n.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map=in_map, output_qspec=spec, _annotated=True
                )
            # An input read straight from a fixed-range op (sigmoid: scale 1/256) keeps that range;
            # a fresh observer there would become an int8 -> int8 requantisation.
            for n in model.graph.nodes:
                ann = n.meta.get("quantization_annotation")
                if ann is None:
                    continue
                for a, spec in list(ann.input_qspec_map.items()):
                    producer = a.meta.get("quantization_annotation")
                    produced = producer.output_qspec if producer is not None else None
                    if isinstance(produced, FixedQParamsQuantizationSpec) and spec == in_spec:
                        ann.input_qspec_map[a] = produced
            # Range-preserving ops after the new annotations (relu6 of hardsigmoid) share them.
            pqu.propagate_annotation(model)
            return model

    return FullIntegerQuantizer()
