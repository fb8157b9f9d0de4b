"""Two-stage ISTA-NAS search, Algorithm 1 (method.md §2–§3).

Architecture parameters are the compressed codes b_j (7 numbers per node). The super-net runs the ops in
the support of z_j = Recover(A_j, b_j) with weights w_S = A_Sᵀb_j − c_j. Recovery runs on rank 0 at the
end of each epoch (and every `arch.recover_every` steps if asked); in between, supports and c are
constants. Per step the engine takes an Adam step on b with a held-out batch, then an SGD step on W.
"""

from __future__ import annotations

import time
from typing import Any

from torch import nn

from ista.config.schema import RunConfig
from ista.space.genotypes import Genotype
from ista.space.networks import Network, super_net
from ista.sparse.code import SparseCode
from ista.train.step import Method, Weights


class TwoStage(Method):
    model: Network

    def __init__(self, config: RunConfig, model: nn.Module, code: SparseCode):
        network = super_net(model)
        super().__init__(config, network)
        self.code = code
        code.on_adopt = lambda c: network.set_support(*c.supports())
        self.steps = 0
        self.recover()

    def recover(self) -> float:
        """z ← Eq. (9) for all 8 nodes on rank 0, broadcast; new supports and forward-map constants."""
        started = time.perf_counter()
        self.code.adopt(self.code.recover())
        return time.perf_counter() - started

    def arch_parameters(self) -> list[nn.Parameter]:
        return self.code.parameters()

    def arch_weights(self) -> Weights:
        return self.code.weights()

    def after_step(self) -> None:
        self.steps += 1
        every = self.config.arch.recover_every
        if every and self.steps % every == 0:
            self.recover()

    def genotype(self) -> Genotype:
        return self.code.genotype()

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        seconds = self.recover()
        return {"recovery_s": round(seconds, 6), **self.code.record(), "genotype": self.genotype().to_dict()}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "code": self.code.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.code.load_state_dict(state["code"])
        self.steps = state["steps"]
