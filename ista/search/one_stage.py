"""One-stage ISTA-NAS, Algorithm 2 (method.md §6): search and evaluation training in one run.

The full target-size network holds all 98 candidates per cell and runs the support only. b and W learn
from the same batch and loss (main + auxiliary). After every search epoch the nodes still searching are
re-solved; node j terminates when ‖z_new − z_prev‖₂ ≤ threshold. A terminated node's b is frozen (its
gradient stays None, so Adam's momentum and weight decay cannot move it: §12.7) and the BN affine
parameters of its candidate ops start training, absorbing the now constant weight. When all 8 nodes have
terminated, one more epoch runs as the code does (§12.9), then the same weights train for `epochs` more
epochs with the configured schedule and drop-path.

Choices where the code has quirks (§6.4): termination flags compare with z_new even when the parameter
cap rejects z_new (as the code does); nodes still searching after `max_search_epochs` are frozen as they
are, and the metrics say so. With `arch.recover_every`, the nodes still searching are also re-solved
every N steps (the cap applies); z_prev of the termination test stays the previous epoch's.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from torch import nn

from ista.config.schema import RunConfig
from ista.space.encoding import CODE_SIZE, NODE_OFFSETS, NODE_SIZES, flat_indices
from ista.space.genotypes import CELL_TYPES, Genotype
from ista.space.networks import Network, super_net
from ista.sparse.code import CELL_NODES, SparseCode, Z, as_arrays, as_tensors, node_name
from ista.sparse.support import top_support
from ista.train.schedules import drop_path_at, learning_rate
from ista.train.step import Method, Weights


def candidate_sizes(model: Network) -> tuple[int, dict[str, np.ndarray]]:
    """(parameters outside the cells' candidate ops, per cell type each of the 98 candidates' parameters
    summed over the cells of that type), auxiliary head excluded as in `count_params_m`."""
    per_candidate = {cell: np.zeros(CODE_SIZE, dtype=np.int64) for cell in CELL_TYPES}
    for cell in model.search_cells():
        per_candidate["reduce" if cell.reduction else "normal"] += [
            sum(p.numel() for p in op.parameters()) for op in cell.ops
        ]
    total = sum(p.numel() for name, p in model.named_parameters() if "auxiliary" not in name)
    return total - int(sum(v.sum() for v in per_candidate.values())), per_candidate


class OneStage(Method):
    model: Network

    def __init__(self, config: RunConfig, model: nn.Module, code: SparseCode):
        network = super_net(model)
        super().__init__(config, network)
        self.code = code
        code.on_adopt = lambda c: network.set_support(*c.supports())
        self.frozen = {node: False for node in CELL_NODES}
        self.terminated_at: dict[str, int] = {}  # "normal/0" → epoch after whose recovery it terminated
        self.train_start: int | None = None  # first epoch of the training phase
        self.steps = 0
        self.sizes = candidate_sizes(network)
        self._apply_freezing()
        self.code.adopt(self.code.recover())
        self.previous: Z = self.code.z  # z_prev of the termination test: the last epoch's adopted z

    def total_epochs(self) -> int:
        """The search phase at most (and its one frozen epoch), then `epochs` of training."""
        return self.config.epochs + self.config.onestage.max_search_epochs + 1

    # --- the architecture --------------------------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        return self.code.parameters()

    def arch_weights(self) -> Weights:
        return self.code.weights()

    def genotype(self) -> Genotype:
        return self.code.genotype()

    def searching(self) -> list[tuple[str, int]]:
        return [node for node in CELL_NODES if not self.frozen[node]]

    def target_params_m(self, z: Z) -> float:
        """Parameters (M) of z's one-stage target net of this run's size (the cap's measure), without
        building it: the super-net holds that net's every op, so they are the super-net's parameters
        outside the cells' candidates plus those of the candidates on z's supports."""
        outside, per_candidate = self.sizes
        chosen = (
            per_candidate[cell][flat]
            for cell in CELL_TYPES
            for node in flat_indices([top_support(z_j) for z_j in z[cell]])
            for flat in node
        )
        return int(outside + sum(chosen)) / 1e6

    def _capped(self, z: Z) -> tuple[bool, float]:
        """(rejected, params in M) of z's genotype under `onestage.param_cap`."""
        params = self.target_params_m(z)
        cap = self.config.onestage.param_cap
        return bool(cap) and params >= cap, params

    def _apply_freezing(self) -> None:
        """b_j of a terminated node takes no gradient; its ops' BN affine parameters train (§6.1)."""
        for cell_type, j in CELL_NODES:
            frozen = self.frozen[(cell_type, j)]
            self.code.codes[cell_type][j].requires_grad_(not frozen)
            for cell in self.model.search_cells():
                if (cell_type == "reduce") != cell.reduction:
                    continue
                for op in cell.ops[NODE_OFFSETS[j] : NODE_OFFSETS[j] + NODE_SIZES[j]]:
                    for bn in op.modules():
                        if isinstance(bn, nn.modules.batchnorm._BatchNorm) and bn.affine:
                            bn.weight.requires_grad_(frozen)
                            bn.bias.requires_grad_(frozen)

    # --- the two phases ----------------------------------------------------------------------------
    @property
    def phase(self) -> str:
        return "search" if self.train_start is None else "train"

    def schedule(self, epoch: int) -> tuple[float, float]:
        o, s = self.config.optim, self.config.onestage
        if self.train_start is None:  # the search: a constant lr (after the warm-up, if any), no drop-path
            lr = learning_rate(
                epoch, s.max_search_epochs + 1, s.search_lr, schedule="constant", warmup=o.warmup_epochs
            )
            return lr, 0.0
        e, epochs = epoch - self.train_start, self.config.epochs
        lr = learning_rate(e, epochs, o.lr, schedule=o.schedule, lr_min=o.lr_min)
        return lr, drop_path_at(e, epochs, self.config.network.drop_path)

    def after_step(self) -> None:
        self.steps += 1
        every = self.config.arch.recover_every
        if not (every and self.steps % every == 0 and self.train_start is None and self.searching()):
            return
        z_new = self.code.recover(self.searching())
        if not self._capped(z_new)[0]:
            self.code.adopt(z_new)

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        metrics: dict[str, Any] = {"phase": self.phase}
        if self.train_start is not None:
            self.done = epoch - self.train_start + 1 >= self.config.epochs
        elif all(self.frozen.values()):  # the extra epoch with everything frozen has run (§12.9)
            self.train_start = epoch + 1
        else:
            metrics.update(self._search_epoch_end(epoch))
        metrics["genotype"] = self.genotype().to_dict()
        return metrics

    def _search_epoch_end(self, epoch: int) -> dict[str, Any]:
        started = time.perf_counter()
        s = self.config.onestage
        searching = self.searching()
        z_new = self.code.recover(searching)
        distance = {
            node_name((c, j)): float(np.linalg.norm(z_new[c][j] - self.previous[c][j])) for c, j in CELL_NODES
        }
        rejected, params = self._capped(z_new)
        newly = [node for node in searching if distance[node_name(node)] <= s.threshold]
        forced = [node for node in searching if node not in newly] if epoch + 1 >= s.max_search_epochs else []
        for node in newly + forced:
            self.frozen[node] = True
            self.terminated_at[node_name(node)] = epoch
        if not rejected:
            self.code.adopt(z_new)
        self.previous = self.code.z
        self._apply_freezing()
        return {
            "recovery_s": round(time.perf_counter() - started, 6),
            "z_distance": distance,
            "terminated": [node_name(n) for n in newly],
            "forced": [node_name(n) for n in forced],
            "terminated_at": dict(self.terminated_at),  # node → the epoch after which it terminated
            "searching": [node_name(n) for n in self.searching()],
            "candidate_params_m": round(params, 6),
            "rejected": rejected,
            **self.code.record(),
        }

    # --- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "code": self.code.state_dict(),
            "previous": as_tensors(self.previous),
            "frozen": [self.frozen[node] for node in CELL_NODES],
            "terminated_at": self.terminated_at,
            "train_start": self.train_start,
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.frozen = dict(zip(CELL_NODES, state["frozen"], strict=True))
        self.terminated_at, self.train_start = state["terminated_at"], state["train_start"]
        self.steps, self.previous = state["steps"], as_arrays(state["previous"])
        self._apply_freezing()
        self.code.load_state_dict(state["code"])
