"""The one file hash of edgevcf: SHA-256, read in chunks.

Manifests fingerprint studies with it, bundles list and verify their files with it, signatures
sign its digests and the OpenVINO cache checks its blobs with it: one function, so the same
file has the same digest everywhere.
"""

from __future__ import annotations

import hashlib
import os

from edgevcf.errors import DataError

_CHUNK_BYTES = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB chunks so large DICOMs do not fill memory.

    Raises:
        DataError: The file does not exist or cannot be read.
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK_BYTES):
                digest.update(chunk)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return digest.hexdigest()
