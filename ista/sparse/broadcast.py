"""Recovery of all nodes on rank 0, broadcast to every rank (method.md §2.3, field notes §7.1).

Deciding the architecture on one rank and sending it to the others is what keeps ranks from deriving
different architectures (NNI #5013, #5110). The solve and the broadcast live in one function, so no
caller can leave the ranks out of step; without a process group it is a plain local solve.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ista.sparse.errors import SolverError
from ista.sparse.lasso import LAMBDA, as_float64, solve_lasso


def recover(
    A: Sequence[np.ndarray], b: Sequence[Any], lam: float = LAMBDA, solver: str = "exact"
) -> list[np.ndarray]:
    """z_j = Eq. (9) for each node, in one batched solve (columns padded with zeros to the widest A_j)."""
    if len(A) != len(b):
        raise ValueError(f"got {len(A)} measurement matrices but {len(b)} codes")
    if not A:
        return []
    widths = [a.shape[-1] for a in A]
    n = max(widths)
    padded = np.zeros((len(A), A[0].shape[0], n))
    for i, a in enumerate(A):
        if a.shape[0] != padded.shape[1]:
            raise ValueError(
                f"all measurement matrices need {padded.shape[1]} rows; node {i} has {a.shape[0]}"
            )
        padded[i, :, : a.shape[1]] = a
    codes = np.stack([as_float64(x, f"b[{i}]") for i, x in enumerate(b)])
    z = solve_lasso(padded, codes, lam, solver)  # padding columns are zero: they never change A z
    return [z[i, :w].copy() for i, w in enumerate(widths)]


def recover_on_rank0(
    A: Sequence[np.ndarray], b: Sequence[Any], lam: float = LAMBDA, solver: str = "exact", src: int = 0
) -> list[np.ndarray]:
    """`recover` on rank `src`, then every rank receives rank src's z (float64).

    Other ranks never solve and ignore their own b. If the solve fails on rank src, whatever the error, it
    sends NaNs and then its reason, so the other ranks raise `SolverError` with that reason at once instead
    of waiting in the broadcast until the backend's timeout (NCCL's watchdog: 30 minutes by default).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return recover(A, b, lam, solver)
    widths = [a.shape[-1] for a in A]
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    payload = torch.full((sum(widths),), float("nan"), dtype=torch.float64, device=device)
    error: Exception | None = None
    if dist.get_rank() == src:
        try:
            payload.copy_(torch.from_numpy(np.concatenate(recover(A, b, lam, solver))))
        except Exception as err:  # any error: the other ranks are waiting in the broadcast below
            error = err
    dist.broadcast(payload, src)
    z = payload.cpu().numpy()
    if np.isnan(z).any():  # only then a second message: rank src's reason
        box = [f"{type(error).__name__}: {error}" if error else "its solution is not finite"]
        dist.broadcast_object_list(box, src)
        if error is not None:
            raise error
        raise SolverError(f"sparse recovery failed on rank {src}: {box[0]}")
    return np.split(z, np.cumsum(widths)[:-1])
