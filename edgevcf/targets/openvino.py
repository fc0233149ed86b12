"""openvino: OpenVINO IR for Intel CPUs — FP32, BF16, FP16, INT8 by NNCF PTQ, mixed and
accuracy-aware INT8.

INT8 comes from ``nncf.quantize`` on the calibration set. When the gate fails (any criterion:
ΔAUC, the operating point, flips) and ``accuracy_fallback`` is on, the costliest blocks are kept
in float by the label-free ranking every INT8 target shares (:mod:`edgevcf.targets.mixed`,
through NNCF's ignored scopes); when that does not pass and the AUC was what failed,
``nncf.quantize_with_accuracy_control`` keeps the layers that cost the most AUC in float, with
``max_drop`` from the profile's tolerance. Profiles that ask (``accuracy_aware``) get accuracy
control straight away. Every decision is measured on the *tuning* split — never the test split
that ``edgevcf bench`` confirms on.

BF16 and FP16 are the FP32 IR (FP16: weights stored in f16) compiled with that inference
precision; they are exported only on a CPU whose OpenVINO plugin lists the capability (measured:
on an AVX-512 BF16 CPU without FP16, OpenVINO compiles an ``f16`` request as bf16), so that the
gate measures what the cart will compute.

Weights NNCF leaves in float (EfficientNet's squeeze-excitation convolutions: 0.6 M of its 4 M
parameters) are stored int8 per output channel, weight-only (``float_weights``): they still
compute in float, but the file no longer carries them at four bytes each. A model from accuracy
control is saved as it validated it.

The inference precision is always explicit (``f32`` by default): on AVX-512 BF16 CPUs OpenVINO
otherwise runs the float parts in bf16 without saying so.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevcf import progress
from edgevcf.bundle import Artifact
from edgevcf.deps import require
from edgevcf.errors import BackendUnavailableError, ConfigError, QuantizationError
from edgevcf.targets.mixed import FloatBlockFallback

if TYPE_CHECKING:
    from edgevcf.pipeline import ArtifactMetrics, ExportContext

log = logging.getLogger(__name__)

XML = "model.xml"


def _items(x: np.ndarray, batch: int) -> list[np.ndarray]:
    step = batch or 1
    return [x[i : i + step] for i in range(0, len(x) - step + 1, step)]


#: A precision's OpenVINO inference precision and the CPU capability it needs (None: any CPU).
#: What a non-eager reference is, for the reasons QAT is refused.
_KIND_WORDS = {"onnx": "an ONNX graph", "torchscript": "a TorchScript program",
               "pt2": "a torch.export program"}  # fmt: skip
FLOAT_PRECISIONS = {"bf16": ("bf16", "BF16"), "fp16": ("f16", "FP16")}


def cpu_capabilities() -> tuple[str, ...]:
    """OpenVINO's CPU plugin ``OPTIMIZATION_CAPABILITIES`` here (e.g. FP32, BF16, INT8)."""
    ov = require("openvino", "OpenVINO export")
    return tuple(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class OpenVINOTarget(FloatBlockFallback):
    """OpenVINO IR (``model.xml`` + ``model.bin``)."""

    name = "openvino"
    needs = ("onnx", "onnxruntime", "openvino", "nncf")
    toolchain = ("openvino", "nncf")

    def check_available(self, profile: Any) -> None:
        super().check_available(profile)
        prec = profile.quantize.precision
        if prec in FLOAT_PRECISIONS and profile.options["device"] == "CPU":
            need = FLOAT_PRECISIONS[prec][1]
            caps = cpu_capabilities()
            if need not in caps:
                raise BackendUnavailableError(
                    f"this CPU has no {need} for OpenVINO (capabilities: {', '.join(caps)}): a "
                    f"bundle in {prec} exported here would be measured in another precision",
                    hint="export it on a CPU of the cart's kind (BF16: AVX-512 BF16 or AMX; "
                    "FP16: AVX-512 FP16 / AMX-FP16), or use --precision int8 / fp32 / auto",
                )

    def precision_candidates(self, profile: Any) -> list[tuple[str, str]]:
        """INT8, then BF16 / FP16 where this CPU has them, then FP32; skipped ones with why."""
        caps = cpu_capabilities() if profile.options["device"] == "CPU" else ()
        out = [("int8", "")]
        for prec, (_, need) in FLOAT_PRECISIONS.items():
            out.append((prec, "" if need in caps else f"this CPU has no {need}"))
        return [*out, ("fp32", "")]

    def _options(self, ctx: ExportContext) -> dict[str, Any]:
        o = ctx.profile.options
        prec = ctx.profile.quantize.precision
        return {
            "device": o["device"],
            "inference_precision": FLOAT_PRECISIONS.get(prec, (o["inference_precision"],))[0],
            "performance_hint": o["performance_hint"],
            "model_cache": o["model_cache"],
            "threads": ctx.profile.bench.threads,
        }

    def _float_model(self, ctx: ExportContext) -> Any:
        ov = require("openvino", "OpenVINO export")
        return ov.convert_model(str(ctx.fp32_onnx))

    def build(self, ctx: ExportContext) -> list[Artifact]:
        prec = ctx.profile.quantize.precision
        if prec == "int8":  # accuracy control, when asked, starts from this one's measurement
            return self._quantize(ctx, ())
        self._save(ctx, self._float_model(ctx), fp16=prec == "fp16")
        return [Artifact("model", XML, "openvino", prec, self._options(ctx))]

    def fallback(
        self, ctx: ExportContext, artifacts: list[Artifact], measured: ArtifactMetrics
    ) -> list[Artifact] | None:
        """Whichever criterion failed: the ranked float-block search first (NNCF ignored
        scopes); then, when the AUC is still what fails, NNCF's accuracy control.

        Accuracy control compares point estimates, while the gate asks that the *CI lower
        bound* of ΔAUC stay above -tolerance; with NNCF's ``max_drop`` equal to the tolerance a
        model losing 0.005 AUC is accepted by NNCF and still fails the gate (measured:
        MobileNetV3-L). So the drop allowed is the tolerance minus the CI half-width measured on
        the plain PTQ model.
        """
        q = ctx.profile.quantize
        if q.precision != "int8" or not (q.accuracy_aware or q.accuracy_fallback or q.qat):
            return None
        if q.qat and ctx.model_kind != "eager":
            raise ConfigError(
                "quantisation-aware training fine-tunes an eager PyTorch network, and this "
                f"reference is {_KIND_WORDS[ctx.model_kind]}",
                hint="export without --qat (post-training INT8, mixed precision and accuracy "
                "control work from ONNX), or import the network as a state dict (--arch)",
            )
        if q.qat:
            return self._qat(ctx, "asked by the profile")
        if q.accuracy_aware:
            return self._accuracy_control(ctx, measured, "asked by the profile")
        arts = self.float_block_search(ctx, measured)
        if ctx.extra["mixed_precision"]["float_blocks"]:
            return arts
        if measured.gate.get("auc_ok") is False:  # accuracy control restores AUC, nothing else
            arts = self._accuracy_control(ctx, measured, "nncf.quantize failed the AUC gate")
            if ctx.measure(arts)[arts[0].name].gate.get("passed") or not q.qat_epochs:
                return arts
        if q.qat_epochs and ctx.model_kind == "eager":
            return self._qat(ctx, "no post-training INT8 passed the gate")
        if q.qat_epochs:
            ctx.notes.append("no QAT fallback: it needs an eager PyTorch network (the reference "
                             f"is {_KIND_WORDS[ctx.model_kind]})")  # fmt: skip
        return arts

    def _qat(self, ctx: ExportContext, why: str) -> list[Artifact]:
        """Quantisation-aware training (:mod:`edgevcf.qat`) on the training split."""
        from edgevcf import qat

        q = ctx.profile.quantize
        assert ctx.calib_inputs is not None
        train = ctx.training_split()
        assert ctx.model is not None  # refused above for anything but an eager network
        net = qat.finetune(
            ctx.model,
            ctx.spec,
            ctx.input,
            train.units,
            ctx.calib_inputs,
            epochs=q.qat_epochs,
            lr=q.qat_lr,
            nncf_options={
                k: v for k, v in self._common(ctx).items() if k in ("preset", "subset_size")
            },
        )
        model = qat.to_openvino(net, ctx.calib_inputs, ctx.input.batch)
        ctx.notes.append(
            f"{why}: quantisation-aware training, {q.qat_epochs} epoch(s) at lr {q.qat_lr:g} on "
            f"the {len(train)} training images (NNCF fake quantisers, distilled from the FP32 "
            "logits), judged on the tuning split"
        )
        ctx.extra["nncf"] = f"quantisation-aware training ({q.qat_epochs} epochs; {why})"
        ctx.extra["qat"] = {"epochs": q.qat_epochs, "lr": q.qat_lr, "train_images": len(train),
                            "why": why}  # fmt: skip
        self._store_float_weights(ctx, model)
        self._save(ctx, model)
        return [Artifact("model", XML, "openvino", "int8", self._options(ctx))]

    def _accuracy_control(
        self, ctx: ExportContext, measured: ArtifactMetrics, why: str
    ) -> list[Artifact]:
        tol = ctx.profile.tolerance.max_auc_drop
        half = 0.0
        if measured.paired:
            half = max(0.0, measured.paired["diff"] - measured.paired["ci_low"])
        max_drop = max(tol - half, tol / 10)
        ctx.notes.append(
            f"{why}: re-quantized with nncf.quantize_with_accuracy_control, max_drop "
            f"{max_drop:.4f} (tolerance {tol} minus the measured CI half-width {half:.4f})"
        )
        model = self._accuracy_aware(ctx, self._float_model(ctx), max_drop)
        ctx.extra["nncf"] = f"quantize_with_accuracy_control (max_drop {max_drop:.4f}; {why})"
        ctx.extra.pop("float_weights", None)  # accuracy control's model is shipped as it is
        self._save(ctx, model)
        return [Artifact("model", XML, "openvino", "int8", self._options(ctx))]

    def _quantize(self, ctx: ExportContext, exclude: tuple[str, ...]) -> list[Artifact]:
        """INT8 with the blocks of ``exclude`` (ONNX node names) in float: NNCF's ignored scope
        by name prefix (OpenVINO keeps the ONNX names, adding suffixes such as
        ``/WithoutBiases``)."""
        blocks, patterns = _block_patterns(exclude)
        model = self._ptq(ctx, self._float_model(ctx), patterns)
        ctx.extra["nncf"] = "quantize" + (f" (ignored: {', '.join(blocks)})" if blocks else "")
        self._store_float_weights(ctx, model)
        self._save(ctx, model)
        return [Artifact("model", XML, "openvino", "int8", self._options(ctx))]

    def _rank_blocks(
        self, ctx: ExportContext, groups: dict[str, list[str]], x: np.ndarray, ref: np.ndarray
    ) -> tuple[dict[str, float], dict[str, str]]:
        """The ranking from one ``nncf.quantize`` instead of one per block: each block's model
        is a copy of the plain INT8 model with that block's ops given their float inputs back
        (:func:`float_block_copy`). Re-quantizing per block cost 6-10 s a block (statistics,
        bias correction, compilation: 19 calls made OpenVINO the demo's slowest export); the
        copies differ from it only in what NNCF's statistics and bias correction do downstream
        of the block, which a ranking does not need. The mixes then tried are real
        ignored-scope quantizations, measured by the gate."""
        import shutil

        fp32 = self._float_model(ctx)  # one conversion: NNCF quantizes a copy, the original
        plain = self._ptq(ctx, fp32.clone())  # gives back the float weights and biases
        float_ops = {op.get_friendly_name(): op for op in fp32.get_ordered_ops()}
        rank_dir = ctx.work / "rank-blocks"
        rank_dir.mkdir(exist_ok=True)
        art = Artifact("model", f"{rank_dir.name}/{XML}", "openvino", "int8", self._options(ctx))
        ov = require("openvino", "OpenVINO export")
        cost: dict[str, float] = {}
        unusable: dict[str, str] = {}
        try:
            for key in progress.track(
                list(groups), desc=f"{self.name}: block sensitivity", unit="block"
            ):
                model, touched = float_block_copy(
                    plain, float_ops, _block_patterns(tuple(groups[key]))[1]
                )
                if not touched:
                    unusable[key] = "no OpenVINO operation of this block is quantized"
                    continue
                ov.save_model(model, str(ctx.work / art.file), compress_to_fp16=False)
                cost[key] = float(np.abs(ctx.run(art, x).reshape(-1) - ref).mean())
        finally:
            shutil.rmtree(rank_dir, ignore_errors=True)
        return cost, unusable

    def _save(self, ctx: ExportContext, model: Any, fp16: bool = False) -> None:
        ov = require("openvino", "OpenVINO export")
        for f in ("model.xml", "model.bin"):
            (ctx.work / f).unlink(missing_ok=True)
        ov.save_model(model, str(ctx.work / XML), compress_to_fp16=fp16)
        ctx.extra["integer_check"] = {"model": ir_census(ctx.work / XML)}

    def _store_float_weights(self, ctx: ExportContext, model: Any) -> None:
        """Weight-only storage of the layers plain PTQ left in float. Not after accuracy
        control: it validated its model as it is, and the layers it kept float are its choice
        (measured: int8 there made MobileNetV3-L fail the gate; even fp16 moved its CI bound)."""
        mode = str(ctx.profile.options["float_weights"])
        if mode != "fp32":
            ctx.extra["float_weights"] = {"mode": mode, **compress_float_weights(model, mode)}

    def _common(self, ctx: ExportContext, float_patterns: tuple[str, ...] = ()) -> dict[str, Any]:
        nncf = require("nncf", "INT8 quantisation for OpenVINO")
        q = ctx.profile.quantize
        assert ctx.calib_inputs is not None
        preset = (
            nncf.QuantizationPreset.MIXED
            if ctx.profile.options["preset"] == "mixed"
            else nncf.QuantizationPreset.PERFORMANCE
        )
        kw: dict[str, Any] = {
            "preset": preset,
            "subset_size": len(ctx.calib_inputs),
            "fast_bias_correction": bool(ctx.profile.options["fast_bias_correction"]),
        }
        if q.excluded_layers or float_patterns:
            # the profile names ONNX nodes; OpenVINO keeps the name and may add a suffix
            # (a Conv with bias becomes ".../Conv/WithoutBiases" + its Add)
            pats = [re.escape(n) + "(/.*)?" for n in q.excluded_layers]
            kw["ignored_scope"] = nncf.IgnoredScope(patterns=[*pats, *float_patterns])
        return kw

    def _ptq(self, ctx: ExportContext, model: Any, float_patterns: tuple[str, ...] = ()) -> Any:
        nncf = require("nncf", "INT8 quantisation for OpenVINO")
        assert ctx.calib_inputs is not None
        data = nncf.Dataset(_items(ctx.calib_inputs, ctx.input.batch))
        kw = self._common(ctx, tuple(float_patterns))
        try:
            with progress.step("openvino: nncf.quantize"), progress.captured_stdout("nncf"):
                return nncf.quantize(model, data, **kw)
        except Exception as exc:
            raise QuantizationError(f"nncf.quantize failed: {type(exc).__name__}: {exc}") from exc

    def _accuracy_aware(self, ctx: ExportContext, model: Any, max_drop: float) -> Any:
        nncf = require("nncf", "accuracy-aware INT8 quantisation")
        from edgevcf import metrics

        assert ctx.calib_inputs is not None
        labels = ctx.tuning_labels
        if not 0 < int(labels.sum()) < len(labels):
            raise QuantizationError(
                "accuracy-aware quantisation needs both classes in the tuning split"
            )
        step = ctx.input.batch or 1
        items = [
            (ctx.tuning_inputs[i : i + step], labels[i : i + step])
            for i in range(0, len(labels) - step + 1, step)
        ]

        def validate(compiled: Any, data: Any) -> tuple[float, None]:
            ys, ss = [], []
            for x, y in data:
                out = np.asarray(compiled(x)[0]).reshape(-1)
                ys.append(y)
                ss.append(out)
            y_all, s_all = np.concatenate(ys), np.concatenate(ss)
            if not 0 < int(y_all.sum()) < len(y_all):
                return 0.5, None  # a subset with one class carries no AUC information
            return metrics.auc(y_all, s_all), None

        calib = nncf.Dataset(_items(ctx.calib_inputs, ctx.input.batch))
        val = nncf.Dataset(items, lambda item: item[0])
        try:
            with (
                progress.step("openvino: nncf.quantize_with_accuracy_control"),
                progress.captured_stdout("nncf"),
            ):
                return nncf.quantize_with_accuracy_control(
                    model,
                    calib,
                    val,
                    validate,
                    max_drop=max_drop,
                    drop_type=nncf.DropType.ABSOLUTE,
                    **self._common(ctx),
                )
        except Exception as exc:
            raise QuantizationError(
                f"nncf.quantize_with_accuracy_control failed: {type(exc).__name__}: {exc}"
            ) from exc


_WEIGHT_CONSUMERS = ("Convolution", "GroupConvolution", "MatMul")


def _block_patterns(exclude: tuple[str, ...]) -> tuple[list[str], tuple[str, ...]]:
    """The blocks of ``exclude`` (ONNX node names) and NNCF ignored-scope patterns for them
    (NNCF matches with ``re.match``; OpenVINO keeps the ONNX names, adding suffixes)."""
    blocks = sorted({"/".join(n.split("/")[:3]) for n in exclude})
    return blocks, tuple(re.escape(b) + "/.*" for b in blocks)


def float_block_copy(
    quantized: Any, float_ops: dict[str, Any], patterns: tuple[str, ...]
) -> tuple[Any, int]:
    """A copy of NNCF's INT8 ``quantized`` model whose ops matching ``patterns`` compute on
    float inputs, as if NNCF had ignored them: every FakeQuantize feeding such an op is
    bypassed, and its constant inputs (weights, stored int8 by NNCF, and biases, moved by bias
    correction) are the FP32 model's again, found by OpenVINO's node names (``float_ops``), which
    NNCF keeps. Returns the copy and how many inputs were given back.
    """
    import openvino.opset13 as ops

    model = quantized.clone()
    touched = 0
    for op in model.get_ordered_ops():
        name = op.get_friendly_name()
        if op.get_type_name() in ("Constant", "FakeQuantize") or not any(
            re.match(p, name) for p in patterns
        ):
            continue
        fop = float_ops.get(name)
        for i, port in enumerate(op.inputs()):
            src = port.get_source_output().get_node()
            fsrc = (
                fop.input_value(i).get_node()
                if fop is not None and i < fop.get_input_size()
                else None
            )
            if fsrc is not None and fsrc.get_type_name() == "Constant":
                if src.get_type_name() != "Constant" or not np.array_equal(
                    src.get_data(), fsrc.get_data()
                ):
                    port.replace_source_output(ops.constant(fsrc.get_data()).output(0))
                    touched += 1
            elif src.get_type_name() == "FakeQuantize":
                port.replace_source_output(src.input_value(0))
                touched += 1
    model.validate_nodes_and_infer_types()
    return model, touched


def compress_float_weights(model: Any, mode: str, min_elements: int = 1024) -> dict[str, int]:
    """Store the float32 weights of convolutions / MatMuls that stayed float in ``mode``.

    ``int8``: symmetric per-output-channel int8 + a float scale (Constant -> Convert -> Multiply,
    the decompression pattern OpenVINO folds at compile time); ``fp16``: Constant f16 -> Convert.
    The layers still compute in float (a weight-only change, not integer compute): only weights
    with at least ``min_elements`` values, fed to port 1 of a float compute op, are touched;
    biases and FakeQuantize ranges stay float32. ``ov.save_model(compress_to_fp16=True)`` does
    not do this for NNCF-quantized models (measured: the .bin is unchanged).

    Returns:
        Tensors and values rewritten.
    """
    ov = require("openvino", "weight compression")
    import openvino.opset13 as ops

    tensors = values = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Constant" or op.get_output_element_type(0) != ov.Type.f32:
            continue
        consumers = list(op.output(0).get_target_inputs())
        if not consumers or any(
            c.get_node().get_type_name() not in _WEIGHT_CONSUMERS or c.get_index() != 1
            for c in consumers
        ):
            continue
        w = op.get_data().astype(np.float32)
        if w.size < min_elements or w.ndim < 2:
            continue
        if mode == "fp16":
            new = ops.convert(ops.constant(w.astype(np.float16)), ov.Type.f32)
        else:
            axis = 0 if consumers[0].get_node().get_type_name() != "MatMul" else w.ndim - 2
            red = tuple(i for i in range(w.ndim) if i != axis)
            scale = np.abs(w).max(axis=red, keepdims=True) / 127.0
            scale[scale == 0] = 1.0
            q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
            new = ops.multiply(
                ops.convert(ops.constant(q), ov.Type.f32), ops.constant(scale.astype(np.float32))
            )
        for c in consumers:
            c.replace_source_output(new.output(0))
        tensors += 1
        values += int(w.size)
    model.validate_nodes_and_infer_types()
    return {"tensors": tensors, "values": values}


def ir_census(xml: Path) -> dict[str, Any]:
    """Convolutions / MatMuls fed by FakeQuantize (run in int8 by the CPU plugin) vs not."""
    ov = require("openvino", "the integer-op census")
    model = ov.Core().read_model(str(xml))
    compute = ("Convolution", "GroupConvolution", "MatMul")
    n_int = n_float = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() not in compute:
            continue
        src = op.input_value(0).get_node()
        if src.get_type_name() == "FakeQuantize":
            n_int += 1
        else:
            n_float += 1
    return {
        "runtime": f"openvino {ov.get_version()}",
        "integer_ops": n_int,
        "float_ops": n_float,
        "fake_quantize": sum(
            1 for op in model.get_ordered_ops() if op.get_type_name() == "FakeQuantize"
        ),
    }


#: The target of this module (:func:`edgevcf.targets.get_target`).
TARGET = OpenVINOTarget
