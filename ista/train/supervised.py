"""Single-level training: one loss, one batch, one backward per step.

It serves evaluation training of a genotype (`ista train`, method.md §4 and §7) and, with architecture
codes added by `ista.search.one_stage`, the one-stage search (§6), whose b and W learn from the same batch
and loss. The loss is cross-entropy (label-smoothed if asked) plus `auxiliary_weight` times the auxiliary
head's; evaluation reports plain cross-entropy, top-1 and top-5.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ista.config.schema import RunConfig
from ista.data.loaders import Batch
from ista.distributed.runtime import all_reduce_sum, wrap
from ista.train.engine import Stats, classification_stats
from ista.train.schedules import drop_path_at, learning_rate


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """None (full precision), torch.bfloat16 or torch.float16; `auto` is bf16/fp16 on CUDA, off on CPU."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def uses_channels_last(setting: str, device: torch.device) -> bool:
    return setting == "on" or (setting == "auto" and device.type == "cuda")


class Training:
    """Trains `model` (returning (logits, aux logits)) with SGD on all its trainable parameters."""

    def __init__(self, config: RunConfig, model: nn.Module, device: torch.device):
        self.config, self.model, self.device = config, model, device
        o = config.optim
        self.optimizer = torch.optim.SGD(
            model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay
        )
        self.dtype = autocast_dtype(config.amp, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        self.channels_last = uses_channels_last(config.channels_last, device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.forward_model = wrap(model)  # DDP over W with several ranks
        self.lr, self.drop_path = o.lr, 0.0
        self.done = False  # the engine stops early when a task says so (the one-stage run's end)

    # The schedule; the one-stage search overrides it with its two phases.
    def set_epoch(self, epoch: int) -> None:
        self.lr = learning_rate(epoch, self.config.epochs, self.config.optim)
        self.drop_path = drop_path_at(epoch, self.config.epochs, self.config.network.drop_path)

    def forward_weights(self):
        """Architecture weights for a super-net's forward; a target net has none."""
        return None

    def step_architecture(self) -> None:
        """After the backward, before W's step: the one-stage search updates b here."""

    def start_epoch(self, epoch: int) -> None:
        self.set_epoch(epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        self.model.drop_path_prob = self.drop_path
        self.model.train()

    def _autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def loss(self, logits: torch.Tensor, aux: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
        smoothing = self.config.optim.label_smoothing
        loss = nn.functional.cross_entropy(logits, y, label_smoothing=smoothing)
        if aux is not None and self.config.network.auxiliary_weight:
            loss = loss + self.config.network.auxiliary_weight * nn.functional.cross_entropy(
                aux, y, label_smoothing=smoothing
            )
        return loss

    def train_step(self, batch: Batch, held_out: Batch | None = None) -> Stats:
        x, y = batch
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            logits, aux = self.forward_model(self._input(x), self.forward_weights())
            loss = self.loss(logits, aux, y)
        self.scaler.scale(loss).backward()
        self.step_architecture()
        self.scaler.unscale_(self.optimizer)
        nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return classification_stats("train", logits.float(), y, loss.float())

    @torch.no_grad()
    def evaluate(self, batches: Iterator[Batch]) -> dict[str, float]:
        """Top-1/top-5 accuracy and plain cross-entropy on the test (CIFAR) or validation (ImageNet) split."""
        self.model.eval()
        weights = self.forward_weights()
        top1, top5, loss, n = 0, 0, 0, 0  # device tensors after the first batch: one host read at the end
        for x, y in batches:
            with self._autocast():
                logits, _ = self.model(self._input(x), weights)
            logits = logits.float()
            loss = loss + nn.functional.cross_entropy(logits, y, reduction="sum")
            best = logits.topk(min(5, logits.shape[1]), dim=1).indices
            top1 = top1 + (best[:, 0] == y).sum()
            top5 = top5 + (best == y[:, None]).any(1).sum()
            n += len(y)
        self.model.train()
        sums = torch.tensor([float(loss), float(top1), float(top5), n], dtype=torch.float64)
        loss, top1, top5, n = all_reduce_sum(sums)
        return {"test_loss": float(loss / n), "test_acc": float(top1 / n), "test_top5": float(top5 / n)}

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        return {"lr": self.lr, "drop_path": self.drop_path}

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "done": self.done,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.done = state["done"]
