"""``edgevcf card``: the model card of a bundle — what it is for, what it was trained and
checked on, how it did at export and at the site, what it refuses, its limits, versions and
signer — as Markdown, HTML, JSON, and the Coalition for Health AI's applied model card (XML,
schema v0.2, ``https://mc.chai.org/v0.2/schema.xsd``; the mapping is :data:`CHAI_MAPPING`).

Everything comes from the bundle's manifest (and a site validation's ``validation.json`` when
given); nothing is typed in by hand, so the card cannot drift from what was measured. Fields
only a person can fill (developer, contact, release stage, funding) come from ``--about`` (a
TOML table) or say plainly that they were not given.
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from edgevcf import __version__
from edgevcf.errors import ConfigError

CHAI_NS = "https://mc.chai.org/v0.2/schema.xsd"

#: The person-supplied fields (``--about FILE``, a TOML ``[about]`` table) and their defaults.
ABOUT_DEFAULTS = {
    "model_name": "",
    "developer": "not given (edgevcf card --about)",
    "contact": "not given (edgevcf card --about)",
    "release_stage": "research use only: not a medical device, not cleared by any regulator",
    "release_date": "",
    "funding": "not given (edgevcf card --about)",
    "stakeholders": "not given (edgevcf card --about)",
    "publications": "Fresh thoracolumbar vertebral compression fracture on lateral radiographs "
    "(EfficientNet, MobileNet, MnasNet; validation AUC 0.85-0.87) - the study this toolkit "
    "deploys models of.",
}

#: Where each card section lands in CHAI's applied model card (v0.2).
CHAI_MAPPING = {
    "name, developer, contact": "BasicInfo/ModelName, ModelDeveloper, DeveloperContact",
    "release (stage, bundle id as version, signer)": "ReleaseInfo",
    "summary": "ModelSummary/Summary, Keywords",
    "intended use, users, how to use, population, out of scope": "UsesAndDirections/*",
    "limits, biases, risk": "Warnings/*",
    "model type, input/output, training data, bias mitigation, maintenance, security": (
        "TrustIngredients/AISystemFacts/*"
    ),
    "funding, stakeholders": "TrustIngredients/TransparencyInformation/*",
    "export gate (deployed vs FP32)": "KeyMetrics/SafetyReliability",
    "site validation overall": "KeyMetrics/UsefulnessUsabilityEfficacy",
    "site validation by subgroup, heterogeneity": "KeyMetrics/FairnessEquity",
    "references": "Resources, Bibliography",
}


def _pct(d: dict[str, Any] | None) -> str:
    if not d or not d.get("n"):
        return "—"
    return f"{100 * d['value']:.1f} % (95 % CI {100 * d['ci_low']:.1f}-{100 * d['ci_high']:.1f})"


def _auc(d: dict[str, Any] | None) -> str:
    return "—" if not d else f"{d['auc']:.3f} (95 % CI {d['ci_low']:.3f}-{d['ci_high']:.3f})"


def _estimate(d: dict[str, Any] | None, key: str = "value") -> str:
    """CHAI's ValueJson for an estimate with its CI, in percent."""
    if not d or d.get(key) is None:
        return json.dumps({"kind": "single", "value": None})
    return json.dumps(
        {
            "kind": "estimate_ci",
            "estimate": round(100 * d[key], 2),
            "lower": round(100 * d["ci_low"], 2),
            "upper": round(100 * d["ci_high"], 2),
            "level": 95,
            "unit": "%",
        }
    )


def load_about(path: str | os.PathLike[str] | None) -> dict[str, str]:
    """The person-supplied fields: defaults, overridden by ``[about]`` of ``path``."""
    about = dict(ABOUT_DEFAULTS)
    if path is None:
        return about
    from edgevcf.tomlconf import read_toml

    data = read_toml(Path(path), "model card facts").get("about", {})
    unknown = sorted(set(data) - set(ABOUT_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(unknown)} in [about]",
            hint=f"valid keys: {', '.join(ABOUT_DEFAULTS)}",
        )
    about.update({k: str(v) for k, v in data.items()})
    return about


def build(bundle: Any, validation: dict[str, Any] | None, about: dict[str, str]) -> dict[str, Any]:
    """The card's content (JSON), every figure taken from the bundle or the validation."""
    m = bundle.manifest
    met = m.get("metrics", {})
    art = met.get("artifacts", {}).get(m["default_artifact"], {})
    ck = m.get("checkpoint", {})
    src = ck.get("data_source") or {}
    if src.get("kind") == "synthetic":
        training = (
            f"SYNTHETIC radiographs from edgevcf's generator (version "
            f"{src.get('generator_version')}, seed {src.get('seed')}, "
            f"{src.get('patients')} patients), not patients' films: the figures below "
            "show the pipeline works, not that the model is fit for clinical use."
        )
    elif src:
        training = f"the user's own films (manifest {src.get('manifest', '?')})"
    else:
        training = "not recorded by this checkpoint (trained before edgevcf recorded it)"
    if ck.get("imported_from"):
        training += f"; imported from {ck['imported_from'].get('file', 'another tool')}"
    qg = m.get("quality_gate") or {}
    name = about["model_name"] or f"edgevcf {m['backbone']} ({m['target']} {m['precision']})"
    card: dict[str, Any] = {
        "schema": "edgevcf.model-card",
        "schema_version": 1,
        "edgevcf": __version__,
        "name": name,
        "about": about,
        "bundle": {
            "path": bundle.path.name,
            "model_id": bundle.id,
            "target": m["target"],
            "precision": m["precision"],
            "backbone": m["backbone"],
            "signer_key_id": bundle.signer_key_id,
            "site_calibration": bundle.site_calibration,
        },
        "intended_use": (
            "Flags a fresh (acute) thoracolumbar vertebral compression fracture (T10-L3) on one "
            "lateral thoracolumbar radiograph, as P(fresh) and a decision at the threshold, to "
            "prioritise films for a reader where MRI is not at hand. It assists; a clinician reads "
            "every film."
        ),
        "users": "radiologists, spine surgeons and emergency physicians reading lateral films",
        "how_to_use": "the cart's DICOM node (edgevcf serve) returns one Structured Report per "
        "film to the PACS; edgevcf predict scores files; the result names the model id, signer "
        "and any site calibration",
        "population": "adults with a lateral thoracolumbar radiograph (CR or DX)",
        "out_of_scope": _scope(qg),
        "training_data": training,
        "threshold": {
            "value": bundle.threshold,
            "method": m["threshold"].get("method", ""),
            "envelope": m["threshold"].get("envelope"),
        },
        "export_gate": {
            "split": met.get("split"),
            "n": met.get("n"),
            "positives": met.get("n_pos"),
            "fp32_auc": met.get("fp32_auc"),
            "deployed_auc": art.get("auc"),
            "paired": art.get("paired"),
            "gate": art.get("gate"),
            "tolerance": m["profile"].get("tolerance"),
        },
        "site_validation": _site(validation),
        "limits": [
            "Accuracy depends on the acquisition: a detector's processing can move the operating "
            "point while AUC holds; validate on the site's films (edgevcf validate) before use.",
            "Labels of fresh vs old fractures come from MRI in the originating study; plain films "
            "alone cannot show bone marrow oedema.",
            "Subgroups with few films are reported as insufficient, not as equal.",
        ],
        "risk": "not classified: research use (a clearing authority would classify it)",
        "versions": m.get("versions", {}),
        "chai_mapping": CHAI_MAPPING,
    }
    if src.get("kind") == "synthetic":
        card["limits"].insert(0, "Trained and checked on synthetic radiographs only.")
    return card


def _verdict(passed: bool | None) -> str:
    return "passed" if passed else "not given" if passed is None else "failed"


def _scope(qg: dict[str, Any]) -> str:
    """What the model must not be used on, and what its quality gate measured at export."""
    text = (
        "other views and body parts, children, colour or multi-frame images; the quality "
        "gate refuses what it finds out of scope"
    )
    if not qg:
        return text + " (rules only: this bundle has no learned gate)"
    return (
        f"{text} ({qg.get('method', '')}): at export it let "
        f"{100 * float(qg.get('check_oos_scored') or 0):.1f} % of held-out out-of-scope "
        f"images through and refused {100 * float(qg.get('tuning_refused') or 0):.1f} % of "
        "in-scope tuning films"
    )


def _site(v: dict[str, Any] | None) -> dict[str, Any] | None:
    if v is None:
        return None
    a = v["analysis"]
    groups = {}
    for name, f in a["subgroups"].items():
        if len(f["levels"]) < 2:
            continue
        groups[name] = {
            "levels": {
                lvl: {
                    "n": c["n"],
                    "positives": c["positives"],
                    "sufficient": c["sufficient"],
                    "auc": c["auc"],
                    "sensitivity": c["sensitivity"],
                    "specificity": c["specificity"],
                }
                for lvl, c in f["levels"].items()
            },
            "heterogeneity": f["heterogeneity"],
        }
    return {
        "site": v["site"],
        "evaluated_on": v["evaluated_on"],
        "threshold": a["threshold"],
        "overall": a["overall"],
        "subgroups": groups,
        "calibration": a.get("calibration"),
        "rules": v.get("rules"),
        "passed": v.get("passed"),
        "rethreshold": v.get("rethreshold"),
    }


def markdown(card: dict[str, Any], figures: dict[str, str]) -> str:
    """The card for people."""
    b, e, s = card["bundle"], card["export_gate"], card["site_validation"]
    lines = [
        f"# Model card: {card['name']}",
        "",
        f"Bundle `{b['path']}`, model id `{b['model_id']}`, {b['backbone']} {b['precision']} "
        f"on {b['target']}; signer {b['signer_key_id'] or 'not checked (no --trust)'}"
        + (f"; {b['site_calibration']}" if b["site_calibration"] else "")
        + ".",
        "",
        "## Intended use",
        "",
        card["intended_use"],
        "",
        f"**Users**: {card['users']}. **Population**: {card['population']}. "
        f"**How**: {card['how_to_use']}.",
        "",
        f"**Out of scope**: {card['out_of_scope']}.",
        "",
        "## Training data",
        "",
        card["training_data"],
        "",
        "## Export gate (deployed vs FP32, same films)",
        "",
        f"On the {e['split']} split ({e['n']} films, {e['positives']} positive): FP32 AUC "
        f"{_auc(e['fp32_auc'])}, deployed {_auc(e['deployed_auc'])}; ΔAUC "
        f"{e['paired']['diff']:+.4f} (CI low {e['paired']['ci_low']:+.4f}) against a margin "
        f"of -{e['tolerance']['max_auc_drop']}; gate "
        f"{'passed' if (e['gate'] or {}).get('passed') else 'see manifest'}. Threshold "
        f"{card['threshold']['value']:.4f} ({card['threshold']['method']}).",
        "",
    ]
    if s:
        o = s["overall"]
        lines += [
            "## Site validation",
            "",
            f"{s['site']['films']} films of {s['site']['patients']} patients (data "
            f"`{s['site']['fingerprint'][:16]}`), evaluated on {s['evaluated_on']} at "
            f"{s['threshold']:.4f}: AUC {_auc(o['auc'])}, sensitivity "
            f"{_pct(o['sensitivity'])}, specificity {_pct(o['specificity'])}, refused by "
            f"the quality gate {_pct(o['refusal_rate'])}.",
            "",
            "| subgroup | level | n | AUC | sensitivity | specificity |",
            "|---|---|---|---|---|---|",
        ]
        for name, g in s["subgroups"].items():
            for lvl, c in g["levels"].items():
                flag = "" if c["sufficient"] else " (insufficient)"
                lines.append(
                    f"| {name} | {lvl}{flag} | {c['n']} | {_auc(c['auc'])} | "
                    f"{_pct(c['sensitivity'])} | {_pct(c['specificity'])} |"
                )
        lines.append("")
        if s.get("rules"):
            lines += [
                f"Protocol verdict: **{'passed' if s['passed'] else 'FAILED'}** ("
                + "; ".join(f"{r['rule']}: {r['verdict']}" for r in s["rules"])
                + ").",
                "",
            ]
    lines += [
        "## Limits",
        "",
        *(f"- {x}" for x in card["limits"]),
        "",
        f"**Risk**: {card['risk']}. **Release**: {card['about']['release_stage']}.",
        "",
        "## Versions",
        "",
        ", ".join(f"{k} {v}" for k, v in card["versions"].items()),
        "",
    ]
    if figures:
        lines += ["## Figures", "", *(f"![{k}]({v})" for k, v in figures.items()), ""]
    return "\n".join(lines)


def to_html(md: str, title: str) -> str:
    """The Markdown this module writes, as a standalone HTML page (headings, paragraphs,
    tables, lists, images, bold and code)."""

    def inline(t: str) -> str:
        t = html.escape(t)
        t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", t)

    out, table = [], False
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            tag = "th" if not table else "td"
            if not table:
                out.append("<table>")
                table = True
            out.append("<tr>" + "".join(f"<{tag}>{inline(c)}</{tag}>" for c in cells) + "</tr>")
            continue
        if table:
            out.append("</table>")
            table = False
        if m := re.match(r"^(#+) (.*)", line):
            n = len(m.group(1))
            out.append(f"<h{n}>{inline(m.group(2))}</h{n}>")
        elif m := re.match(r"^!\[(.*)\]\((.*)\)", line):
            out.append(
                f'<p><img alt="{html.escape(m.group(1))}" src="{html.escape(m.group(2))}" '
                'style="max-width:100%"></p>'
            )
        elif line.startswith("- "):
            out.append(f"<ul><li>{inline(line[2:])}</li></ul>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    if table:
        out.append("</table>")
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:60em}table{border-collapse:"
        "collapse}td,th{border:1px solid #ccc;padding:.2em .5em}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{style}</style></head><body>{''.join(out)}</body></html>\n"
    )


def chai_xml(card: dict[str, Any]) -> bytes:
    """The card as CHAI's AppliedModelCard (v0.2), elements in the schema's order."""
    ET.register_namespace("", CHAI_NS)
    q = f"{{{CHAI_NS}}}"

    def sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
        el = ET.SubElement(parent, q + tag)
        if text is not None:
            el.text = text
        return el

    a, b, e, s = card["about"], card["bundle"], card["export_gate"], card["site_validation"]
    root = ET.Element(q + "AppliedModelCard")
    bi = sub(root, "BasicInfo")
    sub(bi, "ModelName", card["name"])
    sub(bi, "ModelDeveloper", a["developer"])
    sub(bi, "DeveloperContact", a["contact"])
    ri = sub(root, "ReleaseInfo")
    sub(ri, "ReleaseStage", a["release_stage"])
    sub(ri, "ReleaseDate", a["release_date"] or "not given")
    sub(
        ri,
        "ReleaseVersion",
        f"bundle {b['model_id']}"
        + (f" ({b['site_calibration']})" if b["site_calibration"] else ""),
    )
    sub(ri, "GlobalAvailability", "not released")
    ms = sub(root, "ModelSummary")
    sub(ms, "Summary", card["intended_use"])
    kw = sub(ms, "Keywords")
    for k in ("vertebral compression fracture", "radiograph", "edge deployment", b["target"]):
        sub(kw, "Keyword", k)
    ud = sub(root, "UsesAndDirections")
    sub(ud, "IntendedUseAndWorkflow", card["intended_use"])
    sub(ud, "PrimaryIntendedUsers", card["users"])
    sub(ud, "HowToUse", card["how_to_use"])
    sub(ud, "TargetedPatientPopulation", card["population"])
    sub(ud, "CautionedOutOfScopeSettings", card["out_of_scope"])
    w = sub(root, "Warnings")
    sub(w, "KnownRisksAndLimitations", " ".join(card["limits"]))
    sub(
        w,
        "KnownBiasesOrEthicalConsiderations",
        "Performance by sex, age band, manufacturer, detector model, institution, modality, "
        "spacing, kVp and exposure is in the site validation; insufficient groups are named.",
    )
    sub(w, "ClinicalRiskLevel", card["risk"])
    ti = sub(root, "TrustIngredients")
    f = sub(ti, "AISystemFacts")
    sub(
        f,
        "OutcomesAndOutputs",
        "P(fresh fracture) and a decision at the bundled threshold; "
        "not assessable when the quality gate refuses the film",
    )
    sub(
        f,
        "ModelType",
        f"convolutional neural network ({b['backbone']}), {b['precision']} on {b['target']}",
    )
    sub(f, "InputDataSource", card["training_data"])
    sub(
        f,
        "OutputAndInputDataTypes",
        "input: one DICOM (CR/DX) or PNG/TIFF lateral radiograph; "
        "output: DICOM Structured Report and JSON",
    )
    sub(f, "DevelopmentDataCharacterization", card["training_data"])
    sub(
        f,
        "BiasMitigationApproaches",
        "subgroup validation with heterogeneity tests at each "
        "site before go-live (edgevcf validate)",
    )
    sub(
        f,
        "OngoingMaintenance",
        "a site re-threshold makes a new signed bundle with lineage, "
        "inside the threshold range recorded at export",
    )
    sub(
        f,
        "Security",
        "signed bundles (OpenSSF model-signing format); the cart refuses "
        "unsigned or altered bundles when trust is configured",
    )
    tr = sub(ti, "TransparencyInformation")
    sub(tr, "FundingSource", a["funding"])
    sub(tr, "StakeholdersConsulted", a["stakeholders"])
    km = sub(root, "KeyMetrics")

    def metric(
        tag: str, goal: str, results: list[tuple[str, str]], interp: str, test: str, data: str
    ) -> None:
        el = sub(km, tag)
        sub(el, "MetricGoal", goal)
        rs = sub(el, "Results")
        for label, value in results or [("none", json.dumps({"kind": "single", "value": None}))]:
            r = sub(rs, "MetricResult")
            sub(r, "Label", label)
            sub(r, "ValueJson", value)
        sub(el, "Interpretation", interp)
        sub(el, "TestType", test)
        sub(el, "TestingDataDescription", data)
        sub(el, "ValidationProcessAndJustification", "edgevcf validate (docs/site.md)")

    o = s["overall"] if s else None
    metric(
        "UsefulnessUsabilityEfficacy",
        "discrimination and the operating point on the site's own films",
        [
            ("AUC", _estimate(o["auc"], "auc")) if o and o["auc"] else ("AUC", _estimate(None)),
            ("Sensitivity", _estimate(o["sensitivity"] if o else None)),
            ("Specificity", _estimate(o["specificity"] if o else None)),
        ],
        "no site validation given" if not s else f"protocol {_verdict(s['passed'])}",
        "retrospective, site films",
        f"{s['site']['films']} films" if s else "none",
    )
    fair: list[tuple[str, str]] = []
    for name, g in (s["subgroups"] if s else {}).items():
        for measure, t in g["heterogeneity"].items():
            fair.append(
                (
                    f"heterogeneity of {measure} by {name} (q)",
                    json.dumps({"kind": "single", "value": t.get("q_value")}),
                )
            )
    metric(
        "FairnessEquity",
        "equal performance across subgroups",
        fair,
        "q-values (Benjamini-Hochberg) of heterogeneity tests over sufficient levels",
        "retrospective, site films",
        "see the site validation's subgroup table",
    )
    metric(
        "SafetyReliability",
        "the deployed model non-inferior to its FP32 reference",
        [
            (
                "ΔAUC deployed - FP32",
                json.dumps(
                    {
                        "kind": "estimate_ci",
                        "estimate": round(e["paired"]["diff"], 4),
                        "lower": round(e["paired"]["ci_low"], 4),
                        "upper": round(e["paired"]["ci_high"], 4),
                        "level": 95,
                        "unit": "AUC",
                    }
                ),
            )
        ]
        if e.get("paired")
        else [],
        f"margin -{e['tolerance']['max_auc_drop']}",
        "paired, same films (DeLong)",
        f"{e['n']} films of the tuning split",
    )
    res = sub(root, "Resources")
    sub(res, "PeerReviewedPublications", a["publications"])
    sub(res, "PatientConsentOrDisclosure", "not applicable to synthetic data; the site decides")
    sub(root, "Bibliography", a["publications"])
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write_card(
    bundle_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    validation: str | os.PathLike[str] | None = None,
    about: str | os.PathLike[str] | None = None,
    trust: Any = None,
) -> dict[str, Path]:
    """Write card.md, card.html, card.json and card.xml (CHAI) to ``out``; the validation's
    figures are copied beside them."""
    import shutil

    from edgevcf.bundle import Bundle

    bundle = Bundle.load(bundle_path, trust=trust)
    v = None
    vdir = Path(validation) if validation else None
    if vdir is not None:
        vfile = vdir / "validation.json" if vdir.is_dir() else vdir
        try:
            v = json.loads(vfile.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot read the site validation {vfile}: {exc}",
                hint="give the --out folder of edgevcf validate",
            ) from None
        if v.get("bundle", {}).get("model_id") not in (
            bundle.id,
            (bundle.manifest.get("site_calibration") or {}).get("parent", {}).get("model_id"),
        ):
            raise ConfigError(
                f"{vfile} validated another bundle",
                hint="give the validation of this bundle (or of its parent)",
            )
    card = build(bundle, v, load_about(about))
    dest = Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    figures = {}
    if v is not None and vdir is not None and vdir.is_dir():
        for label, name in (v.get("figures") or {}).items():
            if (vdir / name).is_file():
                shutil.copyfile(vdir / name, dest / name)
                figures[label] = name
    md = markdown(card, figures)
    paths = {k: dest / f"card.{k}" for k in ("md", "html", "json", "xml")}
    paths["md"].write_text(md, encoding="utf-8")
    paths["html"].write_text(to_html(md, card["name"]), encoding="utf-8")
    paths["json"].write_text(json.dumps(card, indent=2, default=str) + "\n", encoding="utf-8")
    paths["xml"].write_bytes(chai_xml(card))
    return paths
