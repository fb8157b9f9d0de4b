"""Checkpoints written atomically and read back safely, with a clear error when damaged or foreign.

Reading never executes code from the file: `torch.load(weights_only=True)` accepts tensors and plain
values only. Checkpoints written before the loading became safe also held numeric numpy arrays (A, z);
rebuilding one only copies bytes into an array, so those few constructors are allowed too, and nothing
else.
"""

from __future__ import annotations

import importlib
import io
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from ista.rundir.atomic import write_bytes


def _multiarray() -> ModuleType:
    """numpy's `multiarray` module, where old checkpoints' arrays were rebuilt from."""
    try:
        return importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy < 2
        return importlib.import_module("numpy.core.multiarray")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or written; the run directory is left as it was."""


_MULTIARRAY = _multiarray()
# in the form `torch.serialization.safe_globals` takes (a global, or a global and its name)
NUMPY_ARRAYS: list[Callable[..., Any] | tuple[Callable[..., Any], str]] = [
    np.ndarray, np.dtype, _MULTIARRAY._reconstruct, _MULTIARRAY.scalar,
    *(type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool"))]  # fmt: skip


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Writes to a temporary file in the same folder, syncs it, then renames it over `path`.

    A job killed mid-write, or a full disk, leaves the previous checkpoint intact (rename is atomic on
    POSIX); a failed write is an error naming the path.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)  # in memory first: torch's writer turns a failed write into a bare RuntimeError
    try:
        write_bytes(path, buffer.getbuffer(), sync=True)
    except OSError as err:
        raise CheckpointError(
            f"cannot write checkpoint {path}: {err.strerror or err}; the previous checkpoint is intact. "
            "Free space (or raise the quota) and run the same command again to resume"
        ) from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with torch.serialization.safe_globals(NUMPY_ARRAYS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as err:
        needs = re.search(r"GLOBAL (\S+)", str(err))
        if needs is None:  # not a refused object: bytes that are no pickle at all
            detail = next(iter(re.findall(r"Unsupported .*", str(err))), err)
            raise damaged(path, "UnpicklingError", detail) from None
        raise CheckpointError(
            f"refused to read checkpoint {path}: it holds more than tensors and plain values (it needs "
            f"{needs.group(1)} to be unpickled), and reading it could run code. Nothing in it was run. ista "
            "never writes such files: move it away to restart the run anew"
        ) from None
    except Exception as err:  # a truncated or foreign file fails in many different ways
        raise damaged(path, type(err).__name__, err) from None
    if not isinstance(state, dict) or "epoch" not in state:
        raise CheckpointError(f"{path} is not an ista checkpoint (no 'epoch' entry)")
    return state


def damaged(path: Path, kind: str, detail) -> CheckpointError:
    return CheckpointError(
        f"cannot read checkpoint {path} ({kind}: {detail}); it is damaged or not an ista checkpoint. Move it "
        "away to restart the run from scratch."
    )


def rng_state() -> dict[str, torch.Tensor]:
    """This process's random state (CPU, and the current GPU's once CUDA is in use), for a checkpoint."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def resume_point(state: dict[str, Any], path: Path, rank: int, world: int):
    """(epoch to start, this rank's position inside it or None, this rank's RNG state) of a checkpoint.

    A step checkpoint holds every rank's position (its data shard, augmentation generators and running
    sums), so only as many ranks as wrote it can finish that epoch; at an epoch boundary any number can go
    on (each rank then takes rank 0's RNG state if the count changed)."""
    rngs = state["rng"] if "rng" in state else [{"cpu": r} for r in state["torch_rng"]]  # previous release
    at = state.get("position")
    if at is None:
        return state["epoch"] + 1, None, rngs[rank] if len(rngs) == world else rngs[0]
    if at["world_size"] != world:
        raise CheckpointError(
            f"{path} was written in the middle of epoch {at['epoch']} (after step {at['step']}) by "
            f"{at['world_size']} ranks, and this run has {world}: each rank's data shard and random state "
            f"are in it, so resume with {at['world_size']} ranks (e.g. the same --nodes and "
            "--tasks-per-node); other counts can take over at an epoch boundary"
        )
    return at["epoch"], at["ranks"][rank], rngs[rank]
