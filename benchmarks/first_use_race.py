"""How often a fresh process hangs when N threads make their first inference at once, per engine,
with each thread's first inference serialised (edgevcf's default) and without it.

Each trial is a new interpreter (:mod:`edgevcf.testing.first_use`): load the bundle, every thread
prepares a film, waits at a barrier, then all infer at the same instant; a trial with no result
within ``--timeout`` is a hang (killed; with ``--stack`` py-spy dumps its threads first). The
switch-off rows use ``EDGEVCF_UNSAFE_CONCURRENT_FIRST_USE=1``; they show that the trials catch the
race the serialisation prevents (the power of ``tests/safety/test_concurrency.py``).

    python benchmarks/first_use_race.py --bundle demo-out/bundles/openvino-int8:openvino \\
        --bundle demo-out/bundles/onnx-cpu-int8:onnxruntime --trials 60 --machine amd-epyc-zen5-2cpu
    python benchmarks/first_use_race.py --tiny --trials 60 ...   # + the test suite's tiny bundle

``--tiny`` adds the OpenVINO bundle the test suite races (``tests/conftest.py``: MobileNetV3-Small
at 64 px trained 2 epochs on 48 fast synthetic patients, seed 5, exported with the small
calibration recipe), built once into ``~/.cache/edgevcf/first-use-tiny``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _films(n: int) -> list[str]:
    """Full-size films: the bench's synthetic DICOM and copies decoded the same way."""
    from edgevcf.bench import sample_dicom

    film = sample_dicom()
    if film is None:
        raise SystemExit("cannot make the full-size film (needs scipy)")
    return [str(film)] * n


def _tiny_bundle() -> str:
    """The test suite's tiny OpenVINO bundle, built as ``tests/conftest.py`` builds it (cached)."""
    import dataclasses

    from edgevcf.dataset import cache_root

    root = cache_root() / "first-use-tiny"
    bundle = root / "openvino"
    if (bundle / "manifest.json").is_file():
        return str(bundle)
    from edgevcf.data.synth import SynthConfig, generate
    from edgevcf.export import export_bundle
    from edgevcf.profiles import load_profile
    from edgevcf.targets import get_target
    from edgevcf.train import TrainConfig, train

    data = generate(root / "data", 48, cfg=SynthConfig.fast(), seed=5, workers=2, preview=False)
    run = train(
        data.manifest,
        root / "run",
        TrainConfig(arch="mobilenet_v3_small", epochs=2, input_size=64, seed=0, threads=2),
    )
    p = load_profile("openvino")
    q = dataclasses.replace(p.quantize, calibration="small", accuracy_fallback=False)
    export_bundle(
        get_target(p.target),
        run.checkpoint,
        dataclasses.replace(p, quantize=q),
        data.manifest,
        bundle,
    )
    return str(bundle)


def _stack(pid: int) -> str:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return ""
    done = subprocess.run([spy, "dump", "--native", "--pid", str(pid)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    return done.stdout


def run_trials(bundle: str, backend: str, args: argparse.Namespace, unsafe: bool) -> dict[str, Any]:
    from edgevcf.backends.base import UNSAFE_ENV

    images = args.images or _films(4)
    env = {k: v for k, v in os.environ.items() if k != UNSAFE_ENV}
    if unsafe:
        env[UNSAFE_ENV] = "1"
    cmd = [sys.executable, "-m", "edgevcf.testing.first_use", bundle, backend, str(args.threads),
           *images]  # fmt: skip
    counts = {"ok": 0, "hang": 0, "error": 0}
    seconds, first_hang, stack = [], None, ""
    for i in range(args.trials):
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            rc = proc.wait(args.timeout)
            status = "ok" if rc == 0 else "error"
            seconds.append(time.monotonic() - t0)
        except subprocess.TimeoutExpired:
            status = "hang"
            if first_hang is None:
                first_hang = i + 1
                if args.stack:
                    stack = _stack(proc.pid)
            proc.kill()
            proc.wait()
        counts[status] += 1
        print(f"  {backend} {'off' if unsafe else 'on '} trial {i + 1}/{args.trials}: {status}",
              flush=True)  # fmt: skip
    seconds.sort()
    return {
        "bundle": bundle, "backend": backend, "serialised": not unsafe, "threads": args.threads,
        "trials": args.trials, **counts, "first_hang_at": first_hang,
        "median_trial_s": round(seconds[len(seconds) // 2], 2) if seconds else None,
        "stack_of_first_hang": stack[:8000],
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", action="append", default=[], metavar="PATH:BACKEND")
    ap.add_argument("--tiny", action="store_true", help="add the test suite's tiny bundle")
    ap.add_argument("--trials", type=int, default=60, help="fresh processes per row")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds before a trial hangs")
    ap.add_argument("--images", nargs="*", help="films to score (default: full-size DICOM)")
    ap.add_argument("--no-unsafe", action="store_true", help="only the serialised rows")
    ap.add_argument("--stack", action="store_true", help="py-spy dump of the first hang")
    ap.add_argument("--machine", default=f"{os.uname().machine}-{os.cpu_count()}cpu")
    ap.add_argument("--label", default="", help="appended to the results' file name")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    from edgevcf.machine import machine_info
    from edgevcf.report import write_results

    if args.tiny:
        args.bundle.append(f"{_tiny_bundle()}:openvino")
    if not args.bundle:
        ap.error("give --bundle PATH:BACKEND and/or --tiny")
    rows = []
    for spec in args.bundle:
        bundle, _, backend = spec.rpartition(":")
        for unsafe in (False,) if args.no_unsafe else (False, True):
            rows.append(run_trials(bundle, backend, args, unsafe))
    lines = [
        f"# First inference of {args.threads} threads at once, fresh processes: {args.machine} "
        f"({time.strftime('%Y-%m-%d')})\n",
        f"`python benchmarks/first_use_race.py {' '.join(sys.argv[1:])}`\n",
        "| bundle | engine | first use serialised | trials | ok | hung | errors | first hang at "
        "| median trial s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {'/'.join(Path(r['bundle']).parts[-2:])} | {r['backend']} | "
            f"{'yes' if r['serialised'] else 'no'} "
            f"| {r['trials']} | {r['ok']} | {r['hang']} | {r['error']} | "
            f"{r['first_hang_at'] or '-'} | {r['median_trial_s']} |"
        )
    text = "\n".join(lines) + "\n"
    data = {"machine": args.machine, "machine_info": machine_info(), "rows": rows,
            "date": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip
    stem = f"{args.machine}-first-use{'-' + args.label if args.label else ''}"
    write_results(Path(args.out) / stem, data, text, indent=1)
    print(text)


if __name__ == "__main__":
    main()
