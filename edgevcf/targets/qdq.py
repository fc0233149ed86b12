"""The ONNX Runtime Q/DQ toolkit the onnx, jetson and mobile targets share.

Static Q/DQ quantisation (``quantize_qdq``) with calibration, weight bias correction, the integer-op
census and static Q/DQ coverage (what really computes in int8). One module so no target depends
on another target's module; the mixed-precision search they share is :mod:`edgevcf.targets.mixed`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevcf import progress
from edgevcf.deps import require
from edgevcf.errors import QuantizationError

if TYPE_CHECKING:
    from edgevcf.pipeline import ExportContext

log = logging.getLogger(__name__)

# Op types whose compute is integer once ONNX Runtime has fused the Q/DQ around them.
INTEGER_OPS = {
    "QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul", "QGemm", "QLinearAdd",
    "QLinearMul", "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearSigmoid",
    "QLinearLeakyRelu", "QLinearConcat", "QLinearSoftmax", "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat", "NhwcQLinearConv", "QLinearReduceMean", "QLinearWhere",
}  # fmt: skip
FLOAT_COMPUTE_OPS = {
    "Conv", "FusedConv", "NchwcConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul", "Add", "Mul",
    "Div", "Sub", "GlobalAveragePool", "AveragePool", "ReduceMean", "Sigmoid", "HardSigmoid",
    "HardSwish", "Relu", "Clip", "FastGelu", "QuickGelu",
}  # fmt: skip


class _Reader:
    """ONNX Runtime ``CalibrationDataReader`` over preprocessed calibration inputs."""

    def __init__(self, name: str, x: np.ndarray, batch: int) -> None:
        self.name = name
        self.batches: Iterator[np.ndarray] = iter(
            [x[i : i + batch] for i in range(0, len(x) - batch + 1, batch)]
        )
        self.total = len(x) // batch
        self._bar = progress.track(range(self.total), desc="calibrate", unit="batch")

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        if batch is None:
            for _ in self._bar:  # close the bar
                pass
            return None
        next(self._bar, None)
        return {self.name: np.ascontiguousarray(batch, np.float32)}

    def rewind(self) -> None:  # pragma: no cover - ORT API
        raise NotImplementedError


def quantize_qdq(
    fp32: Path,
    out: Path,
    calib: np.ndarray,
    *,
    activation_type: str,
    symmetric_activations: bool,
    per_channel: bool = True,
    op_types: list[str] | None = None,
    quantize_bias: bool = True,
    exclude: tuple[str, ...] = (),
    static_batch: int = 1,
    bias_correction: bool = True,
    bias_correction_samples: int = 64,
    calibrate_method: str = "minmax",
    percentile: float = 99.999,
    exclude_output_quantization: tuple[str, ...] = (),
    calibration_cache: Path | None = None,
) -> Path:
    """ONNX Runtime ``quantize_static`` in QDQ format (int8 weights, symmetric).

    Args:
        fp32: The FP32 ONNX.
        out: Destination.
        calib: Calibration inputs in the graph's form (N, C, S, S).
        activation_type: ``"uint8"`` or ``"int8"``.
        symmetric_activations: Zero point 0 for activations (TensorRT) or not (TFLite spec, x86).
        per_channel: Per-output-channel weight scales.
        op_types: Op types to quantize (None: ONNX Runtime's defaults).
        quantize_bias: Whether biases become int32 initializers with DequantizeLinear.
        exclude: Node names to keep in float.
        static_batch: The graph's batch size (0: dynamic; calibrated 16 at a time).
        bias_correction: Correct each layer's bias for the mean error its int8 weights cause
            (see :func:`correct_weight_bias`).
        bias_correction_samples: Calibration images used to estimate the layer input means.
        calibration_cache: JSON file of activation ranges: computed and written on the first
            call, read by later ones (the mixed-precision search re-quantizes many times; the
            percentile histograms alone take minutes).
    """
    ort = require("onnxruntime", "INT8 quantisation")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prep = out.with_name(out.stem + ".prep.onnx")
    try:
        quant_pre_process(str(fp32), str(prep), skip_symbolic_shape=False)
    except Exception as exc:  # pre-processing is an optimisation; quantize the raw graph
        log.warning("ONNX Runtime quant_pre_process failed (%s); quantizing the raw graph", exc)
        prep.write_bytes(fp32.read_bytes())
    name = ort.InferenceSession(str(prep), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    act = QuantType.QUInt8 if activation_type == "uint8" else QuantType.QInt8
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    try:
        with progress.captured_stdout("onnxruntime quantize_static"):
            quantize_static(
                str(prep),
                str(out),
                _Reader(name, calib, static_batch or 16),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=op_types,
                per_channel=per_channel,
                activation_type=act,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=list(exclude),
                calibrate_method=methods[calibrate_method],
                extra_options={
                    "CalibPercentile": percentile,
                    "OpTypesToExcludeOutputQuantization": list(exclude_output_quantization),
                    "ActivationSymmetric": symmetric_activations,
                    "WeightSymmetric": True,
                    "QuantizeBias": quantize_bias,
                },
                calibration_cache_path=None
                if calibration_cache is None
                else str(calibration_cache),
            )
        if bias_correction:
            report = correct_weight_bias(prep, out, calib[:bias_correction_samples])
            log.debug("bias correction: %s", report)
    except QuantizationError:
        raise
    except Exception as exc:
        raise QuantizationError(
            f"ONNX Runtime quantize_static failed: {type(exc).__name__}: {exc}"[:400]
        ) from exc
    finally:
        prep.unlink(missing_ok=True)
        for extra in out.parent.glob("augmented_model*.onnx"):
            extra.unlink(missing_ok=True)
    return out


def correct_weight_bias(fp32: Path, qdq: Path, calib: np.ndarray) -> dict[str, Any]:
    """Bias correction (Nagel et al., 2019) for the Q/DQ file ``qdq`` quantized from ``fp32``.

    Rounding int8 weights changes each output channel's mean by ``sum(ΔW · E[x])``: small per
    layer but systematic, and in depthwise-separable networks (MobileNet, MnasNet, EfficientNet)
    it accumulates into a shifted logit. A shifted logit keeps the AUC and moves every case
    across the bundled threshold (measured: MobileNetV3-L jetson Q/DQ, flip rate 57 % without
    correction). ONNX Runtime's ``quantize_static`` does not correct it (NNCF does); this does,
    using the FP32 layer inputs' per-channel means on calibration images. Float biases are
    adjusted directly; int32 biases (TFLite spec) by the same amount in their own scale.

    Returns:
        Counts of layers corrected and the largest correction.
    """
    ort = require("onnxruntime", "bias correction")
    onnx = require("onnx", "bias correction")
    from onnx import numpy_helper

    q = onnx.load(str(qdq))
    f = onnx.load(str(fp32))
    inits = {i.name: i for i in q.graph.initializer}
    f_inits = {i.name: numpy_helper.to_array(i) for i in f.graph.initializer}
    producers = {o: n for n in q.graph.node for o in n.output}

    def const(name: str) -> np.ndarray | None:
        return numpy_helper.to_array(inits[name]) if name in inits else None

    def dequant(dq: Any) -> np.ndarray | None:
        x, s = const(dq.input[0]), const(dq.input[1])
        if x is None or s is None:
            return None
        zp = const(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else None
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        shape = [1] * x.ndim
        if s.ndim:
            shape[axis] = -1
        zp_ = 0 if zp is None else zp.astype(np.float64).reshape(shape)
        return (x.astype(np.float64) - zp_) * s.astype(np.float64).reshape(shape)

    jobs = []  # (node, fp32 input tensor, ΔW)
    for node in q.graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 2:
            continue
        wdq, xdq = producers.get(node.input[1]), producers.get(node.input[0])
        if wdq is None or wdq.op_type != "DequantizeLinear" or xdq is None:
            continue
        orig = wdq.input[0].removesuffix("_quantized")
        wq = dequant(wdq)
        if wq is None or orig not in f_inits:
            continue
        src = xdq.input[0]
        qnode = producers.get(src)
        if xdq.op_type == "DequantizeLinear" and qnode is not None:
            src = qnode.input[0]  # the float tensor the Q/DQ pair stands for
        jobs.append((node, src, wq - f_inits[orig].astype(np.float64)))
    if not jobs:
        return {"layers": 0}
    probe = onnx.load(str(fp32))
    have = {o.name for o in probe.graph.output}
    for name in {j[1] for j in jobs} - have:
        probe.graph.output.append(onnx.ValueInfoProto(name=name))
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name
    out_names = [o.name for o in sess.get_outputs()]
    static = sess.get_inputs()[0].shape[0]
    step = static if isinstance(static, int) and static > 0 else 16
    sums: dict[str, np.ndarray] = {}
    count = 0
    for i in range(0, len(calib) - step + 1, step):
        outs = sess.run(out_names, {in_name: np.ascontiguousarray(calib[i : i + step])})
        for name, val in zip(out_names, outs, strict=True):
            v = np.asarray(val, dtype=np.float64)
            axes = (0, *range(2, v.ndim)) if v.ndim > 2 else (0,)
            sums[name] = sums.get(name, 0) + v.mean(axis=axes)
        count += 1
    if not count:
        return {"layers": 0}
    largest, n_fixed = 0.0, 0
    for node, src, dw in jobs:
        mean = sums[src] / count
        if node.op_type == "Conv":
            groups = next((a.i for a in node.attribute if a.name == "group"), 1)
            cin_g = dw.shape[1]
            per_out = dw.sum(axis=tuple(range(2, dw.ndim)))  # (Cout, Cin/g)
            cout_g = dw.shape[0] // groups
            xm = np.stack([mean[(c // cout_g) * cin_g : (c // cout_g + 1) * cin_g]
                           for c in range(dw.shape[0])])  # fmt: skip
            delta = (per_out * xm).sum(axis=1)
        else:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            delta = (dw if trans_b else dw.T) @ mean
        if len(node.input) > 2 and node.input[2]:
            bname = node.input[2]
            bdq = producers.get(bname)
            if bname in inits:
                b = numpy_helper.to_array(inits[bname]).astype(np.float64) - delta
                inits[bname].CopyFrom(numpy_helper.from_array(b.astype(np.float32), bname))
            elif bdq is not None and bdq.op_type == "DequantizeLinear":
                bq, bs = const(bdq.input[0]), const(bdq.input[1])
                if bq is None or bs is None:
                    continue
                new = np.round(bq.astype(np.float64) - delta / bs.astype(np.float64))
                new = np.clip(new, -(2**31) + 1, 2**31 - 1).astype(np.int32)
                inits[bdq.input[0]].CopyFrom(numpy_helper.from_array(new, bdq.input[0]))
            else:
                continue
        else:
            bname = f"{node.name or node.output[0]}_bias_corrected"
            q.graph.initializer.append(numpy_helper.from_array((-delta).astype(np.float32), bname))
            node.input.append(bname)
        n_fixed += 1
        largest = max(largest, float(np.abs(delta).max()))
    onnx.save(q, str(qdq))
    return {"layers": n_fixed, "max_abs_correction": largest, "images": count * step}


def op_census(path: Path, scratch: Path) -> dict[str, Any]:
    """What ONNX Runtime actually computes: op types after its graph optimisations.

    A Q/DQ file computes in integers only if ONNX Runtime fuses the Q/DQ pairs into integer
    kernels (QLinearConv ...); a Q/DQ pair it cannot fuse leaves the op in float. Counting the
    optimised graph proves which happened on this CPU.
    """
    ort = require("onnxruntime", "the integer-op census")
    onnx = require("onnx", "the integer-op census")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    dumped = scratch / f"{path.stem}.optimized.onnx"
    so.optimized_model_filepath = str(dumped)
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(dumped)).graph.node]
    dumped.unlink(missing_ok=True)
    by_op: dict[str, int] = {}
    for op in ops:
        by_op[op] = by_op.get(op, 0) + 1
    return {
        "runtime": f"onnxruntime {ort.__version__} (CPU, extended optimisations)",
        "integer_ops": sum(v for k, v in by_op.items() if k in INTEGER_OPS),
        "float_ops": sum(v for k, v in by_op.items() if k in FLOAT_COMPUTE_OPS),
        "quantize_ops": by_op.get("QuantizeLinear", 0),
        "dequantize_ops": by_op.get("DequantizeLinear", 0),
        "by_op": dict(sorted(by_op.items())),
    }


def profile_qdq_options(ctx: ExportContext, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The :func:`quantize_qdq` arguments every ONNX Runtime-based target takes from its profile
    (``exclude``: nodes kept in float on top of the profile's excluded layers)."""
    q = ctx.profile.quantize
    return {
        "exclude": (*q.excluded_layers, *exclude),
        "static_batch": ctx.input.batch,
        "calibrate_method": q.calibrate_method,
        "percentile": q.percentile,
        "calibration_cache": ctx.scratch / "calibration-ranges.json",
    }


def qdq_coverage(path: Path) -> dict[str, Any]:
    """Static proof of what an integer runtime can run in int8: compute ops (Conv, Gemm, MatMul)
    whose data and weight inputs both come from int8 DequantizeLinear nodes and whose output
    feeds a QuantizeLinear (a fusable "DQ -> op -> Q" unit), against compute ops left in float.

    Counting ops alone would call a file "INT8" when only its weights are stored in int8 and
    every convolution still runs in float (weight-only Q/DQ); this needs the activations too.
    """
    onnx = require("onnx", "the integer-op census")
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def int8_dq(name: str) -> bool:
        node = producers.get(name)
        if node is None or node.op_type != "DequantizeLinear":
            return False
        if len(node.input) > 2 and node.input[2] in inits:
            zp = numpy_helper.to_array(inits[node.input[2]])
            return bool(zp.dtype.name in ("int8", "uint8"))
        return True

    by_op: dict[str, dict[str, int]] = {}
    for n in model.graph.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        ok = all(int8_dq(i) for i in n.input[:2]) and any(
            c.op_type == "QuantizeLinear" for c in consumers.get(n.output[0], [])
        )
        slot = by_op.setdefault(n.op_type, {"int": 0, "float": 0})
        slot["int" if ok else "float"] += 1
    return {
        "method": "static Q/DQ coverage (DQ(int8) -> op -> Q units)",
        "integer_ops": sum(v["int"] for v in by_op.values()),
        "float_ops": sum(v["float"] for v in by_op.values()),
        "by_op": by_op,
    }
