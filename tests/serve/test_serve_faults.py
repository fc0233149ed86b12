"""The node under faults, each real: TLS with the wrong certificate, the spool's disk full (the
kernel's file-size limit), ``kill -9`` of ``edgevcf serve`` in the middle of a stream of films
sent by dcmtk's ``storescu``; and compressed films (dcmtk's own JPEG Lossless and JPEG-LS
encoders) stored and scored."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pydicom
import pytest
from fs_limits import file_size_limit
from peers import (
    BIN,
    Pacs,
    config,
    echoscu,
    free_port,
    need,
    node_config,
    running,
    source_uid,
    storescu,
    wait_for,
)  # fmt: skip

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="signals and rlimits as on Linux")


# ------------------------------------------------------------------ TLS
def _pki(folder: Path) -> dict[str, Path]:
    """A site CA with a node and a modality certificate, and a stranger's CA and certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command (Debian: apt-get install -y openssl)")
    folder.mkdir()

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    (folder / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for ca in ("ca", "stranger-ca"):
        run("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
            "-subj", f"/CN={ca}")  # fmt: skip
    for name, ca in (("node", "ca"), ("cart", "ca"), ("stranger", "stranger-ca")):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", "ext")  # fmt: skip
    return {p.stem: p for p in folder.glob("*.pem")} | {
        p.stem + "_key": p for p in folder.glob("*.key")
    }


def test_mutual_tls_admits_the_sites_cart_only(
    serve_bundle: Path, films: list[Path], tmp_path: Path
) -> None:
    pki = _pki(tmp_path / "pki")
    tls = {"cert": str(pki["node"]), "key": str(pki["node_key"]), "ca": str(pki["ca"]),
           "require_client_cert": True}  # fmt: skip
    with running(serve_bundle, config(tmp_path, tls=tls)) as svc:
        port = svc.addresses.dicom[1]

        def tls_args(name: str) -> tuple[str, ...]:
            return ("+tls", str(pki[f"{name}_key"]), str(pki[name]), "+cf", str(pki["ca"]))

        assert echoscu(port, extra=tls_args("cart")).returncode == 0
        assert storescu(port, films[0], extra=tls_args("cart")).returncode == 0
        # a certificate from another CA, none at all, or no TLS: no association
        assert echoscu(port, extra=tls_args("stranger")).returncode != 0
        assert echoscu(port, extra=("+tla", "+cf", str(pki["ca"]))).returncode != 0
        assert echoscu(port).returncode != 0
        assert echoscu(port, extra=tls_args("cart")).returncode == 0  # still serving
        wait_for(lambda: svc.journal.counts()["forwarded"] == 1)


# ------------------------------------------------------------------ disk full
def test_spool_full_answers_out_of_resources_and_recovers(
    serve_bundle: Path, films: list[Path], tmp_path: Path
) -> None:
    size = films[0].stat().st_size
    with running(serve_bundle, config(tmp_path)) as svc:
        port = svc.addresses.dicom[1]
        with file_size_limit(size // 2):
            refused = storescu(port, films[0])
        assert refused.returncode != 0 or "Out of Resources" in refused.stderr + refused.stdout
        assert svc.journal.counts()["received"] == 0  # nothing half-accepted
        assert list(Path(svc.films.root).iterdir()) == []
        assert svc.metrics.count("refused_total") == 1
        assert storescu(port, films[0]).returncode == 0  # space is back: the retry is stored
        wait_for(lambda: svc.journal.counts()["forwarded"] == 1)


# ------------------------------------------------------------------ kill -9
def _serve(bundle: Path, cfg_file: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN / "edgevcf"), "serve", str(bundle), "--config", str(cfg_file)],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def test_kill_9_mid_stream_then_restart_one_sr_per_acknowledged_film(
    serve_bundle: Path, films: list[Path], tmp_path: Path
) -> None:
    need("storescu", "storescp")
    pacs = Pacs("PACS", free_port(), tmp_path / "pacs").start()
    port = free_port()
    cfg_file = node_config(tmp_path, None, pacs.port, port)
    # many distinct films: copies of the test films with new SOP Instance UIDs
    stream = []
    for i in range(40):
        ds = pydicom.dcmread(films[i % len(films)])
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.99.{i + 1}"
        ds.save_as(tmp_path / f"f{i}.dcm")
        stream.append(tmp_path / f"f{i}.dcm")
    log = tmp_path / "serve.log"
    node = _serve(serve_bundle, cfg_file, log)
    acked: list[str] = []
    try:
        wait_for(lambda: echoscu(port).returncode == 0, timeout=90, every=0.5)

        def send() -> None:
            for f in stream:
                if storescu(port, f).returncode == 0:
                    acked.append(str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID))

        sender = threading.Thread(target=send)
        sender.start()
        wait_for(lambda: len(acked) >= 12, timeout=120, every=0.02)
        os.killpg(node.pid, signal.SIGKILL)  # mid-stream, scoring and forwarding in flight
        node.wait(10)
        sender.join(120)
        assert 12 <= len(acked) < len(stream)  # the rest was refused while the node was down
        node = _serve(serve_bundle, cfg_file, log)
        wait_for(lambda: {source_uid(r) for r in pacs.reports()} >= set(acked), timeout=120)
        time.sleep(1.0)  # anything sent twice would arrive now
        reports = pacs.reports()
    finally:
        os.killpg(node.pid, signal.SIGTERM)
        node.wait(30)
        pacs.stop()
    sources = [source_uid(r) for r in reports]
    assert len(sources) == len(set(sources))  # none twice (by film)
    assert len({str(r.SOPInstanceUID) for r in reports}) == len(reports)
    assert set(acked) <= set(sources)  # every acknowledged film has its SR
    assert "Traceback" not in log.read_text()


# ------------------------------------------------------------------ compressed films
@pytest.mark.parametrize(
    ("encoder", "args", "propose"),
    [("dcmcjpeg", ("+e1",), "-xs"), ("dcmcjpls", (), "-xt"), ("dcmcrle", (), "-xr")],
    ids=["jpeg-lossless-sv1", "jpeg-ls", "rle"],
)
def test_compressed_films_are_accepted_and_scored(
    serve_bundle: Path,
    films: list[Path],
    tmp_path: Path,
    encoder: str,
    args: tuple[str, ...],
    propose: str,
) -> None:
    need(encoder)
    from edgevcf.serve.scp import transfer_syntaxes

    out = tmp_path / "c.dcm"
    subprocess.run([encoder, *args, str(films[0]), str(out)], check=True, capture_output=True)
    ts = str(pydicom.dcmread(out, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    if ts not in transfer_syntaxes():
        pytest.skip(f"no decoder for {ts} here: pip install 'edgevcf[decoders]'")
    with running(serve_bundle, config(tmp_path)) as svc:
        sent = storescu(svc.addresses.dicom[1], out, extra=(propose,))  # as compressed
        assert sent.returncode == 0, sent.stderr
        wait_for(lambda: svc.journal.counts()["forwarded"] == 1)
        (job,) = svc.journal.recent(1)
    assert job.result is not None and job.result["status"] in ("ok", "not_assessable")
