"""Rank-0 recovery and broadcast with two real gloo processes."""

import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ista.sparse.broadcast import recover, recover_on_rank0
from ista.sparse.measurement import draw_measurements, init_codes


def nodes(seed: int):
    A, b = draw_measurements(seed), init_codes(seed)
    return A["normal"] + A["reduce"], b["normal"] + b["reduce"]


SCENARIOS = ("", "expected", "unexpected")  # a solve; then an error the solver expects; one it does not


def worker(rank: int, port: int, out: str) -> None:
    """Each scenario in turn in one process group (a failed recovery leaves the group usable)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from datetime import timedelta

    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=20))
    try:
        for fail in SCENARIOS:
            A, b, lam = *nodes(3), 1e-5
            if rank == 1:  # rank 1's codes must not matter: it never solves
                b = [torch.full_like(x, float("nan")) for x in b]
            elif fail == "expected":
                b = [torch.full_like(x, float("inf")) for x in b]
            elif fail == "unexpected":  # here a TypeError
                lam = "1e-5"
            try:
                z = recover_on_rank0(A, b, lam)
                np.save(f"{out}/rank{rank}{fail}.npy", np.concatenate(z))
            except Exception as err:
                with open(f"{out}/rank{rank}{fail}.err", "w") as f:
                    f.write(f"{type(err).__name__}: {err}")
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks(tmp_path, free_port):
    mp.spawn(worker, args=(free_port, str(tmp_path)), nprocs=2, join=True)
    z0, z1 = np.load(tmp_path / "rank0.npy"), np.load(tmp_path / "rank1.npy")
    assert z0.dtype == np.float64 and np.array_equal(z0, z1)
    assert np.array_equal(z0, np.concatenate(recover(*nodes(3))))
    for fail in SCENARIOS[1:]:  # rank 0 raises; rank 1 learns its reason at once instead of timing out
        reason = (tmp_path / f"rank0{fail}.err").read_text()
        assert ("finite" if fail == "expected" else "TypeError") in reason
        told = (tmp_path / f"rank1{fail}.err").read_text()
        assert told == f"SolverError: sparse recovery failed on rank 0: {reason}"


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
