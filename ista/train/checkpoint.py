"""Checkpoints written atomically and read back with a clear error when damaged."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read; the run directory is left as it was."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Writes to a temporary file in the same folder, syncs it, then renames it over `path`.

    A job killed mid-write leaves the previous checkpoint intact (rename is atomic on POSIX).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        # Our checkpoints hold numpy arrays and plain Python values as well as tensors.
        state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as err:  # a truncated or foreign file fails in many different ways
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(err).__name__}: {err}); it is damaged or not an ista "
            "checkpoint. Move it away to restart the run from scratch."
        ) from None
    if not isinstance(state, dict) or "epoch" not in state:
        raise CheckpointError(f"{path} is not an ista checkpoint (no 'epoch' entry)")
    return state
