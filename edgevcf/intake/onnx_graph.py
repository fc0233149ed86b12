"""A foreign ONNX classifier: what its graph says, the user's declaration checked against it,
and the graph normalised to edgevcf's canonical form.

Canonical: one float input ``input`` of shape (N, C, S, S) — NCHW, the channels and size the
network was trained with, batch dynamic unless the graph fixes it — and one output ``logit`` of
shape (N, 1), the logit of "fresh". Every target starts from that form, so a Keras classifier
written by tf2onnx (NHWC in, two-class softmax out) reaches them like a torchvision one.

The output is turned into the logit exactly where the algebra allows: two logits ->
``z_fresh - z_other``; a two-class softmax -> ``log p_fresh - log p_other`` (equal to the
difference of the logits that made it); one probability -> ``log p - log(1 - p)``, which float32
cannot resolve once ``1 - p`` underflows its spacing near 1: such a logit saturates at about
+16.6 (and about -87 near 0), stated in :data:`PROBABILITY_LOGIT_RANGE`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgevcf.data.preprocess import INPUT_NAME, OUTPUT_NAME
from edgevcf.deps import require
from edgevcf.errors import ConfigError, ExportError
from edgevcf.intake.spec import ModelSpecFile

#: The logits a probability output can still express in float32 (p clipped to (0, 1)).
PROBABILITY_LOGIT_RANGE = (-87.3, 16.6)
_P_MIN, _P_MAX = float(np.finfo(np.float32).tiny), float(1.0 - 2.0**-24)
#: The probabilities' clamp before their logit (float32's smallest normal, 1 - 2^-24).
P_RANGE = (_P_MIN, _P_MAX)
#: Operations a graph's output may pass through after its last real layer.
_PASS_THROUGH = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast"}


@dataclass(frozen=True)
class GraphFacts:
    """What a graph says about its input and output (0 in a dimension: not fixed)."""

    input_name: str
    input_dims: tuple[int, ...]
    output_name: str
    output_width: int  # the last dimension of the output (0: not fixed)
    last_op: str  # the operation that makes the output, looking through reshapes
    opset: int

    @property
    def layout(self) -> str | None:
        """NCHW or NHWC when the dimensions say so unambiguously, else None."""
        d = self.input_dims
        if len(d) != 4:
            return None
        nchw, nhwc = d[1] in (1, 3), d[3] in (1, 3)
        if nchw and not nhwc:
            return "NCHW"
        if nhwc and not nchw:
            return "NHWC"
        return None

    @property
    def output_kind(self) -> str | None:
        """The output kind the graph shows where it is unambiguous."""
        if self.output_width == 1:
            return "probability" if self.last_op == "Sigmoid" else "logit"
        if self.output_width == 2:
            return "softmax" if self.last_op == "Softmax" else "two_logits"
        return None


def inspect(path: str | os.PathLike[str]) -> GraphFacts:
    """Read a graph's facts (the file opened with ``onnx.load`` only, checked).

    Raises:
        ExportError: not a valid ONNX model, or not one image input and one output.
    """
    onnx = require("onnx", "reading an ONNX model")
    try:
        m = onnx.load(str(path))
        onnx.checker.check_model(m)
    except Exception as exc:  # protobuf DecodeError, ValidationError, OSError
        msg = f"{path} is not a valid ONNX model: {type(exc).__name__}: {exc}"
        raise ExportError(msg[:400]) from None
    return _facts(m, str(path))


def _facts(m: Any, where: str) -> GraphFacts:
    inits = {i.name for i in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(m.graph.output) != 1:
        raise ExportError(
            f"{where}: a classifier here has one image input and one output; this graph has "
            f"{len(inputs)} input(s) and {len(m.graph.output)} output(s)"
        )
    dims = tuple(_dims(inputs[0]))
    out = m.graph.output[0]
    odims = _dims(out)
    producers = {o: n for n in m.graph.node for o in n.output}
    node = producers.get(out.name)
    while node is not None and node.op_type in _PASS_THROUGH:
        node = producers.get(node.input[0])
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 0)
    return GraphFacts(inputs[0].name, dims, out.name, odims[-1] if odims else 0,
                      node.op_type if node is not None else "", int(opset))  # fmt: skip


def _dims(value_info: Any) -> list[int]:
    return [d.dim_value if d.HasField("dim_value") else 0
            for d in value_info.type.tensor_type.shape.dim]  # fmt: skip


def check_declaration(facts: GraphFacts, spec: ModelSpecFile) -> None:
    """Refuse a declaration the graph contradicts, before any export work.

    Raises:
        ConfigError: layout, channels, size or output kind disagree with the graph (the message
            says what the graph shows and what to declare).
    """
    i, o = spec.input, spec.output
    d = facts.input_dims
    where = f"{spec.source}: the graph's input {facts.input_name!r} is {_shape(d)}"
    if len(d) != 4:
        raise ConfigError(f"{where}: not an image batch (4 dimensions)")
    c_at, hw = (1, (2, 3)) if i.layout == "NCHW" else (3, (1, 2))
    if facts.layout is not None and facts.layout != i.layout:
        raise ConfigError(f"{where}, {facts.layout}; you declared layout = {i.layout!r}",
                          hint=f'declare layout = "{facts.layout}" in [input]')  # fmt: skip
    if d[c_at] not in (0, i.channels):
        raise ConfigError(f"{where}: {d[c_at]} channel(s); you declared channels = {i.channels}",
                          hint=f"declare channels = {d[c_at]} in [input]")  # fmt: skip
    if any(d[k] not in (0, i.size) for k in hw):
        raise ConfigError(f"{where}: {d[hw[0]]} x {d[hw[1]]}; you declared size = {i.size}",
                          hint="declare the size the network was trained at")  # fmt: skip
    width = {"logit": 1, "probability": 1, "two_logits": 2, "softmax": 2}[o.kind]
    seen = facts.output_kind
    out = f"{spec.source}: the graph's output has width {facts.output_width or '?'}"
    if facts.output_width not in (0, width):
        raise ConfigError(
            f"{out}; kind = {o.kind!r} needs width {width}",
            hint=f'declare kind = "{seen}" in [output]' if seen else None,
        )
    if seen is not None and seen != o.kind:
        ends = facts.last_op or "no operation"
        raise ConfigError(
            f"{out} and ends in {ends}: that is {seen!r}, and you declared kind = {o.kind!r}",
            hint=f'declare kind = "{seen}" in [output] (a wrong kind would move every score)',
        )


def normalise(
    src: str | os.PathLike[str], dest: str | os.PathLike[str], spec: ModelSpecFile
) -> GraphFacts:
    """Write ``src`` in canonical form to ``dest`` (see the module docstring); the source's facts.

    Raises:
        ExportError: the file is unreadable or invalid, or its opset is below 11.
        ConfigError: the declaration contradicts the graph (:func:`check_declaration`).
    """
    onnx = require("onnx", "normalising an ONNX model")
    from onnx import TensorProto, helper, numpy_helper

    facts = inspect(src)
    check_declaration(facts, spec)
    if facts.opset < 11:
        raise ExportError(f"{src}: opset {facts.opset} is below 11",
                          hint="convert it with onnx.version_converter or re-export")  # fmt: skip
    m = onnx.load(str(src))
    g = m.graph
    i, o = spec.input, spec.output
    batch = facts.input_dims[0]
    nodes, inits = [], []

    def const(name: str, values: Any, dtype: Any = np.int64) -> str:
        inits.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), f"edgevcf_{name}"))
        return f"edgevcf_{name}"

    # input: canonical NCHW "input" -> what the graph reads
    old_in = facts.input_name
    g.input.remove(next(x for x in g.input if x.name == old_in))
    inner = f"edgevcf_{old_in}" if old_in == INPUT_NAME else old_in
    if inner != old_in:
        _rename(g, old_in, inner)
    if i.layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [INPUT_NAME], [inner], perm=[0, 2, 3, 1]))
    else:
        nodes.append(helper.make_node("Identity", [INPUT_NAME], [inner]))
    g.input.insert(
        0,
        helper.make_tensor_value_info(
            INPUT_NAME, TensorProto.FLOAT, [batch or "batch", i.channels, i.size, i.size]
        ),
    )
    # output: whatever it is -> (N, 1) logit of "fresh"
    old_out = facts.output_name
    if old_out == OUTPUT_NAME:
        _rename(g, old_out, "edgevcf_raw_output")
        old_out = "edgevcf_raw_output"
    g.output.remove(g.output[0])
    flat = "edgevcf_flat"
    width = 1 if o.kind in ("logit", "probability") else 2
    nodes.append(helper.make_node("Reshape", [old_out, const("shape", [-1, width])], [flat]))
    if o.kind == "logit":
        nodes.append(helper.make_node("Identity", [flat], [OUTPUT_NAME]))
    elif o.kind == "probability":
        p = "edgevcf_p"
        nodes += [
            helper.make_node("Clip", [flat, const("pmin", _P_MIN, np.float32),
                                      const("pmax", _P_MAX, np.float32)], [p]),
            helper.make_node("Sub", [const("one", 1.0, np.float32), p], ["edgevcf_q"]),
            helper.make_node("Log", [p], ["edgevcf_logp"]),
            helper.make_node("Log", ["edgevcf_q"], ["edgevcf_logq"]),
            helper.make_node("Sub", ["edgevcf_logp", "edgevcf_logq"], [OUTPUT_NAME]),
        ]  # fmt: skip
    else:
        pos, neg = o.positive_index, 1 - o.positive_index
        for name, k in (("pos", pos), ("neg", neg)):
            nodes.append(helper.make_node(
                "Slice", [flat, const(f"{name}_start", [k]), const(f"{name}_end", [k + 1]),
                          const(f"{name}_axis", [1])], [f"edgevcf_{name}"]))  # fmt: skip
        if o.kind == "softmax":
            nodes += [helper.make_node("Log", ["edgevcf_pos"], ["edgevcf_logpos"]),
                      helper.make_node("Log", ["edgevcf_neg"], ["edgevcf_logneg"]),
                      helper.make_node("Sub", ["edgevcf_logpos", "edgevcf_logneg"],
                                       [OUTPUT_NAME])]  # fmt: skip
        else:
            nodes.append(helper.make_node("Sub", ["edgevcf_pos", "edgevcf_neg"], [OUTPUT_NAME]))
    g.output.append(helper.make_tensor_value_info(
        OUTPUT_NAME, TensorProto.FLOAT, [batch or "batch", 1]))  # fmt: skip
    head, tail = [n for n in nodes if INPUT_NAME in n.input], [
        n for n in nodes if INPUT_NAME not in n.input]  # fmt: skip
    old_nodes = list(g.node)
    del g.node[:]
    g.node.extend([*head, *old_nodes, *tail])
    g.initializer.extend(inits)
    onnx.checker.check_model(m)
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(dest))
    return facts


def _rename(g: Any, old: str, new: str) -> None:
    """Rename tensor ``old`` everywhere in graph ``g`` (node inputs and outputs, graph I/O)."""
    for n in g.node:
        n.input[:] = [new if x == old else x for x in n.input]
        n.output[:] = [new if x == old else x for x in n.output]
    for v in [*g.input, *g.output, *g.value_info]:
        if v.name == old:
            v.name = new


def _shape(d: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(x) if x else "N" for x in d) + ")"


__all__ = [
    "PROBABILITY_LOGIT_RANGE",
    "P_RANGE",
    "GraphFacts",
    "check_declaration",
    "inspect",
    "normalise",
]
