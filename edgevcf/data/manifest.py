"""Manifests of studies: which image belongs to which patient, its label and its split.

A manifest is a CSV file with the required columns ``path, patient_id, label``, an optional
``split`` column (``train`` / ``val`` / ``test``) and any number of further columns (``view``,
``fracture_level``, ``grade``, ``age``, ``sex``, ``site``, ...) that are kept verbatim as strings,
so ground truth recorded by the synthetic generator or a hospital export survives a round trip.
Relative paths are resolved against the folder of the CSV, so a dataset folder can be moved as a
whole.

Splits are made **by patient** (:func:`assign_splits`): several images of one patient in
different splits would let a model be evaluated on a patient it has seen, which inflates every
accuracy number downstream (threshold choice, quantisation gates, benchmarks). Loading a manifest
therefore does not refuse leakage (``edgevcf data check`` must be able to report it), but
:meth:`Manifest.check_leakage` finds it and :meth:`Manifest.validate_splits` refuses it.

:meth:`Manifest.fingerprint` identifies the exact list of studies (e.g. the calibration set stored
in a bundle) independent of row order.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import numbers
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgevcf.errors import ConfigError, DataError
from edgevcf.hashing import sha256_file

logger = logging.getLogger(__name__)

#: Columns every manifest must have, in the order they are written.
REQUIRED_COLUMNS: tuple[str, ...] = ("path", "patient_id", "label")
#: The optional split column and its allowed values (in canonical order).
SPLIT_COLUMN = "split"
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Name used in :meth:`Manifest.counts` for studies without a split.
UNASSIGNED = "unassigned"
#: Name used in :meth:`Manifest.counts` for the whole manifest.
ALL = "all"

_RESERVED = (*REQUIRED_COLUMNS, SPLIT_COLUMN)
# Labels are binary ints. Float spellings are accepted because pandas writes 0/1 columns that
# once held NaN as "0.0"/"1.0"; words ("true", "yes", "fresh") are refused so a mislabelled
# column cannot be silently read as something else.
_LABEL_SPELLINGS: dict[str, int] = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}
_MAX_LISTED_PROBLEMS = 10
_FINGERPRINT_VERSION = b"edgevcf-manifest-fingerprint-v1\n"


@dataclass(frozen=True)
class Study:
    """One image of one patient, as listed in a manifest.

    Attributes:
        path: The image path as written in the manifest (relative to the manifest's folder, or
            absolute). Kept as written so saving and fingerprinting do not depend on where the
            dataset lies on this machine; use :meth:`resolve` to open it.
        patient_id: Identifier of the patient; all images of a patient share one split.
        label: 1 for the positive class (fresh fracture), 0 otherwise.
        split: ``"train"``, ``"val"``, ``"test"`` or ``None`` when not assigned yet.
        extra: Further manifest columns, verbatim as strings (ground truth, demographics, ...).
            Excluded from hashing so a ``Study`` stays usable in sets and as a dict key.
    """

    path: str
    patient_id: str
    label: int
    split: str | None = None
    extra: dict[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # Programming errors (not user data errors: Manifest.load reports those with row
        # numbers before a Study is built), so they are plain ValueErrors.
        if not self.path:
            raise ValueError("Study.path must not be empty")
        if not self.patient_id:
            raise ValueError("Study.patient_id must not be empty")
        if self.label not in (0, 1):
            raise ValueError(f"Study.label must be 0 or 1, got {self.label!r}")
        # Normalise bools / numpy ints so that saving writes "0"/"1", never "True".
        object.__setattr__(self, "label", int(self.label))
        if self.split is not None and self.split not in SPLITS:
            raise ValueError(
                f"Study.split must be one of {', '.join(SPLITS)} or None, got {self.split!r}"
            )
        reserved = sorted(set(self.extra) & set(_RESERVED))
        if reserved:
            raise ValueError(f"Study.extra must not contain manifest columns {reserved}")

    def resolve(self, root: str | os.PathLike[str]) -> Path:
        """Return the image's location: absolute paths as they are, relative ones under ``root``.

        The join is purely lexical (no symlink resolution, no file access), so it is cheap and
        works for files that do not exist yet.
        """
        return _join(root, self.path)


def _join(root: str | os.PathLike[str], path: str) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else Path(root) / candidate


def _problem(row: int, line: int, column: str | None, text: str) -> str:
    where = f"row {row} (line {line})"
    if column is not None:
        where += f", column '{column}'"
    return f"{where}: {text}"


def _raise_problems(csv_path: Path, problems: list[str]) -> None:
    """Raise one DataError listing every problem found, so a user can fix the file in one go."""
    if not problems:
        return
    hint = (
        "rows are numbered from the first data row (row 1 = line 2); "
        "label must be 0 or 1, split one of " + "/".join(SPLITS) + " or empty"
    )
    if len(problems) == 1:
        raise DataError(f"{csv_path}: {problems[0]}", hint=hint)
    listed = "\n  ".join(problems[:_MAX_LISTED_PROBLEMS])
    more = len(problems) - _MAX_LISTED_PROBLEMS
    tail = f"\n  ... and {more} more" if more > 0 else ""
    raise DataError(f"{csv_path}: {len(problems)} problems:\n  {listed}{tail}", hint=hint)


class Manifest:
    """An ordered list of :class:`Study` rows plus the folder relative paths are resolved against.

    Manifests are treated as values: every transforming method returns a new ``Manifest`` and
    leaves this one unchanged, so a loaded manifest can be split, filtered and fingerprinted
    without surprises.

    Attributes:
        studies: The studies, in file order.
        root: Folder that relative study paths are resolved against (the CSV's folder).
    """

    def __init__(self, studies: Iterable[Study], root: str | os.PathLike[str] = ".") -> None:
        self.studies: list[Study] = list(studies)
        self.root: Path = Path(root)

    def __len__(self) -> int:
        return len(self.studies)

    def __iter__(self) -> Iterator[Study]:
        return iter(self.studies)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Manifest):
            return NotImplemented
        return self.studies == other.studies and self.root == other.root

    __hash__ = None  # type: ignore[assignment]  # mutable list inside: not hashable

    def __repr__(self) -> str:
        return (
            f"Manifest({len(self.studies)} studies, {len(self.patients())} patients, "
            f"root={str(self.root)!r})"
        )

    # ------------------------------------------------------------------ reading and writing

    @classmethod
    def load(cls, csv_path: str | os.PathLike[str]) -> Manifest:
        """Read and validate a manifest CSV.

        Every row is checked and all problems are reported together (the first ten listed), each
        naming its data row (1-based; row 1 is line 2 of the file) and column, because a
        manifest exported from a PACS usually has several bad rows at once.

        Patient leakage across splits is *not* an error here, so that ``edgevcf data check`` can
        load and report it; call :meth:`validate_splits` where leakage must be refused.

        Args:
            csv_path: The manifest file. Relative study paths are resolved against its folder.

        Returns:
            The manifest with ``root`` set to the CSV's (absolute) folder.

        Raises:
            DataError: The file is missing or unreadable, lacks a required column, has no rows,
                or a row has an empty path/patient_id, a label other than 0/1, an unknown split,
                the wrong number of fields, or a path already listed in an earlier row.
        """
        csv_path = Path(csv_path)
        if not csv_path.is_file():
            raise DataError(
                f"manifest not found: {csv_path}",
                hint="give the path of a CSV with columns path, patient_id, label[, split]",
            )
        root = csv_path.resolve().parent
        try:
            # utf-8-sig: spreadsheet programs put a BOM in front of the first column name.
            with csv_path.open(newline="", encoding="utf-8-sig") as fh:
                reader = csv.reader(fh)
                header = next(reader, None)
                if header is None or not any(name.strip() for name in header):
                    raise DataError(
                        f"{csv_path}: empty file, expected a header line "
                        f"'{','.join(REQUIRED_COLUMNS)}[,{SPLIT_COLUMN}]'"
                    )
                columns = [name.strip() for name in header]
                _check_header(csv_path, columns)
                studies, problems = _parse_rows(reader, columns, root)
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{csv_path}: not UTF-8 text ({exc.reason} at byte {exc.start})",
                hint="save the manifest as UTF-8 CSV",
            ) from exc
        except csv.Error as exc:
            raise DataError(f"{csv_path}: malformed CSV: {exc}") from exc
        except OSError as exc:
            raise DataError(f"cannot read manifest {csv_path}: {exc.strerror or exc}") from exc
        _raise_problems(csv_path, problems)
        if not studies:
            raise DataError(f"{csv_path}: the manifest lists no studies (header only)")
        logger.debug("loaded %d studies from %s", len(studies), csv_path)
        return cls(studies, root)

    def save(self, csv_path: str | os.PathLike[str]) -> Path:
        """Write the manifest as CSV, byte-for-byte deterministic for the same content.

        Columns: ``path, patient_id, label``, then ``split`` (when any study has one), then the
        extra columns in first-seen order (empty where a study lacks one). Rows keep their order.
        Relative paths stay relative (re-based when writing into another folder, so the new CSV
        still finds the images); absolute paths are made relative only when the image lies under
        the CSV's folder. The file is written to a temporary name and moved into place, so
        overwriting the manifest being read (``--in-place``) never leaves half a file.

        Args:
            csv_path: Where to write; parent folders are created.

        Returns:
            The path written.
        """
        csv_path = Path(csv_path)
        out_dir = csv_path.parent.resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        has_split = any(s.split is not None for s in self.studies)
        extras: dict[str, None] = {}
        for study in self.studies:
            extras.update(dict.fromkeys(study.extra))
        columns = [*REQUIRED_COLUMNS, *([SPLIT_COLUMN] if has_split else []), *extras]

        fd, tmp_name = tempfile.mkstemp(prefix=f".{csv_path.name}.", suffix=".tmp", dir=out_dir)
        try:
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(columns)
                for study in self.studies:
                    row = [self._path_for(study, out_dir), study.patient_id, str(study.label)]
                    if has_split:
                        row.append(study.split or "")
                    row.extend(study.extra.get(name, "") for name in extras)
                    writer.writerow(row)
            os.replace(tmp_name, csv_path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        logger.debug("wrote %d studies to %s", len(self.studies), csv_path)
        return csv_path

    def _path_for(self, study: Study, out_dir: Path) -> str:
        """The path to write for ``study`` in a CSV that lives in ``out_dir``."""
        written = Path(study.path)
        target = study.resolve(self.root)
        if not written.is_absolute():
            if out_dir == self.root.resolve():
                return study.path  # same folder: keep exactly what was written
        elif not _is_under(target, out_dir):
            return study.path  # an absolute path elsewhere stays absolute (robust to moves)
        try:
            return Path(os.path.relpath(target, out_dir)).as_posix()
        except ValueError:  # another drive on Windows: no relative path exists
            return str(target.absolute())

    # ------------------------------------------------------------------ queries

    def patients(self) -> list[str]:
        """Sorted ids of all patients in the manifest."""
        return sorted({s.patient_id for s in self.studies})

    def patient_labels(self) -> dict[str, int]:
        """Each patient's label: 1 if any of its images is positive, else 0.

        A patient with one fresh fracture image is a positive patient; this is the label that
        patient-level splitting stratifies on.
        """
        labels: dict[str, int] = {}
        for study in self.studies:
            labels[study.patient_id] = max(labels.get(study.patient_id, 0), study.label)
        return dict(sorted(labels.items()))

    def splits(self) -> list[str]:
        """The split names used by at least one study, in canonical order (train, val, test)."""
        used = {s.split for s in self.studies}
        return [name for name in SPLITS if name in used]

    def by_split(self, name: str) -> Manifest:
        """The studies of one split, as a manifest with the same root.

        Raises:
            ConfigError: ``name`` is not one of train, val, test.
        """
        if name not in SPLITS:
            raise ConfigError(f"unknown split {name!r}", hint=f"use one of {', '.join(SPLITS)}")
        return Manifest([s for s in self.studies if s.split == name], self.root)

    def counts(self) -> dict[str, dict[int, dict[str, int]]]:
        """Images and patients per split and label.

        Returns:
            ``{split: {label: {"images": n, "patients": m}}}`` for each split present (canonical
            order, ``"unassigned"`` for studies without a split) and ``"all"`` for the whole
            manifest; labels 0 and 1 are always present. A patient is counted under its
            patient-level label within that split (1 if any of its images there is positive), so
            patient counts add up across labels.
        """
        groups: dict[str, list[Study]] = {name: [] for name in (*SPLITS, UNASSIGNED)}
        for study in self.studies:
            groups[study.split or UNASSIGNED].append(study)
        result = {name: _count(group) for name, group in groups.items() if group}
        result[ALL] = _count(self.studies)
        return result

    def check_leakage(self) -> dict[str, list[str]]:
        """Patients found in more than one split.

        Studies without a split are ignored: they are not evaluated on yet.

        Returns:
            ``{patient_id: [splits...]}`` (sorted by patient, splits in canonical order); empty
            when the splits are patient-disjoint.
        """
        seen: dict[str, set[str]] = {}
        for study in self.studies:
            if study.split is not None:
                seen.setdefault(study.patient_id, set()).add(study.split)
        return {
            pid: [name for name in SPLITS if name in splits]
            for pid, splits in sorted(seen.items())
            if len(splits) > 1
        }

    def validate_splits(self) -> None:
        """Refuse a manifest whose splits share patients.

        Raises:
            DataError: Listing up to ten leaking patients and their splits.
        """
        leaks = self.check_leakage()
        if not leaks:
            return
        listed = ", ".join(
            f"{pid} ({'/'.join(splits)})"
            for pid, splits in list(leaks.items())[:_MAX_LISTED_PROBLEMS]
        )
        more = len(leaks) - _MAX_LISTED_PROBLEMS
        tail = f" and {more} more" if more > 0 else ""
        raise DataError(
            f"{len(leaks)} patient(s) appear in more than one split: {listed}{tail}",
            hint="re-split with `edgevcf data split` (it splits by patient)",
        )

    # ------------------------------------------------------------------ transformations

    def with_splits(self, mapping: Mapping[str, str]) -> Manifest:
        """A copy with each study's split taken from its patient's entry in ``mapping``.

        Raises:
            ConfigError: A split name is not train/val/test, or a patient of the manifest has
                no entry (a partial mapping would silently leave images unassigned).
        """
        bad = sorted({v for v in mapping.values() if v not in SPLITS})
        if bad:
            raise ConfigError(f"unknown split name(s) {bad}", hint=f"use {', '.join(SPLITS)}")
        missing = [pid for pid in self.patients() if pid not in mapping]
        if missing:
            shown = ", ".join(missing[:_MAX_LISTED_PROBLEMS])
            extra = len(missing) - _MAX_LISTED_PROBLEMS
            more = f" and {extra} more" if extra > 0 else ""
            raise ConfigError(f"no split given for {len(missing)} patient(s): {shown}{more}")
        return Manifest([replace(s, split=mapping[s.patient_id]) for s in self.studies], self.root)

    def split_by_patient(self, val: float = 0.15, test: float = 0.15, seed: int = 0) -> Manifest:
        """A copy split into train/val/test by patient, stratified by patient label.

        Existing splits are replaced. See :func:`assign_splits` for the rules.
        """
        mapping = assign_splits(self.patient_labels(), val=val, test=test, seed=seed)
        return self.with_splits(mapping)

    # ------------------------------------------------------------------ identity

    def fingerprint(self, include_file_hashes: bool = False) -> str:
        """SHA-256 (hex) identifying this list of studies, independent of row order.

        Hashes the sorted ``(path as written, patient_id, label, split)`` rows; extra columns
        and ``root`` are left out so the same dataset fingerprints the same wherever it lies.
        With ``include_file_hashes`` each image's SHA-256 is included too, so a re-exported or
        re-windowed image with the same name changes the fingerprint (slower: reads every file).

        Raises:
            DataError: ``include_file_hashes`` and an image cannot be read.
        """
        rows = sorted(self.studies, key=lambda s: (s.path, s.patient_id, s.label, s.split or ""))
        digest = hashlib.sha256(_FINGERPRINT_VERSION)
        for study in rows:
            record: list[str | int] = [study.path, study.patient_id, study.label, study.split or ""]
            if include_file_hashes:
                record.append(sha256_file(study.resolve(self.root)))
            # JSON encoding keeps fields unambiguous whatever characters they contain.
            digest.update(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode())
            digest.update(b"\n")
        return digest.hexdigest()


# ---------------------------------------------------------------------- helpers for load/save


def _check_header(csv_path: Path, columns: list[str]) -> None:
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise DataError(f"{csv_path}: duplicate column(s) in header: {', '.join(duplicated)}")
    if "" in columns:
        raise DataError(
            f"{csv_path}: header has an empty column name (column {columns.index('') + 1})"
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise DataError(
            f"{csv_path}: missing required column(s) {', '.join(missing)}; "
            f"found: {', '.join(columns)}",
            hint=f"a manifest needs the columns {', '.join(REQUIRED_COLUMNS)} (split is optional)",
        )


def _parse_rows(reader: Any, columns: list[str], root: Path) -> tuple[list[Study], list[str]]:
    """Turn CSV records into studies, collecting every row problem instead of stopping."""
    studies: list[Study] = []
    problems: list[str] = []
    first_row_of: dict[str, tuple[int, str]] = {}
    extra_columns = [c for c in columns if c not in _RESERVED]
    row_no = 0
    for record in reader:
        if not record or all(not value.strip() for value in record):
            continue  # blank line (often a trailing one)
        row_no += 1
        line = reader.line_num  # last physical line of the record (quoted fields may span lines)
        if len(record) != len(columns):
            problems.append(
                _problem(row_no, line, None, f"{len(record)} fields, the header has {len(columns)}")
            )
            continue
        values = dict(zip(columns, record, strict=True))
        row_problems: list[str] = []

        path = values["path"].strip()
        patient_id = values["patient_id"].strip()
        if not path:
            row_problems.append(_problem(row_no, line, "path", "empty"))
        if not patient_id:
            row_problems.append(_problem(row_no, line, "patient_id", "empty"))
        raw_label = values["label"].strip()
        label = _LABEL_SPELLINGS.get(raw_label)
        if label is None:
            row_problems.append(
                _problem(
                    row_no,
                    line,
                    "label",
                    f"must be 0 or 1, got {raw_label!r} (0.0/1.0 accepted; no words)",
                )
            )
        split: str | None = values.get(SPLIT_COLUMN, "").strip() or None
        if split is not None and split not in SPLITS:
            row_problems.append(
                _problem(
                    row_no,
                    line,
                    SPLIT_COLUMN,
                    f"unknown split {split!r}, expected one of {', '.join(SPLITS)} or empty",
                )
            )
        if path:
            key = os.path.normpath(_join(root, path))
            if key in first_row_of:
                earlier_row, earlier_path = first_row_of[key]
                row_problems.append(
                    _problem(
                        row_no,
                        line,
                        "path",
                        f"duplicate path {path!r} (already listed in row {earlier_row}"
                        + (f" as {earlier_path!r})" if earlier_path != path else ")"),
                    )
                )
            else:
                first_row_of[key] = (row_no, path)
        if row_problems:
            problems.extend(row_problems)
            continue
        assert label is not None
        studies.append(Study(path, patient_id, label, split, {c: values[c] for c in extra_columns}))
    return studies, problems


def _is_under(path: Path, folder: Path) -> bool:
    try:
        Path(os.path.abspath(path)).relative_to(folder)
    except ValueError:
        return False
    return True


def _count(studies: list[Study]) -> dict[int, dict[str, int]]:
    patient_label: dict[str, int] = {}
    images = {0: 0, 1: 0}
    for study in studies:
        images[study.label] += 1
        patient_label[study.patient_id] = max(patient_label.get(study.patient_id, 0), study.label)
    patients = {0: 0, 1: 0}
    for label in patient_label.values():
        patients[label] += 1
    return {label: {"images": images[label], "patients": patients[label]} for label in (0, 1)}


# ---------------------------------------------------------------------- splitting


def _allocate(n: int, val: float, test: float) -> tuple[int, int]:
    """How many of ``n`` patients of one stratum go to val and to test.

    Rounds half up (not Python's banker's rounding, which would make 0.5 go either way), gives
    each requested split at least one patient when the stratum has >= 3 (otherwise a small
    dataset gets a test set without positives and an undefined AUC), and always leaves train at
    least one patient, shrinking the larger of val/test first.
    """
    n_val = math.floor(n * val + 0.5)
    n_test = math.floor(n * test + 0.5)
    min_val = 1 if (val > 0 and n >= 3) else 0
    min_test = 1 if (test > 0 and n >= 3) else 0
    n_val, n_test = max(n_val, min_val), max(n_test, min_test)
    while n_val + n_test > max(n - 1, 0):
        if n_val > min_val and (n_val >= n_test or n_test <= min_test):
            n_val -= 1
        elif n_test > min_test:
            n_test -= 1
        else:  # pragma: no cover - minimums sum to <= 2 <= n - 1 whenever they are non-zero
            break
    return n_val, n_test


def assign_splits(
    patient_labels: Mapping[str, int], *, val: float = 0.15, test: float = 0.15, seed: int = 0
) -> dict[str, str]:
    """Assign each patient to ``"train"``, ``"val"`` or ``"test"``, stratified by label.

    Splitting patients rather than images keeps all views of a patient in one split, so no
    evaluation image comes from a patient seen in training. Stratifying keeps each split's
    prevalence close to the overall one, which AUC confidence intervals and threshold choice
    rely on.

    The result depends only on the mapping's content and ``seed``: patient ids are sorted, then
    each label stratum (in ascending label order) is shuffled with one
    ``numpy.random.default_rng(seed)`` generator; the first patients of a stratum go to test,
    the next to val, the rest to train. Counts per stratum are ``round(n * fraction)`` (half up),
    at least one per requested split when the stratum has >= 3 patients, and train always keeps
    at least one.

    Args:
        patient_labels: Patient id -> patient label (1 if any of its images is positive).
        val: Fraction of patients for validation (0 <= val).
        test: Fraction of patients for testing (0 <= test, val + test < 1).
        seed: Seed of the shuffle; different seeds give different assignments.

    Returns:
        Patient id -> split name, for every patient, in sorted patient order.

    Raises:
        ConfigError: A fraction is negative, not finite, or val + test >= 1; or the seed is
            negative.
    """
    for name, value in (("val", val), ("test", test)):
        if not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{name} fraction must be a number >= 0, got {value!r}")
    if val + test >= 1:
        raise ConfigError(
            f"val + test fractions must be below 1 (train needs patients), got {val} + {test}",
            hint="e.g. --val 0.15 --test 0.15",
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")

    strata: dict[int, list[str]] = {}
    for pid in sorted(patient_labels):
        strata.setdefault(int(patient_labels[pid]), []).append(pid)
    rng = np.random.default_rng(int(seed))
    assignment: dict[str, str] = {}
    for label in sorted(strata):
        ids = strata[label]
        order = rng.permutation(len(ids))
        n_val, n_test = _allocate(len(ids), val, test)
        for rank, index in enumerate(order):
            split = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            assignment[ids[index]] = split
    return dict(sorted(assignment.items()))


# ---------------------------------------------------------------------- files


def check_files(manifest: Manifest) -> list[tuple[Study, str]]:
    """Try to read every image of the manifest and collect the ones that fail.

    Reads each image with :func:`edgevcf.data.io.read_image` exactly as training and the runtime
    will, so an image refused there (colour, multi-frame, truncated, ...) is found now. Does not
    stop at the first failure: a dataset with many bad files is fixed in one pass.

    Returns:
        ``(study, reason)`` for each missing or unreadable image, in manifest order; empty when
        all images can be read.
    """
    from edgevcf import progress
    from edgevcf.data.io import read_image  # lazy: pulls pydicom / Pillow

    failures: list[tuple[Study, str]] = []
    for study in progress.track(
        manifest.studies, total=len(manifest), desc="Reading images", unit="img"
    ):
        path = study.resolve(manifest.root)
        if not path.is_file():
            failures.append((study, "file not found" if not path.exists() else "not a file"))
            continue
        try:
            read_image(path)
        except DataError as exc:
            failures.append((study, exc.message))
        except OSError as exc:
            failures.append((study, f"cannot read: {exc.strerror or exc}"))
    if failures:
        logger.info("%d of %d images could not be read", len(failures), len(manifest))
    return failures


__all__ = [
    "ALL",
    "REQUIRED_COLUMNS",
    "SPLITS",
    "SPLIT_COLUMN",
    "UNASSIGNED",
    "Manifest",
    "Study",
    "assign_splits",
    "check_files",
]
