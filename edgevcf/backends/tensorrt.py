"""TensorRT engines (on the Jetson). Refuses an engine built for another TensorRT or GPU.

An engine is specific to the TensorRT version and the GPU (SM) it was built on; running one
elsewhere fails deep inside TensorRT or, worse, runs with wrong tactics. The bundle records both
when the engine is built, and this backend compares them with the device before deserialising.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from edgevcf.backends.base import Backend
from edgevcf.deps import require
from edgevcf.errors import BundleError


def _cudart() -> Any:
    """cuda-python's runtime bindings (TensorRT's own samples use them; no torch on a cart)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError:
            raise BundleError(
                "cuda-python is not installed (needed to run a TensorRT engine)",
                hint="pip install cuda-python (JetPack: the matching 12.x release)",
            ) from None
    return cudart


def _check(result: Any) -> Any:
    """Unwrap a cuda-python ``(err, *values)`` tuple, raising on an error code."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BundleError(f"CUDA call failed with error {int(err)}")
    return values[0] if len(values) == 1 else values


def device_facts() -> dict[str, str]:
    """TensorRT version, GPU name and SM of this machine, and the L4T (JetPack) release."""
    trt = require("tensorrt", "reading TensorRT device facts")
    facts = {"tensorrt": str(trt.__version__)}
    try:
        cudart = _cudart()
        props = _check(cudart.cudaGetDeviceProperties(0))
        facts["sm"] = f"{props.major}.{props.minor}"
        facts["gpu"] = props.name.decode(errors="replace").rstrip("\x00")
    except BundleError:
        pass
    release = Path("/etc/nv_tegra_release")
    if release.is_file():
        facts["l4t"] = release.read_text(errors="replace").splitlines()[0][:120]
    return facts


def check_engine_compatible(recorded: dict[str, str], here: dict[str, str]) -> None:
    """Raise when the engine's TensorRT version or SM differs from this device's."""
    problems = [
        f"{k}: engine built with {recorded[k]!r}, this device has {here.get(k)!r}"
        for k in ("tensorrt", "sm")
        if recorded.get(k) and here.get(k) and recorded[k] != here[k]
    ]
    if problems:
        raise BundleError(
            "TensorRT engine was built for another device: " + "; ".join(problems),
            hint="rebuild it on this device: edgevcf build BUNDLE",
        )


class TensorRTBackend(Backend):
    """A deserialised engine with one execution context (calls serialised by a lock)."""

    runtime = "tensorrt"

    def __init__(self, path: Path, *, threads: int = 0, **options: Any) -> None:  # pragma: no cover
        super().__init__(path, threads=threads, **options)
        trt = require("tensorrt", "running a TensorRT engine")
        meta_path = self.path.with_suffix(".json")
        if meta_path.is_file():
            check_engine_compatible(json.loads(meta_path.read_text()), device_facts())
        self._cudart = _cudart()
        self._lock = threading.Lock()
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise BundleError(f"TensorRT could not deserialise {self.path.name}")
        self.context = self.engine.create_execution_context()
        self.input_name = self.engine.get_tensor_name(0)
        self.output_name = self.engine.get_tensor_name(1)
        self._shape = tuple(self.engine.get_tensor_shape(self.input_name))
        self._stream = _check(self._cudart.cudaStreamCreate())

    @property
    def static_batch(self) -> int:  # pragma: no cover - needs TensorRT
        return int(self._shape[0]) if self._shape[0] > 0 else 0

    def run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - needs TensorRT
        cudart = self._cudart
        x = np.ascontiguousarray(x, np.float32)
        with self._lock:
            self.context.set_input_shape(self.input_name, x.shape)
            out = np.empty(tuple(self.context.get_tensor_shape(self.output_name)), np.float32)
            d_in = _check(cudart.cudaMalloc(x.nbytes))
            d_out = _check(cudart.cudaMalloc(out.nbytes))
            try:
                h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
                d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
                _check(cudart.cudaMemcpyAsync(d_in, x.ctypes.data, x.nbytes, h2d, self._stream))
                self.context.set_tensor_address(self.input_name, d_in)
                self.context.set_tensor_address(self.output_name, d_out)
                if not self.context.execute_async_v3(self._stream):
                    raise BundleError("TensorRT execution failed")
                host = out.ctypes.data
                _check(cudart.cudaMemcpyAsync(host, d_out, out.nbytes, d2h, self._stream))
                _check(cudart.cudaStreamSynchronize(self._stream))
            finally:
                cudart.cudaFree(d_in)
                cudart.cudaFree(d_out)
        return out.reshape(len(x), -1)

    @classmethod
    def versions(cls) -> dict[str, str]:  # pragma: no cover - needs TensorRT
        import tensorrt

        return {"tensorrt": tensorrt.__version__}
