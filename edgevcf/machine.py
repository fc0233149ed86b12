"""The machine a result was measured on: one description for every benchmark and report.

Speed-ups, and the last bits of float results, differ between CPU kinds (a 2-core "AMD EPYC"
may be Zen 4 or Zen 5, an Intel Xeon may have AMX or not), so every result carries
:func:`machine_info` and results files are named by :func:`machine_label` (results of another
machine kind are added beside, never over, this one's).
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any

from edgevcf import __version__

_ISA_FLAGS = (
    "avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "amx_tile", "amx_int8", "amx_bf16", "amx_fp16", "asimd", "asimddp", "sve", "i8mm", "bf16",
)  # fmt: skip


def machine_info() -> dict[str, Any]:
    """CPU, cores, governor, Jetson power mode where readable (recorded with every result)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "edgevcf": __version__,
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        cpuinfo = []
    for line in cpuinfo:
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "model name" and "cpu" not in info:
            info["cpu"] = value
        elif key == "cpu family" and "cpu_family" not in info:
            info["cpu_family"] = value
        elif key == "flags" and "cpu_isa" not in info:
            # What decides which kernels run (and so speed-ups and the last bits of results):
            # a 2-core "AMD EPYC" may be Zen 4 or Zen 5, an Intel Xeon may have AMX or not.
            info["cpu_isa"] = [f for f in value.split() if f in _ISA_FLAGS]
    for key, path in (
        ("governor", "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        ("jetson_model", "/proc/device-tree/model"),
        ("l4t", "/etc/nv_tegra_release"),
    ):
        try:
            info[key] = Path(path).read_text(errors="replace").strip("\x00\n ").splitlines()[0]
        except (OSError, IndexError):
            continue
    if "jetson_model" in info:
        import shutil
        import subprocess

        if shutil.which("nvpmodel"):
            try:
                out = subprocess.run(
                    ["nvpmodel", "-q"], capture_output=True, text=True, timeout=10
                ).stdout
                info["power_mode"] = " ".join(out.split())[:120]
            except (OSError, subprocess.SubprocessError):
                pass
    return info


def machine_label(info: dict[str, Any] | None = None) -> str:
    """A file-name label of the machine kind: ``amd-epyc-zen5-2cpu``, ``intel-xeon-amx-2cpu``,
    ``nvidia-jetson-orin-nano-6cpu``; the architecture where the CPU is not recognised."""
    info = machine_info() if info is None else info
    cpu = str(info.get("cpu", "")).lower()
    isa = set(info.get("cpu_isa", []))
    family = str(info.get("cpu_family", ""))
    if "jetson_model" in info:
        kind = re.sub(r"[^a-z0-9]+", "-", str(info["jetson_model"]).lower())
        kind = kind.replace("-developer-kit", "").strip("-")
    elif "epyc" in cpu or cpu.startswith("amd"):
        zen = {"26": "-zen5", "25": "-zen4" if "avx512f" in isa else "-zen3"}.get(family, "")
        kind = ("amd-epyc" if "epyc" in cpu else "amd") + zen
    elif "xeon" in cpu or "intel" in cpu:
        kind = ("intel-xeon" if "xeon" in cpu else "intel") + ("-amx" if "amx_int8" in isa else "")
    else:
        kind = str(info.get("machine") or platform.machine()).lower()
    return f"{kind}-{info.get('cpu_count') or os.cpu_count()}cpu"
