"""Batched augmentations on the device, drawn from an explicit generator so that runs are reproducible.

Every loader hands over uint8 crops; `finish` turns them into the network's input. Cutout and colour
jitter are done here for every loader (in-memory, torchvision folder, FFCV), so the three paths apply
the same augmentation with the same code. The per-image draws come from a generator on the batch's own
device: on a GPU a draw made on the host and copied over would wait for the GPU's queue to drain. The one
choice Python acts on, the colour jitter's order, comes from a host generator (`order_g`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch

JITTER = (0.4, 0.4, 0.4, 0.2)  # brightness, contrast, saturation, hue of the ImageNet recipe (method.md §7)


@dataclass(frozen=True)
class Finish:
    """uint8 N×C×H×W → float, [colour jitter], normalised, [cutout]; in this order, as the references do."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    cutout: int = 0  # side of the zeroed square after normalisation (DARTS: 16), 0 = off
    jitter: bool = False

    def __call__(
        self, x: torch.Tensor, g: torch.Generator, order_g: torch.Generator | None = None
    ) -> torch.Tensor:
        x = x.float().div_(255)
        if self.jitter:
            x = color_jitter(x, g, order_g=order_g)
        mean, std = _channel_stats(self.mean, self.std, x.device)
        x = (x - mean) / std
        return cutout(x, self.cutout, g) if self.cutout else x


@functools.cache
def _channel_stats(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Made once per device, not copied to it for every batch."""
    mean_t, std_t = (torch.tensor(v, device=device).view(1, -1, 1, 1) for v in (mean, std))
    return mean_t, std_t


def _uniform(n: int, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g, device=g.device)


def random_crop_flip(
    x: torch.Tensor, g: torch.Generator, padding: int = 4, flip: bool = True
) -> torch.Tensor:
    """Zero-pad by `padding`, crop back at a random offset, flip half of the images (§11.9) if `flip`."""
    n, _, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=g, device=g.device)
    flips = torch.rand(n, generator=g, device=g.device) < 0.5 if flip else None
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    rows = (offsets[0, :, None] + torch.arange(h, device=x.device))[:, :, None]  # n×h×1
    cols = (offsets[1, :, None] + torch.arange(w, device=x.device))[:, None, :]  # n×1×w
    cropped = padded.permute(0, 2, 3, 1)[torch.arange(n, device=x.device)[:, None, None], rows, cols]
    cropped = cropped.permute(0, 3, 1, 2)
    return cropped if flips is None else torch.where(flips[:, None, None, None], cropped.flip(-1), cropped)


def cutout(x: torch.Tensor, length: int, g: torch.Generator) -> torch.Tensor:
    """DARTS' cutout: a length×length square centred anywhere (clipped at the border) set to 0."""
    n, _, h, w = x.shape
    draw: dict[str, Any] = {"generator": g, "device": g.device}
    centre = torch.stack([torch.randint(0, h, (n,), **draw), torch.randint(0, w, (n,), **draw)])
    rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_rows = (rows >= centre[0, :, None] - length // 2) & (rows < centre[0, :, None] + length // 2)
    in_cols = (cols >= centre[1, :, None] - length // 2) & (cols < centre[1, :, None] + length // 2)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * keep[:, None]


def color_jitter(
    x: torch.Tensor,
    g: torch.Generator,
    strength: tuple[float, ...] = JITTER,
    order_g: torch.Generator | None = None,
) -> torch.Tensor:
    """torchvision's ColorJitter on images in [0, 1]: its factors drawn per image (from `g`, on the
    images' device), the four adjustments in one random order per batch (from `order_g`, a host generator,
    `g` if None; torchvision draws the order per image)."""
    n = len(x)
    brightness, contrast, saturation, hue = strength
    factors = {
        "brightness": _uniform(n, 1 - brightness, 1 + brightness, g)[:, None, None, None],
        "contrast": _uniform(n, 1 - contrast, 1 + contrast, g)[:, None, None, None],
        "saturation": _uniform(n, 1 - saturation, 1 + saturation, g)[:, None, None, None],
        "hue": _uniform(n, -hue, hue, g)[:, None, None],
    }
    for i in torch.randperm(4, generator=order_g or g).tolist():
        name = ("brightness", "contrast", "saturation", "hue")[i]
        f = factors[name]
        if name == "brightness":
            x = (x * f).clamp_(0, 1)
        elif name == "contrast":
            mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
            x = (f * x + (1 - f) * mean).clamp_(0, 1)
        elif name == "saturation":
            x = (f * x + (1 - f) * _grey(x)).clamp_(0, 1)
        else:
            h, s, v = _rgb_to_hsv(x)
            x = _hsv_to_rgb(torch.remainder(h + f, 1.0), s, v)
    return x


def _grey(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def _rgb_to_hsv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r, g, b = x.unbind(1)
    v, _ = x.max(1)
    delta = v - x.min(1).values
    s = delta / torch.where(v == 0, torch.ones_like(v), v)
    d = torch.where(delta == 0, torch.ones_like(delta), delta)
    h = torch.where(v == r, (g - b) / d, torch.where(v == g, 2 + (b - r) / d, 4 + (r - g) / d))
    h = torch.where(delta == 0, torch.zeros_like(h), torch.remainder(h / 6, 1.0))
    return h, s, v


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    sector = torch.floor(h * 6)
    f = h * 6 - sector
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    sector = sector.long().remainder(6)[:, None]  # n×1×H×W
    table = torch.stack(  # per sector i, the (r, g, b) made of v, t, p, q
        [
            torch.stack([v, t, p], 1),
            torch.stack([q, v, p], 1),
            torch.stack([p, v, t], 1),
            torch.stack([p, q, v], 1),
            torch.stack([t, p, v], 1),
            torch.stack([v, p, q], 1),
        ]
    )  # 6×n×3×H×W
    return table.gather(0, sector.expand(-1, 3, -1, -1).unsqueeze(0)).squeeze(0)
