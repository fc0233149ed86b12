"""``edgevcf score``: every film of an archive through a bundle, into resumable parts.

One row per film — its probability, decision and status (the runtime's own: ok, not_assessable
with the gate's reason, refused with the reader's, error), the subgroup bands of its header
(:mod:`edgevcf.subgroups`), and SHA-256 hashes of its SOP Instance UID and of its path relative
to the data root — never an identifier in clear. Rows go to numbered parts (Parquet where
pyarrow is installed, else CSV), each written whole (temporary file, then rename), so a run that
stops leaves whole parts only, and a run started again skips every film already in a part:
exactly one row per film. One process (reading on this machine's cores, as
:meth:`~edgevcf.runtime.Predictor.predict_many` does), or a Ray cluster (:mod:`edgevcf.scale`)
with the same engine batches and so the same probabilities.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevcf import progress, subgroups
from edgevcf.errors import DataError

if TYPE_CHECKING:
    from edgevcf.scale import Facts, RayPlan

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
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # on disk before the rename makes it a part
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


def film_facts(path: str, extra: dict[str, str]) -> dict[str, Any]:
    """The hashed SOP Instance UID and subgroup levels of a film, from one header read (where
    the film is read: a Ray read task, or this process)."""
    from edgevcf.serve.journal import uid_key

    ds = subgroups.read_header(path)
    uid = str(getattr(ds, "SOPInstanceUID", "") or "").strip() if ds is not None else ""
    levels = {**subgroups.from_header(ds), **subgroups.from_columns(extra)}
    return {"uid_hash": uid_key(uid) if uid else "", **levels}


Batch = Sequence[tuple[int, Any, dict[str, Any]]]


def examine_here(
    pred: Any,
    films: Sequence[tuple[str, dict[str, str]]],
    *,
    batch_size: int,
    gated: bool = True,
    facts: Facts | None = None,
    chunk: int = PART_FILMS,
    desc: str = "score",
) -> Iterator[Batch]:
    """What :func:`edgevcf.scale.examine_on_ray` yields, in this process: engine batches of
    (film index, Examined, facts), read ``chunk`` films at a time on this machine's cores
    (:meth:`~edgevcf.runtime.Predictor.predict_many`'s way) and cut into the same batches."""
    bs = max(1, batch_size)
    chunk = max(bs, chunk // bs * bs)  # whole engine batches per chunk: the batches Ray cuts

    def batches() -> Iterator[Batch]:
        for s0 in range(0, len(films), chunk):
            part = films[s0 : s0 + chunk]
            done = pred.run_checked(pred.check_many([p for p, _ in part]), bs, gated=gated)
            got = [(s0 + k, e, facts(*part[k]) if facts else {}) for k, e in enumerate(done)]
            for b in range(0, len(got), bs):
                yield got[b : b + bs]

    yield from progress.track_batches(batches(), total=len(films), desc=desc, unit="film")


def examine_films(
    bundle: str | os.PathLike[str],
    films: Sequence[tuple[str, dict[str, str]]],
    *,
    batch_size: int,
    gated: bool = True,
    facts: Facts | None = None,
    backend: str = "auto",
    trust: Any = None,
    threads: int | None = None,
    ray: RayPlan | None = None,
    chunk: int = PART_FILMS,
    desc: str = "score",
) -> tuple[str, float, Iterator[Batch]]:
    """The bundle's model id and threshold, and its engine batches over ``films``: in this
    process (:func:`examine_here`) or, with ``ray``, on a Ray cluster
    (:func:`edgevcf.scale.examine_on_ray`, the driver checking the bundle's signer), cut alike."""
    if ray is None:
        from edgevcf.runtime import Predictor

        pred = Predictor.from_bundle(bundle, backend=backend, trust=trust, threads=threads)
        pred.warm()
        return (
            pred.model_id,
            pred.threshold,
            examine_here(
                pred, films, batch_size=batch_size, gated=gated, facts=facts, chunk=chunk, desc=desc
            ),
        )
    from edgevcf.bundle import Bundle
    from edgevcf.scale import examine_on_ray

    b = Bundle.load(bundle, trust=trust)  # the driver checks the signer; workers the files
    return b.id, b.threshold, examine_on_ray(
        bundle, b.id, films, plan=ray, batch_size=batch_size, gated=gated, backend=backend,
        facts=facts, desc=desc,
    )  # fmt: skip


def score(
    bundle: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    batch_size: int = 8,
    part_films: int = PART_FILMS,
    backend: str = "auto",
    trust: Any = None,
    threads: int | None = None,
    ray: RayPlan | None = None,
) -> dict[str, Any]:
    """Score every film of ``data`` not yet in ``out``; a summary of the run.

    One process by default (``threads``: the engine's threads, default the bundle's); with
    ``ray`` on a Ray cluster (:mod:`edgevcf.scale`, ``ray.threads`` per actor), with the same
    batches and so the same probabilities for the same engine and thread count. A part holds
    whole engine batches (``part_films`` rounded up to them), so a resumed run cuts the films
    left into the batches they would have had.
    """
    from edgevcf.metrics import sigmoid

    films = films_of(data)
    dest = Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    done = {str(r["file_hash"]) for r in read_rows(dest)}
    todo = [f for f in films if f.file_hash not in done]
    model_id, threshold, results = examine_films(
        bundle, [(f.path, f.extra) for f in todo], batch_size=batch_size, facts=film_facts,
        backend=backend, trust=trust, threads=threads, ray=ray, chunk=part_films,
    )  # fmt: skip
    info = dest / "score.json"
    if info.is_file():
        was = json.loads(info.read_text(encoding="utf-8"))
        if was.get("model_id") != model_id:
            raise DataError(
                f"{dest} holds scores of bundle {str(was.get('model_id'))[:12]}, not of this one "
                f"({model_id[:12]})",
                hint="score into a new folder",
            )
    else:
        info.write_text(json.dumps({"model_id": model_id, "threshold": threshold,
                                    "columns": list(COLUMNS)}, indent=2) + "\n")  # fmt: skip
    kind = _writer()
    have = [int(p.name.split("-")[1].split(".")[0]) for p in parts(dest)]
    number = max(have) + 1 if have else 0  # never a number in use: parts are never overwritten
    counts: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    for batch in results:
        for i, e, fact in batch:
            if i in seen:  # a retried batch Ray delivered twice: the first answer stands
                continue
            seen.add(i)
            counts[e.status] = counts.get(e.status, 0) + 1
            p = float(sigmoid(np.asarray(e.logit))) if e.status == "ok" else None
            rows.append({
                "file_hash": todo[i].file_hash, "uid_hash": fact.get("uid_hash", ""),
                "status": e.status, "probability": p,
                "decision": None if p is None else p >= threshold,
                "reason": e.reason if e.status != "ok" else "",
                **{k: fact.get(k, subgroups.UNKNOWN) for k in subgroups.NAMES},
            })  # fmt: skip
        if len(rows) >= part_films:
            _write_part(dest / f"part-{number:05d}.{kind}", rows)
            number, rows = number + 1, []
    if rows:
        _write_part(dest / f"part-{number:05d}.{kind}", rows)
    return {"films": len(films), "already_scored": len(films) - len(todo),
            "scored_now": len(todo), "statuses": counts, "parts": len(parts(dest)),
            "format": kind, "model_id": model_id,
            "engine": "ray" if ray is not None else "one process"}  # fmt: skip
