"""The first-order bilevel step both searches share (method.md §3.3).

Per step: an architecture step on a held-out batch with the current W, then a W step on a training
batch with the just-updated architecture weights as constants. ISTA-NAS and DARTS differ only in how
architecture parameters become the super-net's weights and in what happens at the end of an epoch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ista.config.schema import RunConfig
from ista.data.loaders import Batch
from ista.distributed.runtime import all_reduce_sum, average_gradients, wrap
from ista.train.engine import Stats, classification_stats
from ista.train.schedules import cosine_lr

Weights = tuple[torch.Tensor, torch.Tensor]  # (normal, reduce), each (98,)


class BilevelSearch:
    def __init__(self, config: RunConfig, model: nn.Module, arch_parameters: list[nn.Parameter]):
        self.config = config
        self.model = model
        self.arch_parameters = arch_parameters
        o, a = config.optim, config.arch
        self.w_optimizer = torch.optim.SGD(
            model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay
        )
        self.arch_optimizer = torch.optim.Adam(
            arch_parameters, lr=a.lr, betas=(a.beta1, a.beta2), weight_decay=a.weight_decay
        )
        self.lr = o.lr
        self.done = False
        self.forward_model = wrap(model)

    def arch_weights(self) -> Weights:
        raise NotImplementedError

    def start_epoch(self, epoch: int) -> None:
        o = self.config.optim
        self.lr = cosine_lr(epoch, self.config.epochs, o.lr, o.lr_min)
        for group in self.w_optimizer.param_groups:
            group["lr"] = self.lr
        self.model.train()

    def train_step(self, batch: Batch, held_out: Batch | None) -> Stats:
        assert held_out is not None, "a bilevel search needs batches of the held-out half"
        x_va, y_va = held_out
        self.arch_optimizer.zero_grad(set_to_none=True)
        logits_va, _ = self.model(x_va, self.arch_weights())
        loss_va = nn.functional.cross_entropy(logits_va, y_va)
        loss_va.backward(inputs=self.arch_parameters)  # W's gradients are not needed here: skip them
        average_gradients(self.arch_parameters)
        self.arch_optimizer.step()

        x, y = batch
        self.w_optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            weights = self.arch_weights()
        logits, _ = self.forward_model(x, weights)  # DDP averages W's gradients over the ranks
        loss = nn.functional.cross_entropy(logits, y)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.w_optimizer.step()
        return {
            **classification_stats("train", logits, y, loss),
            **classification_stats("arch", logits_va, y_va, loss_va),
        }

    @torch.no_grad()
    def evaluate(self, batches: Iterator[Batch]) -> dict[str, float]:
        """The super-net's accuracy on the held-out half: the selection metric of the 5 searches (§3.5)."""
        self.model.eval()
        weights = self.arch_weights()
        correct, loss, n = 0, 0, 0  # device tensors after the first batch: one host read at the end
        for x, y in batches:
            logits, _ = self.model(x, weights)
            loss = loss + nn.functional.cross_entropy(logits, y, reduction="sum")
            correct = correct + (logits.argmax(1) == y).sum()
            n += len(y)
        self.model.train()
        loss, correct, n = all_reduce_sum(torch.tensor([float(loss), float(correct), n], dtype=torch.float64))
        return {"valid_loss": float(loss / n), "valid_acc": float(correct / n)}

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "arch_parameters": [p.detach().cpu() for p in self.arch_parameters],
            "w_optimizer": self.w_optimizer.state_dict(),
            "arch_optimizer": self.arch_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        with torch.no_grad():
            for p, saved in zip(self.arch_parameters, state["arch_parameters"], strict=True):
                p.copy_(saved)
        self.w_optimizer.load_state_dict(state["w_optimizer"])
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])
