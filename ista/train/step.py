"""The one step engine: the mechanics of a training step, written once for every method.

A method (timm's task idea) says only what differs: its architecture parameters and how they become the
network's weights, whether they learn on a held-out batch of their own before W's step (the bilevel
searches, Algorithm 1) or from W's own loss (the one-stage search, Algorithm 2), its learning rate and
drop-path per epoch, and its end-of-epoch work. `StepEngine` owns the rest: mixed precision and the
gradient scaler, channels-last inputs, DDP over W, averaging the architecture's gradients over the ranks,
gradient clipping, both optimizer steps, the loss and evaluation. Architecture weights are computed in
fp32 outside autocast, always.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ista.config.schema import RunConfig
from ista.data.loaders import Batch
from ista.distributed.runtime import all_reduce_sum, any_rank, average_gradients, wrap
from ista.methods import METHODS
from ista.train.checkpoint import CheckpointError
from ista.train.engine import Stats, classification_stats
from ista.train.schedules import drop_path_at, learning_rate

if TYPE_CHECKING:
    from ista.sparse.code import SparseCode

Weights = tuple[torch.Tensor, torch.Tensor]  # (normal, reduce) architecture weights, each (98,)
CHECKPOINT_FORMAT = 2  # the layout of `StepEngine.state_dict`; 1 = ista 0.1's per-method layouts


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """None (full precision), torch.bfloat16 or torch.float16; `auto` is off on the CPU and, on CUDA, bf16
    where every rank's GPU computes it natively (compute capability 8.0 on), fp16 with the gradient scaler
    otherwise. torch's default test counts emulated bf16 as support, which would make a V100 or T4 run
    slow bf16; and the ranks must agree, since DDP cannot average scaled and unscaled gradients."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return torch.float16 if any_rank([int(not native)])[0] else torch.bfloat16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def uses_channels_last(setting: str, device: torch.device) -> bool:
    return setting == "on" or (setting == "auto" and device.type == "cuda")


class Method:
    """What a method supplies to the engine. This base is evaluation training of a target network
    (method.md §4, §7): W alone learns, with the configured schedule and drop-path ramp."""

    def __init__(self, config: RunConfig, model: nn.Module):
        self.config, self.model = config, model
        self.done = False  # set by a method whose length is decided as it runs (the one-stage search)

    @classmethod
    def build(
        cls, config: RunConfig, model: nn.Module, code: SparseCode | None, device: torch.device
    ) -> Method:
        """The method on its network, and on its SparseCode if it is declared with sparse codes: the one
        signature through which `ista.runner` builds every declared method."""
        coded: tuple[SparseCode, ...] = () if code is None else (code,)
        return cls(config, model, *coded)

    @property
    def bilevel(self) -> bool:
        """The architecture learns on a held-out batch before W's step (`ista.methods`)."""
        return METHODS[self.config.method].bilevel

    @property
    def eval_prefix(self) -> str:
        """Metric names of `evaluate`: valid (the held-out half) or test (the test/validation split)."""
        return "valid" if self.bilevel else "test"

    def total_epochs(self) -> int:
        """Epochs of the whole run, as the progress line counts them (at most, for the one-stage search)."""
        return self.config.epochs

    def arch_parameters(self) -> list[nn.Parameter]:
        return []

    def arch_weights(self) -> Weights | None:
        """The super-net's architecture weights; a target net has none."""
        return None

    def schedule(self, epoch: int) -> tuple[float, float]:
        """(W's learning rate, drop-path probability) of an epoch."""
        o, epochs = self.config.optim, self.config.epochs
        lr = learning_rate(epoch, epochs, o.lr, schedule=o.schedule, lr_min=o.lr_min, warmup=o.warmup_epochs)
        return lr, drop_path_at(epoch, epochs, self.config.network.drop_path)

    def after_step(self) -> None:
        """After every step (recovery every `arch.recover_every` steps)."""

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.done = state["done"]


class Together:
    """Optimizers whose gradients come from one backward pass, shown to the gradient scaler as one (it reads
    only `param_groups` and calls `step`): it unscales and checks all their gradients, plus `extra` ones
    that only enter the clip norm, so an fp16 overflow anywhere skips every step and lowers the scale, and
    no part steps on gradients that an infinite clip norm has zeroed."""

    def __init__(self, optimizers: list[torch.optim.Optimizer], extra: list[nn.Parameter] | None = None):
        self.optimizers, self.extra = optimizers, extra or []

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        groups = [group for optimizer in self.optimizers for group in optimizer.param_groups]
        return groups + ([{"params": self.extra}] if self.extra else [])

    def step(self) -> None:
        for optimizer in self.optimizers:
            if any(p.grad is not None for group in optimizer.param_groups for p in group["params"]):
                optimizer.step()


class StepEngine:
    """Runs a method's steps: the `Task` that `ista.train.engine.run_epochs` drives."""

    def __init__(self, config: RunConfig, method: Method, device: torch.device):
        self.config, self.method, self.device = config, method, device
        o, a = config.optim, config.arch
        self.w_parameters = list(method.model.parameters())
        self.w_optimizer = torch.optim.SGD(
            self.w_parameters, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay
        )
        arch = method.arch_parameters()
        self.arch_optimizer = (
            torch.optim.Adam(arch, lr=a.lr, betas=(a.beta1, a.beta2), weight_decay=a.weight_decay)
            if arch
            else None
        )
        self.dtype = autocast_dtype(config.amp, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        self.channels_last = uses_channels_last(config.channels_last, device)
        if self.channels_last:
            method.model.to(memory_format=torch.channels_last)
        self.lr, self.drop_path = o.lr, 0.0
        # what W's step is to the scaler: with the one-stage search's joint loss, b's Adam step too (first,
        # as the official code); with the official two-stage clip, b's gradient that joins W's clip norm
        self.joint = bool(arch) and not method.bilevel  # one batch and one loss for the architecture and W
        self.clip_arch = bool(arch) and o.clip_arch  # b's gradient joins W's clip norm
        self.w_step = Together(
            [self._arch_optimizer(), self.w_optimizer] if self.joint else [self.w_optimizer],
            arch if method.bilevel and self.clip_arch else None,
        )
        self._wrap()

    def _arch_optimizer(self) -> torch.optim.Adam:
        """The architecture's optimizer: every method with architecture parameters has one."""
        if self.arch_optimizer is None:
            raise RuntimeError(f"method={self.config.method} has no architecture parameters to step")
        return self.arch_optimizer

    @property
    def model(self) -> nn.Module:
        return self.method.model

    @property
    def done(self) -> bool:
        return self.method.done

    def _wrap(self) -> None:
        """DDP over the parameters that train now (the one-stage search unfreezes BN parameters)."""
        self._trainable = [p.requires_grad for p in self.w_parameters]
        self.forward_model = wrap(self.model)

    # --- the pieces of a step ----------------------------------------------------------------------
    def start_epoch(self, epoch: int) -> None:
        self.lr, self.drop_path = self.method.schedule(epoch)
        for group in self.w_optimizer.param_groups:
            group["lr"] = self.lr
        # torch types Module.__setattr__ for tensors and modules only; a plain attribute is set as usual
        self.model.drop_path_prob = self.drop_path  # type: ignore[assignment]
        self.model.train()

    def _autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def arch_weights(self, grad: bool = True) -> Weights | None:
        """The method's architecture weights, in fp32 whatever the autocast setting."""
        with torch.set_grad_enabled(grad), torch.autocast(self.device.type, enabled=False):
            return self.method.arch_weights()

    def forward(self, model: nn.Module, x: torch.Tensor, weights: Weights | None):
        """(logits, auxiliary logits or None) in fp32, the network run under autocast."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            logits, aux = model(x, weights)
        return logits.float(), None if aux is None else aux.float()

    def loss(self, logits: torch.Tensor, aux: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (label-smoothed if asked) plus `auxiliary_weight` times the auxiliary head's."""
        smoothing = self.config.optim.label_smoothing
        loss = nn.functional.cross_entropy(logits, y, label_smoothing=smoothing)
        if aux is not None and self.config.network.auxiliary_weight:
            loss = loss + self.config.network.auxiliary_weight * nn.functional.cross_entropy(
                aux, y, label_smoothing=smoothing
            )
        return loss

    def _arch_step(self, held_out: Batch, arch: list[nn.Parameter]) -> tuple[Stats, list | None]:
        """Algorithm 1's architecture step on a held-out batch with the current W (not through DDP: the
        architecture's gradients are averaged by hand, and W's are not needed). Returns b's held-out
        gradient, still scaled, for the official clip (`optim.clip_arch`), else None."""
        x, y = held_out
        optimizer = self._arch_optimizer()
        optimizer.zero_grad(set_to_none=True)
        logits, aux = self.forward(self.model, x, self.arch_weights())
        loss = self.loss(logits, aux, y)
        self.scaler.scale(loss).backward(inputs=arch)
        average_gradients(arch)  # before the overflow check, so that every rank decides alike
        held = [None if p.grad is None else p.grad.clone() for p in arch] if self.w_step.extra else None
        self.scaler.unscale_(optimizer)
        self.scaler.step(optimizer)
        return classification_stats("arch", logits, y, loss), held

    def train_step(self, batch: Batch, held_out: Batch | None) -> Stats:
        arch = self.method.arch_parameters()
        stats: Stats = {}
        held = None
        if self.method.bilevel:
            if held_out is None:
                raise ValueError(f"method={self.config.method} needs batches of the held-out half")
            arch_stats, held = self._arch_step(held_out, arch)
            stats.update(arch_stats)
        x, y = batch
        self.w_optimizer.zero_grad(set_to_none=True)
        if self.joint or held is not None:
            self._arch_optimizer().zero_grad(set_to_none=True)
        weights = self.arch_weights(grad=self.joint or self.clip_arch)
        logits, aux = self.forward(self.forward_model, x, weights)
        loss = self.loss(logits, aux, y)
        self.scaler.scale(loss).backward()
        if self.joint or held is not None:
            average_gradients(arch)  # before the overflow check, so that every rank decides alike
        if held is not None:  # the official two-stage clip norm: b's held-out part plus its training part
            for p, h in zip(arch, held, strict=True):
                p.grad = h if p.grad is None else p.grad if h is None else p.grad + h
        # GradScaler is typed for an Optimizer; it reads only what `Together` has (param_groups, step)
        self.scaler.unscale_(self.w_step)  # type: ignore[arg-type]
        if self.config.optim.grad_clip:
            clipped = [*self.w_parameters, *arch] if self.clip_arch else self.w_parameters
            norm = nn.utils.get_total_norm([p.grad for p in clipped if p.grad is not None])
            nn.utils.clip_grads_with_norm_(self.w_parameters, self.config.optim.grad_clip, norm)
            if not self.scaler.is_enabled():  # fp16 overflows are skipped steps, not non-finite losses
                stats["grad_norm"] = (norm.detach(), 1)
        # the one-stage search: Adam on b, then W, as the official code
        self.scaler.step(self.w_step)  # type: ignore[arg-type]  # as `unscale_` above
        self.scaler.update()
        self.method.after_step()
        return {**stats, **classification_stats("train", logits, y, loss)}

    @torch.no_grad()
    def evaluate(self, batches: Iterator[Batch]) -> dict[str, float]:
        """Top-1/top-5 accuracy and plain cross-entropy: on the held-out half for the bilevel searches (the
        selection metric of the 5 searches, §3.5), on the test/validation split otherwise."""
        self.model.eval()
        weights = self.arch_weights(grad=False)
        # device tensors after the first batch: one host read at the end
        top1: torch.Tensor | int = 0
        top5: torch.Tensor | int = 0
        loss: torch.Tensor | int = 0
        n = 0
        for x, y in batches:
            logits, _ = self.forward(self.model, x, weights)
            loss = loss + nn.functional.cross_entropy(logits, y, reduction="sum")
            best = logits.topk(min(5, logits.shape[1]), dim=1).indices
            top1 = top1 + (best[:, 0] == y).sum()
            top5 = top5 + (best == y[:, None]).any(1).sum()
            n += len(y)
        self.model.train()
        sums = torch.tensor([float(loss), float(top1), float(top5), n], dtype=torch.float64)
        loss_sum, top1_sum, top5_sum, count = all_reduce_sum(sums)
        p = self.method.eval_prefix
        return {
            f"{p}_loss": float(loss_sum / count),
            f"{p}_acc": float(top1_sum / count),
            f"{p}_top5": float(top5_sum / count),
        }

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        metrics = {"lr": self.lr, "drop_path": self.drop_path, **self.method.end_epoch(epoch)}
        if [p.requires_grad for p in self.w_parameters] != self._trainable:
            self._wrap()
        return metrics

    # --- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "w_optimizer": self.w_optimizer.state_dict(),
            "arch_optimizer": None if self.arch_optimizer is None else self.arch_optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "amp": str(self.dtype),
            "method": self.method.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_format(state)
        self.model.load_state_dict(state["model"])
        self.method.load_state_dict(state["method"])
        self.w_optimizer.load_state_dict(state["w_optimizer"])
        if self.arch_optimizer is not None:
            self.arch_optimizer.load_state_dict(state["arch_optimizer"])
        if bool(state["scaler"]) == self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        # else the run was written in another precision (amp=auto resolves per GPU kind, and a requeued job
        # can land on another): fp16 now starts its scaler afresh, and the runner says what changed
        self._wrap()


def check_format(task_state: dict[str, Any]) -> None:
    """A checkpoint's task state in the layout this version reads, or a clear error."""
    if task_state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"the checkpoint was written by an older ista (checkpoint format {task_state.get('format', 1)}, "
            f"this version reads {CHECKPOINT_FORMAT}); finish that run with the version that started "
            "it, or start anew in another run directory"
        )
