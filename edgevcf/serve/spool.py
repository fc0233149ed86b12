"""The spool: a received film is on disk, whole, before the modality hears "success".

A write is atomic and durable: a private temporary file (mode 0600, in a 0700 folder) is written,
fsynced, renamed to its final name, and the folder fsynced — after :meth:`Spool.put` returns, a
crash or power loss leaves the whole file or (before the rename) nothing under that name. A disk
that is full (or below the configured reserve) raises :class:`~edgevcf.errors.OutputError` with
nothing half-written left behind: the service answers Out of Resources and the modality retries.
Files are named by the journal key (the SHA-256 of the SOP Instance UID), never by an identifier.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from edgevcf.errors import OutputError

PART = ".part"


class Spool:
    """A folder of received films, one file per journal key."""

    def __init__(self, root: str | Path, *, reserve_mb: float = 64.0) -> None:
        self.root = Path(root)
        self.reserve_bytes = int(reserve_mb * 1e6)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)  # films hold patient data: the service user's only
        self.clean_partials()

    def path(self, key: str) -> Path:
        """Where the film of journal key ``key`` is (or would be)."""
        if not key or not key.isalnum():
            raise ValueError(f"spool keys are hex digests, got {key!r}")
        return self.root / f"{key}.dcm"

    def put(self, key: str, data: bytes) -> Path:
        """Store ``data`` as the film of ``key``, atomically and durably (see module docstring).

        A key already stored is kept as it is (a resend of the same instance).

        Raises:
            OutputError: the disk is full, below the reserve, or the file cannot be written.
        """
        final = self.path(key)
        if final.is_file():
            return final
        free = shutil.disk_usage(self.root).free
        if free - len(data) < self.reserve_bytes:
            raise OutputError(
                f"spool {self.root}: {free / 1e6:.0f} MB free, {len(data) / 1e6:.1f} MB to store "
                f"and {self.reserve_bytes / 1e6:.0f} MB kept in reserve",
                hint="free disk space (forwarded films are removed after their retention)",
            )
        tmp = self.root / f".{key}.{os.getpid()}{PART}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
            _fsync_dir(self.root)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise OutputError(
                f"spool {self.root}: cannot store a film: {exc.strerror or exc}",
                hint="free disk space or fix the spool folder's permissions",
            ) from None
        return final

    def take(self, key: str, src: str | Path) -> Path:
        """Move the file ``src`` (on the same file system) in as the film of ``key``, durably:
        how a film that cannot be scored goes to quarantine without a copy."""
        final = self.path(key)
        src = Path(src)
        if src.is_file():
            os.replace(src, final)
            _fsync_dir(self.root)
            _fsync_dir(src.parent)
        return final

    def remove(self, key: str) -> None:
        """Delete a film once its result was forwarded (and its retention is over)."""
        with contextlib.suppress(FileNotFoundError):
            self.path(key).unlink()
        _fsync_dir(self.root)

    def clean_partials(self) -> int:
        """Remove temporary files a crash left (never acknowledged, so never journaled)."""
        n = 0
        for p in self.root.glob(f".*{PART}"):
            with contextlib.suppress(OSError):
                p.unlink()
                n += 1
        return n


def _fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["Spool"]
