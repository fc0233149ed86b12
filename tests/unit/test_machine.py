"""The one machine description: every result is labelled with the machine kind it ran on."""

from __future__ import annotations

from edgevcf.machine import machine_info, machine_label


def test_this_machine_is_described() -> None:
    info = machine_info()
    assert info["cpu_count"] and info["machine"] and "edgevcf" in info
    assert machine_label(info).endswith(f"-{info['cpu_count']}cpu")


def test_labels_tell_the_cpu_kinds_apart() -> None:
    zen5 = {"cpu": "AMD EPYC 9B45", "cpu_family": "26", "cpu_isa": ["avx512f"], "cpu_count": 2}
    zen4 = {"cpu": "AMD EPYC 9B14", "cpu_family": "25", "cpu_isa": ["avx512f"], "cpu_count": 2}
    amx = {"cpu": "Intel(R) Xeon(R) Platinum 8481C", "cpu_isa": ["amx_int8"], "cpu_count": 2}
    xeon = {"cpu": "Intel(R) Xeon(R) CPU @ 2.20GHz", "cpu_isa": ["avx2"], "cpu_count": 4}
    orin = {"jetson_model": "NVIDIA Jetson Orin Nano Developer Kit", "cpu_count": 6}
    arm = {"machine": "aarch64", "cpu_count": 8}
    labels = [machine_label(i) for i in (zen5, zen4, amx, xeon, orin, arm)]
    assert labels == [
        "amd-epyc-zen5-2cpu", "amd-epyc-zen4-2cpu", "intel-xeon-amx-2cpu",
        "intel-xeon-4cpu", "nvidia-jetson-orin-nano-6cpu", "aarch64-8cpu",
    ]  # fmt: skip
