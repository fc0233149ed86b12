"""Data-layer speed: DICOM read, preprocessing of a full-size radiograph, synthesis throughput.

Writes benchmarks/results/<machine>-data.{json,md}. Run: .venv/bin/python benchmarks/bench_data.py
Preprocessing is timed at one thread (the figure the spec promises: well under 50 ms for a
2,300x2,900 16-bit image to 224x224); numbers are medians with p90 and the spread of repeats.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from edgevcf import progress
from edgevcf.data.io import read_image
from edgevcf.data.manifest import Manifest
from edgevcf.data.preprocess import Preprocess
from edgevcf.data.synth import SynthConfig, generate


def machine() -> dict[str, str]:
    """A short description of this machine for the results file."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "node": platform.node(),
    }


def timeit(fn, repeats: int) -> dict[str, float]:
    """Median / p90 / min of ``repeats`` calls, in ms, after 3 warm-up calls."""
    for _ in range(3):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1000)
    return {
        "median_ms": statistics.median(ts),
        "p90_ms": float(np.percentile(ts, 90)),
        "min_ms": min(ts),
        "runs": repeats,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    progress.set_enabled(False)
    res: dict[str, object] = {"machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        full = generate(
            Path(tmp) / "full",
            3,
            seed=0,
            cfg=SynthConfig(sites=(SynthConfig().sites[0],)),
            fmt="dicom",
            preview=False,
        )
        study = Manifest.load(full.manifest).studies[0]
        path = study.resolve(full.out_dir)
        img, meta = read_image(path)
        spec = Preprocess()
        res["image"] = {
            "shape": list(img.shape),
            "bits_stored": meta.bits_stored,
            "file_mb": round(path.stat().st_size / 1e6, 1),
        }
        res["read_dicom"] = timeit(lambda: read_image(path), args.repeats // 2)
        res["preprocess_224"] = timeit(lambda: spec.apply(img), args.repeats)
        res["preprocess_224_clahe"] = timeit(
            lambda: Preprocess(clahe=True).apply(img), args.repeats
        )
        res["preprocess_384"] = timeit(lambda: Preprocess(input_size=384).apply(img), args.repeats)
        res["read_plus_preprocess"] = timeit(
            lambda: spec.apply(read_image(path)[0]), args.repeats // 2
        )
        synth = {}
        for name, cfg, n in (
            ("fast_0.6mm", SynthConfig.fast(), 60),
            ("full_0.15mm", SynthConfig(), 8),
        ):
            for workers in (1, 2):
                rates = []
                for rep in range(2):
                    r = generate(
                        Path(tmp) / f"{name}{workers}{rep}",
                        n,
                        seed=rep,
                        cfg=cfg,
                        workers=workers,
                        preview=False,
                    )
                    rates.append(r.images_per_second)
                synth[f"{name}_workers{workers}"] = {"images_per_s": rates, "patients": n}
        res["synth"] = synth
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{platform.machine()}-{os.cpu_count()}cpu-data"
    stem.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    lines = [
        f"# Data-layer benchmark ({res['machine']['cpu']}, {res['machine']['cores']} cores)",
        "",
        f"Image: {res['image']}",
        "",
        "| step (1 thread) | median ms | p90 ms | min ms |",
        "|---|---|---|---|",
    ]
    for k in (
        "read_dicom",
        "preprocess_224",
        "preprocess_224_clahe",
        "preprocess_384",
        "read_plus_preprocess",
    ):
        v = res[k]
        lines.append(f"| {k} | {v['median_ms']:.1f} | {v['p90_ms']:.1f} | {v['min_ms']:.1f} |")  # type: ignore[index]
    lines += ["", "| synthesis | images/s (2 repeats) |", "|---|---|"]
    for k, v in synth.items():
        lines.append(f"| {k} | {', '.join(f'{x:.1f}' for x in v['images_per_s'])} |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
