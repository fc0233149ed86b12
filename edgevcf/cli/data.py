"""``edgevcf data``: make, split and check the manifests every later step reads.

Thin on purpose: parse options, call :mod:`edgevcf.data.manifest`, print with ``click.echo``.
Library imports happen inside the commands so that ``edgevcf --help`` stays instant.
Problems found by ``check`` are printed in full first and then raised as one ``DataError``, so
the root group gives a short ``Error:`` line and the data exit code (useful in CI).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgevcf.cli import echo

if TYPE_CHECKING:  # for annotations only; imported lazily at run time
    from edgevcf.data.manifest import Manifest, Study


@click.group("data")
def data() -> None:
    """Datasets: synthesise, split and check manifests.

    A manifest is a CSV with the columns path, patient_id, label (0/1) and optionally split
    (train/val/test) plus any other columns (view, grade, age, ...), which are kept as they are.
    Relative paths are resolved against the CSV's folder.

    \b
    Examples:
      edgevcf data split data/manifest.csv --seed 1
      edgevcf data check data/manifest.split.csv
    """


# ---------------------------------------------------------------------------------------------
# `edgevcf data synth` goes HERE. It is written by the owner of edgevcf/data/synth.py as
# `@data.command("synth")`; keep this marker so it lands in one obvious place, and keep its
# heavy imports (scipy, edgevcf.data.synth) inside the command function.
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# split
# ---------------------------------------------------------------------------------------------


@data.command("split")
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--val",
    type=float,
    default=0.15,
    show_default=True,
    help="Fraction of patients for the validation split (threshold tuning).",
)
@click.option(
    "--test",
    type=float,
    default=0.15,
    show_default=True,
    help="Fraction of patients for the test split (final evaluation). val + test must be < 1.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the shuffle: the same seed gives the same split.",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the split manifest.  [default: MANIFEST with suffix .split.csv]",
)
@click.option("--in-place", is_flag=True, help="Overwrite MANIFEST itself (written atomically).")
def split_cmd(
    manifest: Path, val: float, test: float, seed: int, out_path: Path | None, in_place: bool
) -> None:
    """Split MANIFEST into train/val/test by patient, stratified by label.

    All images of a patient go to the same split, so no test image comes from a patient seen in
    training; each split keeps about the overall share of positive patients (a patient is
    positive when any of its images is). An existing split column is replaced. Prints images
    and patients per split and label, and where it wrote.

    \b
    Examples:
      edgevcf data split data/manifest.csv                  # -> data/manifest.split.csv
      edgevcf data split data/manifest.csv --val 0.2 --test 0.2 --seed 7 --out split.csv
      edgevcf data split data/manifest.csv --in-place
    """
    from edgevcf.data.manifest import Manifest
    from edgevcf.errors import ConfigError

    if in_place and out_path is not None:
        raise ConfigError("--out and --in-place exclude each other", hint="give one of them")
    loaded = Manifest.load(manifest)
    if loaded.splits():
        echo(f"note: replacing the existing split column of {manifest}", err=True)
    result = loaded.split_by_patient(val=val, test=test, seed=seed)
    target = (
        manifest if in_place else (out_path or manifest.with_name(f"{manifest.stem}.split.csv"))
    )
    written = result.save(target)

    echo(
        f"Split {len(result)} studies of {len(result.patients())} patients by patient "
        f"(val {val:g}, test {test:g}, seed {seed}):"
    )
    for line in _counts_table(result.counts()):
        echo(line)
    echo(f"Wrote {written}")


# ---------------------------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------------------------


@data.command("check")
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--no-read",
    is_flag=True,
    help="Check only the manifest itself (columns, counts, leakage); do not open the images.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print a machine-readable JSON summary on stdout instead of the report.",
)
def check_cmd(manifest: Path, no_read: bool, as_json: bool) -> None:
    """Check MANIFEST: counts, leakage and unreadable images.

    Prints images and patients per split and label with the share of positives, lists every
    patient that appears in more than one split, and reads every image exactly as training and
    the runtime will, listing all that are missing or refused (it does not stop at the first).
    Exits with the data error code when there is leakage or an unreadable image, so it can gate
    a CI job; format errors in the CSV itself are reported with their row numbers.

    \b
    Examples:
      edgevcf data check data/manifest.split.csv
      edgevcf data check data/manifest.split.csv --no-read --json > summary.json
    """
    import json

    from edgevcf.data.manifest import UNASSIGNED, Manifest, check_files
    from edgevcf.errors import DataError

    loaded = Manifest.load(manifest)
    counts = loaded.counts()
    leaks = loaded.check_leakage()
    failures: list[tuple[Study, str]] = [] if no_read else check_files(loaded)

    if as_json:
        summary = _summary(manifest, loaded, counts, leaks, failures, files_checked=not no_read)
        echo(json.dumps(summary, indent=2, sort_keys=False))
    else:
        echo(f"Manifest {manifest}: {len(loaded)} studies, {len(loaded.patients())} patients")
        for line in _counts_table(counts):
            echo(line)
        if UNASSIGNED in counts:
            n = sum(c["images"] for c in counts[UNASSIGNED].values())
            echo(f"Note: {n} studies have no split; make one with `edgevcf data split`.")
        if leaks:
            echo(f"Leakage: {len(leaks)} patient(s) in more than one split:")
            for pid, splits in leaks.items():
                echo(f"  {pid}: {', '.join(splits)}")
        else:
            echo("Leakage: none (splits are patient-disjoint)")
        if no_read:
            echo("Images: not read (--no-read)")
        elif failures:
            echo(f"Images: {len(failures)} of {len(loaded)} missing or unreadable:")
            for study, reason in failures:
                echo(f"  {study.path} (patient {study.patient_id}): {reason}")
        else:
            echo(f"Images: all {len(loaded)} readable")
        echo(f"Fingerprint: {loaded.fingerprint()}")

    problems: list[str] = []
    hints: list[str] = []
    if leaks:
        problems.append(f"{len(leaks)} patient(s) in more than one split")
        hints.append("re-split with `edgevcf data split`")
    if failures:
        problems.append(f"{len(failures)} of {len(loaded)} image(s) missing or unreadable")
        hints.append("fix or remove the listed images from the manifest")
    if problems:
        raise DataError(f"{manifest}: " + "; ".join(problems), hint="; ".join(hints))


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _counts_table(counts: dict[str, dict[int, dict[str, int]]]) -> list[str]:
    """Render ``Manifest.counts()`` as an aligned text table with positive shares."""
    head = (
        f"{'split':<11}{'images':>8}{'neg':>7}{'pos':>7}{'pos %':>8}"
        f"{'patients':>11}{'neg':>7}{'pos':>7}{'pos %':>8}"
    )
    lines = [head]
    for name, by_label in counts.items():
        row = f"{name:<11}"
        for kind, width in (("images", 8), ("patients", 11)):
            neg, pos = by_label[0][kind], by_label[1][kind]
            share = _share(pos, neg + pos)
            pct = f"{100 * share:.1f}" if share is not None else "-"
            row += f"{neg + pos:>{width}}{neg:>7}{pos:>7}{pct:>8}"
        lines.append(row)
    return lines


def _summary(
    manifest_path: Path,
    manifest: Manifest,
    counts: dict[str, dict[int, dict[str, int]]],
    leaks: dict[str, list[str]],
    failures: list[tuple[Study, str]],
    *,
    files_checked: bool,
) -> dict[str, Any]:
    """The ``check --json`` document (stable keys; labels as "0"/"1" strings, as JSON needs)."""
    splits: dict[str, Any] = {}
    for name, by_label in counts.items():
        images = by_label[0]["images"] + by_label[1]["images"]
        patients = by_label[0]["patients"] + by_label[1]["patients"]
        splits[name] = {
            "images": images,
            "patients": patients,
            "by_label": {str(label): dict(c) for label, c in by_label.items()},
            "prevalence_images": _share(by_label[1]["images"], images),
            "prevalence_patients": _share(by_label[1]["patients"], patients),
        }
    return {
        "manifest": str(manifest_path),
        "root": str(manifest.root),
        "studies": len(manifest),
        "patients": len(manifest.patients()),
        "fingerprint": manifest.fingerprint(),
        "splits": splits,
        "leakage": leaks,
        "files_checked": files_checked,
        "unreadable": [
            {"path": s.path, "patient_id": s.patient_id, "reason": reason} for s, reason in failures
        ],
        "ok": not leaks and not failures,
    }


__all__ = ["data"]


#: the built-in site profiles' names (edgevcf.data.synth.sites.PROFILES; a test keeps them equal),
#: spelled out so that `edgevcf --help` imports no generator
SITE_PROFILES = ("home", "clinic-edge", "clinic-bright", "clinic-dark", "clinic-lowdose")


@data.command("synth")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder to write images/, manifest.csv, annotations.jsonl and preview.png into.",
)
@click.option(
    "--patients",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Number of synthetic patients (each has 1-3 lateral films).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Everything derives from it: the same seed writes byte-identical files.",
)
@click.option(
    "--fast",
    is_flag=True,
    help="0.6 mm pixels (about 580x720) instead of 0.15 mm (2333x2867): for tests and demos.",
)
@click.option(
    "--pixel-mm",
    type=click.FloatRange(0.05, 2.0),
    default=None,
    help="Detector pixel size in mm (overrides --fast).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["png", "dicom"]),
    default="png",
    show_default=True,
    help="16-bit PNG, or DX/CR DICOM objects (MONOCHROME1 and MONOCHROME2 sites).",
)
@click.option(
    "--prevalence",
    type=click.FloatRange(0.0, 1.0),
    default=0.45,
    show_default=True,
    help="Fraction of patients with at least one fresh fracture (the positive class).",
)
@click.option(
    "--difficulty",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="0 = the standard task (fresh signs up to 2x the literature size; learnable from scratch "
    "at 224 px); 0.5 = literature-sized signs; 1 = subtle signs, many mimics, lower dose.",
)
@click.option(
    "--label-noise",
    type=click.FloatRange(0.0, 0.49),
    default=0.07,
    show_default=True,
    help="Fraction of patients whose recorded label is flipped (label_true keeps the truth).",
)
@click.option(
    "--val",
    type=click.FloatRange(0.0, 0.9),
    default=0.15,
    show_default=True,
    help="Fraction of patients in the validation split (by patient, stratified).",
)
@click.option(
    "--test",
    type=click.FloatRange(0.0, 0.9),
    default=0.15,
    show_default=True,
    help="Fraction of patients in the test split.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes to use [default: number of CPUs]. Results do not depend on it.",
)
@click.option(
    "--site-profile",
    type=click.Choice(SITE_PROFILES),
    default="home",
    show_default=True,
    help="Which site the films come from: detectors, console processing (edge enhancement, "
    "display curve), dose, header fields and patient mix. 'home' is the default mix; the "
    "'clinic-*' profiles are shifted sites for proving a site validation (docs/site.md).",
)
@click.option("--no-preview", is_flag=True, help="Do not write preview.png.")
def synth(
    out_dir: Path,
    patients: int,
    seed: int,
    fast: bool,
    pixel_mm: float | None,
    fmt: str,
    prevalence: float,
    difficulty: float,
    label_noise: float,
    val: float,
    test: float,
    workers: int | None,
    site_profile: str,
    no_preview: bool,
) -> None:
    """Generate synthetic lateral thoracolumbar radiographs with ground truth.

    Anatomy T10-L3 (with partial T9 and L4) at literature dimensions, Beer-Lambert projection
    of bone, soft tissue, lung and bowel gas, detector noise and blur; Genant-graded fractures,
    where FRESH ones (the positive class) show a cortical step, a subendplate condensation band
    and endplate breaks, and OLD ones smooth remodelled wedging, osteophytes or a vacuum cleft;
    benign mimics (short vertebrae, Schmorl nodes, endplate sclerosis, rotation) among the
    negatives. Patients have 1-3 films and are split by patient.

    \b
    Example:
      edgevcf data synth --out data/synth --patients 200 --fast
    """
    import os

    from edgevcf.data.synth import SynthConfig, generate
    from edgevcf.deps import require

    require("scipy", "the synthetic radiograph generator")
    base = SynthConfig.fast() if fast else SynthConfig()
    from edgevcf.data.synth.sites import apply_profile

    cfg = apply_profile(base, site_profile).with_(
        prevalence=prevalence,
        difficulty=difficulty,
        label_noise=label_noise,
        **({"pixel_mm": pixel_mm} if pixel_mm else {}),
    )
    result = generate(
        out_dir,
        patients,
        seed=seed,
        cfg=cfg,
        fmt=fmt,  # type: ignore[arg-type]
        workers=workers or os.cpu_count() or 1,
        val=val,
        test=test,
        preview=not no_preview,
    )
    echo(
        f"Wrote {result.images} images of {result.patients} patients in {result.seconds:.1f} s "
        f"({result.images_per_second:.1f} images/s) to {result.out_dir}"
    )
    for split, by_label in result.counts.items():
        if split == "all":
            continue
        neg, pos = by_label.get(0, {}), by_label.get(1, {})
        echo(
            f"  {split:<6} {neg.get('images', 0) + pos.get('images', 0):>5} images  "
            f"{neg.get('patients', 0) + pos.get('patients', 0):>4} patients  "
            f"{pos.get('images', 0)} positive"
        )
    echo(f"Manifest: {result.manifest}")
    if result.preview:
        echo(f"Preview:  {result.preview}")
