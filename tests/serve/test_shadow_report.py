"""``shadow report`` on a journal of 400 made-up pairs: the label join by salted hash, the
paired gate equal to the project's own (metrics.gate_for), subgroups, and the promotion rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgevcf import metrics
from edgevcf.errors import DataError
from edgevcf.serve.journal import Journal, salted
from edgevcf.watch.shadow_report import PromotionRule, markdown, read_labels, shadow_report


def _journal(path: Path, candidate_noise: float) -> tuple[list[str], np.ndarray, np.ndarray,
                                                          np.ndarray]:  # fmt: skip
    rng = np.random.default_rng(4)
    n = 400
    y = rng.random(n) < 0.4
    pp = np.clip(np.where(y, 0.7, 0.25) + rng.normal(0, 0.2, n), 0.01, 0.99)
    pc = np.clip(pp + rng.normal(0, candidate_noise, n), 0.01, 0.99)
    uids = [f"1.2.826.0.1.{i}" for i in range(n)]
    with Journal(path) as j:
        salt = j.salt()
        for i, u in enumerate(uids):
            film = {"uid_hash": salted(salt, u), "accession_hash": "",
                    "levels": {"sex": "F" if i % 2 else "M"}}  # fmt: skip
            prim = {"status": "ok", "probability": float(pp[i]), "decision": bool(pp[i] >= 0.5),
                    "model_id": "primary", "threshold": 0.5}  # fmt: skip
            cand = {"status": "ok", "probability": float(pc[i]), "decision": bool(pc[i] >= 0.5),
                    "model_id": "cand", "threshold": 0.5}  # fmt: skip
            j.shadow_add(f"k{i}", "cand", film, prim, cand, {})
    return uids, y, pp, pc


def test_the_report_joins_labels_by_salted_hash_and_runs_the_projects_gate(tmp_path: Path) -> None:
    uids, y, pp, pc = _journal(tmp_path / "j.sqlite", candidate_noise=0.01)
    labels = tmp_path / "truth.csv"
    labels.write_text("sop_instance_uid,label\n" + "".join(
        f"{u},{int(v)}\n" for u, v in zip(uids, y, strict=True)))  # fmt: skip
    rule = PromotionRule(min_days=0, min_films=100, min_positives=50, min_negatives=50)
    r = shadow_report(tmp_path / "j.sqlite", labels, rule)
    lab = r["labelled"]
    assert lab["films"] == 400 and lab["positives"] == int(y.sum())
    ref = metrics.gate_for({}, y, pp, pc, 0.5, 0.5).to_dict()
    assert lab["gate"]["passed"] == ref["passed"] and lab["gate"]["failed"] == ref["failed"]
    assert lab["auc"]["candidate"] == pytest.approx(metrics.auc(y, pc))
    assert {s["level"] for s in lab["subgroups"]} == {"F", "M"}
    assert r["promote"] is bool(ref["passed"])
    assert r["label_free"]["films"] == 400 and "Shadow report" in markdown(r)
    # a short run does not earn a promotion, whatever its gate says
    assert not shadow_report(tmp_path / "j.sqlite", labels, PromotionRule(min_films=1000))[
        "promote"
    ]


def test_a_label_file_without_keys_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("patient,label\nP1,1\n")
    with pytest.raises(DataError, match="sop_instance_uid"):
        read_labels(bad, "salt")
    worse = tmp_path / "worse.csv"
    worse.write_text("sop_instance_uid,label\n1.2.3,yes\n")
    with pytest.raises(DataError, match="label must be 0 or 1"):
        read_labels(worse, "salt")
    Journal(tmp_path / "empty.sqlite").close()
    with pytest.raises(DataError, match="no shadow results"):
        shadow_report(tmp_path / "empty.sqlite")
