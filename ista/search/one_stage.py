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
are, and the metrics say so.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from ista.config.schema import RunConfig
from ista.distributed.runtime import average_gradients, wrap
from ista.search.two_stage import adopt
from ista.space.counting import count_params_m
from ista.space.encoding import NODE_OFFSETS, NODE_SIZES
from ista.space.genotypes import Genotype
from ista.space.networks import build_eval_network
from ista.sparse.broadcast import recover_on_rank0
from ista.sparse.measurement import CELL_TYPES, check_same_measurements, draw_measurements, init_codes
from ista.sparse.support import cell_weights, genotype_from_codes
from ista.train.schedules import drop_path_at, learning_rate
from ista.train.supervised import Training

NODES = [(cell, j) for cell in CELL_TYPES for j in range(len(NODE_SIZES))]  # the 8 nodes searched


class OneStageSearch(Training):
    def __init__(self, config: RunConfig, model: nn.Module, device: torch.device, dataset: str = "cifar10"):
        super().__init__(config, model, device)
        self.dataset = dataset
        self.A = draw_measurements(config.seed)
        b = init_codes(config.seed)
        self.codes = {cell: [nn.Parameter(x.to(device)) for x in b[cell]] for cell in CELL_TYPES}
        a = config.arch
        self.arch_optimizer = torch.optim.Adam(
            [p for cell in CELL_TYPES for p in self.codes[cell]],
            lr=a.lr,
            betas=(a.beta1, a.beta2),
            weight_decay=a.weight_decay,
        )
        self.frozen = {node: False for node in NODES}
        self.terminated_at: dict[str, int] = {}  # "normal/0" → epoch after whose recovery it terminated
        self.train_start: int | None = None  # first epoch of the training phase
        self._apply_freezing()
        adopt(self, {cell: self._recover(cell, range(4)) for cell in CELL_TYPES})

    # --- the architecture --------------------------------------------------------------------------
    def _recover(self, cell: str, nodes) -> list[np.ndarray]:
        nodes = list(nodes)
        if not nodes:
            return []
        a = self.config.arch
        return recover_on_rank0(
            [self.A[cell][j] for j in nodes], [self.codes[cell][j] for j in nodes], a.lam, a.solver
        )

    def forward_weights(self):
        return tuple(cell_weights(self.codes[cell], self.maps[cell]) for cell in CELL_TYPES)

    def genotype(self) -> Genotype:
        return genotype_from_codes(self.z["normal"], self.z["reduce"])

    def target_params_m(self, genotype: Genotype) -> float:
        """Parameters (M) of the genotype's one-stage target net of this run's size (the cap's measure)."""
        net = build_eval_network(
            genotype,
            self.dataset,
            self.config.network.channels,
            self.config.network.layers,
            num_classes=self.model.classifier.out_features,
            onestage=True,
            in_channels=self.model.stem0[0].in_channels,
        )
        return count_params_m(net)

    def _apply_freezing(self) -> None:
        """b_j of a terminated node takes no gradient; its ops' BN affine parameters train (§6.1)."""
        for cell_type, j in NODES:
            frozen = self.frozen[(cell_type, j)]
            self.codes[cell_type][j].requires_grad_(not frozen)
            for cell in self.model.cells:
                if (cell_type == "reduce") != cell.reduction:
                    continue
                for op in cell.ops[NODE_OFFSETS[j] : NODE_OFFSETS[j] + NODE_SIZES[j]]:
                    for bn in op.modules():
                        if isinstance(bn, nn.modules.batchnorm._BatchNorm) and bn.affine:
                            bn.weight.requires_grad_(frozen)
                            bn.bias.requires_grad_(frozen)
        self.forward_model = wrap(self.model)  # DDP registers only the parameters that train now

    # --- the two phases ----------------------------------------------------------------------------
    @property
    def phase(self) -> str:
        return "search" if self.train_start is None else "train"

    def set_epoch(self, epoch: int) -> None:
        o = self.config.optim
        if self.train_start is None:  # the search: a constant lr (after the warm-up, if any), no drop-path
            warmup = o.warmup_epochs
            self.lr = self.config.onestage.search_lr * (min(epoch + 1, warmup) / warmup if warmup else 1.0)
            self.drop_path = 0.0
            return
        e = epoch - self.train_start
        self.lr = learning_rate(e, self.config.epochs, o, warmup=0)
        self.drop_path = drop_path_at(e, self.config.epochs, self.config.network.drop_path)

    def step_architecture(self) -> None:
        codes = [b for cell in CELL_TYPES for b in self.codes[cell]]
        if all(b.grad is None for b in codes):
            return  # every node has terminated
        average_gradients(codes)
        self.scaler.unscale_(self.arch_optimizer)
        self.scaler.step(self.arch_optimizer)
        self.arch_optimizer.zero_grad(set_to_none=True)

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        metrics: dict[str, Any] = {"phase": self.phase, "lr": self.lr, "drop_path": self.drop_path}
        if self.train_start is not None:
            self.done = epoch - self.train_start + 1 >= self.config.epochs
        elif all(self.frozen.values()):  # the extra epoch with everything frozen has run (§12.9)
            self.train_start = epoch + 1
        else:
            metrics.update(self._search_step(epoch))
        metrics["genotype"] = self.genotype().to_dict()
        return metrics

    def _search_step(self, epoch: int) -> dict[str, Any]:
        started = time.perf_counter()
        s = self.config.onestage
        z_new = {cell: list(self.z[cell]) for cell in CELL_TYPES}
        for cell in CELL_TYPES:
            searching = [j for j in range(4) if not self.frozen[(cell, j)]]
            for j, z in zip(searching, self._recover(cell, searching), strict=True):
                z_new[cell][j] = z
        distance = {f"{c}/{j}": float(np.linalg.norm(z_new[c][j] - self.z[c][j])) for c, j in NODES}
        candidate = genotype_from_codes(z_new["normal"], z_new["reduce"])
        params = self.target_params_m(candidate)
        rejected = bool(s.param_cap) and params >= s.param_cap
        newly = [
            f"{c}/{j}" for c, j in NODES if not self.frozen[(c, j)] and distance[f"{c}/{j}"] <= s.threshold
        ]
        forced = []
        if epoch + 1 >= s.max_search_epochs:
            forced = [f"{c}/{j}" for c, j in NODES if not self.frozen[(c, j)] and f"{c}/{j}" not in newly]
        for name in newly + forced:
            cell, j = name.split("/")
            self.frozen[(cell, int(j))] = True
            self.terminated_at[name] = epoch
        if not rejected:
            adopt(self, z_new)
        self._apply_freezing()
        return {
            "recovery_s": round(time.perf_counter() - started, 6),
            "z_distance": distance,
            "terminated": newly,
            "forced": forced,
            "terminated_at": dict(self.terminated_at),  # node → the epoch after which it terminated
            "searching": [f"{c}/{j}" for c, j in NODES if not self.frozen[(c, j)]],
            "candidate_params_m": round(params, 6),
            "rejected": rejected,
            "z": {cell: [z.tolist() for z in self.z[cell]] for cell in CELL_TYPES},
            "support": {cell: [m.support.tolist() for m in self.maps[cell]] for cell in CELL_TYPES},
        }

    # --- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "A": self.A,
            "z": self.z,
            "codes": {cell: [b.detach().cpu() for b in self.codes[cell]] for cell in CELL_TYPES},
            "arch_optimizer": self.arch_optimizer.state_dict(),
            "frozen": [self.frozen[node] for node in NODES],
            "terminated_at": self.terminated_at,
            "train_start": self.train_start,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        check_same_measurements(self.A, state["A"])
        with torch.no_grad():
            for cell in CELL_TYPES:
                for b, saved in zip(self.codes[cell], state["codes"][cell], strict=True):
                    b.copy_(saved)
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])
        self.frozen = dict(zip(NODES, state["frozen"], strict=True))
        self.terminated_at, self.train_start = state["terminated_at"], state["train_start"]
        self._apply_freezing()
        adopt(self, state["z"])
