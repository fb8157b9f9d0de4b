import math

import pytest
import torch

from ista.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ista.train.schedules import learning_rate


def cosine_lr(epoch, epochs, lr, lr_min=0.0):
    return learning_rate(epoch, epochs, lr, schedule="cosine", lr_min=lr_min)


def test_cosine_is_an_explicit_function_of_the_epoch():
    assert cosine_lr(0, 50, 0.2) == 0.2  # the first epoch runs at the initial lr
    assert cosine_lr(25, 50, 0.2) == pytest.approx(0.1)
    assert cosine_lr(49, 50, 0.2, 0.0) == pytest.approx(0.2 * (1 + math.cos(math.pi * 49 / 50)) / 2)
    assert cosine_lr(10, 50, 0.1, 1e-3) == pytest.approx(
        1e-3 + (0.1 - 1e-3) * (1 + math.cos(math.pi / 5)) / 2
    )
    with pytest.raises(ValueError):
        cosine_lr(50, 50, 0.2)


def test_checkpoint_round_trip_is_atomic(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"epoch": 3, "w": torch.arange(4)}, path)
    save_checkpoint({"epoch": 4, "w": torch.arange(5)}, path)
    state = load_checkpoint(path)
    assert state["epoch"] == 4 and torch.equal(state["w"], torch.arange(5))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary left behind


def test_damaged_checkpoints_are_clear_errors(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"epoch": 1, "w": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:500])  # truncated, as by a full disk
    with pytest.raises(CheckpointError, match="damaged or not an ista checkpoint"):
        load_checkpoint(path)
    torch.save({"weights": 1}, path)
    with pytest.raises(CheckpointError, match="no 'epoch' entry"):
        load_checkpoint(path)
