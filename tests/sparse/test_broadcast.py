"""Rank-0 recovery and broadcast with two real gloo processes."""

import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ista.sparse.broadcast import recover, recover_on_rank0
from ista.sparse.lasso import SolverError
from ista.sparse.measurement import draw_measurements, init_codes


def nodes(seed: int):
    A, b = draw_measurements(seed), init_codes(seed)
    return A["normal"] + A["reduce"], b["normal"] + b["reduce"]


def worker(rank: int, port: int, out: str, fail: bool) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from datetime import timedelta

    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=60))
    try:
        A, b = nodes(3)
        if rank == 1:  # rank 1's codes must not matter: it never solves
            b = [torch.full_like(x, float("nan")) for x in b]
        elif fail:
            b = [torch.full_like(x, float("inf")) for x in b]
        try:
            z = recover_on_rank0(A, b)
            np.save(f"{out}/rank{rank}.npy", np.concatenate(z))
        except (ValueError, SolverError) as err:
            with open(f"{out}/rank{rank}.err", "w") as f:
                f.write(f"{type(err).__name__}: {err}")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("fail", [False, True])
def test_two_gloo_ranks(tmp_path, free_port, fail):
    mp.spawn(worker, args=(free_port, str(tmp_path), fail), nprocs=2, join=True)
    if fail:  # rank 0 says why; rank 1 learns of it at once instead of hanging in the broadcast
        assert "finite" in (tmp_path / "rank0.err").read_text()
        assert "SolverError: sparse recovery failed on rank 0" in (tmp_path / "rank1.err").read_text()
        return
    z0, z1 = np.load(tmp_path / "rank0.npy"), np.load(tmp_path / "rank1.npy")
    assert z0.dtype == np.float64 and np.array_equal(z0, z1)
    assert np.array_equal(z0, np.concatenate(recover(*nodes(3))))


def test_without_process_group_is_a_local_solve():
    A, b = nodes(0)
    assert not dist.is_initialized()
    z = recover_on_rank0(A, b)
    assert [len(x) for x in z] == [14, 21, 28, 35] * 2
    assert all(np.array_equal(x, y) for x, y in zip(z, recover(A, b), strict=True))


def test_recover_checks_its_input():
    A, b = nodes(0)
    with pytest.raises(ValueError, match="8 measurement matrices but 7 codes"):
        recover(A, b[:7])
    with pytest.raises(ValueError, match="need 7 rows; node 1 has 6"):
        recover([A[0], A[1][:6]], b[:2])
