"""The DARTS candidate operations without `none`, in ISTA-NAS index order (method.md §1, §11.1).

The position of a name in `PRIMITIVES` is the op index k mod 7 of the sparse code z, so the order is
part of the genotype format and must never change.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU → depthwise k×k (dilated, strided) → pointwise 1×1 → BN."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int, affine=True
    ):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked separable blocks; only the first depthwise conv carries the stride."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, dilation=1, affine=affine),
            DilConv(c_in, c_out, kernel, 1, padding, dilation=1, affine=affine),
        )


class FactorizedReduce(nn.Module):
    """Halves the resolution with two 1×1 stride-2 convs, the second on the input shifted by one pixel."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def before_bn(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        # Pad odd sizes so both branches land on the same grid (DARTS assumes even sizes).
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            x = nn.functional.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        return torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.before_bn(x))


OpFactory = Callable[[int, int, bool], nn.Module]

OPS: dict[str, OpFactory] = {
    "max_pool_3x3": lambda c, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "avg_pool_3x3": lambda c, stride, affine: nn.AvgPool2d(
        3, stride=stride, padding=1, count_include_pad=False
    ),
    "skip_connect": lambda c, stride, affine: (
        nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine=affine)
    ),
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine=affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine=affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine=affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine=affine),
}
# Index order of the code z (method.md §1): DARTS's PRIMITIVES with `none` removed.
PRIMITIVES: tuple[str, ...] = tuple(OPS)
NUM_OPS = len(PRIMITIVES)
BN_AFTER_FREE = ("none", "search", "onestage")


def build_op(
    name: str, channels: int, stride: int, *, affine: bool = True, bn_after_free: str = "none"
) -> nn.Module:
    """One candidate op; `bn_after_free` adds a BN after parameter-free ops.

    "none": the DARTS evaluation net. "search": a BN(affine=False) after pools only, as in the DARTS and
    two-stage search super-net (§11.1). "onestage": a BN(affine=True) after pools and the stride-1 skip,
    the one-stage nets whose scalar architecture weight is absorbed into that BN (§6.1, §6.6).
    """
    if name not in OPS:
        raise ValueError(f"unknown op {name!r}; the ISTA-NAS ops are {', '.join(PRIMITIVES)}")
    if bn_after_free not in BN_AFTER_FREE:
        raise ValueError(f"bn_after_free must be one of {BN_AFTER_FREE}, got {bn_after_free!r}")
    op = OPS[name](channels, stride, affine)
    is_pool = "pool" in name
    if bn_after_free == "search" and is_pool:
        return nn.Sequential(op, nn.BatchNorm2d(channels, affine=False))
    if bn_after_free == "onestage" and (is_pool or isinstance(op, nn.Identity)):
        return nn.Sequential(op, nn.BatchNorm2d(channels, affine=True))
    return op


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zeroes whole samples with probability p and rescales the rest by 1/(1 − p) (§11.7)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty((x.shape[0], 1, 1, 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x / keep * mask
