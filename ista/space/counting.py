"""Parameter and multiply-add counts in the DARTS convention (method.md §10.1, §11.8)."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from ista.space.genotypes import load_genotype
from ista.space.networks import TARGET_SIZES, build_eval_network


def count_params_m(model: nn.Module) -> float:
    """Millions of parameters, auxiliary head excluded, frozen ones counted (DARTS count_parameters_in_MB)."""
    return sum(p.numel() for name, p in model.named_parameters() if "auxiliary" not in name) / 1e6


def count_macs_m(model: nn.Module, input_shape: tuple[int, ...], **forward_kwargs) -> float:
    """Millions of multiply-adds of the convolutions and linear layers for one input of `input_shape`.

    Counted from the shapes seen in a real forward pass (eval mode, so no auxiliary head). BN, ReLU,
    pooling and additions are left out, as in the DARTS/PC-DARTS tables' convention (§9.1).
    """
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += output[0].numel() * k
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape), **forward_kwargs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total / 1e6


@lru_cache(maxsize=256)
def measure(
    spec: str,
    stem: str = "cifar",
    num_classes: int = 10,
    side: int = 32,
    in_channels: int = 3,
    onestage: bool = False,
    channels: int | None = None,
    layers: int | None = None,
) -> dict:
    """Params and MACs of a genotype's target network for images of `side` px with `in_channels` channels
    in `num_classes` classes (default size: the paper's for the stem)."""
    net = build_eval_network(
        load_genotype(spec), stem, channels, layers, num_classes, auxiliary=True, onestage=onestage,
        in_channels=in_channels,
    )  # fmt: skip
    default_channels, default_layers = TARGET_SIZES[stem]
    return {
        "genotype": spec,
        "stem": stem,
        "num_classes": num_classes,
        "side": side,
        "in_channels": in_channels,
        "onestage": onestage,
        "layers": layers or default_layers,
        "channels": channels or default_channels,
        "params_m": round(count_params_m(net), 6),
        "macs_m": round(count_macs_m(net, (in_channels, side, side)), 3),
    }
