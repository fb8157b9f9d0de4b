"""The configuration dataclasses. Frozen: they change only through `dataclasses.replace`.

Runtime facts (rank, device actually used, job id) never go here; they live in the run's env.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "cifar10"  # cifar10 | digits (scikit-learn's real 8×8 digits, shipped with the package)
    root: str = ""  # the raw data: the folder holding cifar-10-batches-py
    beton: str = ""  # the folder `ista data` wrote train.beton/test.beton into (read with FFCV)
    loader: str = "auto"  # auto (ffcv when `beton` is set and ffcv imports) | ffcv | torch
    workers: int = 0  # loader threads/processes; 0 = the CPUs this process may use (Slurm's binding)
    train_portion: float = 0.5  # first part trains W, the rest trains b (method.md §3.2)
    subset: int = 0  # use only the first N training images (0 = all): smoke runs
    augment: bool = True  # pad-4 random crop + flip on both halves (§11.9)
    cutout: int = 0  # cutout square side when augmenting (16 in evaluation training, §4), 0 = off
    jitter: bool = False  # ImageNet colour jitter when augmenting (the evaluation script's, §7)


@dataclass(frozen=True)
class SupernetConfig:
    channels: int = 16
    layers: int = 8


@dataclass(frozen=True)
class OptimConfig:
    """SGD on the network weights W, cosine from `lr` to `lr_min` over the epochs."""

    lr: float = 0.2
    lr_min: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0  # global norm over W only (the official code also counts b's grads: §12.13)


@dataclass(frozen=True)
class ArchConfig:
    """Adam on the architecture variables (ISTA: the codes b; DARTS: the α's) and the recovery settings."""

    lr: float = 6e-4
    beta1: float = 0.5
    beta2: float = 0.999
    weight_decay: float = 1e-3
    lam: float = 1e-5  # λ of Eq. (9)
    solver: str = "exact"  # exact | cvxpy | mosek
    recover_every: int = 0  # also recover every N steps (0: only at the end of each epoch, as the code)


@dataclass(frozen=True)
class SearchConfig:
    preset: str = "custom"
    method: str = "ista"  # ista (Algorithm 1) | darts (first-order DARTS, the dense baseline)
    epochs: int = 50
    batch_size: int = 256
    seed: int = 2
    device: str = "auto"  # auto | cpu | cuda
    deterministic: bool = False  # torch deterministic algorithms (slower on GPU; CPU runs are exact anyway)
    eval_every: int = 1  # held-out accuracy of the super-net every N epochs (the search's selection metric)
    data: DataConfig = field(default_factory=DataConfig)
    supernet: SupernetConfig = field(default_factory=SupernetConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    arch: ArchConfig = field(default_factory=ArchConfig)
