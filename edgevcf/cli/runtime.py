"""``edgevcf predict`` and ``edgevcf verify``: what a clinic runs on the cart."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgevcf.errors import BundleError, DataError

_BACKEND_HELP = (
    "Engine: auto (the bundle's default artefact if its engine is installed), onnxruntime, "
    "openvino, litert, tensorrt, or an artefact name of the bundle (model, ort, tflite, engine)."
)


@click.command("predict")
@click.argument("bundle", type=click.Path(file_okay=False, path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--backend", default="auto", show_default=True, help=_BACKEND_HELP)
@click.option("--threads", type=click.IntRange(min=0), default=None, help="Engine threads.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image (JSON lines).")
def predict(
    bundle: Path, images: tuple[Path, ...], backend: str, threads: int | None, as_json: bool
) -> None:
    """Score radiographs (DICOM, PNG, TIFF, JPEG) with a verified bundle.

    Prints P(fresh fracture) and the decision at the bundle's threshold per image. An image
    that cannot be scored (unreadable, colour, multi-frame, ...) is listed with its reason and
    the others still run; the exit code is 5 when any image was refused.

    \b
    Example:
      edgevcf predict bundles/openvino study1.dcm study2.dcm --json
    """
    from edgevcf.runtime import Predictor

    pred = Predictor.from_bundle(bundle, backend, threads=threads)
    results = pred.predict_many(images)
    if as_json:
        for r in results:
            click.echo(json.dumps(r.to_dict()))
    else:
        click.echo(
            f"model {pred.model_id[:12]} ({pred.bundle.manifest['backbone']}, "
            f"{pred.artifact.precision} on {pred.artifact.runtime}), threshold {pred.threshold:.3f}"
        )
        click.echo("| image | P(fresh) | decision | status |")
        click.echo("|---|---|---|---|")
        for r in results:
            if r.probability is None:
                click.echo(f"| {r.source} | - | - | refused: {r.reason} |")
            else:
                call = "FRESH fracture" if r.decision else "no fresh fracture"
                click.echo(f"| {r.source} | {r.probability:.3f} | {call} | ok |")
    refused = [r for r in results if r.status != "ok"]
    if refused:
        raise DataError(
            f"{len(refused)} of {len(results)} image(s) were refused and got no score",
            hint="see the reasons above",
        )


@click.command("verify")
@click.argument("bundle", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--artifact", "artifacts", multiple=True, help="Check only this artefact (repeatable)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify(bundle: Path, artifacts: tuple[str, ...], as_json: bool) -> None:
    """Acceptance test on the cart: the bundle's golden vectors through this machine's engines.

    Checks every file's checksum, then runs the recorded real inputs through each artefact
    whose engine is installed and compares with the outputs recorded at export: logits within
    the tolerance for the artefact's precision and identical decisions. Exit code 7 on failure.
    """
    from edgevcf.runtime import verify as run

    res = run(bundle, artifacts or None)
    if as_json:
        click.echo(json.dumps(res.to_dict(), indent=2))
    else:
        click.echo(f"bundle {res.bundle} (id {res.model_id[:12]}): checksums ok")
        click.echo("| artefact | engine | precision | result | max |Δlogit| (tol) | decisions |")
        click.echo("|---|---|---|---|---|---|")
        for c in res.checks:
            diff = (
                f"{c.max_abs_logit_diff:.2e} ({c.atol:g})"
                if c.max_abs_logit_diff is not None
                else "-"
            )
            dec = f"{c.n - c.decision_mismatches}/{c.n} same" if c.n else "-"
            status = c.status + (f": {c.reason}" if c.reason else "")
            click.echo(
                f"| {c.artifact} | {c.runtime} | {c.precision} | {status} | {diff} | {dec} |"
            )
    if not res.passed:
        raise BundleError(
            "verification failed: this machine's runtime does not reproduce the bundle",
            hint="reinstall the engine version recorded in manifest.json, or re-export",
        )
