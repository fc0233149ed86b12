"""``edgevcf shadow report``: the comparison a shadow run gathered on the cart."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgevcf.cli import echo
from edgevcf.cli.keys import PASS_HELP


@click.group("shadow")
def shadow() -> None:
    """A candidate bundle run beside the served one (``edgevcf serve --shadow``)."""


@shadow.command("report")
@click.option(
    "--journal",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The node's journal (serve.toml [storage] journal).",
)
@click.option(
    "--labels",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Ground truth that arrived later: CSV with 'label' (1 fresh, 0 not) and "
    "'sop_instance_uid' or 'accession_number' (hashed with the journal's salt, as the node did).",
)
@click.option("--candidate", help="Which candidate's run (bundle id) [the latest].")
@click.option(
    "--min-days",
    type=click.FloatRange(min=0),
    default=14.0,
    show_default=True,
    help="Promotion rule: days of exposure.",
)
@click.option(
    "--min-films",
    type=click.IntRange(min=0),
    default=500,
    show_default=True,
    help="Promotion rule: films compared.",
)
@click.option(
    "--min-positives",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="Promotion rule: labelled positives (and as many negatives).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write shadow.md and shadow.json here.",
)
def report(
    journal: Path,
    labels: Path | None,
    candidate: str | None,
    min_days: float,
    min_films: int,
    min_positives: int,
    out: Path | None,
) -> None:
    """Agreement, Cohen's kappa, positive rates and their paired difference, exact McNemar —
    and with --labels the paired accuracy gate (ΔAUC, Δsensitivity, Δspecificity, flips) and
    subgroups; then the promotion rule's checks. Exit code 4 while the rule is not met.

    \b
    Examples:
      edgevcf shadow report --journal /var/lib/edgevcf/journal.sqlite
      edgevcf shadow report --journal journal.sqlite --labels truth.csv --out shadow/
    """
    from edgevcf.errors import AccuracyGateError
    from edgevcf.watch.shadow_report import PromotionRule, markdown, shadow_report

    rule = PromotionRule(
        min_days=min_days,
        min_films=min_films,
        min_positives=min_positives,
        min_negatives=min_positives,
    )
    r = shadow_report(journal, labels, rule, candidate)
    text = markdown(r)
    echo(text.rstrip())
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "shadow.md").write_text(text, encoding="utf-8")
        (out / "shadow.json").write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
        echo(f"Wrote {out / 'shadow.md'} and shadow.json")
    if not r["promote"]:
        failed = [c["check"] for c in r["checks"] if not c["passed"]]
        raise AccuracyGateError(
            f"not ready for promotion: {', '.join(failed)}",
            hint="keep the candidate in shadow; run the report again later",
        )


@click.command("promote")
@click.option(
    "--deployment",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The deployment folder the cart serves from (serve --deployment DIR).",
)
@click.option(
    "--bundle",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The bundle to promote (the shadow report's candidate).",
)
@click.option(
    "--report",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="shadow.json from `edgevcf shadow report --out`: the evidence; its promotion "
    "rule must hold for this very bundle.",
)
@click.option(
    "--rollback",
    is_flag=True,
    help="Go back to the bundle of the record before the latest (a new record).",
)
@click.option(
    "--sign",
    "key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Private key that signs the record (edgevcf keys new).",
)
@click.option("--by", required=True, help="Who decides (a name or role; kept in the record).")
@click.option("--note", default="", help="Why, in a few words (kept in the record).")
@click.option(
    "--passphrase-env",
    metavar="VAR",
    help=PASS_HELP,
)
def promote(
    deployment: Path,
    bundle: Path | None,
    report: Path | None,
    rollback: bool,
    key: Path,
    by: str,
    note: str,
    passphrase_env: str | None,
) -> None:
    """Record, signed, that the cart is to serve BUNDLE from now on (or roll back).

    Nothing switches by itself: a node started with `serve --deployment DIR` serves the newest
    record that verifies against its trusted keys, after a restart or SIGHUP. The first record
    of a deployment needs no report; every later one needs a shadow report whose promotion rule
    held for this bundle.

    \b
    Examples:
      edgevcf promote --deployment /var/lib/edgevcf/deploy --bundle bundles/openvino-int8 \\
          --sign site-2026 --by "radiology QA" --note "initial"
      edgevcf promote --deployment /var/lib/edgevcf/deploy --bundle bundles/candidate \\
          --report shadow/shadow.json --sign site-2026 --by "radiology QA"
      edgevcf promote --deployment /var/lib/edgevcf/deploy --rollback --sign site-2026 --by QA
    """
    from edgevcf.cli.keys import passphrase_from_env
    from edgevcf.watch.promotion import promote as write

    evidence = json.loads(report.read_text(encoding="utf-8")) if report else None
    out = write(
        deployment,
        bundle,
        key,
        by=by,
        report=evidence,
        rollback=rollback,
        note=note,
        passphrase=passphrase_from_env(passphrase_env),
    )
    doc = json.loads(out.read_text(encoding="utf-8"))
    rec = doc["record"]
    echo(
        f"record {out}: serve {rec['bundle']['id'][:12]} ({rec['bundle']['path']}), "
        f"{rec['evidence']['kind']}, by {rec['by']}, signed by key "
        f"{doc['signature']['keyid'][:16]}"
    )
    echo("  a node serving this deployment takes it at its next start or SIGHUP")
