"""Small helpers shared by the Mask R-CNN benchmark scripts (no Snakemake needed)."""

from __future__ import annotations

import datetime
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def machine(device=None):
    """One line: GPU (if any), CPU model and cores, Python and library versions."""
    import numpy
    import torch
    import torchvision

    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    gpu = (torch.cuda.get_device_name(device)
           if device is not None and device.type == "cuda" else "none")
    return (f"GPU: {gpu}; CPU: {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
            f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
            f"numpy {numpy.__version__}")


def revision():
    """The commit measured, and whether the working tree differed from it."""
    try:
        def git(*cmd):
            return subprocess.run(["git", "-C", str(ROOT), *cmd], capture_output=True,
                                  text=True, check=True).stdout.strip()

        dirty = git("status", "--porcelain", "--", "src", "benchmarks")
        return git("rev-parse", "--short", "HEAD") + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git here)"


def now():
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def write_section(path, name, body):
    """Put ``body`` between the ``<!-- name:start/end -->`` markers of ``path``, or append it."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = f"{start}\n{body.strip()}\n{end}"
    path = Path(path)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)



def cpu_seconds():
    """CPU seconds used so far, user and system: ``own`` (this process, all its threads),
    ``children`` (its child processes that have ended and been waited for) and ``machine``
    (every CPU's busy time since boot, from ``/proc/stat``; None where there is none).

    Differences between two calls say where a block's CPU went, and how much other
    processes took meanwhile (``machine`` less the other two) on a shared machine.
    """
    def used(who):
        usage = resource.getrusage(who)
        return usage.ru_utime + usage.ru_stime

    machine_s = None
    stat = Path("/proc/stat")
    if stat.exists():
        user, nice, system, _idle, _iowait, irq, softirq = map(
            int, stat.read_text().split("\n", 1)[0].split()[1:8])
        machine_s = (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")
    return {"own": used(resource.RUSAGE_SELF), "children": used(resource.RUSAGE_CHILDREN),
            "machine": machine_s}


def cores():
    """The cores this process may run on (its affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on macOS
        return os.cpu_count() or 1
