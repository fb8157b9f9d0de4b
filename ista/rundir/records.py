"""What a run writes besides its checkpoint: metrics (JSON lines), the result, its environment, timings."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from ista.rundir.atomic import write_json, write_text
from ista.rundir.files import LATENCY, RESULT

PACKAGES = ("ista", "torch", "torchvision", "numpy", "scipy", "cvxpy", "mosek", "submitit", "ffcv", "rich")


def write_metrics(path: str | Path, history: list[dict[str, Any]]) -> None:
    """The whole metrics history, one JSON object per epoch (rewritten from the checkpoint on resume)."""
    write_text(path, "".join(json.dumps(m) + "\n" for m in history))


def write_result(run_dir: str | Path, genotype_text: str, history: list[dict[str, Any]]) -> None:
    """`result.json`, written last: its presence says the run finished (summaries and status rely on it)."""
    final = history[-1] if history else {}
    result = {
        "genotype": genotype_text,
        "epochs": len(history),
        "final": {k: v for k, v in final.items() if isinstance(v, int | float) and not isinstance(v, bool)},
    }
    write_json(Path(run_dir) / RESULT, result)


def environment(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Versions, host and devices: enough to tell two runs' circumstances apart."""
    import torch

    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "gpus": gpus,
        "versions": versions,
        "git_commit": _git_commit(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        **(extra or {}),
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def record_latency(run_dir: str | Path, measured: list[dict[str, Any]]) -> None:
    """Adds timings to a run's `latency.json`, each replacing an earlier one of the same circumstances."""
    path = Path(run_dir) / LATENCY
    keys = ("device_name", "threads", "batch", "amp", "channels_last")
    kept = json.loads(path.read_text()) if path.is_file() else []
    new = {tuple(m[k] for k in keys) for m in measured}
    write_json(path, [m for m in kept if tuple(m.get(k) for k in keys) not in new] + measured)
