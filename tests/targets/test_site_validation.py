"""``edgevcf validate`` end to end on a real (tiny, trained) bundle and real DICOM films of a
shifted synthetic site: subgroups from the headers, the protocol's verdict, re-thresholding into
a new signed bundle whose model bytes are the parent's and which ``verify`` passes.

The tiny network is weak: these tests check the plumbing and the rules, never its accuracy (the
>= 1,000-film figures are ``benchmarks/site_validation.py``'s)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgevcf.cli import cli

PASSING = """
[protocol]
name = "test"
written = "2026-12-01"
min_films = 5
min_positives = 2

[[rules]]
measure = "sensitivity"
bound = "value"
at_least = 0.0
where = "overall"

[[rules]]
measure = "refusal_rate"
bound = "value"
at_most = 1.0
where = "model"
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 patients of the edge-enhancing clinic, DICOM at 0.6 mm, no splits of its own."""
    pytest.importorskip("scipy")
    from edgevcf import progress
    from edgevcf.data.synth import SynthConfig, generate
    from edgevcf.data.synth.sites import apply_profile

    root = tmp_path_factory.mktemp("site")
    progress.set_enabled(False)
    res = generate(
        root / "films",
        30,
        seed=21,
        cfg=apply_profile(SynthConfig.fast(), "clinic-edge"),
        fmt="dicom",
        workers=2,
        preview=False,
        val=0,
        test=0,
    )
    # a site's manifest: its labels and files; subgroup facts come from the DICOM headers
    lines = res.manifest.read_text().splitlines()
    cols = lines[0].split(",")
    keep = [cols.index(c) for c in ("path", "patient_id", "label")]
    out = root / "films" / "site.csv"
    out.write_text("\n".join(",".join(r.split(",")[i] for i in keep) for r in lines) + "\n")
    return out


def _run(args: list[str]) -> Any:
    return CliRunner().invoke(cli, ["-q", *args], catch_exceptions=False)


def _validate(bundle: Path, site: Path, *args: str) -> Any:
    """``edgevcf validate BUNDLE --data SITE ARGS...``."""
    return _run(["validate", str(bundle), "--data", str(site), *args])


@pytest.mark.requires_onnxruntime
def test_validate_rethreshold_sign_verify(
    export_bundle: Any, tiny_export: Any, site: Path, tmp_path: Path
) -> None:
    from edgevcf.bundle import Bundle
    from edgevcf.hashing import sha256_file
    from edgevcf.signing import new_key

    _, parent = export_bundle("onnx-cpu")
    env = parent.manifest["threshold"]["envelope"]
    assert env["source"] == "export" and env["low"] <= parent.threshold <= env["high"]
    before = (parent.path / "manifest.json").read_bytes()
    protocol = tmp_path / "protocol.toml"
    protocol.write_text(PASSING)
    key, pub, _ = new_key(tmp_path / "site")
    out, sb = tmp_path / "report", tmp_path / "site-bundle"
    res = _validate(
        parent.path,
        site,
        "--out",
        str(out),
        "--protocol",
        str(protocol),
        "--baseline",
        str(tiny_export.checkpoint),
        "--rethreshold",
        "youden",
        "--site-bundle",
        str(sb),
        "--sign",
        str(key),
        "--envelope",
        "0.0001:0.9999",
    )
    assert res.exit_code == 0, res.output
    r = json.loads((out / "validation.json").read_text())
    assert r["schema"] == "edgevcf.site-validation" and r["passed"] is True
    assert r["evaluated_on"] == "confirmation part"
    models = r["analysis"]["subgroups"]["model"]["levels"]
    assert set(models) <= {"EdgeDR 500", "PlateReader 20"} and models  # from the headers
    assert r["analysis"]["subgroups"]["kvp_band"]["levels"]
    cell = r["analysis"]["overall"]
    assert {"auc", "sensitivity", "specificity", "ppv", "npv", "refusal_rate"} <= set(cell)
    assert cell["baseline_gate"]["verdict"] in ("non-inferior", "inconclusive", "inferior")
    assert r["rethreshold"]["envelope"]["source"] == "command line"
    assert "validation.md" in {p.name for p in out.iterdir()}
    assert "Site validation" in (out / "validation.md").read_text()
    # the site bundle: same model bytes, new threshold, lineage, signed; the parent untouched
    assert (parent.path / "manifest.json").read_bytes() == before
    site_b = Bundle.load(sb)
    assert site_b.id != parent.id and site_b.threshold == r["rethreshold"]["threshold"]
    for name in parent.manifest["files"]:
        if name != "golden.npz":
            assert sha256_file(sb / name) == sha256_file(parent.path / name), name
    lineage = site_b.manifest["site_calibration"]
    assert lineage["parent"]["model_id"] == parent.id
    assert lineage["site"]["fingerprint"] == r["site"]["fingerprint"]
    assert lineage["protocol"]["sha256"] and lineage["confirmation"]["n"] == cell["n"]
    res = _run(["verify", str(sb), "--trust", str(pub)])
    assert res.exit_code == 0, res.output
    _check_card(sb, out, pub, tmp_path / "card")
    assert "site calibration" in res.output and parent.id[:12] in res.output
    film = next((site.parent / "images").glob("*.dcm"))
    res = _run(["predict", str(sb), str(film), "--json"])
    assert json.loads(res.output.splitlines()[0])["site_calibration"] == site_b.site_calibration
    # the cart's SR names it beside the model
    from pydicom import dcmread

    from edgevcf.serve.service import _identity
    from edgevcf.serve.sr import Finding, result_sr

    sr = result_sr(
        dcmread(film),
        Finding(True, True, 0.9, site_b.threshold, ""),
        _identity(site_b, site_b.artifact()),
    )
    assert site_b.site_calibration in [el.value for el in sr.iterall() if el.keyword == "TextValue"]


@pytest.mark.requires_onnxruntime
def test_failed_protocol_and_envelope_refuse(
    export_bundle: Any, site: Path, tmp_path: Path
) -> None:
    _, parent = export_bundle("onnx-cpu")
    protocol = tmp_path / "p.toml"
    protocol.write_text(PASSING.replace("at_least = 0.0", "at_least = 1.01"))
    res = _validate(
        parent.path,
        site,
        "--out",
        str(tmp_path / "r"),
        "--protocol",
        str(protocol),
        "--rethreshold",
        "sensitivity=0.9",
        "--site-bundle",
        str(tmp_path / "sb"),
        "--envelope",
        "0.0001:0.9999",
        "--no-figures",
    )
    assert res.exit_code == 4, res.output
    assert "site protocol failed" in res.output and not (tmp_path / "sb").exists()
    r = json.loads((tmp_path / "r" / "validation.json").read_text())
    assert r["site_bundle"]["written"] is False
    res = _validate(
        parent.path,
        site,
        "--out",
        str(tmp_path / "r2"),
        "--rethreshold",
        "youden",
        "--site-bundle",
        str(tmp_path / "sb2"),
        "--envelope",
        "0.999:0.9999",
        "--no-figures",
    )
    assert res.exit_code != 0 and "outside the range the bundle allows" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "sb2").exists()


def test_plan_prints_bunderers_numbers() -> None:
    res = _run(
        ["validate", "plan", "--sensitivity", "0.9", "--half-width", "0.05", "--prevalence", "0.3"]
    )
    assert res.exit_code == 0
    assert "139 positives" in res.output and "461 films" in res.output


def _check_card(bundle: Path, validation: Path, pub: Path, out: Path) -> None:
    """``edgevcf card`` on the site bundle: its XML is a valid CHAI applied model card (v0.2,
    the schema as published; its optional ds:Signature import points to the W3C site, which the
    test cannot reach and the card does not use, so that import is dropped before parsing)."""
    etree = pytest.importorskip("lxml.etree", reason="pip install lxml (the dev extras have it)")
    res = _run(
        [
            "card",
            str(bundle),
            "--validation",
            str(validation),
            "--out",
            str(out),
            "--trust",
            str(pub),
        ]
    )
    assert res.exit_code == 0, res.output
    md = (out / "card.md").read_text()
    assert "SYNTHETIC radiographs" in md and "site calibration" in md
    assert "Site validation" in md and "| model |" in md
    card = json.loads((out / "card.json").read_text())
    assert card["site_validation"]["site"]["films"] > 0 and card["bundle"]["signer_key_id"]
    xsd = (Path(__file__).parents[1] / "data" / "chai-mc-v0.2.xsd").read_text()
    xsd = "\n".join(
        line for line in xsd.splitlines() if "xs:import" not in line and "ds:Signature" not in line
    )
    schema = etree.XMLSchema(etree.fromstring(xsd.encode()))
    doc = etree.parse(str(out / "card.xml"))
    assert schema.validate(doc), schema.error_log
    assert "<html" in (out / "card.html").read_text()


@pytest.mark.requires_onnxruntime
def test_refit_gate_keeps_refusing_out_of_scope(
    export_bundle: Any, site: Path, tmp_path: Path
) -> None:
    from edgevcf.bundle import Bundle
    from edgevcf.hashing import sha256_file

    _, parent = export_bundle("onnx-cpu")
    sb = tmp_path / "sb"
    res = _validate(
        parent.path,
        site,
        "--out",
        str(tmp_path / "r"),
        "--refit-gate",
        "--site-bundle",
        str(sb),
        "--no-figures",
    )
    assert res.exit_code == 0, res.output
    site_b = Bundle.load(sb)
    assert site_b.threshold == parent.threshold  # only the gate changed
    assert sha256_file(sb / "quality_gate.npz") != sha256_file(parent.path / "quality_gate.npz")
    for name, digest in parent.manifest["files"].items():
        if name not in ("golden.npz", "quality_gate.npz"):
            assert site_b.manifest["files"][name] == digest, name
    g = site_b.manifest["quality_gate"]
    refit = g["site_refit"]
    assert refit["in_scope_films"] > 0 and refit["confirmation_films"] > 0
    assert {"confirmation_refused_before", "confirmation_refused_after"} <= set(refit)
    # the same held-out check as export: every generated family judged, none wholly let in
    assert g["check_n"] > 0 and max(g["check_oos_scored_by_family"].values()) < 1.0
    assert site_b.manifest["site_calibration"]["quality_gate"].startswith("re-fitted")
    assert _run(["verify", str(sb)]).exit_code == 0
