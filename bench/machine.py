"""What machine a benchmark ran on, for its JSON result (``from machine import machine``)."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or what platform knows)."""
    with contextlib.suppress(OSError, StopIteration):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(x.split(":", 1)[1].strip() for x in lines if x.startswith("model name"))
    return platform.processor() or platform.machine()


def machine() -> dict:
    """Python, torch, CPU (model, cores, torch threads) and the GPU when there is one."""
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def process_memory_mb(pid: int | str = "self", field: str = "VmHWM") -> float:
    """VmRSS (now) or VmHWM (peak) of process ``pid`` in MiB, from /proc."""
    with open(f"/proc/{pid}/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


def machine_line() -> str:
    """One line for a table caption: ``2-core AMD EPYC ..., CPU only``."""
    return f"{os.cpu_count()}-core {cpu_model()}, CPU only"
