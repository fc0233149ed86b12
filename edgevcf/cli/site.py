"""``edgevcf validate``: the clinic's check of a bundle on its own films (and ``validate plan``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgevcf.cli import echo
from edgevcf.cli.keys import load_trust, trust_options
from edgevcf.cli.ray_options import ray_options

if TYPE_CHECKING:
    from edgevcf.scale import RayPlan


class _DefaultToBundle(click.Group):
    """``validate BUNDLE ...`` runs the validation; ``validate plan ...`` sizes it first."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["bundle", *args]
        return super().parse_args(ctx, args)


@click.group("validate", cls=_DefaultToBundle)
def validate() -> None:
    """A bundle on the site's own films, by subgroup, before go-live.

    \b
    edgevcf validate plan [--sensitivity 0.9 --half-width 0.05 --prevalence 0.3 ...]
        how many films to collect, before collecting them;
    edgevcf validate BUNDLE --data SITE.csv --out DIR [--protocol P.toml] [--baseline REF]
        [--rethreshold sensitivity=0.90 --site-bundle DIR --sign KEY]
        overall and per subgroup (sex, age band, manufacturer, model, institution, CR/DX,
        pixel spacing, kVp, exposure): AUC, sensitivity, specificity, PPV, NPV with CIs,
        refusals, heterogeneity, calibration; the protocol's verdict (exit code 4 on failure);
        re-thresholded into a new signed bundle where the operating point moved.

    See `edgevcf validate bundle --help` for every option and docs/site.md for the report.
    """


@validate.command("plan")
@click.option(
    "--sensitivity",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="Expected sensitivity (e.g. 0.90).",
)
@click.option(
    "--specificity",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="Expected specificity.",
)
@click.option(
    "--auc", type=click.FloatRange(0.5, 1, max_open=True), default=None, help="Expected AUC."
)
@click.option(
    "--half-width",
    type=click.FloatRange(0, 0.5, min_open=True),
    default=0.05,
    show_default=True,
    help="The 95 % CI half-width wanted.",
)
@click.option(
    "--prevalence",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.30,
    show_default=True,
    help="Expected share of fresh fractures.",
)
@click.option(
    "--bundle",
    "bundle_path",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also: films to show the bundle non-inferior to FP32 (its export figures as the pilot).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plan_cmd(
    sensitivity: float | None,
    specificity: float | None,
    auc: float | None,
    half_width: float,
    prevalence: float,
    bundle_path: Path | None,
    as_json: bool,
) -> None:
    """How many films a site must collect for the CIs it wants.

    Sensitivity / specificity: Buderer (1996), z^2 p (1 - p) / w^2 cases of the class, divided
    by its share. AUC: Hanley & McNeil (1982). Non-inferiority to FP32: the export gate's rule,
    with the bundle's export figures as the pilot. Prints positives, negatives and films.

    \b
    Example:
      edgevcf validate plan --sensitivity 0.90 --half-width 0.05 --prevalence 0.30
    """
    import json

    from edgevcf.errors import ConfigError
    from edgevcf.site.plan import plan

    if sensitivity is None and specificity is None and auc is None and bundle_path is None:
        raise ConfigError(
            "nothing to plan for", hint="give --sensitivity, --specificity, --auc and/or --bundle"
        )
    bundle = None
    if bundle_path is not None:
        from edgevcf.bundle import Bundle

        bundle = Bundle.load(bundle_path)
    result = plan(
        sensitivity=sensitivity,
        specificity=specificity,
        auc=auc,
        half_width=half_width,
        prevalence=prevalence,
        bundle=bundle,
    )
    if as_json:
        echo(json.dumps(result, indent=2))
        return
    echo(f"At prevalence {prevalence:g}, 95 % CIs:")
    for r in result["rows"]:
        echo(
            f"  {r['question']:<52} {r['positives']:>6} positives {r['negatives']:>6} "
            f"negatives {r['films']:>6} films"
        )
    echo(
        f"Collect at least {result['films']} films ({result['positives']} positives, "
        f"{result['negatives']} negatives)."
    )


def _envelope(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    from edgevcf.errors import ConfigError

    try:
        low, high = (float(v) for v in text.split(":"))
    except ValueError:
        raise ConfigError(f"--envelope {text!r}: give LOW:HIGH, e.g. 0.1:0.6") from None
    return low, high


@validate.command("bundle", hidden=True)
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The site's manifest CSV (path, patient_id, label; subgroup "
    "columns such as sex, age, manufacturer, model win over the DICOM header).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for validation.json, validation.md and the figures.",
)
@click.option(
    "--protocol",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Acceptance rules written before the data were seen (TOML; "
    "docs/site.md). Exit code 4 when one fails.",
)
@click.option(
    "--baseline",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="FP32 reference (checkpoint, imported reference or bundle): the paired "
    "deployed-vs-FP32 gate per subgroup.",
)
@click.option(
    "--rethreshold",
    default=None,
    metavar="OBJECTIVE",
    help="Choose a site threshold on half the films (by patient) and confirm it on "
    "the other half: sensitivity=0.90, specificity=0.90 or youden.",
)
@click.option(
    "--refit-gate",
    is_flag=True,
    help="Re-fit the quality gate with the site's tuning films as in scope (the site's "
    "legitimate films refused by the export's gate); checked on held-out generated "
    "out-of-scope images as export checks it. Needs --site-bundle.",
)
@click.option(
    "--site-bundle",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where --rethreshold writes the new bundle (the parent is never changed).",
)
@click.option(
    "--sign",
    "sign_key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Sign the site bundle with this private key.",
)
@click.option(
    "--envelope",
    default=None,
    metavar="LOW:HIGH",
    help="For bundles exported before envelopes were recorded: the threshold range "
    "(probabilities) you validated; recorded as given on the command line.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the tuning/confirmation split by patient.",
)
@click.option("--backend", default="auto", show_default=True, help="Artefact / engine to run.")
@click.option(
    "--institution-salt", default=None, help="Report institutions as salted hashes, never by name."
)
@click.option(
    "--min-films",
    type=click.IntRange(min=1),
    default=None,
    help="Cells below this many scored films are insufficient [default: the protocol's, else 30].",
)
@click.option(
    "--min-positives",
    type=click.IntRange(min=0),
    default=None,
    help="... or below this many positives [default: the protocol's, else 10].",
)
@click.option("--no-figures", is_flag=True, help="Skip the PNG figures.")
@click.option("--force", is_flag=True, help="Replace an existing --site-bundle.")
@ray_options
@trust_options
def run_cmd(
    bundle: Path,
    data: Path,
    out: Path,
    protocol: Path | None,
    baseline: Path | None,
    rethreshold: str | None,
    refit_gate: bool,
    site_bundle: Path | None,
    sign_key: Path | None,
    envelope: str | None,
    seed: int,
    backend: str,
    institution_salt: str | None,
    min_films: int | None,
    min_positives: int | None,
    no_figures: bool,
    force: bool,
    ray: RayPlan | None,
    trust: tuple[Path, ...],
    revoked: tuple[str, ...],
) -> None:
    """Validate BUNDLE on the site's films (see `edgevcf validate --help`).

    \b
    Example:
      edgevcf validate bundles/openvino-int8 --data site/manifest.csv --out site-report \\
          --protocol protocol.toml --rethreshold sensitivity=0.90 \\
          --site-bundle bundles/openvino-int8-site --sign keys/site.key
    """
    from edgevcf.errors import AccuracyGateError
    from edgevcf.site.validate import ValidateOptions
    from edgevcf.site.validate import validate as run

    opts = ValidateOptions(
        baseline=baseline,
        protocol=protocol,
        rethreshold=rethreshold,
        refit_gate=refit_gate,
        envelope=_envelope(envelope),
        site_bundle=site_bundle,
        sign_key=sign_key,
        seed=seed,
        backend=backend,
        trust=load_trust(trust, revoked),
        institution_salt=institution_salt,
        min_films=min_films,
        min_positives=min_positives,
        figures=not no_figures,
        force=force,
        ray=ray,
    )
    r = run(bundle, data, out, opts)
    for line in summary(r):
        echo(line)
    echo(f"Wrote {out / 'validation.md'} and validation.json")
    if r["passed"] is False:
        failed = [x["rule"] for x in r["rules"] if x["verdict"] == "fail"]
        raise AccuracyGateError(
            f"the site protocol failed: {'; '.join(failed)}", hint=f"see {out / 'validation.md'}"
        )


def _p(d: dict[str, Any] | None) -> str:
    if not d or not d.get("n"):
        return "—"
    return f"{100 * d['value']:.0f} % (CI {100 * d['ci_low']:.0f}-{100 * d['ci_high']:.0f})"


def summary(r: dict[str, Any]) -> list[str]:
    """A few lines for the console (and the demo)."""
    a = r["analysis"]["overall"]
    auc = a["auc"]
    lines = [
        f"{r['site']['films']} films, {r['site']['patients']} patients; evaluated on "
        f"{r['evaluated_on']} ({a['n']} scored, {a['not_assessable']} refused by the quality "
        "gate)",
        f"  AUC {auc['auc']:.3f} ({auc['ci_low']:.3f}-{auc['ci_high']:.3f}) | sensitivity "
        f"{_p(a['sensitivity'])} | specificity {_p(a['specificity'])} at "
        f"{r['analysis']['threshold']:.3f}"
        if auc
        else "  AUC: needs both classes",
    ]
    worst: list[tuple[float, str]] = []
    for name, f in r["analysis"]["subgroups"].items():
        for lvl, c in f["levels"].items():
            s = c["sensitivity"]
            if c["sufficient"] and s and s["n"] and len(f["levels"]) > 1:
                worst.append((s["value"], f"{name}={lvl}: sensitivity {_p(s)}"))
        for measure, t in f["heterogeneity"].items():
            q = t.get("q_value")
            if q is not None and q == q and q < 0.05:
                lines.append(f"  {name} differs in {measure} (q = {q:.2g})")
    if worst:
        lines.append("  lowest: " + min(worst)[1])
    if r.get("rethreshold"):
        t = r["rethreshold"]
        before = r["before"]["overall"]
        what = (
            "threshold kept"
            if t["threshold"] == t["parent_threshold"]
            else f"re-thresholded for {t['objective']}"
        )
        if r.get("gate_refit"):
            sr = r["gate_refit"]["site_refit"]
            what = (
                f"quality gate re-fitted (refused on confirmation films "
                f"{_p(sr['confirmation_refused_before'])} -> "
                f"{_p(sr['confirmation_refused_after'])}); {what}"
            )
        lines.append(
            f"  {what}: {t['parent_threshold']:.3f} -> "
            f"{t['threshold']:.3f}; on {a['n']} confirmation films sensitivity "
            f"{_p(before['sensitivity'])} -> {_p(a['sensitivity'])}, specificity "
            f"{_p(before['specificity'])} -> {_p(a['specificity'])}"
        )
        sb = r.get("site_bundle") or {}
        lines.append(
            f"  site bundle {sb['path']} ({'signed' if sb['signed'] else 'unsigned'})"
            if sb.get("written")
            else f"  {sb.get('why', '')}"
        )
    for x in r["rules"]:
        lines.append(
            f"  rule {x['rule']}: {x['verdict']}"
            + (f" in {', '.join(x['failed'])}" if x["failed"] else "")
        )
    return lines


@click.command("card")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--validation",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="The --out folder (or validation.json) of `edgevcf validate` on this bundle "
    "or its parent: the site figures, subgroups and protocol verdict.",
)
@click.option(
    "--about",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="TOML [about] table: model_name, developer, contact, "
    "release_stage, release_date, funding, stakeholders, publications.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for card.md, card.html, card.json and card.xml.",
)
@trust_options
def card(
    bundle: Path,
    validation: Path | None,
    about: Path | None,
    out: Path,
    trust: tuple[Path, ...],
    revoked: tuple[str, ...],
) -> None:
    """The bundle's model card, from what was measured: intended use, training data (saying
    when it was synthetic), the export gate, the site validation by subgroup, the quality
    gate's scope, limits, versions, signer. Markdown and HTML for people, JSON, and the
    Coalition for Health AI's applied model card (card.xml, schema v0.2).

    \b
    Example:
      edgevcf card bundles/openvino-int8-site --validation site-report --out card/
    """
    from edgevcf.site.card import write_card

    paths = write_card(
        bundle, out, validation=validation, about=about, trust=load_trust(trust, revoked)
    )
    echo("Wrote " + ", ".join(str(p) for p in paths.values()))
