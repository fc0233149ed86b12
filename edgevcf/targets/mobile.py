"""mobile: ONNX INT8 to the TFLite quantisation spec, its ORT-format twin, and a real .tflite.

Two mobile runtimes, three files:

* ``model.int8.onnx`` — Q/DQ with int8 symmetric per-channel weights and int8 asymmetric
  per-tensor activations (the TFLite quantisation spec, which ONNX Runtime's ARM kernels fuse
  into integer kernels);
* ``model.int8.ort`` — the same graph in ONNX Runtime Mobile's flatbuffer format (runtime-style
  optimisation, so the device's own ORT picks its kernels);
* ``model.int8.tflite`` — a full-integer LiteRT model converted from the PyTorch network by
  ``litert-torch`` with PT2E quantisation calibrated on the same calibration images.

Peers ship "INT8" files that are float inside; the bundle records an op census of each file
proving which ops compute in integers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgevcf import progress
from edgevcf.bundle import Artifact
from edgevcf.deps import require
from edgevcf.errors import ExportError, QuantizationError
from edgevcf.targets.mixed import FloatBlockFallback
from edgevcf.targets.qdq import profile_qdq_options, qdq_coverage, quantize_qdq

if TYPE_CHECKING:
    from edgevcf.pipeline import ExportContext

log = logging.getLogger(__name__)


def to_ort_format(onnx_path: Path, out_dir: Path) -> Path:
    """Convert to ONNX Runtime Mobile's ``.ort`` (runtime optimisation style: portable)."""
    require("onnxruntime", "ORT-format conversion")
    from onnxruntime.tools.convert_onnx_models_to_ort import (
        OptimizationStyle,
        convert_onnx_models_to_ort,
    )

    try:
        convert_onnx_models_to_ort(
            onnx_path, output_dir=out_dir, optimization_styles=[OptimizationStyle.Runtime]
        )
    except Exception as exc:
        raise ExportError(f"ORT-format conversion failed: {type(exc).__name__}: {exc}") from exc
    produced = sorted(out_dir.glob(f"{onnx_path.stem}*.ort"))
    if not produced:
        raise ExportError("ORT-format conversion wrote no .ort file")
    for extra in out_dir.glob("*.config"):
        extra.unlink(missing_ok=True)
    return produced[0]


def _no_tflite(ctx: ExportContext) -> str | None:
    """Why litert-torch cannot make this reference's .tflite (None: it can)."""
    if ctx.model_kind == "onnx":
        return "litert-torch converts a PyTorch network, and this reference is an ONNX graph"
    if ctx.model_kind == "torchscript":
        return "litert-torch needs torch.export, which cannot read TorchScript"
    output = ctx.structure.get("output", "logit")
    if ctx.model_kind == "pt2" and output in ("probability", "softmax"):
        return (f"the program's {output} output becomes the logit through LOG ops, which no int8 "
                "kernel runs")  # fmt: skip
    return None


class MobileTarget(FloatBlockFallback):
    """ONNX INT8 (TFLite spec) + .ort + full-integer .tflite."""

    name = "mobile"
    needs = ("onnx", "onnxruntime", "litert", "litert_torch")
    toolchain = ("onnx", "onnxruntime", "litert-torch", "ai-edge-litert", "torch")

    def check_available(self, profile: Any) -> None:
        for name in ("onnx", "onnxruntime"):
            require(name, "the mobile target")
        if profile.options["tflite"]:
            for name in ("litert", "litert_torch"):
                require(name, "the mobile target's .tflite")

    def build(self, ctx: ExportContext) -> list[Artifact]:
        prec = ctx.profile.quantize.precision
        census: dict[str, Any] = {}
        if prec == "int8":
            with progress.step("mobile: quantize_static (TFLite spec)"):
                arts = self._onnx_files(ctx, prec, census, ())
        else:
            arts = self._onnx_files(ctx, prec, census, None)
        why = _no_tflite(ctx)
        if ctx.profile.options["tflite"] and why:
            ctx.notes.append(f"no .tflite: {why} (the ONNX INT8 and .ort files are built)")
        elif ctx.profile.options["tflite"]:
            try:
                self._tflite_art = self._tflite(ctx, prec, census)
                arts.append(self._tflite_art)
            except QuantizationError as exc:
                if ctx.model_kind == "eager":
                    raise
                # a foreign program's own ops decide: say so, ship what is integer
                ctx.notes.append(f"no .tflite: {exc.message} (the ONNX INT8 and .ort files are "
                                 "built)")  # fmt: skip
        ctx.extra["integer_check"] = census
        return arts

    def _quantize(self, ctx: ExportContext, exclude: tuple[str, ...]) -> list[Artifact]:
        """The ONNX INT8 and .ort files with ``exclude`` in float; the .tflite (a separate
        quantisation of the PyTorch network) is kept as built."""
        census = ctx.extra.setdefault("integer_check", {})
        arts = self._onnx_files(ctx, "int8", census, exclude)
        tfl = getattr(self, "_tflite_art", None)
        return arts + ([tfl] if tfl is not None else [])

    def _onnx_files(
        self,
        ctx: ExportContext,
        prec: str,
        census: dict[str, Any],
        exclude: tuple[str, ...] | None,
    ) -> list[Artifact]:
        """model.<prec>.onnx (quantized when ``exclude`` is not None) and its .ort twin."""
        threads = {"threads": ctx.profile.bench.threads}
        if exclude is not None:
            assert ctx.calib_inputs is not None
            dest = ctx.work / "model.int8.onnx"
            quantize_qdq(
                ctx.fp32_onnx,
                dest,
                ctx.calib_inputs,
                activation_type="int8",
                symmetric_activations=False,
                per_channel=True,
                **profile_qdq_options(ctx, exclude),
            )
            census["model"] = qdq_coverage(dest)
        else:
            dest = ctx.work / f"model.{prec}.onnx"
            dest.write_bytes(ctx.fp32_onnx.read_bytes())
        arts = [Artifact("model", dest.name, "onnxruntime", prec, threads)]
        if ctx.profile.options["ort_format"]:
            ort_file = to_ort_format(dest, ctx.scratch)  # ~0.1 s: no progress line
            final = ctx.work / (dest.stem + ".ort")
            final.write_bytes(ort_file.read_bytes())
            arts.append(
                Artifact("ort", final.name, "onnxruntime", prec, threads, "ONNX Runtime Mobile")
            )
        return arts

    def _tflite(self, ctx: ExportContext, prec: str, census: dict[str, Any]) -> Artifact:
        from edgevcf.onnx_export import grey_wrapper
        from edgevcf.targets import litert_convert as lc

        assert ctx.model is not None  # build() checked
        model = ctx.model.eval()
        if ctx.input.kind == "unit":
            model = grey_wrapper(model, ctx.spec)
        shape = (1, *ctx.input.shape[1:])
        if prec == "int8":
            assert ctx.calib_inputs is not None
            dest = ctx.work / "model.int8.tflite"
            calib = [ctx.calib_inputs[i : i + 1] for i in range(len(ctx.calib_inputs))]
            with progress.step("mobile: litert-torch PT2E int8 .tflite"):
                lc.convert_tflite_int8(model, shape, calib, dest)
        else:
            dest = ctx.work / "model.fp32.tflite"
            with progress.step("mobile: litert-torch .tflite"):
                lc.convert_tflite_fp32(model, shape, dest)
        census["tflite"] = lc.tflite_op_census(dest)
        return Artifact(
            "tflite",
            dest.name,
            "litert",
            prec,
            {"threads": ctx.profile.bench.threads},
            "LiteRT (PT2E quantisation of the PyTorch network)" if prec == "int8" else "LiteRT",
        )


#: The target of this module (:func:`edgevcf.targets.get_target`).
TARGET = MobileTarget
