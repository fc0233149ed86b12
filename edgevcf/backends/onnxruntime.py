"""ONNX Runtime (CPU provider): the reference runtime, and the stand-in that measures Q/DQ models
whose native engine (TensorRT) is not on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgevcf.backends.base import Backend
from edgevcf.deps import require
from edgevcf.errors import BundleError


class OnnxRuntimeBackend(Backend):
    """An ``InferenceSession`` on the CPU provider with pinned intra-op threads."""

    runtime = "onnxruntime"

    def __init__(self, path: Path, *, threads: int = 0, **options: Any) -> None:
        super().__init__(path, threads=threads, **options)
        ort = require("onnxruntime", "running an ONNX model")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        if options.get("optimized_model_path"):
            so.optimized_model_filepath = str(options["optimized_model_path"])
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=so, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NoSuchFile types
            raise BundleError(
                f"ONNX Runtime cannot load {self.path.name}: {type(exc).__name__}: {exc}"[:400]
            ) from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        first = inp.shape[0]
        self._static = first if isinstance(first, int) else 0

    @property
    def static_batch(self) -> int:
        return self._static

    def run(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(x, np.float32)})[0]
        return np.asarray(out, dtype=np.float32).reshape(len(x), -1)

    @classmethod
    def versions(cls) -> dict[str, str]:
        import onnxruntime

        return {"onnxruntime": onnxruntime.__version__}
