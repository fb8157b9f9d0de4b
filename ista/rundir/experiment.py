"""An experiment folder: one run directory per seed, the launch record, and submitit's own files; and a
protocol folder: its experiments, one per stage, and its plan.

EXPERIMENT/experiment.json    what was launched: preset, overrides, seeds, resources, job ids
EXPERIMENT/seed-<s>/          the run directory of seed s (config, metrics, checkpoint, genotype)
EXPERIMENT/seed-<s>/result.json   written by rank 0 when the run has finished
EXPERIMENT/submitit/          pickles and logs (a fresh folder per experiment: job ids restart at 1
                              on a new cluster, and a reused folder would return an old job's result)
EXPERIMENT/slots/             the local executor's CPU slots (flock'ed files), and a waiting-seed-<s>
                              file while seed s waits for one
PROTOCOL/protocol.json        the protocol's plan: its stages, their experiments and job ids
PROTOCOL/<stage>/             the experiment of each stage
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ista.rundir.atomic import write_json

RECORD = "experiment.json"
PROTOCOL_RECORD = "protocol.json"


def parse_seeds(text: str) -> list[int]:
    """`0-4`, `0,2,7` or a mix: `0-2,9`."""
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise ValueError(f"--seeds {text!r}: expected numbers and ranges such as 0-4 or 0,2,7")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if high < low:
            raise ValueError(f"--seeds {text!r}: the range {part.strip()} is empty")
        seeds.extend(range(low, high + 1))
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text!r} names a seed twice")
    return seeds


def seed_dir(experiment: Path, seed: int) -> Path:
    return experiment / f"seed-{seed}"


def slots_dir(experiment: Path) -> Path:
    return experiment / "slots"


def waiting_for_slot(run_dir: Path) -> Path:
    """Exists while the seed of `run_dir` waits for a CPU slot of the local executor."""
    return slots_dir(run_dir.parent) / f"waiting-{run_dir.name}"


def write_record(experiment: Path, record: dict[str, Any]) -> None:
    experiment.mkdir(parents=True, exist_ok=True)
    write_json(experiment / RECORD, record)


def read_record(experiment: Path) -> dict[str, Any]:
    path = Path(experiment) / RECORD
    if not path.is_file():
        raise ValueError(
            f"{experiment} is not an experiment folder (no {RECORD}); launch one with ista launch"
        )
    return json.loads(path.read_text())


def write_protocol(folder: Path, record: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / PROTOCOL_RECORD, record)


def read_protocol(folder: Path) -> dict[str, Any] | None:
    """A protocol folder's plan, or None for any other folder."""
    path = Path(folder) / PROTOCOL_RECORD
    return json.loads(path.read_text()) if path.is_file() else None
