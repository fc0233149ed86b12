"""Load on ``edgevcf serve``: modalities sending full-size films at once, a PACS receiving SRs.

Real programs on both sides: each sender is a loop of dcmtk ``storescu`` runs (one association
per film, as most modalities send), the PACS is dcmtk ``storescp``, the node is ``edgevcf serve``
in its own process (its RSS sampled every second). Each film is a copy of one full-size 16-bit
DICOM (the bench's synthetic CR film, 2,493 x 2,029, or ``--film``) under a new SOP Instance UID
(patched in place, same length, so writing a copy costs a file write and no encoding).

Measured: films/s sustained (first send to last SR at the PACS), per film the time from the start
of its C-STORE to its SR stored at the PACS (p50/p95/max), the node's peak and per-minute RSS,
and the count lost (acknowledged, no SR) and duplicated (more than one SR for a film). The
senders run on the same machine as the node (they cost it CPU a real cart would not).

    python benchmarks/serve_load.py --bundle demo-out/bundles/openvino-int8 \\
        --senders 4 --films 250 --machine amd-epyc-zen5-2cpu
    python benchmarks/serve_load.py --bundle ... --soak-minutes 10   # memory over a soak
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pydicom

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"nothing listens on {port} after {timeout:.0f} s")


class FilmFactory:
    """Copies of one film, each under its own SOP Instance UID (same length: patched bytes)."""

    def __init__(self, film: Path) -> None:
        self.data = bytearray(film.read_bytes())
        uid = str(pydicom.dcmread(film, stop_before_pixels=True).SOPInstanceUID).encode()
        self.offsets = []
        start = 0
        while (i := self.data.find(uid, start)) >= 0:
            self.offsets.append(i)
            start = i + 1
        self.width = len(uid)
        if not self.offsets or self.width < 24:
            raise SystemExit("the film's SOP Instance UID is too short to patch")
        self.prefix = "2.25.1"  # a UID component has no leading zero

    def uid(self, sender: int, n: int) -> str:
        body = f"{sender:02d}{n:09d}{time.time_ns() % 10**12:012d}"
        u = (self.prefix + body)[: self.width]
        return u.ljust(self.width, "0")

    def write(self, path: Path, uid: str) -> None:
        for off in self.offsets:
            self.data[off : off + self.width] = uid.encode()
        path.write_bytes(self.data)


def _rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MB."""
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                fields[k] = int(v.split()[0]) / 1024
    except OSError:  # a worker that just ended
        pass
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the node's scoring worker processes)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo += [int(c) for c in task.read_text().split()]
            except OSError:
                continue
    return out


def _tree_rss_mb(pid: int) -> float:
    """RSS of the node and its workers together, MB (pages they share are counted twice)."""
    return sum(_rss_mb(p)[0] for p in _tree(pid))


def run(args: argparse.Namespace) -> dict[str, Any]:
    for tool in ("storescu", "storescp"):
        if shutil.which(tool) is None:
            raise SystemExit(f"needs dcmtk's {tool} (Debian: apt-get install -y dcmtk)")
    work = Path(tempfile.mkdtemp(prefix="serve-load-"))
    film = Path(args.film) if args.film else _sample_film()
    factory = FilmFactory(film)
    pacs_dir = work / "pacs"
    pacs_dir.mkdir()
    pacs_port, node_port, http_port = _free_port(), _free_port(), _free_port()
    # TCP_NODELAY=1: dcmtk's switch for Nagle off, as PACSs run (Orthanc builds dcmtk so)
    pacs = subprocess.Popen(["storescp", "-aet", "PACS", "-od", str(pacs_dir), str(pacs_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "TCP_NODELAY": "1"})  # fmt: skip
    node = subprocess.Popen(
        [str(BIN / "edgevcf"), "serve", args.bundle, "--port", str(node_port),
         "--http-port", str(http_port), "--spool", str(work / "spool"),
         "--journal", str(work / "journal.sqlite"), "--forward", f"PACS@127.0.0.1:{pacs_port}",
         "--allow", "CART@127.0.0.1", "--isolation", args.isolation, "--backend", args.backend,
         *(["--workers", str(args.workers)] if args.workers else []),
         *(["--shadow", args.shadow] if args.shadow else [])],
        stdout=(work / "serve.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    sent: dict[str, float] = {}
    acked: set[str] = set()
    failed: list[str] = []
    arrivals: dict[str, float] = {}
    rss: list[tuple[float, float]] = []
    stop = threading.Event()
    lock = threading.Lock()
    try:
        _wait_port(pacs_port)
        _wait_port(node_port)
        t_start = time.time()
        deadline = t_start + args.soak_minutes * 60 if args.soak_minutes else None

        interval = args.senders / args.rate if args.rate else 0.0

        def sender(k: int) -> None:
            path = work / f"send{k}.dcm"
            n = 0
            next_at = time.time() + k * interval / args.senders  # senders interleaved
            while not stop.is_set():
                if interval:
                    time.sleep(max(0.0, next_at - time.time()))
                    next_at += interval
                if deadline is None and n >= args.films:
                    return
                if deadline is not None and time.time() >= deadline:
                    return
                uid = factory.uid(k, n)
                n += 1
                with lock:
                    factory.write(path, uid)
                    sent[uid] = time.time()
                rc = subprocess.run(["storescu", "-aet", "CART", "-aec", "EDGEVCF", "127.0.0.1",
                                     str(node_port), str(path)],
                                    capture_output=True).returncode  # fmt: skip
                if rc == 0:
                    acked.add(uid)
                else:
                    failed.append(uid)

        def watch() -> None:
            seen: set[str] = set()
            last_rss = 0.0
            while not stop.is_set():
                now = time.time()
                for entry in os.scandir(pacs_dir):
                    if entry.name not in seen and not entry.name.startswith("."):
                        seen.add(entry.name)
                        arrivals[entry.name] = now
                if now - last_rss >= 1.0:
                    rss.append((now - t_start, _tree_rss_mb(node.pid)))
                    last_rss = now
                time.sleep(0.01)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        senders = [threading.Thread(target=sender, args=(k,)) for k in range(args.senders)]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        t_sent = time.time()
        # wait for every acknowledged film's SR (or give up after a while)
        limit = time.time() + 300
        while time.time() < limit and len(arrivals) < len(acked):
            time.sleep(0.2)
        time.sleep(2.0)  # anything sent twice would arrive now
        stop.set()
        watcher.join(5)
        peak = max([_tree_rss_mb(node.pid), *(mb for _, mb in rss)])
        t_end = max(arrivals.values(), default=t_sent)
    finally:
        stop.set()
        node.terminate()
        node.wait(60)
        pacs.terminate()
        pacs.wait(10)
    by_film: dict[str, list[float]] = {}
    for name, t in arrivals.items():
        sr = pydicom.dcmread(pacs_dir / name)
        ev = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
        by_film.setdefault(str(ev.ReferencedSOPSequence[0].ReferencedSOPInstanceUID), []).append(t)
    lat = sorted(min(ts) - sent[u] for u, ts in by_film.items() if u in sent)
    lost = sorted(acked - set(by_film))
    duplicated = [u for u, ts in by_film.items() if len(ts) > 1]
    minutes = {}
    for t, mb in rss:
        minutes.setdefault(int(t // 60), []).append(mb)
    wall = t_end - t_start
    result = {
        "machine": args.machine,
        "bundle": args.bundle,
        "isolation": args.isolation,
        "shadow": args.shadow,
        "backend": args.backend,
        "workers": args.workers or os.cpu_count(),
        "film": {"path": str(film), "bytes": len(factory.data)},
        "senders": args.senders,
        "films_per_sender": args.films if not args.soak_minutes else None,
        "soak_minutes": args.soak_minutes,
        "offered_rate": args.rate or None,
        "sent": len(sent),
        "acknowledged": len(acked),
        "refused_by_node": len(failed),
        "srs_at_pacs": sum(len(v) for v in by_film.values()),
        "lost": len(lost),
        "duplicated": len(duplicated),
        "wall_s": round(wall, 1),
        "films_per_s": round(len(by_film) / wall, 2) if wall > 0 else None,
        "latency_s": {
            "p50": round(statistics.median(lat), 3) if lat else None,
            "p95": round(lat[int(0.95 * (len(lat) - 1))], 3) if lat else None,
            "max": round(lat[-1], 3) if lat else None,
        },
        "rss_mb": {
            "peak": round(peak, 1),
            "per_minute_median": {m: round(statistics.median(v), 1) for m, v in minutes.items()},
        },
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    if args.keep:
        print(f"kept {work} (the node's log: serve.log)")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _sample_film() -> Path:
    sys.path.insert(0, str(ROOT))
    from edgevcf.bench import sample_dicom

    film = sample_dicom()
    if film is None:
        raise SystemExit("cannot make the full-size film (needs scipy); pass --film")
    return film


def _markdown(r: dict[str, Any]) -> str:
    lat = r["latency_s"]
    per_min = ", ".join(f"{m}: {v}" for m, v in r["rss_mb"]["per_minute_median"].items())
    what = (f"{r['soak_minutes']} min soak" if r["soak_minutes"]
            else f"{r['senders']} x {r['films_per_sender']} films")  # fmt: skip
    return (
        f"# edgevcf serve under load: {r['machine']} ({r['date']})\n\n"
        f"`python benchmarks/serve_load.py --bundle {r['bundle']} --senders {r['senders']}"
        f" --isolation {r['isolation']}"
        f"{' --soak-minutes ' + str(r['soak_minutes']) if r['soak_minutes'] else ''}"
        f"{' --rate ' + str(r['offered_rate']) if r['offered_rate'] else ''}"
        f"{' --shadow ' + str(r['shadow']) if r.get('shadow') else ''}`"
        f" ({what}; film {r['film']['bytes'] / 1e6:.1f} MB, 16-bit)\n\n"
        "| sent | acked | SRs at PACS | lost | duplicated | wall s | films/s | p50 s | p95 s "
        "| max s | peak RSS MB (node + workers) |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
        f"| {r['sent']} | {r['acknowledged']} | {r['srs_at_pacs']} | {r['lost']} | "
        f"{r['duplicated']} | {r['wall_s']} | {r['films_per_s']} | {lat['p50']} | {lat['p95']} "
        f"| {lat['max']} | {r['rss_mb']['peak']} |\n\n"
        f"RSS per minute (median MB): {per_min}\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", default=str(ROOT / "demo-out" / "bundles" / "openvino-int8"))
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--films", type=int, default=250, help="per sender")
    ap.add_argument("--soak-minutes", type=float, default=0.0)
    ap.add_argument(
        "--rate", type=float, default=0.0,
        help="films/s offered by all senders together (0: each sends as fast as it can)",
    )  # fmt: skip
    ap.add_argument("--film", help="a DICOM to send (default: the bench's full-size film)")
    ap.add_argument(
        "--isolation",
        choices=["process", "thread"],
        default="process",
        help="score in worker processes (the default) or the node's threads",
    )
    ap.add_argument("--workers", type=int, default=0, help="scoring workers (0: one per core)")
    ap.add_argument("--backend", default="auto", help="engine or artefact (e.g. litert)")
    ap.add_argument("--shadow", help="a candidate bundle scored after the served one (serve "
                    "--shadow): what it costs the served bundle's results")  # fmt: skip
    ap.add_argument("--keep", action="store_true", help="keep the work folder (the node's log)")
    ap.add_argument("--machine", default=f"{os.uname().machine}-{os.cpu_count()}cpu")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    result = run(args)
    kind = "soak" if args.soak_minutes else "load"
    kind += f"-{args.rate:g}fps" if args.rate else "-max"
    kind += f"-{Path(args.bundle).name}-{args.backend}-{args.isolation}"
    kind += f"-shadow-{Path(args.shadow).name}" if args.shadow else ""
    from edgevcf.report import write_results

    text = _markdown(result)
    write_results(Path(args.out) / f"{args.machine}-serve-{kind}", result, text, indent=1)
    print(text)


if __name__ == "__main__":
    main()
