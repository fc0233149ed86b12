"""``edgevcf shadow report``: the comparison a shadow run gathered on the cart."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgevcf.cli import echo


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
@click.option("--min-days", type=click.FloatRange(min=0), default=14.0, show_default=True,
              help="Promotion rule: days of exposure.")  # fmt: skip
@click.option("--min-films", type=click.IntRange(min=0), default=500, show_default=True,
              help="Promotion rule: films compared.")  # fmt: skip
@click.option("--min-positives", type=click.IntRange(min=0), default=50, show_default=True,
              help="Promotion rule: labelled positives (and as many negatives).")  # fmt: skip
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write shadow.md and shadow.json here.",
)
def report(journal: Path, labels: Path | None, candidate: str | None, min_days: float,
           min_films: int, min_positives: int, out: Path | None) -> None:  # fmt: skip
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

    rule = PromotionRule(min_days=min_days, min_films=min_films, min_positives=min_positives,
                         min_negatives=min_positives)  # fmt: skip
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
