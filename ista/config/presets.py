"""Named presets: each reproduces one setting of the paper or its code, and says where it comes from."""

from __future__ import annotations

from dataclasses import replace

from ista.config.schema import ArchConfig, DataConfig, OptimConfig, SearchConfig, SupernetConfig

PRESETS: dict[str, SearchConfig] = {
    # The supplement (§1.2): batch 256, W lr 0.2 cosine to 0, b Adam 6e-4, 50 epochs, 8 cells, C=16.
    "cifar10-two-stage": SearchConfig(preset="cifar10-two-stage"),
    # The official README command: lr 0.1, cosine floor 1e-3 (the code's eta_min), seed 2.
    "cifar10-two-stage-code": SearchConfig(
        preset="cifar10-two-stage-code", optim=OptimConfig(lr=0.1, lr_min=1e-3)
    ),
    # First-order DARTS on the same super-net and data (its paper's search settings; no `none` op here).
    "cifar10-darts": SearchConfig(
        preset="cifar10-darts",
        method="darts",
        batch_size=64,
        optim=OptimConfig(lr=0.025, lr_min=1e-3),
        arch=ArchConfig(lr=3e-4),
    ),
    # A complete small search on real images that ship with scikit-learn, in minutes on a laptop CPU.
    "demo": SearchConfig(
        preset="demo",
        epochs=25,
        batch_size=64,
        seed=0,
        device="cpu",
        data=DataConfig(dataset="digits", augment=False),
        supernet=SupernetConfig(channels=8, layers=5),
        optim=OptimConfig(lr=0.1, lr_min=0.0),
        arch=ArchConfig(lr=3e-3),
    ),
}


def preset(name: str) -> SearchConfig:
    if name not in PRESETS:
        from ista.config.io import ConfigError

        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[name])
