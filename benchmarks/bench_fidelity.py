"""Harness fidelity: our median latency vs OpenVINO's own ``benchmark_app`` on the same IR.

Both are run in interleaved rounds (A B A B ...) in one process tree, because this VM's timing is
bistable at 2 threads (DESIGN.md): comparing a run now with a run later would measure the VM. Both
use one stream, synchronous requests, f32 inference precision and the same thread count, the
settings a latency-bound cart uses.

    B=~/.cache/edgevcf/reference/bundles/mobilenet_v3_large/openvino-int8
    .venv/bin/python benchmarks/bench_fidelity.py $B
    .venv/bin/python benchmarks/bench_fidelity.py BUNDLE --threads 2 --rounds 5

Writes ``benchmarks/results/<machine>-fidelity.md`` (appending a section per bundle).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from edgevcf.bundle import Bundle
from edgevcf.latency import BundleRow, Worker
from edgevcf.machine import machine_info


def benchmark_app(xml: Path, shape: list[int], threads: int, niter: int, precision: str) -> float:
    """OpenVINO benchmark_app's median latency (ms) for one sync stream."""
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    cmd = [
        exe, "-m", str(xml), "-d", "CPU", "-hint", "none", "-nstreams", "1", "-api", "sync",
        "-nthreads", str(threads), "-niter", str(niter), "-infer_precision", precision,
        "-shape", "[" + ",".join(str(max(d, 1)) for d in shape) + "]",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True).stdout
    m = re.search(r"Median:\s+([0-9.]+) ms", out)
    if not m:
        raise RuntimeError(f"no median in benchmark_app output:\n{out[-800:]}")
    return float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=500)
    ap.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()

    b = Bundle.load(args.bundle)
    art = b.artifact()
    if art.runtime != "openvino":
        raise SystemExit(f"{args.bundle} is not an OpenVINO bundle")
    precision = art.options.get("inference_precision", "f32")
    shape = list(b.input.shape)
    ours, theirs = [], []
    for r in range(args.rounds):
        with Worker("edgevcf", BundleRow(b.path, "openvino", threads=args.threads)) as w:
            ours.append(statistics.median(w.latency(args.iterations, warmup=50)))
        theirs.append(
            benchmark_app(b.path / art.file, shape, args.threads, args.iterations, precision)
        )
        print(f"round {r + 1}: ours {ours[-1]:.3f} ms, benchmark_app {theirs[-1]:.3f} ms")
    ratios = [o / t for o, t in zip(ours, theirs, strict=True)]
    m = machine_info()
    lines = [
        f"## {b.manifest['backbone']} {b.manifest['target']} {b.manifest['precision']} "
        f"({args.threads} thread(s), {precision}, batch {max(shape[0], 1)})",
        "",
        f"Machine: {m.get('cpu', m['machine'])}, {m['cpu_count']} cores. "
        f"{args.rounds} interleaved rounds of {args.iterations} timed runs each.",
        "",
        "| round | edgevcf bench median ms | benchmark_app median ms | ratio |",
        "|---|---|---|---|",
        *(
            f"| {i + 1} | {o:.3f} | {t:.3f} | {o / t:.3f} |"
            for i, (o, t) in enumerate(zip(ours, theirs, strict=True))
        ),
        f"| median | {statistics.median(ours):.3f} | {statistics.median(theirs):.3f} | "
        f"{statistics.median(ratios):.3f} |",
        "",
        f"Median ratio within 10 %: {'yes' if 0.9 <= statistics.median(ratios) <= 1.1 else 'no'}"
        f"; every round within 10 %: {'yes' if all(0.9 <= r <= 1.1 for r in ratios) else 'no'} "
        f"(ratios {min(ratios):.3f}-{max(ratios):.3f}).",
        "",
    ]
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / f"{m['machine']}-{m['cpu_count']}cpu-fidelity.md"
    head = "" if path.is_file() else "# Harness fidelity: edgevcf bench vs benchmark_app\n\n"
    with path.open("a") as f:
        f.write(head + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
