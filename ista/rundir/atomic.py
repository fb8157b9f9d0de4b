"""Atomic writes: a file is written beside its place under a temporary name and renamed over it, so a
reader never sees half a file, and a job killed mid-write or a full disk leaves the previous one intact."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def replacing(path: str | Path, keep_suffix: bool = False) -> Iterator[Path]:
    """A temporary path beside `path` to write in the block; renamed over `path` when the block ends
    without an error, removed otherwise. `keep_suffix`: the temporary name ends like `path` (for writers
    that choose the format by it)."""
    path = Path(path)
    suffix = path.suffix if keep_suffix else ""
    tmp = path.with_name(f".{path.stem if keep_suffix else path.name}.tmp{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes | memoryview, sync: bool = False) -> None:
    """`sync`: on the disk before the rename (a checkpoint must survive a node's crash, not only a job's)."""
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")
