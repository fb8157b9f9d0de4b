"""What a run writes into its directory, in one place: the claim (the directory holds this run, or a
resumable one with the same settings and data), the records of its start, and, as it goes, each epoch's
checkpoint, metrics, genotype and scalars, and step checkpoints with every rank's random state and
position. Rank 0 alone writes; every rank takes part in the gathers."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from ista.config.io import ConfigError, config_from_dict, config_to_dict, flatten_config
from ista.config.schema import RunConfig
from ista.data.datasets import Facts
from ista.distributed import runtime
from ista.rundir import records
from ista.rundir.atomic import write_json
from ista.rundir.files import CHECKPOINT, CONFIG, DATA, DRAWS, ENV, GENOTYPE, METRICS
from ista.rundir.lock import RunLock
from ista.rundir.read import read_config, read_json
from ista.train.checkpoint import rng_state, save_checkpoint
from ista.train.step import StepEngine


def claim(config: RunConfig, run_dir: Path, resume: bool, facts: Facts | None = None) -> bool:
    """Creates the run directory or checks it holds the same run (the same settings and, given `facts`, the
    same data), and writes the settings; True if there is a checkpoint to resume."""
    run_dir.mkdir(parents=True, exist_ok=True)
    has_checkpoint = (run_dir / CHECKPOINT).exists()
    if resume and not has_checkpoint:
        raise ConfigError(f"--resume: no {CHECKPOINT} in {run_dir}")
    if (run_dir / CONFIG).exists() and has_checkpoint:
        saved = config_from_dict(read_config(run_dir))
        if not saved.data.size:  # written before data.size was recorded
            saved = replace(saved, data=replace(saved.data, size=config.data.size))
        if saved != config:
            new, old = flatten_config(config), flatten_config(saved)
            diff = ", ".join(f"{k}: {old[k]!r} → {new[k]!r}" for k in new if new[k] != old[k])
            raise ConfigError(
                f"{run_dir} holds a run with other settings ({diff}); use another --out to start anew"
            )
        before = read_json(run_dir, DATA)
        if facts is not None and before is not None:
            now = json.loads(json.dumps(facts.to_dict()))
            if changed := [k for k in now if not _same(before.get(k), now[k])]:
                raise ConfigError(
                    f"{run_dir} was trained on other data: its {', '.join(changed)} differ from what "
                    f"{config.data.root or config.data.beton or config.data.dataset} holds now (see "
                    f"{run_dir / DATA}); use another --out to start anew"
                )
    write_json(run_dir / CONFIG, config_to_dict(config))
    return has_checkpoint


def _same(a: Any, b: Any) -> bool:
    """Equal, floats to a relative 1e-6 (sums over the data may differ in their last bits elsewhere)."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6)
    return a == b


class Scalars(Protocol):  # `ista.report.tensorboard.EpochScalars`
    def epoch(self, metrics: dict[str, Any]) -> None: ...


@dataclass
class Recorder:
    run_dir: Path
    task: StepEngine
    history: list[dict[str, Any]]  # the finished epochs' metrics (from the checkpoint on resume)
    lock: RunLock | None  # rank 0's, held for the whole run; None on the other ranks, which write nothing
    scalars: Scalars | None = None

    def start(self, facts: dict[str, Any], data: Facts, files: dict[str, Any], genotype: dict | None) -> None:
        """The run's environment, data, metrics so far, the extra `files`, a training's genotype, and a
        sparse-coding search's draws (A and the initial b)."""
        if self.lock is None:
            return
        write_json(self.run_dir / ENV, records.environment(facts))
        write_json(self.run_dir / DATA, data.to_dict())
        records.write_metrics(self.run_dir / METRICS, self.history)
        for name, value in files.items():
            write_json(self.run_dir / name, value)
        if genotype is not None:
            write_json(self.run_dir / GENOTYPE, genotype)
        code = getattr(self.task.method, "code", None)
        if code is not None:
            write_json(self.run_dir / DRAWS, code.drawn())

    def checkpoint(self, epoch: int, position: dict[str, Any] | None = None) -> None:
        """Every rank's RNG (and position in the epoch) gathered; rank 0 writes the checkpoint."""
        ranks = runtime.gather_objects({"rng": rng_state(), "position": position})
        if self.lock is None:
            return
        state = {"epoch": epoch, "task": self.task.state_dict(), "history": self.history,
                 "rng": [r["rng"] for r in ranks]}  # fmt: skip
        if position is not None:  # a step checkpoint: `epoch` is the last finished one
            where = {k: position[k] for k in ("epoch", "step")}
            state["position"] = {**where, "world_size": len(ranks), "ranks": [r["position"] for r in ranks]}
        self.lock.check()  # a run that lost its directory to another never overwrites that run's files
        save_checkpoint(state, self.run_dir / CHECKPOINT)

    def step_checkpoint(self, epoch: int, position: dict[str, Any]) -> None:
        """Inside `epoch`: the checkpoint of the epoch before, with every rank's position."""
        self.checkpoint(epoch - 1, position)

    def epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        self.history.append(metrics)
        self.checkpoint(epoch)  # first the checkpoint, then what it vouches for
        if self.lock is None:
            return
        records.write_metrics(self.run_dir / METRICS, self.history)
        if "genotype" in metrics:
            write_json(self.run_dir / GENOTYPE, metrics["genotype"])
        if self.scalars is not None:
            self.scalars.epoch(metrics)
