"""A fuzzing campaign's summaries: the JSON record and the Markdown table of the results files.

Kept apart from the harness so that running inputs and presenting counts change independently;
per-input records stay out of the files, failures are kept in full.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict
from typing import Any

from edgevcf.machine import machine_label
from edgevcf.testing.fuzz_harness import FAILURES, FormatResult


def versions() -> dict[str, str]:
    """Library versions the readers ran with."""
    import numpy
    import PIL
    import pydicom

    out = {"python": platform.python_version(), "numpy": numpy.__version__,
           "pydicom": pydicom.__version__, "Pillow": PIL.__version__}  # fmt: skip
    for mod in ("pylibjpeg", "openjpeg", "hypothesis"):
        try:
            from importlib.metadata import version

            out[mod if mod != "openjpeg" else "pylibjpeg-openjpeg"] = version(
                mod if mod != "openjpeg" else "pylibjpeg-openjpeg"
            )
        except Exception:
            continue
    return out


def report(
    results: list[FormatResult], args: dict[str, Any], sweep: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON summary (per-input records are left out; failures are kept in full)."""
    return {
        "machine": machine_label(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "args": args,
        "versions": versions(),
        "clean": all(r.clean for r in results) and not (sweep or {}).get("failures"),
        "formats": {
            r.fmt: {k: v for k, v in asdict(r).items() if k not in ("records", "fmt")}
            for r in results
        },
        "pydicom_sweep": sweep,
    }


def markdown(rep: dict[str, Any]) -> str:
    """A short human summary of :func:`report`."""
    a = rep["args"]
    lines = [
        "# Fuzzing `read_image` (DICOM and PNG)",
        "",
        f"Machine {rep['machine']}, {rep['created']}; seed {a['seed']}, per-input time limit "
        f"{a['timeout_s']:g} s, worker address space {a['memory_mb']} MB; "
        + ", ".join(f"{k} {v}" for k, v in rep["versions"].items())
        + ".",
        "",
        "| format | inputs | read OK | refused (DataError) | unhandled exceptions | bad output "
        "| hangs | worker deaths | refused checked via predict_many | refused that got a score "
        "| time s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    seeds = rep.get("seeds", {})
    for fmt, r in rep["formats"].items():
        c, s = r["counts"], r.get("scoring", {})
        lines.append(
            f"| {fmt} | {r['n']} | {c['ok']} | {c['refused']} | {c['unhandled']} | "
            f"{c['bad_output']} | {c['hang']} | {c['died']} | "
            f"{s.get('refused_checked', 'n/a')} | {s.get('refused_scored', 'n/a')} | "
            f"{r['seconds']:.0f} |"
        )
    if seeds:
        lines += [
            "",
            "Seed files: "
            + "; ".join(
                f"{fmt}: " + ", ".join(f"{n} {origin}" for origin, n in sorted(c.items()))
                for fmt, c in seeds.items()
            )
            + " (pydicom: its small single-sample monochrome test files; synthetic: "
            "`edgevcf data synth`; variant: a synthetic film rewritten per reader branch).",
        ]
    sw = rep.get("pydicom_sweep")
    if sw:
        c = sw["counts"]
        lines += [
            "",
            f"All {sw['files']} files pydicom ships for its tests, unmutated (colour, multi-frame, "
            f"large and deliberately broken ones included): {c['ok']} read, {c['refused']} "
            f"refused, {sum(c[k] for k in FAILURES)} failures.",
        ]
    lines += ["", f"Verdict: {'clean' if rep['clean'] else 'FINDINGS (see below)'}.", ""]
    for fmt, r in rep["formats"].items():
        lines += [f"## {fmt}", ""]
        s = r.get("scoring")
        if s:
            extra = ", ".join(f"{k} {v}" for k, v in s.items() if k != "problems")
            lines += [f"predict_many check: {extra}.", ""]
        lines += ["| mutator | inputs | ok | refused | failures |", "|---|---|---|---|---|"]
        for name, c in r["by_mutator"].items():
            fails = sum(c.get(k, 0) for k in FAILURES)
            lines.append(
                f"| {name} | {sum(c.values())} | {c.get('ok', 0)} | {c.get('refused', 0)} "
                f"| {fails} |"
            )
        lines += ["", "Most frequent refusal causes:", ""]
        lines += [f"- {n} x {why}" for why, n in list(r["refusal_reasons"].items())[:12]]
        if r["failures"]:
            lines += ["", "Failures:", ""]
            for f in r["failures"][:30]:
                lines.append(
                    f"- input {f['i']} ({f.get('seed_name')}; {'; '.join(f.get('ops', []))}): "
                    f"{f['outcome']}: {f.get('error')}"
                )
        lines.append("")
    return "\n".join(lines)
