"""OpenVINO (Intel CPU): IR files, with the inference precision always set explicitly.

On CPUs with AVX-512 BF16 or AMX, OpenVINO silently runs an "FP32" IR in bf16 unless told
otherwise: outputs then differ from PyTorch and timings mislead. This backend always passes
``INFERENCE_PRECISION_HINT`` (default f32) and records it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from edgevcf.backends.base import Backend
from edgevcf.deps import require
from edgevcf.errors import BundleError, ConfigError

_PRECISIONS = ("f32", "bf16", "f16")


class OpenVINOBackend(Backend):
    """A compiled IR per batch size (IRs with a dynamic batch are reshaped to a static one)."""

    runtime = "openvino"

    def __init__(self, path: Path, *, threads: int = 0, **options: Any) -> None:
        super().__init__(path, threads=threads, **options)
        ov = require("openvino", "running an OpenVINO IR")
        self.inference_precision = str(options.get("inference_precision", "f32"))
        if self.inference_precision not in _PRECISIONS:
            raise ConfigError(
                f"inference_precision must be one of {', '.join(_PRECISIONS)}, "
                f"got {self.inference_precision!r}"
            )
        self.device = str(options.get("device", "CPU"))
        self.cache_dir = options.get("cache_dir")
        self.core = ov.Core()
        try:
            self.model = self.core.read_model(str(self.path))
        except Exception as exc:  # openvino raises RuntimeError subclasses
            raise BundleError(f"OpenVINO cannot read {self.path.name}: {exc}"[:400]) from None
        shape = self.model.input(0).get_partial_shape()
        self._static = shape[0].get_length() if shape[0].is_static else 0
        self._compiled: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        if self._static:
            self._compile(self._static)

    def config(self) -> dict[str, str]:
        """The properties every compile gets (recorded by bench)."""
        cfg = {
            "INFERENCE_PRECISION_HINT": self.inference_precision,
            "PERFORMANCE_HINT": str(self.options.get("performance_hint", "LATENCY")),
        }
        if self.threads:
            cfg["INFERENCE_NUM_THREADS"] = str(self.threads)
        if self.cache_dir:
            cfg["CACHE_DIR"] = str(self.cache_dir)
        return cfg

    def _compile(self, batch: int) -> Any:
        with self._lock:
            if batch in self._compiled:
                return self._compiled[batch]
            model = self.model
            if not self._static:
                model = self.model.clone()
                ps = model.input(0).get_partial_shape()
                dims = [batch] + [ps[i].get_length() for i in range(1, ps.rank.get_length())]
                model.reshape({model.input(0): dims})
            try:
                compiled = self.core.compile_model(model, self.device, self.config())
            except Exception as exc:
                msg = f"OpenVINO cannot compile {self.path.name}: {exc}"
                raise BundleError(msg[:400]) from None
            self._compiled[batch] = compiled
            return compiled

    @property
    def static_batch(self) -> int:
        return self._static

    def _request(self, batch: int) -> Any:
        reqs = getattr(self._local, "requests", None)
        if reqs is None:
            reqs = self._local.requests = {}
        if batch not in reqs:
            reqs[batch] = self._compile(batch).create_infer_request()
        return reqs[batch]

    def run(self, x: np.ndarray) -> np.ndarray:
        req = self._request(len(x))
        # share_inputs: no copy of the input into the request (what benchmark_app measures)
        req.infer({0: np.ascontiguousarray(x, dtype=np.float32)}, share_inputs=True)
        out = req.get_output_tensor(0).data
        return np.array(out, dtype=np.float32).reshape(len(x), -1)

    @classmethod
    def versions(cls) -> dict[str, str]:
        import openvino

        return {"openvino": openvino.get_version()}
