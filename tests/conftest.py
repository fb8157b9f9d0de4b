"""Shared fixtures: data the project makes itself, in the layouts users have on disk."""

import pickle

import numpy as np
import pytest


@pytest.fixture
def write_cifar():
    """Writes a CIFAR-10 folder in the standard python layout, with random images; returns the folder."""

    def write(root, per_batch=20, seed=0):
        rng = np.random.default_rng(seed)
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            images = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
            batch = {b"data": images, b"labels": rng.integers(0, 10, per_batch).tolist()}
            with open(folder / name, "wb") as f:
                pickle.dump(batch, f)
        return folder

    return write
