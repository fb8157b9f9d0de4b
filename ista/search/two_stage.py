"""Two-stage ISTA-NAS search, Algorithm 1 (method.md §2–§3).

Architecture parameters are the compressed codes b_j (7 numbers per node). The super-net runs the ops in
the support of z_j = Recover(A_j, b_j) with weights w_S = A_Sᵀb_j − c_j. Recovery runs on rank 0 at the
end of each epoch (and every `recover_every` steps if asked); in between, supports and c are constants.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from ista.config.schema import RunConfig
from ista.distributed.runtime import check_agreement
from ista.search.bilevel import BilevelSearch, Weights
from ista.space.genotypes import Genotype
from ista.sparse.broadcast import recover_on_rank0
from ista.sparse.measurement import CELL_TYPES, check_same_measurements, draw_measurements, init_codes
from ista.sparse.support import cell_weights, genotype_from_codes, node_maps


def adopt(task, z: dict[str, list[np.ndarray]]) -> None:
    """Makes z a task's current code: supports, forward-map constants and the ops the super-net runs. Then
    checks that every rank holds the same genotype (NNI users got one architecture per rank)."""
    task.z, task.maps = z, node_maps(task.A, z, task.device)
    task.model.set_support(*([m.support for m in task.maps[cell]] for cell in CELL_TYPES))
    check_agreement(genotype_from_codes(z["normal"], z["reduce"]).to_text(), "genotype")


class IstaSearch(BilevelSearch):
    def __init__(self, config: RunConfig, model: nn.Module, device: torch.device):
        self.device = device
        self.A = draw_measurements(config.seed)  # identical on every rank: drawn from the seed alone
        b = init_codes(config.seed)
        self.codes = {cell: [nn.Parameter(x.to(device)) for x in b[cell]] for cell in CELL_TYPES}
        super().__init__(config, model, [p for cell in CELL_TYPES for p in self.codes[cell]])
        self.steps = 0
        self.recover()

    def recover(self) -> float:
        """z ← Eq. (9) for all 8 nodes on rank 0, broadcast; new supports and forward-map constants."""
        started = time.perf_counter()
        A = [a for cell in CELL_TYPES for a in self.A[cell]]
        z = recover_on_rank0(A, self.arch_parameters, self.config.arch.lam, self.config.arch.solver)
        adopt(self, {cell: z[4 * i : 4 * i + 4] for i, cell in enumerate(CELL_TYPES)})
        return time.perf_counter() - started

    def arch_weights(self) -> Weights:
        normal, reduce = (cell_weights(self.codes[cell], self.maps[cell]) for cell in CELL_TYPES)
        return normal, reduce

    def train_step(self, batch, held_out):
        stats = super().train_step(batch, held_out)
        self.steps += 1
        if self.config.arch.recover_every and self.steps % self.config.arch.recover_every == 0:
            self.recover()
        return stats

    def genotype(self) -> Genotype:
        return genotype_from_codes(self.z["normal"], self.z["reduce"])

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        seconds = self.recover()
        return {
            "lr": self.lr,
            "recovery_s": round(seconds, 6),
            "z": {cell: [z.tolist() for z in self.z[cell]] for cell in CELL_TYPES},
            "support": {cell: [m.support.tolist() for m in self.maps[cell]] for cell in CELL_TYPES},
            "genotype": self.genotype().to_dict(),
        }

    def state_dict(self) -> dict[str, Any]:
        # A is drawn once and saved with the rest, so a requeued job resumes the very same search.
        return {**super().state_dict(), "A": self.A, "z": self.z, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        check_same_measurements(self.A, state["A"])
        self.steps = state["steps"]
        adopt(self, state["z"])
