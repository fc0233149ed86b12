"""Generate a synthetic dataset: images, ``manifest.csv`` with ground truth, annotations, preview.

Work is split by image over processes; every image is a pure function of (settings, seed,
patient, image), so the files are byte-identical whatever ``workers`` is. The manifest is written
last, so an interrupted run never leaves a manifest pointing at missing images.
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgevcf import processes, progress
from edgevcf.data.synth.anatomy import Patient, exposure_facts, sample_patient, sample_view
from edgevcf.data.synth.config import SynthConfig
from edgevcf.errors import ConfigError, DataError

log = logging.getLogger(__name__)

Format = Literal["png", "dicom"]
GENERATOR_VERSION = 1
THUMB_HEIGHT = 360
PREVIEW_PER_ROW = 4


@dataclass
class SynthResult:
    """What :func:`generate` wrote, and how fast."""

    out_dir: Path
    manifest: Path
    preview: Path | None
    annotations: Path
    patients: int
    images: int
    seconds: float
    counts: dict[str, Any]

    @property
    def images_per_second(self) -> float:
        """Throughput over the whole run (rendering and writing)."""
        return self.images / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class _Job:
    cfg: SynthConfig
    seed: int
    patient: int
    image: int
    fmt: Format
    out_dir: Path
    thumbnail: bool


def _patient_row(p: Patient) -> dict[str, str]:
    fr = p.fractures
    grades = [f.grade for f in fr]
    return {
        "label_true": str(p.label_true),
        "label_noise": str(int(p.label != p.label_true)),
        "fresh_levels": ";".join(f.level for f in fr if f.age == "fresh"),
        "old_levels": ";".join(f.level for f in fr if f.age == "old"),
        "fracture_level": ";".join(f.level for f in fr),
        "fractures": ";".join(f.describe() for f in fr),
        "grade": str(max(grades)) if grades else "",
        "mimics": ";".join(p.mimics),
        "age": str(p.age_years),
        "sex": p.sex,
        "site": p.site.name,
        "bone_density_mg_cm3": f"{p.density:.0f}",
    }


def _render_job(job: _Job) -> dict[str, Any]:
    """Render and write one image (runs in a worker process)."""
    from edgevcf.data.synth.render import render
    from edgevcf.data.synth.writers import write_dicom, write_png

    patient = sample_patient(job.cfg, job.seed, job.patient)
    view = sample_view(job.cfg, patient, job.seed, job.image)
    rendered = render(job.cfg, patient, view, job.seed, job.image)
    image_id = f"{patient.patient_id}_{job.image + 1}"
    ext = "dcm" if job.fmt == "dicom" else "png"
    rel = f"images/{image_id}.{ext}"
    dest = job.out_dir / rel
    tmp = dest.with_name(dest.name + ".part")
    kvp, mas = exposure_facts(patient.site, job.seed, job.patient, job.image)
    if job.fmt == "dicom":
        write_dicom(
            tmp, rendered, patient, view, seed=job.seed, image=job.image, bits=job.cfg.bits_stored,
            kvp=kvp, mas=mas,
        )  # fmt: skip
    else:
        write_png(tmp, rendered, job.cfg.bits_stored)
    os.replace(tmp, dest)
    out: dict[str, Any] = {
        "row": {
            "path": rel,
            "patient_id": patient.patient_id,
            "label": str(patient.label),
            "image_id": image_id,
            "view": "lateral",
            **_patient_row(patient),
            "photometric": patient.site.photometric,
            "manufacturer": patient.site.manufacturer,
            "model": patient.site.model,
            "modality": patient.site.modality,
            "kvp": f"{kvp:g}",
            "exposure_mas": f"{mas:g}",
            "pixel_spacing_mm": f"{rendered.pixel_mm:.4g}",
            "magnification": f"{view.magnification:.3f}",
            "faces": "right" if view.face_right else "left",
        },
        "annotation": {
            "image_id": image_id,
            "path": rel,
            "shape": list(rendered.display.shape),
            "field_box": list(rendered.field_box),
            "levels": {
                k: {n: [round(x, 1), round(y, 1)] for n, (x, y) in v.items()}
                for k, v in rendered.levels.items()
            },
            "fractures": [f.__dict__ for f in patient.fractures],
        },
    }
    if job.thumbnail:
        out["thumb"] = _thumbnail(rendered.display, rendered.field_box, rendered.levels)
    return out


def _thumbnail(
    display: np.ndarray, box: tuple[int, int, int, int], levels: dict[str, Any]
) -> dict[str, Any]:
    from PIL import Image

    r0, c0, r1, c1 = box
    crop = display[r0:r1, c0:c1]
    scale = THUMB_HEIGHT / crop.shape[0]
    im = Image.fromarray((crop * 255 + 0.5).astype(np.uint8)).resize(
        (max(1, round(crop.shape[1] * scale)), THUMB_HEIGHT), Image.Resampling.BILINEAR
    )
    pts = {
        lv: [((x - c0) * scale, (y - r0) * scale) for x, y in p.values()]
        for lv, p in levels.items()
    }
    return {"image": np.asarray(im), "levels": pts}


def generate(
    out_dir: str | os.PathLike[str],
    patients: int,
    *,
    seed: int = 0,
    cfg: SynthConfig | None = None,
    fmt: Format = "png",
    workers: int = 1,
    val: float = 0.15,
    test: float = 0.15,
    preview: bool = True,
) -> SynthResult:
    """Write ``patients`` synthetic patients (1-3 lateral films each) to ``out_dir``.

    Args:
        out_dir: Folder to create (may exist; files of the same names are replaced).
        patients: Number of synthetic patients.
        seed: Everything is derived from it; same seed, same bytes.
        cfg: Generator settings (default: literature defaults at full resolution).
        fmt: ``png`` (16-bit) or ``dicom`` (DX/CR objects).
        workers: Processes to use (results do not depend on it).
        val: Fraction of patients in the validation split (stratified by label).
        test: Fraction of patients in the test split.
        preview: Also write ``preview.png``, a labelled contact sheet.
    """
    from edgevcf.data.manifest import Manifest, Study, assign_splits

    cfg = cfg or SynthConfig()
    if patients < 1:
        raise ConfigError(f"need at least 1 patient, got {patients}")
    if fmt not in ("png", "dicom"):
        raise ConfigError(f"unknown format {fmt!r}", hint="use png or dicom")
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    out = Path(out_dir)
    try:
        (out / "images").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create output folder {out}: {exc}") from exc

    start = time.perf_counter()
    cohort = [sample_patient(cfg, seed, i) for i in range(patients)]
    splits = assign_splits({p.patient_id: p.label for p in cohort}, val=val, test=test, seed=seed)
    chosen = _preview_choice(cohort) if preview else set()
    jobs = [
        _Job(cfg, seed, p.index, k, fmt, out, (p.index, k) in chosen)
        for p in cohort
        for k in range(p.n_images)
    ]
    results: list[dict[str, Any]] = []
    if workers == 1:
        results = list(
            progress.track(map(_render_job, jobs), total=len(jobs), desc="synth", unit="img")
        )
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=processes.context()) as pool:
            it = pool.map(_render_job, jobs, chunksize=max(1, len(jobs) // (workers * 8)))
            results = list(progress.track(it, total=len(jobs), desc="synth", unit="img"))

    studies = []
    for r in results:
        row = dict(r["row"])
        studies.append(
            Study(
                path=row.pop("path"),
                patient_id=row.pop("patient_id"),
                label=int(row.pop("label")),
                split=splits[r["row"]["patient_id"]],
                extra=row,
            )
        )
    ann_path = out / "annotations.jsonl"
    with open(ann_path, "w", encoding="utf-8") as fh:
        for r in results:
            fh.write(json.dumps(r["annotation"], sort_keys=True) + "\n")
    (out / "synth_config.json").write_text(
        json.dumps(
            {
                "generator_version": GENERATOR_VERSION,
                "seed": seed,
                "patients": patients,
                "format": fmt,
                "val": val,
                "test": test,
                "config": cfg.to_dict(),
            },
            indent=2,
            sort_keys=True,
        )
        + "\n",
        encoding="utf-8",
    )
    preview_path = None
    if preview:
        from edgevcf.data.synth.preview import contact_sheet

        thumbs = [(r["row"], r["thumb"]) for r in results if "thumb" in r]
        preview_path = out / "preview.png"
        contact_sheet(thumbs, preview_path)
    manifest = Manifest(studies, root=out)
    manifest_path = manifest.save(out / "manifest.csv")
    seconds = time.perf_counter() - start
    result = SynthResult(
        out,
        manifest_path,
        preview_path,
        ann_path,
        patients,
        len(results),
        seconds,
        manifest.counts(),
    )
    log.debug(
        "wrote %d images of %d patients to %s in %.1f s (%.1f img/s)",
        result.images,
        patients,
        out,
        seconds,
        result.images_per_second,
    )
    return result


def _preview_choice(cohort: list[Patient]) -> set[tuple[int, int]]:
    """First image of the first patients of each kind: fresh, old only, no fracture."""
    picked: dict[str, list[int]] = {"fresh": [], "old": [], "none": []}
    for p in cohort:
        ages = {f.age for f in p.fractures}
        kind = "fresh" if "fresh" in ages else ("old" if "old" in ages else "none")
        if len(picked[kind]) < PREVIEW_PER_ROW:
            picked[kind].append(p.index)
    return {(i, 0) for idx in picked.values() for i in idx}


def sample_film(cache: Path | None = None) -> Path | None:
    """One full-resolution synthetic DICOM film (~2,300 x 2,900, 12-bit in 16), generated once
    into ``cache`` (default: edgevcf's cache), for end-to-end timing where the user gave none.
    None when it cannot be made (no scipy)."""
    from edgevcf import progress
    from edgevcf.dataset import cache_root
    from edgevcf.deps import available

    target = (cache or cache_root()) / "bench" / "fullres-dicom"
    found = sorted(target.glob("images/*.dcm")) if target.is_dir() else []
    if found:
        return found[0]
    if not available("scipy"):
        return None
    was = progress.enabled()
    progress.set_enabled(False)
    try:
        generate(target, 1, cfg=SynthConfig(), seed=7, fmt="dicom", preview=False, val=0, test=0)
    finally:
        progress.set_enabled(was)
    found = sorted(target.glob("images/*.dcm"))
    return found[0] if found else None
