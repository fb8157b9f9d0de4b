"""Reading a run directory back, from its files alone (a laptop with a copy of the runs can)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ista.rundir.files import CONFIG, METRICS


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's resolved settings, as written; a folder without them is a clear error."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise ValueError(f"{run_dir} is not a run directory (no {CONFIG})")
    return json.loads(path.read_text())


def read_json(run_dir: str | Path, name: str, default: Any = None) -> Any:
    """One of the run's JSON records, or `default` where the run has not written it."""
    path = Path(run_dir) / name
    return json.loads(path.read_text()) if path.is_file() else default


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The epochs of metrics.jsonl; a line cut off by a crash ends the list rather than the reading."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    history = []
    for line in path.read_text().splitlines():
        try:
            history.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return history
