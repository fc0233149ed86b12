"""``edgevcf export``, ``edgevcf targets`` and ``edgevcf build``: thin wrappers over the targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgevcf import console
from edgevcf.cli import echo
from edgevcf.cli.keys import PASS_HELP, passphrase_from_env
from edgevcf.errors import AccuracyGateError, ConfigError


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f}"


def _auc(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def summary_table(results: list[Any]) -> str:
    """The end-of-export table: size, AUC FP32 -> deployed with paired ΔAUC CI, the operating
    point's paired Δsensitivity / Δspecificity (CI lower bound), flips, and the gate with the
    criteria that failed."""
    from edgevcf.report import gate_cell, operating_point_cell

    rows = [
        "| bundle | target | precision | size MB (FP32 ONNX) | AUC FP32 -> deployed "
        "| ΔAUC (95 % CI) | Δsens / Δspec pt (CI low) | flip rate | gate | export s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        d = r.delta_auc
        delta = f"{d['diff']:+.3f} ({d['ci_low']:+.3f} to {d['ci_high']:+.3f})" if d else "n/a"
        gate = gate_cell(r.gate_passed, getattr(r, "gate", None))
        rows.append(
            f"| {r.bundle} | {r.profile} | {r.precision} | {_mb(r.size_bytes)} "
            f"({_mb(r.fp32_size_bytes)}) | {_auc(r.fp32_auc)} -> {_auc(r.auc)} | {delta} "
            f"| {operating_point_cell(getattr(r, 'gate', None))} "
            f"| {100 * r.flip_rate:.1f} % | {gate} | {r.seconds:.0f} |"
        )
    return "\n".join(rows)


@click.command("export")
@click.option(
    "--target",
    "targets",
    required=True,
    help="Profile name, alias or PROFILE.toml; several separated by commas "
    "(e.g. openvino,mobile,jetson). See `edgevcf targets`.",
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The FP32 reference: a checkpoint from `edgevcf train`, or what `edgevcf import-model` "
    "wrote (.safetensors, .onnx, .pt, .pt2). Optional with --onnx.",
)
@click.option(
    "--calib",
    "data",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Data manifest with splits: calibration images come from 'train', the export-time "
    "accuracy check and golden vectors from 'val'. 'test' is left for `edgevcf bench`.",
)
@click.option(
    "--onnx",
    "onnx_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --checkpoint: use this FP32 ONNX instead of exporting the checkpoint's network "
    "(parity-checked). Alone: a foreign ONNX classifier, imported as `import-model` does (its "
    "declaration from --spec or FILE.toml beside it).",
)
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="model.toml for --onnx without --checkpoint (see `edgevcf import-model --help`).",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", "int8", "bf16", "fp16", "fp32"]),
    default=None,
    help="Override the profile's precision. auto: build and gate every precision the target "
    "offers on this machine (openvino: int8, bf16, fp16 where the CPU has them, fp32), time "
    "them here and keep the fastest that passes the gate; the manifest records every candidate.",
)
@click.option("--input-size", type=click.IntRange(32, 2048), default=None, help="Override.")
@click.option(
    "--samples", type=click.IntRange(min=1), default=None, help="Calibration images (override)."
)
@click.option(
    "--grey-input",
    is_flag=True,
    default=None,
    help="Deployed graph takes one-channel unit images (replication + mean/std in the graph).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bundles"),
    show_default=True,
    help="Bundle folder; with several targets, a parent folder with one bundle per profile.",
)
@click.option("--force", is_flag=True, help="Replace existing bundle folders.")
@click.option(
    "--build-engine",
    is_flag=True,
    help="jetson: also build the TensorRT engine (where tensorrt imports: on the device).",
)
@click.option(
    "--sign",
    "sign_key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Sign each bundle that passes its gate with this private key (edgevcf keys new).",
)
@click.option("--passphrase-env", metavar="VAR", help=PASS_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
def export(
    targets: str,
    checkpoint: Path | None,
    data: Path,
    onnx_path: Path | None,
    spec_path: Path | None,
    precision: str | None,
    input_size: int | None,
    samples: int | None,
    grey_input: bool | None,
    out: Path,
    force: bool,
    build_engine: bool,
    sign_key: Path | None,
    passphrase_env: str | None,
    as_json: bool,
) -> None:
    """Export, calibrate, quantize and compile a checkpoint into verified deployment bundles.

    Each bundle is one folder: the model file(s), manifest.json (input, preprocessing,
    threshold, metrics, versions, sha256 of every file) and golden vectors for `edgevcf verify`.
    Exit code 4 when a bundle fails its profile's accuracy gate (it is still written, marked).

    \b
    Examples:
      edgevcf export --target jetson --checkpoint runs/mnv3/model.safetensors \\
          --calib data/manifest.csv --out bundles/jetson
      edgevcf export --target openvino,mobile,onnx-cpu --checkpoint ... --calib ... --out bundles/
      edgevcf export --target openvino --precision auto --checkpoint ... --calib ... --out fast/
      edgevcf export --target openvino --onnx keras.onnx --spec keras.toml --calib ... --out ov/
    """
    import tempfile

    from edgevcf.profiles import load_profile
    from edgevcf.targets import get_target

    names = [t.strip() for t in targets.split(",") if t.strip()]
    if not names:
        raise ConfigError("--target is empty", hint="e.g. --target jetson")
    profiles = [
        load_profile(n).with_overrides(
            precision=precision, input_size=input_size, samples=samples, grey_input=grey_input
        )
        for n in names
    ]
    if len({p.name for p in profiles}) != len(profiles):
        raise ConfigError("the same profile is named twice in --target")
    if build_engine and not any(p.target == "jetson" for p in profiles):
        raise ConfigError("--build-engine applies to jetson profiles only")
    for p in profiles:  # fail on a missing backend before an hour of work on the others
        get_target(p.target).check_available(p)
    passphrase = None
    if sign_key is not None:  # and on a wrong key or passphrase
        from edgevcf.signing import load_private_key

        passphrase = passphrase_from_env(passphrase_env)
        load_private_key(sign_key, passphrase)
    if len(profiles) > 1:  # a parent folder of bundles (a single bundle holds only what it pins)
        console.log_to(out / console.LOG_NAME)
    with tempfile.TemporaryDirectory(prefix="edgevcf-ref-") as scratch:
        if checkpoint is None:
            checkpoint, onnx_path = _import_onnx(onnx_path, spec_path, Path(scratch)), None
        elif spec_path is not None:
            raise ConfigError("--spec goes with --onnx alone (a checkpoint carries its own)")
        results = _export_all(profiles, checkpoint, data, out, onnx_path, force, build_engine,
                              sign_key, passphrase)  # fmt: skip
    _report(results, as_json)


def _import_onnx(onnx_path: Path | None, spec_path: Path | None, scratch: Path) -> Path:
    """``--onnx`` without ``--checkpoint``: the foreign ONNX imported as its reference."""
    from edgevcf import progress
    from edgevcf.intake.importer import import_model

    if onnx_path is None:
        raise ConfigError("give --checkpoint (a trained or imported reference) or --onnx",
                          hint="edgevcf import-model --help: every way in")  # fmt: skip
    ref = scratch / f"{onnx_path.stem}.onnx"
    with progress.step(f"import {onnx_path.name}"):
        import_model(onnx_path, ref, spec_path=spec_path)
    return ref


def _export_all(
    profiles: list[Any],
    checkpoint: Path,
    data: Path,
    out: Path,
    onnx_path: Path | None,
    force: bool,
    build_engine: bool,
    sign_key: Path | None,
    passphrase: str | None,
) -> list[Any]:
    from edgevcf.export import export_bundle
    from edgevcf.targets import get_target

    results = []
    for p in profiles:
        dest = out if len(profiles) == 1 else out / p.name
        res = export_bundle(
            get_target(p.target), checkpoint, p, data, dest, onnx_path=onnx_path, force=force
        )
        if build_engine and p.target == "jetson":
            from edgevcf.targets.jetson import build_bundle_engine

            # built here, by the signer: the same key signs the engine (BUNDLE/device) too
            signs = sign_key is not None and res.gate_passed is not False
            build_bundle_engine(dest, force=True, key=sign_key if signs else None,
                                passphrase=passphrase)  # fmt: skip
        if sign_key is not None and res.gate_passed is not False:
            from edgevcf.signing import sign_bundle

            res.notes.append(f"signed with key {sign_bundle(dest, sign_key, passphrase)}")
        elif sign_key is not None:
            res.notes.append("not signed: it failed its accuracy gate")
        results.append(res)
    return results


def _report(results: list[Any], as_json: bool) -> None:
    """The summary (table or JSON) and the exit for a failed gate."""
    import json

    if as_json:
        echo(
            json.dumps(
                [
                    {
                        "bundle": str(r.bundle),
                        "profile": r.profile,
                        "target": r.target,
                        "precision": r.precision,
                        "size_bytes": r.size_bytes,
                        "fp32_onnx_bytes": r.fp32_size_bytes,
                        "fp32_auc": r.fp32_auc,
                        "auc": r.auc,
                        "delta_auc": r.delta_auc,
                        "flip_rate": r.flip_rate,
                        "gate_passed": r.gate_passed,
                        "seconds": round(r.seconds, 1),
                        "notes": r.notes,
                    }
                    for r in results
                ],
                indent=2,
            )
        )
    else:
        echo(summary_table(results))
        echo("AUCs on the tuning (val) split vs the FP32 reference; confirm with `edgevcf bench`.")
        for r in results:
            for note in r.notes:
                echo(f"note ({r.profile}): {note}")
    failed = [r for r in results if r.gate_passed is False]
    if failed:
        hint = (
            "try --precision auto (the fastest precision that passes), more calibration "
            "--samples, or excluded_layers"
        )
        open_ = [_inconclusive(r) for r in failed]
        if any(open_):
            hint += "; " + "; ".join(t for t in open_ if t)
        raise AccuracyGateError(
            f"accuracy gate failed for {', '.join(r.profile for r in failed)} (bundles "
            "written, marked failed)",
            hint=hint,
        )


def _inconclusive(r: Any) -> str:
    """What more tuning films would settle, when every failed criterion was inconclusive."""
    from edgevcf.report import films_to_decide

    gate = getattr(r, "gate", None) or {}
    n = films_to_decide(gate)
    if n is None:
        return ""
    return (
        f"{r.profile} is inconclusive, not shown worse ({', '.join(gate['failed'])}: the CI "
        f"spans the margin): a tuning split of about {n:,} films would decide it"
    )


@click.command("targets")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def targets(as_json: bool) -> None:
    """List target profiles and whether each can run here (with the install hint if not)."""
    import json

    from edgevcf.deps import DEPENDENCIES, available
    from edgevcf.errors import BackendUnavailableError
    from edgevcf.profiles import builtin_profiles
    from edgevcf.targets import get_target

    rows: list[dict[str, Any]] = []
    for p in builtin_profiles().values():
        missing = [b for b in get_target(p.target).needs if not available(b)]
        hint = "; ".join(sorted({DEPENDENCIES[b].hint for b in missing}))
        if not missing:
            try:  # what this machine's hardware allows (e.g. BF16 / FP16 compute)
                get_target(p.target).check_available(p)
            except BackendUnavailableError as exc:
                missing, hint = [p.target], exc.message
        if p.target == "jetson":
            runs = "engine: yes" if available("tensorrt") else "ONNX + build plan (engine: no)"
        else:
            runs = "yes" if not missing else "no"
        rows.append(
            {
                "profile": p.name,
                "aliases": list(p.aliases),
                "target": p.target,
                "precision": p.quantize.precision,
                "device": p.device,
                "exports_here": not missing,
                "runs_here": runs,
                "install_hint": hint,
            }
        )
    if as_json:
        echo(json.dumps(rows, indent=2))
        return
    echo("| profile | aliases | target | precision | export here | run here | device |")
    echo("|---|---|---|---|---|---|---|")
    for r in rows:
        echo(
            f"| {r['profile']} | {', '.join(r['aliases'])} | {r['target']} | {r['precision']} "
            f"| {'yes' if r['exports_here'] else 'no'} | {r['runs_here']} | {r['device']} |"
        )
    for r in rows:
        if r["install_hint"]:
            echo(f"{r['profile']}: {r['install_hint']}")


@click.command("build")
@click.argument("bundle", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Rebuild an engine the bundle already has.")
@click.option(
    "--adopt",
    is_flag=True,
    help="Take the engine trtexec.sh wrote into BUNDLE/device instead of building one.",
)
@click.option("--key", "key", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Sign the engine with this device's private key (for carts that run "
              "under --trust).")  # fmt: skip
@click.option("--passphrase-env", metavar="VAR", help=PASS_HELP)
def build(
    bundle: Path, force: bool, adopt: bool, key: Path | None, passphrase_env: str | None
) -> None:
    """Build a jetson bundle's TensorRT engine on this device (needs JetPack 6.1+).

    Verifies the bundle, builds the engine from its build_plan.json (strongly typed for INT8
    Q/DQ; workspace, timing cache and DLA settings from the profile) into BUNDLE/device, with
    a record of TensorRT version, GPU/SM, device model and JetPack and of the SHA-256 of the
    exported ONNX it was built from. The exported files are not changed, so the export's
    signature stays valid; the engine becomes the bundle's default. With --adopt, the engine
    `sh trtexec.sh` made is recorded the same way.

    \b
    Example (a signed bundle on a cart that runs under --trust):
      edgevcf build bundles/jetson-int8 --key device-key --passphrase-env DEVICE_KEY_PASS
    """
    from edgevcf.deps import require
    from edgevcf.targets.jetson import build_bundle_engine

    require("tensorrt", "building a TensorRT engine")
    path = build_bundle_engine(bundle, force=force, adopt=adopt, key=key,
                               passphrase=passphrase_from_env(passphrase_env))  # fmt: skip
    echo(f"Built {path}")
