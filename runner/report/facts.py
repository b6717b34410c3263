"""Run facts: which stages ran, on what device, pushed to which remote."""

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from runner.report.bundle import Stages

RAN = re.compile(r"^Running stage '(?P<stage>[^']+)'")
CACHED = re.compile(r"^Stage '(?P<stage>[^']+)' (?:didn't change|is cached)")
FAILED = re.compile(r"failed to reproduce '(?P<stage>[^']+)'")


def stages_from_log(log: str) -> Stages:
    """Read `dvc repro`'s output: stages run, stages skipped as unchanged or restored, the failed one."""
    ran: list[str] = []
    cached: list[str] = []
    failed = None
    for line in log.splitlines():
        if match := RAN.match(line):
            ran.append(match["stage"])
        elif match := CACHED.match(line):
            cached.append(match["stage"])
        elif match := FAILED.search(line):
            failed = match["stage"]
    return Stages(
        ran=[stage for stage in dict.fromkeys(ran) if stage != failed],
        cached=list(dict.fromkeys(cached)),
        failed=failed,
    )


def device() -> str:
    """Return the GPU model(s) this job sees, else the CPU's model."""
    if shutil.which("nvidia-smi"):
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
            timeout=20,
        )
        names = [line.strip() for line in result.stdout.splitlines() if line.strip()]
        if result.returncode == 0 and names:
            return ", ".join(f"{count} × {name}" for name, count in _counted(names).items())
    cpuinfo = Path("/proc/cpuinfo")
    models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M) if cpuinfo.exists() else []
    return f"CPU ({models[0].strip()})" if models else "CPU"


def _counted(names: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return counts


def public_url(url: str) -> str:
    """Return a remote URL without credentials or query (which may hold signatures)."""
    parts = urlsplit(url)
    if not parts.scheme:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def remote_of(config: Any) -> str | None:
    """Return `name (url)` of the DVC project's default remote, if it has one."""
    name = (config.get("core") or {}).get("remote")
    if not name:
        return None
    url = ((config.get("remote") or {}).get(name) or {}).get("url")
    return f"{name} ({public_url(str(url))})" if url else str(name)
