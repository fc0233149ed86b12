"""LiteRT (ai-edge-litert): ``.tflite`` files, float or full-integer.

An integer model's input tensor is fed ``round(x / scale) + zero_point`` (saturated) and its
integer output dequantised with its own scale and zero point, exactly what an app on the phone
does, so INT8 and FP32 files are called the same way. The interpreter is not thread-safe: each
thread gets its own.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from edgevcf.backends.base import Backend
from edgevcf.deps import require
from edgevcf.errors import BundleError, DataError


def quantize_input(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Float -> the tensor's dtype (integer tensors with their scale and zero point)."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind not in "iu":
        return x.astype(dtype, copy=False)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    q = np.round(x / scale) + zero_point if scale else np.round(x)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_output(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """The tensor's values as float32 (integer tensors dequantised)."""
    if np.dtype(detail["dtype"]).kind not in "iu":
        return y.astype(np.float32, copy=True)
    scale, zero_point = detail["quantization"]
    y32 = y.astype(np.float32)
    return (y32 - zero_point) * scale if scale else y32


class LiteRTBackend(Backend):
    """ai-edge-litert's Interpreter, one per thread."""

    runtime = "litert"

    def __init__(self, path: Path, *, threads: int = 0, **options: Any) -> None:
        super().__init__(path, threads=threads, **options)
        require("litert", "running a .tflite file")
        self._local = threading.local()
        interp = self._interpreter()  # load once now: a broken file fails here, not later
        self._in = interp.get_input_details()[0]
        self._out = interp.get_output_details()[0]
        self._shape = tuple(int(d) for d in self._in["shape"])

    def _interpreter(self) -> Any:
        interp = getattr(self._local, "interp", None)
        if interp is None:
            from ai_edge_litert.interpreter import Interpreter

            try:
                interp = Interpreter(model_path=str(self.path), num_threads=self.threads or None)
                interp.allocate_tensors()
            except (ValueError, RuntimeError) as exc:
                raise BundleError(f"LiteRT cannot load {self.path.name}: {exc}"[:400]) from None
            self._local.interp = interp
        return interp

    @property
    def static_batch(self) -> int:
        return self._shape[0] if self._shape[0] > 0 else 1

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.shape[1:] != self._shape[1:]:
            if x.ndim == 4 and (x.shape[2], x.shape[3], x.shape[1]) == self._shape[1:]:
                x = x.transpose(0, 2, 3, 1)  # an NHWC model
            else:
                raise DataError(
                    f"input of shape {x.shape} does not fit {self.path.name} ({self._shape})"
                )
        interp = self._interpreter()
        interp.set_tensor(self._in["index"], np.ascontiguousarray(quantize_input(x, self._in)))
        interp.invoke()
        y = dequantize_output(interp.get_tensor(self._out["index"]), self._out)
        return y.reshape(len(x), -1)

    @classmethod
    def versions(cls) -> dict[str, str]:
        from importlib.metadata import version

        return {"ai-edge-litert": version("ai-edge-litert")}
