"""Tests for edgevcf.data.manifest: CSV round trip, validation, patient splits, leakage, hashes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgevcf.data.manifest import (
    Manifest,
    Study,
    assign_splits,
    check_files,
)
from edgevcf.errors import ConfigError, DataError
from edgevcf.hashing import sha256_file

# --------------------------------------------------------------------------- helpers


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_png(path: Path, value: int = 100) -> Path:
    """A real 8-bit greyscale PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 6), value, dtype=np.uint8)).save(path)
    return path


def make_manifest(n_patients: int, images_per_patient: int = 1, pos_every: int = 3) -> Manifest:
    studies = []
    for p in range(n_patients):
        label = 1 if p % pos_every == 0 else 0
        for i in range(images_per_patient):
            studies.append(Study(f"img/p{p:03d}_{i}.png", f"P{p:03d}", label))
    return Manifest(studies, root="/data")


GOOD_CSV = (
    "path,patient_id,label,split,view,grade\n"
    "img/a.png,P1,1,train,lat,2\n"
    "img/b.png,P1,0,train,lat,\n"
    "img/c.png,P2,0,test,ap,0\n"
)


# --------------------------------------------------------------------------- load / save


def test_load_reads_fields_and_extras(tmp_path: Path) -> None:
    m = Manifest.load(write_csv(tmp_path / "m.csv", GOOD_CSV))
    assert len(m) == 3
    assert m.root == tmp_path.resolve()
    first = m.studies[0]
    assert (first.path, first.patient_id, first.label, first.split) == (
        "img/a.png",
        "P1",
        1,
        "train",
    )
    assert first.extra == {"view": "lat", "grade": "2"}
    assert m.studies[1].extra == {"view": "lat", "grade": ""}
    assert m.patients() == ["P1", "P2"]
    assert m.patient_labels() == {"P1": 1, "P2": 0}


def test_relative_paths_resolve_against_csv_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    m = Manifest.load(write_csv(tmp_path / "m.csv", GOOD_CSV))
    assert m.studies[0].resolve(m.root) == tmp_path.resolve() / "img" / "a.png"
    assert Study("/abs/x.png", "P", 0).resolve(m.root) == Path("/abs/x.png")


def test_save_round_trip_is_exact_and_deterministic(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "m.csv", GOOD_CSV)
    m = Manifest.load(src)
    out = m.save(tmp_path / "copy.csv")
    assert out.read_text() == GOOD_CSV
    assert Manifest.load(out) == m
    m.save(tmp_path / "copy2.csv")
    assert (tmp_path / "copy2.csv").read_bytes() == out.read_bytes()


def test_save_column_order_and_no_split_column_when_unassigned(tmp_path: Path) -> None:
    m = Manifest(
        [
            Study("a.png", "P1", 0, extra={"view": "lat"}),
            Study("b.png", "P2", 1, extra={"age": "70", "view": "ap"}),
        ],
        root=tmp_path,
    )
    text = m.save(tmp_path / "m.csv").read_text()
    assert text.splitlines() == [
        "path,patient_id,label,view,age",
        "a.png,P1,0,lat,",
        "b.png,P2,1,ap,70",
    ]


def test_save_elsewhere_rebases_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    m = Manifest.load(write_csv(tmp_path / "data" / "m.csv", GOOD_CSV))
    out = m.save(tmp_path / "splits" / "m.csv")
    again = Manifest.load(out)
    assert again.studies[0].path == "../data/img/a.png"
    assert again.studies[0].resolve(again.root).resolve() == (tmp_path / "data/img/a.png").resolve()


def test_save_absolute_paths_relative_only_under_csv_folder(tmp_path: Path) -> None:
    inside = str(tmp_path / "img" / "a.png")
    outside = "/somewhere/else/b.png"
    m = Manifest([Study(inside, "P1", 0), Study(outside, "P2", 1)], root="/")
    again = Manifest.load(m.save(tmp_path / "m.csv"))
    assert [s.path for s in again] == ["img/a.png", outside]


def test_load_accepts_float_labels_bom_and_blank_lines(tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_bytes("\ufeffpath,patient_id,label\na.png,P1,1.0\n\nb.png,P2,0.0\n\n".encode())
    m = Manifest.load(csv)
    assert [s.label for s in m] == [1, 0]
    assert [s.split for s in m] == [None, None]


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("a.png,P1,1\n,P2,0\n", ["row 2 (line 3)", "column 'path'", "empty"]),
        ("a.png,P1,1\nb.png,,0\n", ["row 2 (line 3)", "column 'patient_id'", "empty"]),
        ("a.png,P1,yes\n", ["row 1 (line 2)", "column 'label'", "'yes'", "0 or 1"]),
        ("a.png,P1,1\nb.png,P2,2\n", ["row 2 (line 3)", "column 'label'", "'2'"]),
        ("a.png,P1,true\n", ["row 1 (line 2)", "column 'label'", "'true'"]),
        ("a.png,P1,1\nb.png,P2,0,\n", ["row 2 (line 3)", "4 fields", "header has 3"]),
        ("a.png,P1,1\n./a.png,P2,0\n", ["row 2 (line 3)", "duplicate path", "row 1"]),
    ],
)
def test_load_row_errors_name_row_and_column(
    tmp_path: Path, body: str, expected: list[str]
) -> None:
    csv = write_csv(tmp_path / "m.csv", "path,patient_id,label\n" + body)
    with pytest.raises(DataError) as info:
        Manifest.load(csv)
    for fragment in expected:
        assert fragment in info.value.message
    assert "m.csv" in info.value.message


def test_load_unknown_split(tmp_path: Path) -> None:
    csv = write_csv(
        tmp_path / "m.csv", "path,patient_id,label,split\na.png,P1,1,train\nb.png,P2,0,holdout\n"
    )
    with pytest.raises(
        DataError, match=r"row 2 \(line 3\), column 'split': unknown split 'holdout'"
    ):
        Manifest.load(csv)


def test_load_missing_columns_lists_what_is_there(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "m.csv", "path,patient,view\na.png,P1,lat\n")
    with pytest.raises(DataError) as info:
        Manifest.load(csv)
    assert "missing required column(s) patient_id, label" in info.value.message
    assert "found: path, patient, view" in info.value.message
    assert info.value.hint


def test_load_reports_all_row_problems_at_once(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "m.csv", "path,patient_id,label\na.png,P1,x\nb.png,,1\nc.png,P3,0\n")
    with pytest.raises(DataError) as info:
        Manifest.load(csv)
    assert "2 problems" in info.value.message
    assert "row 1 (line 2), column 'label'" in info.value.message
    assert "row 2 (line 3), column 'patient_id'" in info.value.message


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("", "empty file"),
        ("path,patient_id,label\n", "no studies"),
        ("path,path,label\n", "duplicate column"),
    ],
)
def test_load_file_level_errors(tmp_path: Path, content: str, fragment: str) -> None:
    with pytest.raises(DataError, match=fragment):
        Manifest.load(write_csv(tmp_path / "m.csv", content))


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="manifest not found") as info:
        Manifest.load(tmp_path / "nope.csv")
    assert info.value.hint


def test_study_rejects_programming_errors_and_stays_hashable() -> None:
    with pytest.raises(ValueError, match="label"):
        Study("a.png", "P1", 2)
    with pytest.raises(ValueError, match="split"):
        Study("a.png", "P1", 0, "holdout")
    with pytest.raises(ValueError, match="extra"):
        Study("a.png", "P1", 0, extra={"label": "1"})
    s = Study("a.png", "P1", True, extra={"view": "lat"})  # type: ignore[arg-type]
    assert s.label == 1
    assert type(s.label) is int
    assert len({s, Study("a.png", "P1", 1, extra={"view": "lat"})}) == 1


# --------------------------------------------------------------------------- queries


def test_counts_by_split_and_label(tmp_path: Path) -> None:
    m = Manifest.load(write_csv(tmp_path / "m.csv", GOOD_CSV + "img/d.png,P3,0,,,\n"))
    counts = m.counts()
    assert list(counts) == ["train", "test", "unassigned", "all"]
    # P1 has one positive and one negative image: one positive patient, two images.
    assert counts["train"] == {0: {"images": 1, "patients": 0}, 1: {"images": 1, "patients": 1}}
    assert counts["test"] == {0: {"images": 1, "patients": 1}, 1: {"images": 0, "patients": 0}}
    assert counts["all"] == {0: {"images": 3, "patients": 2}, 1: {"images": 1, "patients": 1}}


def test_by_split_and_with_splits(tmp_path: Path) -> None:
    m = Manifest.load(write_csv(tmp_path / "m.csv", GOOD_CSV))
    train = m.by_split("train")
    assert [s.path for s in train] == ["img/a.png", "img/b.png"]
    assert train.root == m.root
    with pytest.raises(ConfigError):
        m.by_split("holdout")
    moved = m.with_splits({"P1": "val", "P2": "train"})
    assert [s.split for s in moved] == ["val", "val", "train"]
    assert [s.split for s in m] == ["train", "train", "test"]  # original unchanged
    assert moved.studies[0].extra == m.studies[0].extra
    with pytest.raises(ConfigError, match="P2"):
        m.with_splits({"P1": "val"})
    with pytest.raises(ConfigError, match="holdout"):
        m.with_splits({"P1": "val", "P2": "holdout"})


# --------------------------------------------------------------------------- splitting


def test_assign_splits_stratified_and_sized() -> None:
    rng = np.random.default_rng(123)
    labels = {f"P{i:04d}": int(rng.random() < 0.3) for i in range(400)}
    result = assign_splits(labels, val=0.15, test=0.15, seed=0)
    assert set(result) == set(labels)
    assert set(result.values()) == {"train", "val", "test"}
    overall = np.mean(list(labels.values()))
    for split, share in (("train", 0.70), ("val", 0.15), ("test", 0.15)):
        members = [pid for pid, s in result.items() if s == split]
        assert abs(len(members) / len(labels) - share) < 0.01
        assert abs(np.mean([labels[p] for p in members]) - overall) < 0.02


def test_assign_splits_deterministic_order_independent_and_seeded() -> None:
    labels = {f"P{i:03d}": i % 4 == 0 for i in range(60)}
    labels = {k: int(v) for k, v in labels.items()}
    a = assign_splits(labels, seed=5)
    b = assign_splits(dict(reversed(list(labels.items()))), seed=5)
    assert a == b
    assert list(a) == sorted(a)
    assert assign_splits(labels, seed=6) != a


def test_assign_splits_small_strata_get_one_each() -> None:
    labels = {"A": 1, "B": 1, "C": 1, "D": 0, "E": 0, "F": 0, "G": 0}
    result = assign_splits(labels, val=0.1, test=0.1, seed=0)
    for label in (0, 1):
        splits = sorted(result[p] for p in labels if labels[p] == label)
        assert {"train", "val", "test"} <= set(splits)


def test_assign_splits_tiny_strata_and_zero_fractions() -> None:
    assert assign_splits({"A": 1, "B": 0}) == {"A": "train", "B": "train"}
    assert assign_splits({}) == {}
    result = assign_splits({f"P{i}": i % 2 for i in range(20)}, val=0.0, test=0.2)
    assert "val" not in result.values()
    # Train always keeps a patient per stratum, even with large fractions.
    result = assign_splits({"A": 1, "B": 1}, val=0.5, test=0.45)
    assert "train" in result.values()


@pytest.mark.parametrize(
    ("val", "test"), [(-0.1, 0.1), (0.1, -0.1), (0.5, 0.5), (0.7, 0.4), (float("nan"), 0.1)]
)
def test_assign_splits_rejects_bad_fractions(val: float, test: float) -> None:
    with pytest.raises(ConfigError):
        assign_splits({"A": 0}, val=val, test=test)


def test_assign_splits_rejects_negative_seed() -> None:
    with pytest.raises(ConfigError, match="seed"):
        assign_splits({"A": 0}, seed=-1)


def test_split_by_patient_keeps_patients_together_and_uses_patient_label() -> None:
    m = make_manifest(90, images_per_patient=3, pos_every=3)
    # Patient P001 (negative) gets one positive image: it becomes a positive patient.
    studies = list(m.studies)
    studies[3] = Study(studies[3].path, studies[3].patient_id, 1)
    m = Manifest(studies, m.root)
    assert m.patient_labels()["P001"] == 1
    split = m.split_by_patient(val=0.2, test=0.2, seed=3)
    assert split.check_leakage() == {}
    per_patient: dict[str, set[str | None]] = {}
    for s in split:
        per_patient.setdefault(s.patient_id, set()).add(s.split)
    assert all(len(v) == 1 for v in per_patient.values())
    expected = assign_splits(m.patient_labels(), val=0.2, test=0.2, seed=3)
    assert {pid: next(iter(v)) for pid, v in per_patient.items()} == expected
    assert [s.path for s in split] == [s.path for s in m]


# --------------------------------------------------------------------------- leakage


def test_leakage_detected_but_load_does_not_raise(tmp_path: Path) -> None:
    csv = write_csv(
        tmp_path / "m.csv",
        "path,patient_id,label,split\na.png,P1,1,train\nb.png,P1,1,test\nc.png,P2,0,val\n"
        "d.png,P2,0,\ne.png,P3,0,val\nf.png,P3,0,train\n",
    )
    m = Manifest.load(csv)
    assert m.check_leakage() == {"P1": ["train", "test"], "P3": ["train", "val"]}
    with pytest.raises(DataError, match=r"2 patient\(s\).*P1 \(train/test\)") as info:
        m.validate_splits()
    assert "edgevcf data split" in (info.value.hint or "")


def test_validate_splits_lists_at_most_ten() -> None:
    studies = []
    for p in range(13):
        studies += [
            Study(f"{p}a.png", f"P{p:02d}", 0, "train"),
            Study(f"{p}b.png", f"P{p:02d}", 0, "val"),
        ]
    with pytest.raises(DataError) as info:
        Manifest(studies).validate_splits()
    assert "13 patient(s)" in info.value.message
    assert "P09" in info.value.message
    assert "P10" not in info.value.message
    assert "and 3 more" in info.value.message
    Manifest(studies[::2]).validate_splits()  # only train: fine


# --------------------------------------------------------------------------- fingerprints


def test_fingerprint_order_invariant_and_sensitive() -> None:
    m = make_manifest(10).split_by_patient(seed=1)
    fp = m.fingerprint()
    assert len(fp) == 64
    assert int(fp, 16) >= 0
    assert Manifest(reversed(m.studies), root="/other").fingerprint() == fp
    s0 = m.studies[0]
    changed = [
        Study(s0.path, s0.patient_id, 1 - s0.label, s0.split),
        Study(s0.path, "OTHER", s0.label, s0.split),
        Study("moved.png", s0.patient_id, s0.label, s0.split),
        Study(s0.path, s0.patient_id, s0.label, "test" if s0.split != "test" else "val"),
    ]
    for variant in changed:
        assert Manifest([variant, *m.studies[1:]]).fingerprint() != fp
    # Extras are metadata, not identity.
    with_extra = Study(s0.path, s0.patient_id, s0.label, s0.split, {"view": "lat"})
    assert Manifest([with_extra, *m.studies[1:]]).fingerprint() == fp
    assert Manifest(m.studies[1:]).fingerprint() != fp


def test_fingerprint_with_file_hashes(tmp_path: Path) -> None:
    a, b = write_png(tmp_path / "a.png", 10), write_png(tmp_path / "b.png", 20)
    m = Manifest([Study("a.png", "P1", 0), Study("b.png", "P2", 1)], root=tmp_path)
    plain, hashed = m.fingerprint(), m.fingerprint(include_file_hashes=True)
    assert plain != hashed
    write_png(a, 11)
    assert m.fingerprint() == plain
    assert m.fingerprint(include_file_hashes=True) != hashed
    b.unlink()
    with pytest.raises(DataError, match=r"b\.png"):
        m.fingerprint(include_file_hashes=True)


def test_sha256_file(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # 2.3 MB: several 1 MiB chunks
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    with pytest.raises(DataError):
        sha256_file(tmp_path / "missing")


# --------------------------------------------------------------------------- check_files


def test_check_files_collects_every_failure(tmp_path: Path) -> None:
    write_png(tmp_path / "img" / "ok1.png")
    write_png(tmp_path / "img" / "ok2.png", 200)
    (tmp_path / "img" / "garbage.png").write_bytes(b"this is not an image at all")
    (tmp_path / "img" / "empty.png").write_bytes(b"")
    (tmp_path / "img" / "folder.png").mkdir()
    m = Manifest(
        [
            Study("img/ok1.png", "P1", 0),
            Study("img/garbage.png", "P2", 1),
            Study("img/missing.png", "P3", 0),
            Study("img/ok2.png", "P4", 1),
            Study("img/empty.png", "P5", 0),
            Study("img/folder.png", "P6", 0),
        ],
        root=tmp_path,
    )
    failures = check_files(m)
    assert [s.path for s, _ in failures] == [
        "img/garbage.png",
        "img/missing.png",
        "img/empty.png",
        "img/folder.png",
    ]
    reasons = {s.path: r for s, r in failures}
    assert reasons["img/missing.png"] == "file not found"
    assert all(reason for reason in reasons.values())


def test_check_files_all_readable(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png")
    assert check_files(Manifest([Study("a.png", "P1", 0)], root=tmp_path)) == []
