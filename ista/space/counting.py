"""Parameter and multiply-add counts in the DARTS convention (method.md §10.1, §11.8)."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from ista.space.genotypes import load_genotype
from ista.space.networks import DATASETS, build_eval_network


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
        else:
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
def measure(spec: str, dataset: str, onestage: bool, channels: int | None, layers: int | None) -> dict:
    """Params and MACs of a genotype's target network (default size: the paper's for the data set)."""
    shape = DATASETS[dataset]
    net = build_eval_network(
        load_genotype(spec), dataset, channels, layers, onestage=onestage, auxiliary=True
    )
    return {
        "genotype": spec,
        "dataset": dataset,
        "onestage": onestage,
        "layers": layers or shape.layers,
        "channels": channels or shape.channels,
        "params_m": round(count_params_m(net), 6),
        "macs_m": round(count_macs_m(net, (3, shape.resolution, shape.resolution)), 3),
    }
