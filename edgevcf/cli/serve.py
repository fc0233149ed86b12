"""``edgevcf serve``: the cart's DICOM node (films in, one Structured Report per film out)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import click

from edgevcf.cli import echo
from edgevcf.cli.keys import trust_options
from edgevcf.errors import ConfigError


def _split(value: str, what: str, with_port: bool) -> dict[str, Any]:
    """``AE@HOST`` (or ``AE@HOST:PORT`` for a destination) into a config entry."""
    form, example = (
        ("AE@HOST:PORT", "PACS@10.1.2.10:104") if with_port else ("AE@HOST", "CART_DX1@10.1.2.3")
    )
    ae, at, rest = value.partition("@")
    if not at or not ae or not rest:
        raise ConfigError(f"{what} {value!r} is not {form}", hint=f"e.g. {what} {example}")
    if not with_port:
        return {"ae_title": ae, "host": rest}
    host, colon, port = rest.rpartition(":")
    if not colon or not host or not port.isdigit():
        raise ConfigError(f"{what} {value!r} needs a port ({form})", hint=f"e.g. {what} {example}")
    return {"ae_title": ae, "host": host, "port": int(port)}


#: Seconds a stopping node may take before it exits regardless (the journal is consistent).
STOP_BOUND_S = 30.0


@click.command("serve")
@click.argument("bundle", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="serve.toml (listen, tls, allowed, destinations, storage, http, scoring); the options "
    "below override it.",
)
@click.option("--ae-title", help="Our AE title [EDGEVCF].")
@click.option("--host", help="Address to listen on [127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535), help="DICOM port [11112; 0: any free].")
@click.option(
    "--allow",
    multiple=True,
    metavar="AE@HOST",
    help="A modality allowed to send (calling AE title and its host; repeatable).",
)
@click.option(
    "--forward",
    multiple=True,
    metavar="AE@HOST:PORT",
    help="A destination (PACS) the results are sent to (repeatable).",
)
@click.option("--spool", type=click.Path(file_okay=False), help="Spool folder [./spool].")
@click.option("--journal", type=click.Path(dir_okay=False), help="Job journal [./journal.sqlite].")
@click.option("--http-port", type=click.IntRange(0, 65535), help="Status pages [8080; 0: off].")
@click.option("--workers", type=click.IntRange(min=0), help="Scoring workers [0: one per core].")
@click.option(
    "--isolation",
    type=click.Choice(["process", "thread"]),
    help="Score in supervised worker processes (a hung or crashed worker is replaced) or in "
    "the node's own threads [process].",
)
@click.option(
    "--film-timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a worker may take for one film before it is replaced [60].",
)
@click.option("--backend", help="Engine (as for predict) [auto].")
@click.option(
    "--shadow",
    "shadow",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A candidate bundle scored after BUNDLE on every film and compared with it (status "
    "page, /metrics, the journal); its results never reach a destination. Same trust rules.",
)
@click.option(
    "--deployment",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Serve the bundle of the newest signed promotion record in DIR (edgevcf promote) "
    "that verifies against --trust; SIGHUP re-reads it. Instead of BUNDLE.",
)
@trust_options
def serve(
    bundle: Path | None,
    config_path: Path | None,
    ae_title: str | None,
    host: str | None,
    port: int | None,
    allow: tuple[str, ...],
    forward: tuple[str, ...],
    spool: str | None,
    journal: str | None,
    http_port: int | None,
    workers: int | None,
    isolation: str | None,
    film_timeout: float | None,
    backend: str | None,
    shadow: Path | None,
    deployment: Path | None,
    trust: tuple[Path, ...],
    revoked: tuple[str, ...],
) -> None:
    """Receive films over DICOM, score each with BUNDLE, return one Structured Report per film.

    A Storage SCP (C-STORE, C-ECHO) for DX, CR, Secondary Capture and RF films. Only the
    modalities on the allow-list (AE title and host) may associate. A film is on disk and in the
    job journal before its success status goes back; each is scored with the bundle's quality
    gate in a supervised worker process (a film that hangs or crashes its worker is tried again,
    then quarantined with an "undetermined" result), its result written as a Comprehensive SR in
    the film's study and sent to every destination (retried until it arrives), and logged as one
    JSON line in SPOOL/results.jsonl. After a crash, starting again resumes every unfinished
    film. Stop with Ctrl-C or SIGTERM (bounded: films in flight get a few seconds). BUNDLE may
    instead come from the config's [model] bundle (what the systemd unit uses).

    \b
    Examples:
      edgevcf serve bundles/openvino-int8 --allow CART_DX1@127.0.0.1 --forward PACS@127.0.0.1:104
      edgevcf serve --config /etc/edgevcf/serve.toml
    """
    from edgevcf.serve.config import parse_serve_config
    from edgevcf.tomlconf import read_toml

    data: dict[str, Any] = read_toml(config_path, "serve config") if config_path else {}
    base = config_path.parent if config_path else Path.cwd()
    listen = data.setdefault("listen", {})
    for key, value in (("ae_title", ae_title), ("host", host), ("port", port)):
        if value is not None:
            listen[key] = value
    for key, value in (("spool", spool), ("journal", journal)):
        if value is not None:  # relative to where the command runs, as a shell user expects
            data.setdefault("storage", {})[key] = str(Path(value).resolve())
    if http_port is not None:
        data.setdefault("http", {})["port"] = http_port
    scoring: dict[str, Any] = {"workers": workers, "backend": backend, "isolation": isolation,
                               "film_timeout_s": film_timeout}  # fmt: skip
    for key, setting in scoring.items():
        if setting is not None:
            data.setdefault("scoring", {})[key] = setting
    if shadow is not None:
        data.setdefault("shadow", {})["bundle"] = str(shadow.resolve())
    if trust or revoked:
        t = data.setdefault("trust", {})
        t["keys"] = [*t.get("keys", []), *(str(p.resolve()) for p in trust)]
        t["revoked"] = [*t.get("revoked", []), *revoked]
    data["allowed"] = [*data.get("allowed", []), *(_split(a, "--allow", False) for a in allow)]
    data["destinations"] = [
        *data.get("destinations", []), *(_split(f, "--forward", True) for f in forward)
    ]  # fmt: skip
    if deployment is not None:
        data.setdefault("model", {})["deployment"] = str(deployment.resolve())
    cfg = parse_serve_config(data, str(config_path or "command line"), base=base)
    stop = threading.Event()
    reload = threading.Event()

    def on_signal(*_: object) -> None:
        if stop.is_set():  # a second Ctrl-C / SIGTERM: leave now (the journal is consistent)
            os._exit(1)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    if cfg.model.deployment and bundle is None and hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: reload.set())
    while True:
        _serve_once(bundle, cfg, stop, reload)
        if not reload.is_set() or stop.is_set():
            break
        reload.clear()
        echo("SIGHUP: reading the deployment again ...")


def _bundle_to_serve(bundle: Path | None, cfg: Any) -> Path:
    """BUNDLE, else the deployment's newest valid promotion record, else [model] bundle."""
    if bundle is not None:
        return bundle
    if cfg.model.deployment:
        from edgevcf.signing import Trust
        from edgevcf.watch.promotion import current

        if not cfg.trust.keys:
            raise ConfigError(
                "a deployment's promotion records are signed: name the keys that may sign them",
                hint="--trust KEY.pub (or [trust] keys in serve.toml)",
            )
        path, record, skipped = current(
            cfg.model.deployment, Trust.load(list(cfg.trust.keys), cfg.trust.revoked)
        )
        for why in skipped:
            echo(f"  skipped promotion record {why}", err=True)
        kind, kid = record["evidence"]["kind"], record["signer_key_id"][:16]
        echo(f"deployment {cfg.model.deployment}: record {record['sequence']} by "
             f"{record['by']} ({kind}), signed by {kid}")  # fmt: skip
        return path
    if not cfg.model.bundle:
        raise ConfigError(
            "no bundle to serve",
            hint='give BUNDLE, --deployment DIR, or [model] bundle = "..." in the --config file',
        )
    return Path(cfg.model.bundle)


def _serve_once(bundle: Path | None, cfg: Any, stop: threading.Event,
                reload: threading.Event) -> Any:  # fmt: skip
    """Start a node, run it until a stop (or, serving a deployment, a reload), stop it."""
    from edgevcf.serve.service import Service

    service = Service(_bundle_to_serve(bundle, cfg), cfg)
    addresses = service.start()
    ident = service.identity
    host_, port_ = addresses.dicom
    echo(
        f"edgevcf serve: {cfg.listen.ae_title} on {host_}:{port_}"
        f"{' (TLS)' if cfg.tls.cert else ''}; model {ident.model_id[:12]} "
        f"({ident.backbone}, {ident.precision} on {ident.runtime}), "
        f"threshold {service.threshold:.3f}, "
        + (f"signed by trusted key {ident.signer_key_id[:16]}" if ident.signer_key_id
           else "origin not checked (no trust configured)")
    )  # fmt: skip
    echo(
        f"  allowed: {', '.join(f'{p.ae_title}@{p.host}' for p in cfg.allowed)}; results to: "
        + (", ".join(f"{d.ae_title}@{d.host}:{d.port}" for d in cfg.destinations) or "log only")
    )
    if addresses.http:
        echo(f"  status: http://{addresses.http[0]}:{addresses.http[1]}/ (metrics: /metrics)")
    if service.candidate is not None:
        echo(f"  shadow: candidate {service.candidate.id[:12]} scored after every film, compared "
             "on the status page; never sent to a destination")  # fmt: skip
    echo(f"  spool: {cfg.storage.spool}; journal: {cfg.storage.journal}")
    sc = cfg.scoring
    echo(
        f"  scoring: {len(service.scorers)} worker process(es), {sc.film_timeout_s:g} s per "
        f"film, {sc.max_tries} tries before quarantine"
        if sc.isolation == "process"
        else f"  scoring: {len(service.scorers)} thread(s) in this process (no per-film limit)"
    )
    while not stop.wait(0.5) and not reload.is_set():
        pass
    echo("stopping: letting films in flight finish (queued films resume at the next start) ...")
    stopper = threading.Thread(target=service.stop, name="edgevcf-stop", daemon=True)
    stopper.start()
    stopper.join(STOP_BOUND_S)
    if stopper.is_alive():
        echo(f"could not stop cleanly within {STOP_BOUND_S:.0f} s; exiting (the journal is "
             "consistent: unfinished films resume at the next start)", err=True)  # fmt: skip
        os._exit(1)
    echo(f"stopped ({service.metrics.count('received_total')} film(s) received this run)")
    return service
