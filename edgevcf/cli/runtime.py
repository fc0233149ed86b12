"""``edgevcf predict`` and ``edgevcf verify``: what a clinic runs on the cart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgevcf import console
from edgevcf.cli import echo
from edgevcf.cli.keys import load_trust, trust_options
from edgevcf.cli.ray_options import ray_options
from edgevcf.errors import BundleError, DataError

if TYPE_CHECKING:
    from edgevcf.scale import RayPlan

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
@trust_options
def predict(
    bundle: Path,
    images: tuple[Path, ...],
    backend: str,
    threads: int | None,
    as_json: bool,
    trust: tuple[Path, ...],
    revoked: tuple[str, ...],
) -> None:
    """Score radiographs (DICOM, PNG, TIFF, JPEG) with a verified bundle.

    Prints P(fresh fracture) and the decision at the bundle's threshold per image. First the
    bundle's quality gate decides whether each image is in scope (a lateral thoracolumbar
    radiograph of adequate quality, like those the model was trained on); one that is not is
    listed as not assessable with the reason, and gets no score. An image that cannot be read
    (unreadable, colour, multi-frame, ...) is listed with its reason. The others still run; the
    exit code is 5 when any image got no score.

    \b
    Example:
      edgevcf predict bundles/openvino study1.dcm study2.dcm --json
    """
    from edgevcf.runtime import Predictor

    pred = Predictor.from_bundle(bundle, backend, threads=threads, trust=load_trust(trust, revoked))
    results = pred.predict_many(images)
    if as_json:
        for r in results:
            echo(json.dumps(r.to_dict()))
    else:
        gate = (
            "learned + rules"
            if pred.gate is not None
            else "rules only (no learned gate in this bundle: re-export to add one)"
        )
        echo(
            f"model {pred.model_id[:12]} ({pred.bundle.manifest['backbone']}, "
            f"{pred.artifact.precision} on {pred.artifact.runtime}), threshold {pred.threshold:.3f}"
            f", quality gate: {gate}, "
            + (f"signed by {pred.bundle.signer_key_id[:16]} (trusted)"
               if pred.bundle.signer_key_id else "origin not checked (no --trust)")
        )  # fmt: skip
        if pred.bundle.site_calibration:
            echo(pred.bundle.site_calibration)
        echo("| image | P(fresh) | decision | assessable | status |")
        echo("|---|---|---|---|---|")
        for r in results:
            ok = "yes" if r.assessable else "no"
            if r.probability is None:
                status = r.status.replace("_", " ")  # "not assessable: <the gate's reason>"
                echo(f"| {r.source} | - | - | {ok} | {status}: {r.reason} |")
            else:
                call = "FRESH fracture" if r.decision else "no fresh fracture"
                note = f": {r.reason}" if r.reason else ""
                echo(f"| {r.source} | {r.probability:.3f} | {call} | {ok} | ok{note} |")
    unscored = [r for r in results if r.status != "ok"]
    if unscored:
        out_of_scope = sum(r.status == "not_assessable" for r in unscored)
        raise DataError(
            f"{len(unscored)} of {len(results)} image(s) got no score "
            f"({out_of_scope} not assessable, {len(unscored) - out_of_scope} refused or failed)",
            hint="see the reasons above",
        )


@click.command("verify")
@click.argument("bundle", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--artifact", "artifacts", multiple=True, help="Check only this artefact (repeatable)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@trust_options
def verify(
    bundle: Path,
    artifacts: tuple[str, ...],
    as_json: bool,
    trust: tuple[Path, ...],
    revoked: tuple[str, ...],
) -> None:
    """Acceptance test on the cart: the bundle's golden vectors through this machine's engines.

    Checks every file's checksum, then runs the recorded real inputs through each artefact
    whose engine is installed and compares with the outputs recorded at export: logits within
    the tolerance for the artefact's precision and identical decisions. With --trust, first
    checks who signed it (unsigned, untrusted, revoked or altered: refused). Exit code 7 on
    failure.
    """
    from edgevcf.runtime import verify as run

    res = run(bundle, artifacts or None, trust=load_trust(trust, revoked))
    if as_json:
        echo(json.dumps(res.to_dict(), indent=2))
    else:
        echo(f"bundle {res.bundle} (id {res.model_id[:12]}): checksums ok")
        if res.site_calibration:
            echo(res.site_calibration)
        if res.signer_key_id:
            echo(f"origin: signed by trusted key {res.signer_key_id}")
        else:
            claimed = (
                f" (it carries a signature by {res.signature_claimed[:16]})"
                if res.signature_claimed
                else ""
            )
            echo(f"origin: NOT checked{claimed}: pass --trust KEY.pub to require a trusted signer")
        if res.engine_source:
            by = (f"signed by trusted device key {res.engine_signer_key_id}"
                  if res.engine_signer_key_id else "its signature not checked")  # fmt: skip
            echo(f"engine: built on the device from {res.engine_source} (sha256 bound), {by}")
        echo("| artefact | engine | precision | result | max |Δlogit| (tol) | decisions |")
        echo("|---|---|---|---|---|---|")
        for c in res.checks:
            diff = (
                f"{c.max_abs_logit_diff:.2e} ({c.atol:g})"
                if c.max_abs_logit_diff is not None
                else "-"
            )
            dec = f"{c.n - c.decision_mismatches}/{c.n} same" if c.n else "-"
            status = c.status + (f": {c.reason}" if c.reason else "")
            echo(f"| {c.artifact} | {c.runtime} | {c.precision} | {status} | {diff} | {dec} |")
    if not res.passed:
        raise BundleError(
            "verification failed: this machine's runtime does not reproduce the bundle",
            hint="reinstall the engine version recorded in manifest.json, or re-export",
        )


@click.command("bench")
@click.argument("bundles", nargs=-1, required=True)
@click.option(
    "--data",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Manifest with splits: measure accuracy on --split against the baseline.",
)
@click.option("--split", default="test", show_default=True, help="Split to evaluate.")
@click.option(
    "--baseline",
    type=click.Path(path_type=Path),
    default=None,
    help="FP32 reference: a checkpoint (PyTorch eager) or an FP32 bundle.",
)
@click.option("--backend", default="auto", show_default=True, help=_BACKEND_HELP)
@click.option("--threads", type=click.IntRange(min=0), default=None, help="Override the profile.")
@click.option(
    "--iterations",
    type=click.IntRange(min=200),
    default=None,
    help="Timed batch-1 queries per row, a floor (>= 200; per round with --rounds).",
)
@click.option(
    "--quick",
    is_flag=True,
    help="A quick look: >= 200 batch-1 queries per row and no duration minimum, labelled "
    "'quick' in the reports. Default: SingleStream minimums as MLPerf's, >= 1,024 queries and "
    ">= 60 s of timed queries per row (totals over --rounds).",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Interleave N timing rounds across the rows' live processes: every bundle (and a "
    "checkpoint baseline) stays loaded in its own process and each round times --iterations "
    "batch-1 runs of every row, in a shuffled order, so a slow phase of the machine hits all "
    "rows alike and their ratios are measured side by side. The report then also gives the "
    "spread of the per-round medians. 1: each row measured in one go.",
)
@click.option(
    "--dicom",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="DICOM for end-to-end timing (default: a full-size synthetic film, made once).",
)
@click.option("--no-latency", is_flag=True, help="Accuracy only.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for bench.json, bench.md and bench.png.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report on stdout.")
@ray_options
@trust_options
def bench(
    bundles: tuple[str, ...],
    data: Path | None,
    split: str,
    baseline: Path | None,
    backend: str,
    threads: int | None,
    iterations: int | None,
    quick: bool,
    rounds: int,
    dicom: Path | None,
    no_latency: bool,
    out: Path | None,
    as_json: bool,
    ray: RayPlan | None,
    trust: tuple[Path, ...],
    revoked: tuple[str, ...],
) -> None:
    """Benchmark bundles on this machine: latency, and accuracy against the FP32 baseline.

    BUNDLE is a bundle folder, or FOLDER:ARTIFACT to bench one artefact of it (e.g.
    bundles/mobile:tflite). Latency with the profile's settings: warm-up; SingleStream (batch-1
    median, p90, p99, min, mean over >= 1,024 queries and >= 60 s per row; --quick: >= 200
    queries); Offline (throughput per batch size, and the best); cold start; peak RSS; the floor
    (file read + one pass over the pixels), DICOM decode + preprocessing apart from inference,
    and end to end; with --rounds N, batch-1 latency in N interleaved rounds across the rows'
    live processes. With --data: AUC with DeLong CI, paired
    ΔAUC vs --baseline, non-inferiority at the profile's tolerance, sensitivity, specificity,
    accuracy, F1 and precision at the bundled threshold, decision flip rate with McNemar. Gates
    from each profile; exit code 4 when one fails.

    \b
    Example:
      edgevcf bench bundles/* --data data/manifest.csv --baseline runs/mnv3/model.safetensors \\
          --out bench/
    """
    from edgevcf.bench import BenchConfig
    from edgevcf.bench import bench as run
    from edgevcf.errors import AccuracyGateError
    from edgevcf.report import bench_markdown, bench_summary, inconclusive_hint, write_bench

    cfg = BenchConfig(
        split=split,
        backend=backend,
        threads=threads,
        iterations=iterations,
        quick=quick,
        rounds=rounds,
        dicom=dicom,
        latency=not no_latency,
        trust=load_trust(trust, revoked),
        ray=ray,
    )
    report = run(list(bundles), data=data, baseline=baseline, cfg=cfg)
    if out is not None:
        paths = write_bench(report, out)
    if as_json:
        echo(json.dumps(report, indent=2, default=str))
    else:
        echo(bench_markdown(report))
        for line in bench_summary(report):
            echo(line)
        if out is not None:
            echo(f"Wrote {paths['json']}, {paths['markdown']}, {paths['png']}")
    if report["passed"] is False:
        failed = [Path(g["bundle"]).name for g in report["gates"] if g["passed"] is False]
        raise AccuracyGateError(
            f"gate failed for {', '.join(failed)}", hint=inconclusive_hint(report)
        )


@click.command("demo")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-out"),
    show_default=True,
    help="Folder for the data, model, bundles and report (reused on re-runs).",
)
@click.option(
    "--quick",
    is_flag=True,
    help="A ~2-minute smoke run (120 patients, 128 px, 2 epochs): every step runs, but its "
    "numbers are not the claim.",
)
@click.option("--patients", type=click.IntRange(min=40), default=None, help="Override.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override.")
def demo(out: Path, quick: bool, patients: int | None, epochs: int | None) -> None:
    """The main job on the built-in default, end to end.

    Synthetic lateral radiographs (1,500 patients) -> a MobileNetV3-Small trained here (224 px,
    16 epochs; test AUC ~0.9) -> bundles for every target runnable here (jetson Q/DQ ONNX +
    build plan, openvino INT8, mobile ONNX INT8 + .ort + .tflite, onnx-cpu FP32 and INT8) ->
    `verify` each -> `bench` all against PyTorch FP32 on the untouched test split -> a summary
    in words: the fastest bundle that passed every gate, its speed-ups measured in this run,
    its ΔAUC and flip rate, and what missed which gate by how much -> at the clinic: the
    OpenVINO bundle validated on a small shifted site (240 patients whose DX console enhances
    edges), by subgroup, and re-thresholded into a site bundle (docs/site.md).
    Re-running reuses what is built when its inputs are unchanged.
    """
    import dataclasses

    from edgevcf.demo import DemoConfig, run_demo
    from edgevcf.report import bench_markdown, bench_summary

    cfg = DemoConfig.quick_run() if quick else DemoConfig()
    cfg = dataclasses.replace(
        cfg,
        patients=patients if patients is not None else cfg.patients,
        epochs=epochs if epochs is not None else cfg.epochs,
    )
    console.log_to(out / console.LOG_NAME)
    res = run_demo(out, cfg)
    echo(bench_markdown(res.report))
    echo("| bundle | verify |\n|---|---|")
    for label, ok in res.verify.items():
        echo(f"| {label} | {'pass' if ok else 'FAIL'} |")
    echo()
    if res.reused:
        echo(f"Reused (inputs unchanged): {', '.join(res.reused)}")
    echo(f"Data:     {res.manifest}  (preview: {res.manifest.parent / 'preview.png'})")
    echo(f"Model:    {res.checkpoint}  (trained in this run)")
    echo(f"Bundles:  {res.out / 'bundles'}/")
    echo(f"Report:   {res.report_paths['markdown']}, {res.report_paths['png']}")
    echo(f"Log:      {console.log_path() or '-'}  (the toolchains' own output)")
    echo()
    echo("What this run showed:")
    if res.quick:
        echo(
            "  A quick smoke run (--quick): a small network, 2 epochs, a small test split. It shows"
            "\n  that every step runs; its numbers are not the claim (run `make demo` for that)."
        )
    for line in bench_summary(res.report):
        echo(f"  {line}")
    failed = [label for label, ok in res.verify.items() if not ok]
    if failed:
        echo(f"  verify FAILED for {', '.join(failed)}: see the verify table above.")
    c = res.clinic
    if c is not None and "error" in c:
        echo(f"At the clinic: {c['error']}" + (f" ({c['hint']})" if c.get("hint") else ""))
    elif c is not None:
        from edgevcf.cli.site import summary

        echo(f"At the clinic ({c['bundle']['path']} on a site whose DX console enhances edges; "
             f"{res.clinic_paths['markdown']}):")  # fmt: skip
        for line in summary(c):
            echo(f"  {line.strip()}")
    echo(f"Done in {res.seconds / 60:.1f} min.")


@click.command("score")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--data",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="A manifest CSV, or a folder: every *.dcm below it.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder of parts (Parquet with pyarrow, else CSV); run again to resume.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Films per engine call.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Engine threads in one process [default: the bundle's].",
)
@click.option("--backend", default="auto", show_default=True, help="Engine (as for predict).")
@ray_options
@trust_options
def score_cmd(
    bundle: Path,
    data: Path,
    out: Path,
    batch_size: int,
    threads: int | None,
    backend: str,
    ray: RayPlan | None,
    trust: tuple[Path, ...],
    revoked: tuple[str, ...],
) -> None:
    """Score every film of an archive: one row per film (probability, decision, status and
    reason, subgroup bands, hashed UID and path — no identifier in clear) in whole parts, so a
    run started again skips what is done and writes exactly one row per film.

    \b
    Examples:
      edgevcf score bundles/openvino-int8 --data archive/ --out scores/
      edgevcf score bundles/openvino-int8 --data site.csv --out scores/ --batch-size 16
      edgevcf score bundles/openvino-int8 --data /nfs/archive --out /nfs/scores --ray
    """
    from edgevcf.score import score

    r = score(bundle, data, out, batch_size=batch_size, backend=backend, threads=threads,
              trust=load_trust(trust, revoked), ray=ray)  # fmt: skip
    st = ", ".join(f"{k} {v}" for k, v in sorted(r["statuses"].items())) or "nothing new"
    echo(
        f"{r['films']} films: {r['already_scored']} already scored, {r['scored_now']} now ({st}); "
        f"{r['parts']} {r['format']} part(s) in {out}"
    )
