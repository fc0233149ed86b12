"""``edgevcf score``: every film of an archive through a bundle, into resumable parts.

One row per film — its probability, decision and status (the runtime's own: ok, not_assessable
with the gate's reason, refused with the reader's, error), the subgroup bands of its header
(:mod:`edgevcf.subgroups`), and SHA-256 hashes of its SOP Instance UID and of its path relative
to the data root — never an identifier in clear. Rows go to numbered parts (Parquet where
pyarrow is installed, else CSV), each written whole (temporary file, then rename), so a run that
stops leaves whole parts only, and a run started again skips every film already in a part:
exactly one row per film. One process (the runtime's :meth:`~edgevcf.runtime.Predictor.predict_many`
on this machine's cores); the Ray path of issue 29 is to take the same parts.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevcf import progress, subgroups
from edgevcf.errors import DataError

#: Films per part (a part is the unit a resumed run keeps or redoes).
PART_FILMS = 256
COLUMNS = ("file_hash", "uid_hash", "status", "probability", "decision", "reason",
           *subgroups.NAMES)  # fmt: skip


@dataclass(frozen=True)
class Film:
    """One input: where it is, its hash, and the manifest's columns (if any)."""

    path: str
    file_hash: str
    extra: dict[str, str]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()


def films_of(data: str | os.PathLike[str]) -> list[Film]:
    """The films of a manifest CSV, or every ``*.dcm`` below a folder (sorted)."""
    root = Path(data)
    if root.is_dir():
        found = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() == ".dcm")
        if not found:
            raise DataError(f"no *.dcm file below {root}", hint="give a folder of DICOM films "
                            "or a manifest CSV")  # fmt: skip
        return [Film(str(p), _sha(str(p.relative_to(root))), {}) for p in found]
    from edgevcf.data.manifest import Manifest

    manifest = Manifest.load(root)
    return [
        Film(str(s.resolve(manifest.root)), _sha(str(s.path)), dict(s.extra))
        for s in manifest.studies
    ]


def _writer() -> str:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return "csv"
    return "parquet"


def _read_part(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_table(path).to_pylist())
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write_part(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), tmp)
    else:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(COLUMNS))
            w.writeheader()
            w.writerows({k: ("" if r[k] is None else r[k]) for k in COLUMNS} for r in rows)
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def parts(out: str | os.PathLike[str]) -> list[Path]:
    """The whole parts written so far, in order."""
    return sorted([*Path(out).glob("part-*.csv"), *Path(out).glob("part-*.parquet")])


def read_rows(out: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every row of a score output (all parts)."""
    return [r for p in parts(out) for r in _read_part(p)]


def _chunks(items: list[Film], n: int) -> Iterator[list[Film]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _header_facts(film: Film) -> tuple[str, dict[str, str]]:
    """The UID hash and subgroup levels of a readable film, from one header read."""
    from edgevcf.serve.journal import uid_key

    ds = subgroups.read_header(film.path)
    uid = str(getattr(ds, "SOPInstanceUID", "") or "").strip() if ds is not None else ""
    levels = {**subgroups.from_header(ds), **subgroups.from_columns(film.extra)}
    return (uid_key(uid) if uid else ""), levels


def score(
    bundle: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    batch_size: int = 8,
    part_films: int = PART_FILMS,
    backend: str = "auto",
    trust: Any = None,
) -> dict[str, Any]:
    """Score every film of ``data`` not yet in ``out``; a summary of the run."""
    from edgevcf.runtime import Predictor

    films = films_of(data)
    dest = Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    pred = Predictor.from_bundle(bundle, backend=backend, trust=trust)
    info = dest / "score.json"
    if info.is_file():
        was = json.loads(info.read_text(encoding="utf-8"))
        if was.get("model_id") != pred.model_id:
            raise DataError(
                f"{dest} holds scores of bundle {str(was.get('model_id'))[:12]}, not of this one "
                f"({pred.model_id[:12]})",
                hint="score into a new folder",
            )
    else:
        info.write_text(json.dumps({"model_id": pred.model_id, "threshold": pred.threshold,
                                    "columns": list(COLUMNS)}, indent=2) + "\n")  # fmt: skip
    done = {str(r["file_hash"]) for r in read_rows(dest)}
    todo = [f for f in films if f.file_hash not in done]
    kind = _writer()
    have = [int(p.name.split("-")[1].split(".")[0]) for p in parts(dest)]
    start = max(have) + 1 if have else 0  # never a number in use: parts are never overwritten
    counts: dict[str, int] = {}
    for k, chunk in enumerate(
        progress.track(list(_chunks(todo, part_films)), desc="score", unit="part")
    ):
        preds = pred.predict_many([f.path for f in chunk], batch_size=batch_size)
        rows = []
        for f, p in zip(chunk, preds, strict=True):
            counts[p.status] = counts.get(p.status, 0) + 1
            uid_hash, levels = (
                _header_facts(f) if p.status != "refused"
                else ("", dict.fromkeys(subgroups.NAMES, subgroups.UNKNOWN))
            )  # fmt: skip
            rows.append({
                "file_hash": f.file_hash,
                "uid_hash": uid_hash,
                "status": p.status, "probability": p.probability, "decision": p.decision,
                "reason": p.reason if p.status != "ok" else "",
                **levels,
            })  # fmt: skip
        _write_part(dest / f"part-{start + k:05d}.{kind}", rows)
    return {"films": len(films), "already_scored": len(films) - len(todo),
            "scored_now": len(todo), "statuses": counts, "parts": len(parts(dest)),
            "format": kind, "model_id": pred.model_id}  # fmt: skip
