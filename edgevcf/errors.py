"""The one error hierarchy of edgevcf.

The library raises these and never prints or exits; the CLI is the single boundary that turns
them into ``Error: ... / hint: ...`` and a distinct exit code. Any other exception is a bug and
keeps its traceback.
"""

from __future__ import annotations

import errno


class EdgeVCFError(Exception):
    """Base of every error a user can cause or fix.

    Attributes:
        hint: What the user can do about it (shown by the CLI under the message).
        exit_code: Process exit code the CLI uses for this class of error.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(EdgeVCFError):
    """A setting, profile, flag combination or manifest column is wrong."""

    exit_code = 3


class AccuracyGateError(EdgeVCFError):
    """A deployed model failed an accuracy or latency gate of its profile."""

    exit_code = 4


class DataError(EdgeVCFError):
    """An image or manifest cannot be used: unreadable, refused, inconsistent."""

    exit_code = 5


class BackendUnavailableError(EdgeVCFError):
    """An optional backend (torch, onnxruntime, openvino, tensorrt, ...) is not installed here."""

    exit_code = 6


class BundleError(EdgeVCFError):
    """A deployment bundle is malformed, tampered with, or incompatible with this machine."""

    exit_code = 7


class ExportError(EdgeVCFError):
    """Export of a model to an interchange format failed."""

    exit_code = 8


class ParityError(ExportError):
    """An exported model does not compute what its source model computes."""


class CalibrationError(EdgeVCFError):
    """A calibration set is too small, leaks evaluation patients, or cannot be built."""

    exit_code = 9


class QuantizationError(EdgeVCFError):
    """Quantisation failed or produced a model that breaks the target's rules."""

    exit_code = 10


class CompileError(EdgeVCFError):
    """A target compiler (TensorRT builder, OpenVINO compile) failed."""

    exit_code = 11


class CheckpointError(EdgeVCFError):
    """A checkpoint is unreadable, truncated, or does not fit the architecture it claims."""

    exit_code = 12


class OutputError(EdgeVCFError):
    """A bundle or report cannot be written: disk full, file too large, read-only, no permission.

    Raised only after the partial output is removed, so nothing half-written looks complete.
    """

    exit_code = 13

    #: errno values that mean "this output cannot be written here" (a user can fix them).
    ERRNOS: frozenset[int] = frozenset(
        getattr(errno, name)
        for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES", "EPERM")
        if hasattr(errno, name)
    )

    @classmethod
    def from_os_error(cls, what: str, exc: OSError) -> OutputError:
        """``OutputError`` naming ``what`` could not be written and why (``exc.strerror``)."""
        where = f" ({exc.filename})" if exc.filename else ""
        return cls(
            f"cannot write {what}: {exc.strerror or exc}{where}",
            hint="free disk space (or raise the quota / file-size limit), or choose a writable "
            "folder, then run again; nothing half-written was left behind",
        )
