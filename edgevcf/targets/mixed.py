"""Mixed precision by block: keep the blocks whose INT8 costs most in float until the gate passes.

Shared by every INT8 target (ONNX Runtime Q/DQ: onnx, jetson, mobile; OpenVINO with NNCF's
ignored scopes). Each block of the network is ranked by how far the logits move from FP32 on
calibration images when only that block stays float — label-free, so the tuning split that
judges the gate is not used to rank — then the costliest blocks are kept in float one more at a
time until the gate passes on the tuning split (as NNCF's accuracy control does), at most
``MAX_FLOAT_BLOCKS``. It answers whichever criterion failed (ΔAUC, Δsensitivity/Δspecificity,
flips) and records which it answered; nothing passing, the plain INT8 artefact is restored.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevcf import progress
from edgevcf.bundle import Artifact
from edgevcf.deps import require
from edgevcf.errors import ExportError, QuantizationError
from edgevcf.targets.base import Target

if TYPE_CHECKING:
    from edgevcf.pipeline import ArtifactMetrics, ExportContext

log = logging.getLogger(__name__)


def layer_groups(path: Path) -> dict[str, list[str]]:
    """Quantizable nodes (Conv, Gemm, MatMul) grouped by the network block they belong to.

    The exporter names nodes after the module path (``/features/features.2/features.2.0/...``);
    below the prefix that every quantizable node shares (none for the zoo's graphs; ``/net`` or
    ``/net/net`` for a network imported inside edgevcf's adapters), the next two modules name a
    unit of torchvision's networks: the stem, each stage (one or more inverted-residual blocks:
    ``features.2`` of EfficientNet is two MBConv blocks, each ``features.N`` of MobileNetV3 one
    block), the head and the classifier. Flat names (a ``torch.export`` graph: ``/net/Conv_7``)
    make each node its own block. No block may hold most of the network: "INT8 with one block in
    float" must not mean a float network, so a group with more than half of the nodes is split
    into its nodes.
    """
    onnx = require("onnx", "the mixed-precision search")
    names = [n.name for n in onnx.load(str(path)).graph.node
             if n.op_type in ("Conv", "Gemm", "MatMul") and n.name]  # fmt: skip
    if not names:
        return {}
    parts = [n.split("/")[:-1] for n in names]  # module path, without the op's own name
    shared = 0
    while all(len(p) > shared for p in parts) and len({p[shared] for p in parts}) == 1:
        shared += 1
    groups: dict[str, list[str]] = {}
    for name, p in zip(names, parts, strict=True):
        key = "/".join(p[: shared + 2]) if len(p) > shared else name
        groups.setdefault(key or name, []).append(name)
    for key in [k for k, v in groups.items() if 2 * len(v) > len(names) and len(v) > 1]:
        for name in groups.pop(key):
            groups[name] = [name]
    return groups


class FloatBlockFallback(Target):
    """A target whose INT8 can keep named blocks in float (:meth:`_quantize`); its fallback is
    the ranked block search of this module."""

    MAX_FLOAT_BLOCKS = 4
    RANK_IMAGES = 64

    def _quantize(self, ctx: ExportContext, exclude: tuple[str, ...]) -> list[Artifact]:
        """Write the INT8 artefacts with ``exclude`` (ONNX node names) kept in float as well."""
        raise NotImplementedError

    def fallback(
        self, ctx: ExportContext, artifacts: list[Artifact], measured: ArtifactMetrics
    ) -> list[Artifact] | None:
        q = ctx.profile.quantize
        if q.precision != "int8" or not q.accuracy_fallback or ctx.calib_inputs is None:
            return None
        return self.float_block_search(ctx, measured)

    def float_block_search(self, ctx: ExportContext, measured: ArtifactMetrics) -> list[Artifact]:
        """The ranked search's artefacts: the first mix that passes, else the plain INT8 ones
        (``ctx.extra["mixed_precision"]["float_blocks"]`` is then empty)."""
        from edgevcf.backends import open_backend

        assert ctx.calib_inputs is not None
        q = ctx.profile.quantize
        answered = list(measured.gate.get("failed") or [])
        x = ctx.calib_inputs[: self.RANK_IMAGES]
        ref = open_backend("onnxruntime", ctx.fp32_onnx).run_all(x).reshape(-1)
        groups = {
            k: v
            for k, v in layer_groups(ctx.fp32_onnx).items()
            if not set(v) <= set(q.excluded_layers)
        }
        cost, unusable = self._rank_blocks(ctx, groups, x, ref)
        ranked = sorted(cost, key=cost.__getitem__)
        tried: list[dict[str, Any]] = []
        floated: list[str] = []
        facts: dict[str, Any] = {"answered": answered, "rank_mae_logit": cost,
                                 "unusable": unusable}  # fmt: skip
        for key in ranked[: self.MAX_FLOAT_BLOCKS]:
            floated.append(key)
            names = tuple(n for k in floated for n in groups[k])
            with progress.step(f"{self.name}: INT8 with {len(floated)} block(s) in float"):
                arts = self._quantize(ctx, names)
                m = ctx.measure(arts)[arts[0].name]
            tried.append({"float_blocks": list(floated), "gate": m.gate})
            if m.gate.get("passed"):
                ctx.notes.append(
                    f"INT8 failed the gate ({', '.join(answered) or 'see metrics'}); kept "
                    f"{len(floated)} block(s) in float ({', '.join(floated)}): the gate passes "
                    "on the tuning split"
                )
                ctx.extra["mixed_precision"] = {"float_blocks": floated, "tried": tried, **facts}
                return arts
        ctx.notes.append(
            f"INT8 failed the gate ({', '.join(answered) or 'see metrics'}) and keeping up to "
            f"{self.MAX_FLOAT_BLOCKS} blocks in float did not make it pass"
        )
        ctx.extra["mixed_precision"] = {"float_blocks": [], "tried": tried, **facts}
        return self._quantize(ctx, ())  # the plain INT8 artefacts again, measured again

    def _rank_blocks(
        self, ctx: ExportContext, groups: dict[str, list[str]], x: np.ndarray, ref: np.ndarray
    ) -> tuple[dict[str, float], dict[str, str]]:
        """Each block's cost (mean |Δlogit| from FP32 on ``x`` with only that block in float),
        and the blocks that cannot be kept in float alone (with the toolchain's words).

        Here: one INT8 quantisation per block. A target whose quantiser is slow may derive the
        per-block models from one quantised model instead (OpenVINO does)."""
        cost: dict[str, float] = {}
        unusable: dict[str, str] = {}
        for key in progress.track(
            list(groups), desc=f"{self.name}: block sensitivity", unit="block"
        ):
            try:
                arts = self._quantize(ctx, tuple(groups[key]))
            except (ExportError, QuantizationError) as exc:
                # ONNX Runtime's quantiser writes an invalid graph for some exclusions (seen:
                # the classifier's Gemm in float with int8 asymmetric activations, "Gemm_bias_dq"
                # with a missing input): such a block is simply not a candidate.
                unusable[key] = exc.message
                log.info(  # the toolchain's own words go to the log file (and the manifest)
                    "%s: block %s cannot be kept in float alone (%s)",
                    self.name,
                    key,
                    type(exc).__name__,
                )
                log.debug("%s: block %s: %s", self.name, key, exc)
                continue
            z = ctx.run(arts[0], x).reshape(-1)
            cost[key] = float(np.abs(z - ref).mean())
        return cost, unusable
