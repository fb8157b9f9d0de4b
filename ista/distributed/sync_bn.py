"""Batch statistics over all ranks, so that N processes with batch B/N train exactly like one with B.

PyTorch's SyncBatchNorm runs on GPUs only; this one reduces the per-channel sums with a differentiable
all-reduce and so works with gloo on CPUs as well. GPU runs use PyTorch's fused one.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from ista.distributed.runtime import world


class _AllReduceSum(torch.autograd.Function):
    """y = Σ_ranks x. Every rank's loss depends on y, so x's gradient is the sum of all ranks' ∂L/∂y."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class SyncBatchNorm2d(nn.BatchNorm2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world()[1] == 1:
            return super().forward(x)
        c = x.shape[1]
        local = torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), x.new_full((1,), x.numel() / c)])
        total = _AllReduceSum.apply(local)
        n = total[-1]
        mean = total[:c] / n
        var = total[c : 2 * c] / n - mean * mean
        if self.track_running_stats:
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach() * n / (n - 1), self.momentum)
                self.num_batches_tracked += 1
        y = (x - mean.view(1, c, 1, 1)) * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        return y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1) if self.affine else y


def convert(model: nn.Module) -> nn.Module:
    """Every BatchNorm2d in `model` becomes a synchronised one, keeping its parameters and statistics."""
    if world()[1] == 1:
        return model
    if next(model.parameters()).is_cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    _replace(model)
    return model


def _replace(module: nn.Module) -> None:
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            synced = SyncBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                     child.track_running_stats)  # fmt: skip
            synced.load_state_dict(child.state_dict())
            if child.affine:
                synced.weight.requires_grad_(child.weight.requires_grad)
                synced.bias.requires_grad_(child.bias.requires_grad)
            setattr(module, name, synced)
        else:
            _replace(child)
