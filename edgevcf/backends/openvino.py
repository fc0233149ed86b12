"""OpenVINO (Intel CPU): IR files, with the inference precision always set explicitly.

On CPUs with AVX-512 BF16 or AMX, OpenVINO silently runs an "FP32" IR in bf16 unless told
otherwise: outputs then differ from PyTorch and timings mislead. This backend always passes
``INFERENCE_PRECISION_HINT`` (default f32) and records it.

The model cache (``cache_dir``: compiled blobs, for a fast start) is outside the checksummed
bundle, and OpenVINO does not check the weights in a blob: a blob with a few bytes changed
loads and computes other scores (measured: 6 of 19 single-byte flips of a MobileNetV3 blob,
silently). So the sha256 of every blob is recorded when it is written, and a blob that does not
match its record -- or has none -- is deleted before compiling, which makes OpenVINO rebuild it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from edgevcf.backends.base import Backend
from edgevcf.deps import require
from edgevcf.errors import BundleError, ConfigError
from edgevcf.hashing import sha256_file

log = logging.getLogger(__name__)

_PRECISIONS = ("f32", "bf16", "f16")
#: sha256 of each blob this backend saw OpenVINO write, kept beside the blobs.
CACHE_RECORD = "edgevcf-cache-sha256.json"


def _read_record(cache: Path) -> dict[str, str]:
    try:
        record = json.loads((cache / CACHE_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def check_cache(cache: Path) -> list[str]:
    """Delete the blobs of ``cache`` that do not match their recorded sha256; their names.

    An unrecorded blob (an older edgevcf, another process mid-write, a planted file) is not
    trusted either: OpenVINO simply compiles again and writes a fresh one.
    """
    if not cache.is_dir():
        return []
    record = _read_record(cache)
    removed = []
    for blob in sorted(cache.glob("*.blob")):
        try:
            ok = record.get(blob.name) == sha256_file(blob)
        except OSError:
            ok = False
        if not ok:
            blob.unlink(missing_ok=True)
            removed.append(blob.name)
    return removed


def record_cache(cache: Path) -> None:
    """Record the sha256 of every blob in ``cache`` (written atomically)."""
    if not cache.is_dir():
        return
    record = {b.name: sha256_file(b) for b in sorted(cache.glob("*.blob"))}
    fd, tmp = tempfile.mkstemp(prefix=".record-", dir=cache)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
        os.replace(tmp, cache / CACHE_RECORD)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        self.effective_precision = self.inference_precision  # set by each compile
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
            compiled = self._compile_cached(model) if self.cache_dir else self._compile_now(model)
            self._check_precision(compiled)
            self._compiled[batch] = compiled
            return compiled

    def _check_precision(self, compiled: Any) -> None:
        """What the plugin really computes in, against what was asked (and validated).

        Measured: on a CPU with BF16 but no FP16, OpenVINO compiles an ``f16`` request as bf16,
        silently; a bundle validated in f16 must not run so. A lower precision the CPU cannot
        give is refused; f32 instead of bf16/f16 is more precise and only slower: a warning.
        """
        try:
            got = str(compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())
        except Exception:  # a device without the property: nothing to compare
            return
        self.effective_precision = got
        if got == self.inference_precision:
            return
        if got == "f32":
            log.warning(
                "%s: this CPU computes in f32, not %s: slower than measured at export, not less "
                "accurate",
                self.path.name,
                self.inference_precision,
            )
            return
        raise BundleError(
            f"{self.path.name} was validated in {self.inference_precision}, and this CPU would "
            f"compute it in {got}",
            hint=f"run it on a CPU with {self.inference_precision.upper()} compute, or export "
            "another precision for this cart",
        )

    def _compile_now(self, model: Any) -> Any:
        try:
            return self.core.compile_model(model, self.device, self.config())
        except Exception as exc:
            msg = f"OpenVINO cannot compile {self.path.name}: {exc}"
            raise BundleError(msg[:400]) from None

    def _compile_cached(self, model: Any) -> Any:
        """Compile through the model cache, never trusting a blob that is not the one written.

        A corrupt blob is deleted first (OpenVINO then rebuilds it). Should compiling still fail
        with the cache, the cache folder is cleared and the model compiled once more; a cache
        that cannot be used at all costs start-up time, never a refusal.
        """
        cache = Path(str(self.cache_dir))
        try:
            removed = check_cache(cache)
        except OSError as exc:
            removed = []
            log.warning("OpenVINO model cache %s cannot be checked (%s)", cache, exc)
        if removed:
            log.warning(
                "OpenVINO model cache %s: %s corrupt or unrecorded; rebuilding",
                cache,
                ", ".join(removed),
            )
        try:
            compiled = self.core.compile_model(model, self.device, self.config())
        except Exception as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]
            log.warning(
                "OpenVINO cannot compile %s with the model cache %s (%s); clearing the cache "
                "and compiling again",
                self.path.name,
                cache,
                reason,
            )
            shutil.rmtree(cache, ignore_errors=True)
            try:
                compiled = self.core.compile_model(model, self.device, self.config())
            except Exception:
                log.warning("OpenVINO model cache %s is unusable; running without it", cache)
                self.cache_dir = None  # config() now says so (bench records it)
                return self._compile_now(model)
        try:
            record_cache(cache)
        except OSError as exc:  # a read-only cache: it will be rebuilt next time, still correct
            log.warning("OpenVINO model cache %s cannot be recorded (%s)", cache, exc)
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
