"""Starts of ``edgevcf serve`` that hang: many fresh node starts, each fed full-size films by
dcmtk, each stopped with SIGTERM (issue 25: 4 of 37 starts of a node with an OpenVINO bundle and
2 scoring threads froze on a 2-core Zen 4, SIGTERM ignored).

Per start: a new node (``--workers 2``, fresh spool and journal) with a dcmtk ``storescp`` as
the PACS; ``--senders`` concurrent ``storescu`` loops send ``--films`` films each, one
association per film, as soon as the port answers (so both scoring slots make their first
inference together); the start passes when every film's SR reached the PACS, ``/healthz``
answered 200, and SIGTERM ended the node with exit code 0 within ``--stop-limit`` seconds. A
start with any of them missing is a hang (the node is then killed with SIGKILL, after a py-spy
dump with ``--stack``). 45 starts fail a node that hangs in 1 of 10 starts with 99 % certainty.

    python benchmarks/serve_starts.py --bundle demo-out/bundles/openvino-int8 --starts 45 \\
        --isolation process --machine amd-epyc-zen5-2cpu
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from serve_load import FilmFactory, _free_port, _sample_film, _wait_port  # noqa: E402


def _healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return int(r.status)
    except Exception:
        return 0


def one_start(i: int, factory: FilmFactory, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from edgevcf.backends.base import UNSAFE_ENV

    run = work / f"start{i}"
    pacs_dir = run / "pacs"
    pacs_dir.mkdir(parents=True)
    pacs_port, port, http = _free_port(), _free_port(), _free_port()
    pacs = subprocess.Popen(["storescp", "-aet", "PACS", "-od", str(pacs_dir), str(pacs_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != UNSAFE_ENV}
    if args.unsafe:
        env[UNSAFE_ENV] = "1"
    t0 = time.monotonic()
    node = subprocess.Popen(
        [str(BIN / "edgevcf"), "serve", args.bundle, "--port", str(port), "--http-port",
         str(http), "--spool", str(run / "spool"), "--journal", str(run / "j.sqlite"),
         "--forward", f"PACS@127.0.0.1:{pacs_port}", "--allow", "CART@127.0.0.1",
         "--workers", str(args.workers), "--isolation", args.isolation,
         "--backend", args.backend],
        stdout=(run / "serve.log").open("wb"), stderr=subprocess.STDOUT, env=env,
        start_new_session=True,
    )  # fmt: skip
    out: dict[str, Any] = {"start": i + 1, "status": "ok"}
    try:
        _wait_port(pacs_port, 30)
        _wait_port(port, 120)
        out["listen_s"] = round(time.monotonic() - t0, 2)
        lock = threading.Lock()
        acked: list[str] = []

        def send(k: int) -> None:
            for n in range(args.films):
                uid = factory.uid(k, n + 1000 * i)
                own = run / f"s{k}-{n}.dcm"
                with lock:
                    factory.write(own, uid)
                rc = subprocess.run(["storescu", "-aet", "CART", "-aec", "EDGEVCF", "127.0.0.1",
                                     str(port), str(own)], capture_output=True,
                                    timeout=60).returncode  # fmt: skip
                if rc == 0:
                    acked.append(uid)

        senders = [threading.Thread(target=send, args=(k,)) for k in range(args.senders)]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        out["acknowledged"] = len(acked)
        deadline = time.monotonic() + args.result_limit
        while time.monotonic() < deadline:
            if len([p for p in pacs_dir.iterdir() if not p.name.startswith(".")]) >= len(acked):
                break
            time.sleep(0.1)
        out["srs"] = len([p for p in pacs_dir.iterdir() if not p.name.startswith(".")])
        out["healthz"] = _healthz(http)
        if out["srs"] < args.senders * args.films or out["healthz"] != 200:
            out["status"] = "hang"
        t1 = time.monotonic()
        node.send_signal(signal.SIGTERM)
        try:
            rc = node.wait(args.stop_limit)
            out["stop_s"] = round(time.monotonic() - t1, 2)
            out["exit_code"] = rc
            if rc != 0:
                out["status"] = "hang" if out["status"] == "hang" else "error"
        except subprocess.TimeoutExpired:
            out["status"] = "hang"
            out["sigterm_ignored"] = True
    except Exception as exc:  # a port that never opened, a sender that timed out
        out["status"] = "hang"
        out["error"] = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        if node.poll() is None:
            if args.stack:
                spy = shutil.which("py-spy") or str(BIN / "py-spy")
                if Path(spy).exists():
                    dump = subprocess.run([spy, "dump", "--native", "--pid", str(node.pid)],
                                          capture_output=True, text=True, timeout=60)  # fmt: skip
                    out["stack"] = dump.stdout[:8000]
            os.killpg(node.pid, signal.SIGKILL)
            node.wait(10)
        pacs.terminate()
        pacs.wait(10)
    if out["status"] == "ok":
        shutil.rmtree(run, ignore_errors=True)
    else:
        out["log_tail"] = (run / "serve.log").read_text(errors="replace")[-1500:]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", default=str(ROOT / "demo-out" / "bundles" / "openvino-int8"))
    ap.add_argument("--starts", type=int, default=45)
    ap.add_argument("--senders", type=int, default=2)
    ap.add_argument("--films", type=int, default=2, help="per sender and start")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--isolation", choices=["process", "thread"], default="process")
    ap.add_argument("--backend", default="auto", help="engine or artefact (e.g. litert)")
    ap.add_argument("--unsafe", action="store_true",
                    help="switch the serialised first use off (shows what it prevents)")
    ap.add_argument("--result-limit", type=float, default=60.0)
    ap.add_argument("--stop-limit", type=float, default=40.0)
    ap.add_argument("--stack", action="store_true", help="py-spy dump of each hung node")
    ap.add_argument("--film", help="a DICOM to send (default: the bench's full-size film)")
    ap.add_argument("--machine", default=f"{os.uname().machine}-{os.cpu_count()}cpu")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    for tool in ("storescu", "storescp"):
        if shutil.which(tool) is None:
            raise SystemExit(f"needs dcmtk's {tool} (Debian: apt-get install -y dcmtk)")
    factory = FilmFactory(Path(args.film) if args.film else _sample_film())
    work = Path(tempfile.mkdtemp(prefix="serve-starts-"))
    starts = []
    for i in range(args.starts):
        r = one_start(i, factory, args, work)
        starts.append(r)
        print(f"start {i + 1}/{args.starts}: {r['status']} (listen {r.get('listen_s')} s, "
              f"{r.get('srs')} SRs, stop {r.get('stop_s')} s)", flush=True)  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)
    hung = [s for s in starts if s["status"] == "hang"]
    stops = sorted(s["stop_s"] for s in starts if "stop_s" in s)
    summary = {
        "machine": args.machine, "bundle": args.bundle, "isolation": args.isolation,
        "workers": args.workers, "serialised_first_use": not args.unsafe,
        "starts": len(starts), "hung": len(hung),
        "errors": sum(s["status"] == "error" for s in starts),
        "films_per_start": args.senders * args.films,
        "sigterm_ignored": sum(bool(s.get("sigterm_ignored")) for s in starts),
        "stop_s_max": stops[-1] if stops else None,
        "stop_s_median": stops[len(stops) // 2] if stops else None,
        "listen_s_median": sorted(s.get("listen_s", 0) for s in starts)[len(starts) // 2],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }  # fmt: skip
    label = f"{args.isolation}{'-unsafe' if args.unsafe else ''}-{Path(args.bundle).name}"
    text = (
        f"# Node starts: {args.machine} ({summary['date']})\n\n"
        f"`python benchmarks/serve_starts.py {' '.join(sys.argv[1:])}`\n\n"
        "| bundle | isolation | workers | first use serialised | starts | films each | hung "
        "| SIGTERM ignored | stop s (median / max) | listening after s (median) |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
        f"| {Path(args.bundle).name} | {args.isolation} | {args.workers} | "
        f"{'yes' if not args.unsafe else 'no'} | {summary['starts']} | "
        f"{summary['films_per_start']} | {summary['hung']} | {summary['sigterm_ignored']} | "
        f"{summary['stop_s_median']} / {summary['stop_s_max']} | {summary['listen_s_median']} |\n"
    )
    from edgevcf.report import write_results

    write_results(Path(args.out) / f"{args.machine}-serve-starts-{label}",
                  {**summary, "runs": starts}, text, indent=1)  # fmt: skip
    print(text)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
