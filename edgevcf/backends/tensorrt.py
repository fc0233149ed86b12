"""TensorRT engines (on the Jetson). Refuses an engine built for another TensorRT or device.

An engine is specific to the TensorRT version, the GPU (SM) and the device it was built on;
running one elsewhere fails deep inside TensorRT or, worse, runs with wrong tactics. The bundle
records them when the engine is built (``model.json``), and this backend compares them with the
device before deserialising; an engine without its record is refused. Supported: JetPack 6.1+
(TensorRT >= 10.3: strongly typed networks, ``execute_async_v3``); JetPack 6.0's TensorRT 8.6
is refused with that message.

The API is used as TensorRT 10.3 documents it (NvInfer.h, the Python bindings): I/O tensors are
found by their mode, not by index (no order is documented), and every call that reports failure
by returning False is checked.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from edgevcf.backends.base import Backend
from edgevcf.deps import require
from edgevcf.errors import BackendUnavailableError, BundleError

#: The oldest TensorRT the jetson bundles build and run on (JetPack 6.1).
MIN_TENSORRT = (10, 3)
SUPPORTED = "JetPack 6.1+ (TensorRT >= 10.3)"


def tensorrt_too_old(version: str) -> str | None:
    """Why TensorRT ``version`` cannot build or run our engines, or None when it can."""
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return f"unrecognised TensorRT version {version!r}"
    if (major, minor) < MIN_TENSORRT:
        return (
            f"TensorRT {version} is too old: edgevcf's engines need {SUPPORTED} (strongly typed "
            "networks and explicit batch; JetPack 6.0 ships TensorRT 8.6)"
        )
    return None


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
    model = Path("/proc/device-tree/model")  # Orin Nano and AGX Orin are both SM 8.7
    if model.is_file():
        facts["model"] = model.read_text(errors="replace").strip("\x00\n ")[:120]
    return facts


def check_engine_compatible(recorded: dict[str, Any], here: dict[str, str]) -> None:
    """Raise when the engine's TensorRT version, SM or device model differs from this one's."""
    problems = [
        f"{k}: engine built with {recorded[k]!r}, this device has {here.get(k)!r}"
        for k in ("tensorrt", "sm", "model")
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

    def __init__(self, path: Path, *, threads: int = 0, **options: Any) -> None:
        super().__init__(path, threads=threads, **options)
        trt = require("tensorrt", "running a TensorRT engine")
        if why := tensorrt_too_old(str(trt.__version__)):
            raise BackendUnavailableError(why, hint=f"flash {SUPPORTED}")
        meta_path = self.path.with_suffix(".json")
        if not meta_path.is_file():
            raise BundleError(
                f"{self.path.name} has no engine record ({meta_path.name}: TensorRT, SM, device)",
                hint="build engines with `edgevcf build BUNDLE` on the device",
            )
        record = json.loads(meta_path.read_text())
        check_engine_compatible(record, device_facts())
        self._cudart = _cudart()
        self._lock = threading.Lock()
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        if int(record.get("dla_core", -1)) >= 0:  # else a DLA engine runs on core 0
            runtime.DLA_core = int(record["dla_core"])
        self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise BundleError(f"TensorRT could not deserialise {self.path.name}")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise BundleError(
                f"{self.path.name}: expected one input and one output tensor, found "
                f"{len(inputs)} and {len(outputs)}"
            )
        self.input_name, self.output_name = inputs[0], outputs[0]
        for n in (self.input_name, self.output_name):
            if self.engine.get_tensor_dtype(n) != trt.DataType.FLOAT:
                raise BundleError(f"{self.path.name}: tensor {n} is not float32")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BundleError(f"TensorRT could not create an execution context for {path.name}")
        self._shape = tuple(self.engine.get_tensor_shape(self.input_name))
        self._stream = _check(self._cudart.cudaStreamCreate())
        self._buffers: tuple[tuple[int, ...], int, int, int, int] | None = None

    @property
    def static_batch(self) -> int:
        return int(self._shape[0]) if self._shape[0] > 0 else 0

    def _buffers_for(self, shape: tuple[int, ...], out_bytes: int, in_bytes: int) -> Any:
        """Device and pinned host buffers, allocated once per input shape (not per call)."""
        cudart = self._cudart
        if self._buffers is not None and self._buffers[0] == shape:
            return self._buffers
        self._free()
        d_in = _check(cudart.cudaMalloc(in_bytes))
        d_out = _check(cudart.cudaMalloc(out_bytes))
        h_in = _check(cudart.cudaMallocHost(in_bytes))
        h_out = _check(cudart.cudaMallocHost(out_bytes))
        self._buffers = (shape, d_in, d_out, h_in, h_out)
        if not self.context.set_tensor_address(self.input_name, d_in):
            raise BundleError(f"TensorRT refused the address of {self.input_name}")
        if not self.context.set_tensor_address(self.output_name, d_out):
            raise BundleError(f"TensorRT refused the address of {self.output_name}")
        return self._buffers

    def _free(self) -> None:
        if self._buffers is not None:
            _, d_in, d_out, h_in, h_out = self._buffers
            for d in (d_in, d_out):
                self._cudart.cudaFree(d)
            for h in (h_in, h_out):
                self._cudart.cudaFreeHost(h)
            self._buffers = None

    def run(self, x: np.ndarray) -> np.ndarray:
        import ctypes

        cudart = self._cudart
        x = np.ascontiguousarray(x, np.float32)
        with self._lock:
            if not self.context.set_input_shape(self.input_name, x.shape):
                raise BundleError(
                    f"TensorRT refused input shape {x.shape} (engine input {self._shape})"
                )
            out_shape = tuple(self.context.get_tensor_shape(self.output_name))
            out_bytes = int(np.prod(out_shape)) * 4
            _, d_in, d_out, h_in, h_out = self._buffers_for(x.shape, out_bytes, x.nbytes)
            ctypes.memmove(h_in, x.ctypes.data, x.nbytes)
            h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            _check(cudart.cudaMemcpyAsync(d_in, h_in, x.nbytes, h2d, self._stream))
            if not self.context.execute_async_v3(self._stream):
                raise BundleError("TensorRT execution failed")
            _check(cudart.cudaMemcpyAsync(h_out, d_out, out_bytes, d2h, self._stream))
            _check(cudart.cudaStreamSynchronize(self._stream))
            out = np.empty(out_shape, np.float32)
            ctypes.memmove(out.ctypes.data, h_out, out_bytes)
        return out.reshape(len(x), -1)

    @classmethod
    def versions(cls) -> dict[str, str]:
        import tensorrt

        return {"tensorrt": tensorrt.__version__}
