"""onnx-cpu: plain ONNX Runtime on a CPU (FP32 reference, or INT8 u8s8).

Why u8 activations on x86: ONNX Runtime's x86 kernels fuse Q/DQ into integer kernels only for
unsigned 8-bit activations; signed activations fall back to slow paths (6-7x slower, DESIGN.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgevcf import progress
from edgevcf.bundle import Artifact
from edgevcf.targets.mixed import FloatBlockFallback
from edgevcf.targets.qdq import op_census, profile_qdq_options, quantize_qdq

if TYPE_CHECKING:
    from edgevcf.pipeline import ExportContext


class OnnxTarget(FloatBlockFallback):
    """ONNX Runtime CPU: FP32 (the reference) or INT8 with u8 activations / s8 weights."""

    name = "onnx"
    needs = ("onnx", "onnxruntime")

    def build(self, ctx: ExportContext) -> list[Artifact]:
        threads = {"threads": ctx.profile.bench.threads}
        if ctx.profile.quantize.precision != "int8":
            dest = ctx.work / "model.fp32.onnx"
            dest.write_bytes(ctx.fp32_onnx.read_bytes())
            return [Artifact("model", dest.name, "onnxruntime", "fp32", threads)]
        with progress.step("onnx: quantize_static (QDQ)"):
            return self._quantize(ctx, ())

    def _quantize(self, ctx: ExportContext, exclude: tuple[str, ...]) -> list[Artifact]:
        assert ctx.calib_inputs is not None
        opts = ctx.profile.options
        dest = ctx.work / "model.int8.onnx"
        quantize_qdq(
            ctx.fp32_onnx,
            dest,
            ctx.calib_inputs,
            activation_type=str(opts["activation_type"]),
            symmetric_activations=False,
            per_channel=bool(opts["per_channel"]),
            **profile_qdq_options(ctx, exclude),
        )
        ctx.extra["integer_check"] = {"model": op_census(dest, ctx.scratch)}
        return [
            Artifact(
                "model", dest.name, "onnxruntime", "int8", {"threads": ctx.profile.bench.threads}
            )
        ]


#: The target of this module (:func:`edgevcf.targets.get_target`).
TARGET = OnnxTarget
