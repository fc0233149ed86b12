"""jetson: TensorRT by explicit quantisation — a TensorRT-conformant Q/DQ ONNX plus a build plan.

TensorRT's supported INT8 route is a Q/DQ ONNX compiled as a *strongly typed* network (implicit
INT8 calibration is deprecated). We produce that ONNX on any machine with ONNX Runtime's
``quantize_static`` (QDQ format, symmetric int8 activations and weights, per-channel weights,
float biases, Q/DQ only on Conv/Gemm/MatMul inputs) rather than NVIDIA's ``nvidia-modelopt``:
modelopt downgrades onnx and installs onnxruntime-gpu over onnxruntime in the same environment
(DESIGN.md, facts), while ORT with these settings writes exactly the Q/DQ TensorRT wants, and the
static validator below proves it.

TensorRT itself is not installable on our machines: the Q/DQ model's accuracy is measured in ONNX
Runtime as the stand-in for the engine, and the engine is built on the Jetson from the bundled
plan (``edgevcf build BUNDLE``, or ``trtexec.sh``). Engines record TensorRT version, GPU/SM and
JetPack; the runtime refuses an engine built elsewhere.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevcf import progress
from edgevcf.bundle import DEVICE_DIR, Artifact
from edgevcf.deps import available, require
from edgevcf.errors import CompileError, QuantizationError
from edgevcf.profiles import TargetProfile
from edgevcf.targets.mixed import FloatBlockFallback
from edgevcf.targets.qdq import profile_qdq_options, quantize_qdq

if TYPE_CHECKING:
    from edgevcf.pipeline import ExportContext

log = logging.getLogger(__name__)

PLAN = "build_plan.json"
TRTEXEC = "trtexec.sh"
BUILD_SCRIPT = "build_engine.py"
ENGINE = "model.engine"
TIMING_CACHE = "timing.cache"
QUANTIZED_OPS = ["Conv", "Gemm", "MatMul"]

# ONNX ops the TensorRT 10 ONNX parser supports that occur in image classifiers (onnx-tensorrt
# operators.md); anything else is refused before a user ships the file to a Jetson.
TRT_SUPPORTED_OPS = frozenset(
    """Abs Add AveragePool BatchNormalization Cast Ceil Clip Concat Constant ConstantOfShape Conv
    ConvTranspose Div Dropout Elu Equal Erf Exp Expand Flatten Floor Gather Gemm
    GlobalAveragePool GlobalMaxPool Greater HardSigmoid HardSwish Identity InstanceNormalization
    LeakyRelu Less Log MatMul Max MaxPool Mean Min Mul Neg Pad Pow PRelu QuantizeLinear
    DequantizeLinear Reciprocal ReduceMax ReduceMean ReduceMin ReduceSum Relu Reshape Resize
    Selu Shape Sigmoid Sign Slice Softmax Softplus Split Sqrt Squeeze Sub Sum Tanh Tile
    Transpose Unsqueeze Where""".split()  # noqa: SIM905
)


def _const(model: Any, name: str) -> np.ndarray | None:
    """The value of an initializer or Constant output, else None."""
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.name == name:
            return np.asarray(numpy_helper.to_array(init))
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            for attr in node.attribute:
                if attr.name == "value":
                    return np.asarray(numpy_helper.to_array(attr.t))
    return None


def validate_trt_qdq(path: Path, *, static_shape: bool = True) -> dict[str, Any]:
    """Check a Q/DQ ONNX against TensorRT's explicit-quantisation rules.

    Rules: opset >= 17; every Q/DQ int8 with zero point 0 and finite positive scales;
    activations per-tensor; weights per-channel on axis 0 for Conv (and transB Gemm), one scale
    per output channel; no int32 (bias) DequantizeLinear; every op supported by TensorRT's ONNX
    parser; a static input shape. Returns a report; raises on any violation.

    Raises:
        QuantizationError: listing every violation found.
    """
    onnx = require("onnx", "the TensorRT Q/DQ validator")
    model = onnx.load(str(path))
    problems: list[str] = []
    opset = {o.domain or "ai.onnx": o.version for o in model.opset_import}.get("ai.onnx", 0)
    if opset < 17:
        problems.append(f"opset {opset} < 17")
    inits = {i.name for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dims = inp.type.tensor_type.shape.dim
        if static_shape and any(not d.HasField("dim_value") or d.dim_value <= 0 for d in dims):
            problems.append(f"input {inp.name} has a dynamic shape")
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    unsupported = sorted({n.op_type for n in model.graph.node} - TRT_SUPPORTED_OPS)
    if unsupported:
        problems.append(f"ops TensorRT's ONNX parser does not support: {', '.join(unsupported)}")
    n_q = n_dq = n_weight = n_act = 0
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        n_q += node.op_type == "QuantizeLinear"
        n_dq += node.op_type == "DequantizeLinear"
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        scale = _const(model, node.input[1])
        zp = _const(model, node.input[2]) if len(node.input) > 2 and node.input[2] else None
        where = f"{node.op_type} {node.name or node.output[0]}"
        if scale is None:
            problems.append(f"{where}: scale is not a constant")
            continue
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            problems.append(f"{where}: scales must be finite and positive")
        if zp is None:
            if node.op_type == "QuantizeLinear":
                problems.append(f"{where}: no zero point (output would be uint8)")
        else:
            if zp.dtype != np.int8:
                problems.append(f"{where}: zero point is {zp.dtype}, TensorRT needs int8")
            elif np.any(zp != 0):
                problems.append(f"{where}: zero point is not 0 (TensorRT is symmetric)")
        is_weight = node.op_type == "DequantizeLinear" and (
            node.input[0] in inits or _const(model, node.input[0]) is not None
        )
        if is_weight:
            n_weight += 1
            users = consumers.get(node.output[0], [])
            conv_w = [
                u
                for u in users
                if u.op_type in ("Conv", "Gemm") and u.input[1:2] == [node.output[0]]
            ]
            if conv_w:
                w = _const(model, node.input[0])
                out_ch = w.shape[0] if w is not None else -1
                if scale.size > 1 and (axis != 0 or scale.size != out_ch):
                    problems.append(
                        f"{where}: per-channel weight scales must be on axis 0 "
                        f"(axis {axis}, {scale.size} scales, {out_ch} output channels)"
                    )
                if scale.size == 1 and out_ch > 1:
                    problems.append(f"{where}: weights are per-tensor, TensorRT wants per-channel")
        else:
            n_act += 1
            if scale.size != 1:
                problems.append(f"{where}: activation scales must be per-tensor")
    if problems:
        raise QuantizationError(
            f"{path.name} breaks TensorRT's Q/DQ rules: "
            + "; ".join(problems[:8])
            + (f" (+{len(problems) - 8} more)" if len(problems) > 8 else ""),
            hint="export with the jetson profile; do not hand-edit Q/DQ models",
        )
    float_compute = sum(
        1
        for n in model.graph.node
        if n.op_type in QUANTIZED_OPS
        and not all(
            (producers.get(i) is not None and producers[i].op_type == "DequantizeLinear")
            for i in n.input[:2]
        )
    )
    return {
        "opset": opset,
        "quantize_linear": n_q,
        "dequantize_linear": n_dq,
        "weight_dq_per_channel_axis0": n_weight,
        "activation_q_and_dq_per_tensor": n_act,
        "conv_gemm_left_in_float": float_compute,
        "ops": sorted({n.op_type for n in model.graph.node}),
        "passed": True,
    }


def build_plan(profile: TargetProfile, onnx_file: str, precision: str) -> dict[str, Any]:
    """The exact engine build: settings for ``build_engine`` and the equivalent trtexec line."""
    o = profile.options
    strongly_typed = precision == "int8"
    cmd = ["trtexec", f"--onnx={onnx_file}", f"--saveEngine={DEVICE_DIR}/{ENGINE}"]
    cmd += ["--stronglyTyped"] if strongly_typed else ["--fp16"]
    cmd += [f"--memPoolSize=workspace:{int(o['workspace_mb'])}M"]
    if o["timing_cache"]:
        cmd += [f"--timingCacheFile={DEVICE_DIR}/{TIMING_CACHE}"]
    cmd += [f"--builderOptimizationLevel={int(o['builder_optimization_level'])}"]
    if int(o["dla_core"]) >= 0:
        cmd += [f"--useDLACore={int(o['dla_core'])}", "--allowGPUFallback"]
    cmd += ["--skipInference"]
    return {
        "onnx": onnx_file,
        "engine": ENGINE,
        "precision": precision,
        "strongly_typed": strongly_typed,
        "fp16": not strongly_typed,
        "workspace_mb": int(o["workspace_mb"]),
        "timing_cache": TIMING_CACHE if o["timing_cache"] else None,
        "builder_optimization_level": int(o["builder_optimization_level"]),
        "dla_core": int(o["dla_core"]),
        "gpu_fallback": int(o["dla_core"]) >= 0,
        "device": profile.device,
        "expected_sm": o["sm"],
        "trtexec": " ".join(shlex.quote(c) for c in cmd),
    }


def build_engine(plan: dict[str, Any], folder: Path, out: Path | None = None) -> dict[str, Any]:
    """Build the TensorRT engine of ``plan`` from the ONNX in ``folder`` into ``out`` (default
    ``folder``), where ``tensorrt`` imports.

    Strongly typed for Q/DQ INT8 (precisions follow the Q/DQ types, as TensorRT recommends for
    explicit quantisation), FP16 kernels allowed for the fallback; workspace limit, timing cache
    (reused across builds, saved after), optional DLA core with GPU fallback. Writes the engine
    and ``model.json`` (TensorRT version, GPU, SM, L4T) next to it.

    Raises:
        CompileError: the ONNX parser or the builder fails.
    """
    trt = require("tensorrt", "building a TensorRT engine")
    from edgevcf.backends.tensorrt import device_facts, tensorrt_too_old

    if why := tensorrt_too_old(str(trt.__version__)):  # before an AttributeError on 8.6
        raise CompileError(why)
    if plan["strongly_typed"] and plan["dla_core"] >= 0:
        raise CompileError("a strongly typed (Q/DQ INT8) network cannot be built for a DLA")
    out = folder if out is None else out
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if plan["strongly_typed"]:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse((folder / plan["onnx"]).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise CompileError(f"TensorRT's ONNX parser refused {plan['onnx']}: {errors}"[:600])
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan["workspace_mb"] << 20)
    config.builder_optimization_level = plan["builder_optimization_level"]
    if plan["fp16"]:
        config.set_flag(trt.BuilderFlag.FP16)
    if plan["dla_core"] >= 0:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan["dla_core"]
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    cache_path = out / plan["timing_cache"] if plan.get("timing_cache") else None
    if cache_path is not None:
        blob = cache_path.read_bytes() if cache_path.is_file() else b""
        if not config.set_timing_cache(config.create_timing_cache(blob), ignore_mismatch=False):
            # a cache from another device or TensorRT: build with a fresh one (never mixed)
            log.warning("timing cache %s is from another device: starting a new one", cache_path)
            config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise CompileError("TensorRT failed to build the engine (see the log above)")
    (out / plan["engine"]).write_bytes(bytes(serialized))
    if cache_path is not None:
        cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    facts = {**device_facts(), "dla_core": plan["dla_core"],
             "build_seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    (out / Path(plan["engine"]).with_suffix(".json")).write_text(json.dumps(facts, indent=2))
    return facts


_BUILD_SCRIPT = '''#!/usr/bin/env python3
"""Build this bundle's TensorRT engine on the Jetson (same as `edgevcf build BUNDLE`)."""
import sys
from pathlib import Path

from edgevcf.targets.jetson import build_bundle_engine

build_bundle_engine(Path(__file__).resolve().parent, force="--force" in sys.argv)
'''


def build_bundle_engine(
    bundle_dir: Path,
    *,
    force: bool = False,
    adopt: bool = False,
    key: Path | None = None,
    passphrase: str | None = None,
) -> Path:
    """Verify a jetson bundle and build its engine from the plan into ``BUNDLE/device``.

    The exported files are not touched (their signature stays valid): the engine, its timing
    cache and the sealed record binding them to the exported ONNX's SHA-256 are built in a
    staged folder and swapped in, so a failed build leaves the bundle as it was. ``adopt``: take
    the engine ``trtexec.sh`` wrote into ``device/`` instead of building one (the same end
    state). ``key``: sign ``device/`` with the device's key (needed where the bundle runs under
    a trust list).
    """
    import shutil

    from edgevcf.backends.tensorrt import device_facts
    from edgevcf.bundle import DEVICE_RECORD, Bundle, staging, write_device_record
    from edgevcf.errors import ConfigError
    from edgevcf.signing import load_private_key, sign_bundle

    bundle_dir = Path(bundle_dir)
    dev = bundle_dir / DEVICE_DIR
    if key is not None:  # a wrong key or passphrase is refused before a long build
        load_private_key(key, passphrase)
    bundle = Bundle.load(bundle_dir, device=False)
    if bundle.manifest["target"] != "jetson":
        raise ConfigError(f"{bundle_dir} is a {bundle.manifest['target']} bundle, not jetson")
    if adopt and not (dev / ENGINE).is_file():
        raise ConfigError(f"{dev} has no {ENGINE} to adopt", hint="run trtexec.sh first")
    if not adopt and (dev / DEVICE_RECORD).is_file() and not force:
        raise ConfigError("the bundle already has an engine", hint="pass --force to rebuild")
    plan = json.loads((bundle.path / PLAN).read_text())
    with staging(dev, force=True) as work:
        for name in (ENGINE, TIMING_CACHE) if adopt else (TIMING_CACHE,):  # reuse the cache
            if (dev / name).is_file():
                shutil.copy2(dev / name, work / name)  # copied: a failure leaves them there
        if adopt:
            facts = {**device_facts(), "dla_core": plan["dla_core"], "built_by": "trtexec"}
        else:
            with progress.step("jetson: build TensorRT engine"):
                facts = build_engine(plan, bundle.path, work)
        how = "built on device" + (" by trtexec.sh" if adopt else "")
        engine = Artifact("engine", f"{DEVICE_DIR}/{ENGINE}", "tensorrt", plan["precision"],
                          {}, how)  # fmt: skip
        source = {"file": plan["onnx"], "sha256": bundle.manifest["files"][plan["onnx"]]}
        write_device_record(work, {**facts, "source": source, "artifact": engine.to_dict()})
        if key is not None:
            sign_bundle(work, key, passphrase)
    Bundle.load(bundle_dir)  # what was swapped in checks out
    return dev / ENGINE


class JetsonTarget(FloatBlockFallback):
    """Q/DQ ONNX (INT8) or FP32 ONNX (FP16 fallback) + TensorRT build plan [+ engine]."""

    name = "jetson"
    needs = ("onnx", "onnxruntime")

    def build(self, ctx: ExportContext) -> list[Artifact]:
        prec = ctx.profile.quantize.precision
        if prec == "int8":
            with progress.step("jetson: Q/DQ quantisation (symmetric int8)"):
                arts = self._quantize(ctx, ())
            dest = ctx.work / arts[0].file
            note = arts[0].note
        else:
            dest = ctx.work / "model.fp32.onnx"
            dest.write_bytes(ctx.fp32_onnx.read_bytes())
            note = (
                "FP32 graph; the engine runs it in FP16 (--fp16). Measured here in FP32 "
                "ONNX Runtime: confirm FP16 accuracy on the device with `edgevcf verify`"
            )
        plan = build_plan(ctx.profile, dest.name, prec)
        (ctx.work / PLAN).write_text(json.dumps(plan, indent=2) + "\n")
        trtexec = plan["trtexec"].replace("trtexec ", '"$TRTEXEC" ', 1)
        (ctx.work / TRTEXEC).write_text(
            "#!/bin/sh\n# Build the engine on the Jetson (TensorRT from JetPack 6.1+).\n"
            "# JetPack keeps trtexec in /usr/src/tensorrt/bin, not on PATH.\n"
            "# `edgevcf build BUNDLE` does the same build and records the engine in the bundle.\n"
            'TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"\n'
            f'cd "$(dirname "$0")" && mkdir -p {DEVICE_DIR} && {trtexec} &&\n'
            'echo "engine built: record it in the bundle with: edgevcf build --adopt $PWD"\n'
        )
        (ctx.work / BUILD_SCRIPT).write_text(_BUILD_SCRIPT)
        for script in (TRTEXEC, BUILD_SCRIPT):
            (ctx.work / script).chmod(0o755)
        ctx.notes.append(note)
        ctx.extra["tensorrt_here"] = available("tensorrt")
        return [Artifact("model", dest.name, "onnxruntime", prec, {}, note)]

    def _quantize(self, ctx: ExportContext, exclude: tuple[str, ...]) -> list[Artifact]:
        """The TensorRT-conformant Q/DQ ONNX (``exclude``: more nodes kept in float)."""
        assert ctx.calib_inputs is not None
        dest = ctx.work / "model.qdq.onnx"
        quantize_qdq(
            ctx.fp32_onnx,
            dest,
            ctx.calib_inputs,
            activation_type="int8",
            symmetric_activations=True,
            per_channel=True,
            op_types=QUANTIZED_OPS,
            quantize_bias=False,
            exclude_output_quantization=tuple(QUANTIZED_OPS),
            **profile_qdq_options(ctx, exclude),
        )
        ctx.extra["trt_qdq_validation"] = validate_trt_qdq(dest, static_shape=ctx.input.batch > 0)
        note = "ONNX Runtime stand-in for the TensorRT engine (accuracy, not Jetson latency)"
        return [Artifact("model", dest.name, "onnxruntime", "int8", {}, note)]


#: The target of this module (:func:`edgevcf.targets.get_target`).
TARGET = JetsonTarget
