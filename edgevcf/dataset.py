"""Images of a manifest split, preprocessed once and cached (``to_unit`` form, float16).

Training runs many epochs over the same images; decoding a DICOM and preprocessing it each time
would dominate a CPU epoch. The cache key is the manifest fingerprint, each image's size and
modification time, the split and the preprocessing spec, so a changed image, label or spec
never reuses stale arrays. Unreadable images are skipped with their reasons (never crashing a
long run).
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevcf import progress
from edgevcf.data.manifest import Manifest, Study
from edgevcf.data.preprocess import Preprocess
from edgevcf.errors import DataError

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """``$EDGEVCF_CACHE`` or ``~/.cache/edgevcf``."""
    return Path(os.environ.get("EDGEVCF_CACHE", Path.home() / ".cache" / "edgevcf"))


@dataclass
class SplitData:
    """Preprocessed images of one split, with labels and the studies they came from."""

    units: np.ndarray  # (N, S, S) float16 in [0, 1]
    labels: np.ndarray  # (N,) int64
    studies: list[Study]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_pos(self) -> int:
        """Number of positive (fresh) images."""
        return int(self.labels.sum())


def _file_stamps(manifest: Manifest) -> str:
    """Size and modification time of every image: a changed file changes the cache key.

    Cheaper than hashing contents (a site's full-size DICOMs are tens of gigabytes), and what
    build tools trust for the same purpose.
    """
    parts = []
    for s in manifest.studies:
        try:
            st = s.resolve(manifest.root).stat()
            parts.append(f"{s.path}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{s.path}:missing")
    return "\n".join(parts)


def load_split(
    manifest: Manifest,
    split: str | None,
    spec: Preprocess,
    *,
    cache: bool = True,
    cache_dir: Path | None = None,
    desc: str | None = None,
) -> SplitData:
    """Read and preprocess the studies of ``split`` (all when None), via the cache."""
    sub = manifest if split is None else manifest.by_split(split)
    if not sub.studies:
        raise DataError(
            f"split {split!r} of the manifest is empty",
            hint="assign splits with `edgevcf data split`",
        )
    key = hashlib.sha256(
        "\n".join([sub.fingerprint(), str(split), spec.to_json(), _file_stamps(sub)]).encode()
    ).hexdigest()[:24]
    path = (cache_dir or cache_root() / "preprocessed") / f"{key}.npz"
    if cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                cached, kept, why = z["units"], z["keep"], z["skipped"]
            studies = [sub.studies[i] for i in kept]
            labels = np.array([s.label for s in studies], dtype=np.int64)
            return SplitData(cached, labels, studies, [(str(a), str(b)) for a, b in why.tolist()])
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            log.warning("ignoring damaged cache %s (%s)", path, exc)

    units = np.zeros((len(sub.studies), spec.input_size, spec.input_size), dtype=np.float16)
    keep: list[int] = []
    skipped: list[tuple[str, str]] = []
    for i, study in enumerate(
        progress.track(
            sub.studies, total=len(sub.studies), desc=desc or f"preprocess {split}", unit="img"
        )
    ):
        try:
            img, _ = spec.read(study.resolve(sub.root))
            units[len(keep)] = spec.to_unit(img)
            keep.append(i)
        except DataError as exc:
            skipped.append((study.path, exc.message))
    if skipped:
        log.warning(
            "skipped %d of %d images of split %s (first: %s: %s)",
            len(skipped),
            len(sub.studies),
            split,
            skipped[0][0],
            skipped[0][1],
        )
    units = units[: len(keep)]
    studies = [sub.studies[i] for i in keep]
    labels = np.array([s.label for s in studies], dtype=np.int64)
    if cache:
        _write_cache(path, units, keep, skipped)
    return SplitData(units, labels, studies, skipped)


def _write_cache(path: Path, units: np.ndarray, keep: list[int], skipped: list[Any]) -> None:
    """Store a preprocessed split, whole or not at all. The cache only saves time: a disk that
    is full (or read-only) costs a warning, never the run, and leaves no partial file."""
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.part.npz")  # torchrun ranks write at once
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            tmp,
            units=units,
            keep=np.array(keep, dtype=np.int64),
            skipped=np.array(skipped, dtype=str).reshape(-1, 2),
        )
        os.replace(tmp, path)
    except OSError as exc:
        log.warning(
            "cannot write the preprocessing cache %s (%s); continuing without it", path, exc
        )
    finally:
        tmp.unlink(missing_ok=True)
