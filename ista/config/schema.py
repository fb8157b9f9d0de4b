"""The configuration dataclasses. Frozen: they change only through `dataclasses.replace`.

Runtime facts (rank, device actually used, job id) never go here; they live in the run's env.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "cifar10"  # cifar10 | imagenet | digits (scikit-learn's real 8×8 digits, shipped with it)
    root: str = ""  # the raw data: the folder holding cifar-10-batches-py, or ImageNet's train/ and val/
    beton: str = ""  # the folder `ista data` wrote train.beton/test.beton into (read with FFCV)
    loader: str = "auto"  # auto (ffcv when `beton` is set and ffcv imports) | ffcv | torch
    workers: int = 0  # loader threads/processes; 0 = the CPUs this process may use (Slurm's binding)
    train_portion: float = 0.5  # first part trains W, the rest trains b (method.md §3.2)
    subset: int = 0  # use only the first N training images (0 = all): smoke runs
    augment: bool = True  # pad-4 random crop + flip on both halves (§11.9)
    cutout: int = 0  # cutout square side when augmenting (16 in evaluation training, §4), 0 = off
    jitter: bool = False  # ImageNet colour jitter when augmenting (the evaluation script's, §7)


@dataclass(frozen=True)
class NetworkConfig:
    """The super-net of a search, or the target net of `ista train`."""

    channels: int = 16
    layers: int = 8
    auxiliary_weight: float = (
        0.0  # weight of the auxiliary head's loss (0.4 in the target recipes), 0 = no head
    )
    drop_path: float = 0.0  # drop-path probability reached at the last epoch, ramped linearly from 0 (§4)
    onestage: bool = False  # `ista train`: the target net with a BN after every parameter-free op (§6.6)


@dataclass(frozen=True)
class OptimConfig:
    """SGD on the network weights W; the learning rate is a function of the epoch (`ista.train.schedules`)."""

    lr: float = 0.2
    lr_min: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0  # global norm over W only (the official code also counts b's grads: §12.13)
    schedule: str = "cosine"  # cosine (lr → lr_min) | linear (the ImageNet script's decay, §7) | constant
    warmup_epochs: int = 0  # linear warm-up from lr/warmup to lr (the ImageNet script: 5 when batch > 256)
    label_smoothing: float = 0.0  # on the training loss (0.1 on ImageNet); evaluation uses plain CE


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
class OneStageConfig:
    """Algorithm 2's termination and the training that follows it in the same run (method.md §6)."""

    threshold: float = 1e-3  # node j terminates when ‖z_new − z_prev‖₂ ≤ threshold after a recovery
    param_cap: float = 3.7  # reject architectures whose target net has ≥ this many M params (0 = off)
    max_search_epochs: int = 300  # then the nodes still searching are frozen as they are (logged)
    # After termination the run trains for `epochs` more epochs with `optim.schedule` from `optim.lr`,
    # and drop-path ramps to `network.drop_path`; during the search the lr is `search_lr`, constant.
    search_lr: float = 0.025


@dataclass(frozen=True)
class RunConfig:
    preset: str = "custom"
    # ista (Algorithm 1) | darts (first-order DARTS, the dense baseline) | onestage (Algorithm 2) |
    # train (evaluation training of `genotype`)
    method: str = "ista"
    genotype: str = ""  # method=train: a published name, a JSON/text file, or the genotype's text
    epochs: int = 50  # onestage: the epochs after termination
    batch_size: int = 256
    seed: int = 2
    device: str = "auto"  # auto | cpu | cuda
    deterministic: bool = False  # torch deterministic algorithms (slower on GPU; CPU runs are exact anyway)
    cudnn_benchmark: bool = True  # cuDNN autotuning (ignored when deterministic)
    amp: str = (
        "auto"  # mixed precision: auto (CUDA: bf16 where supported, else fp16; CPU: off) | off | bf16 | fp16
    )
    channels_last: str = "auto"  # auto (on for CUDA) | on | off
    eval_every: int = 1  # held-out (search) or test (train, onestage) accuracy every N epochs
    sync_bn: bool = True  # several ranks: BN statistics over the global batch, as one process would have
    timeout_s: float = 1800.0  # collectives across ranks: a dead or unreachable rank fails the job after this
    data: DataConfig = field(default_factory=DataConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    arch: ArchConfig = field(default_factory=ArchConfig)
    onestage: OneStageConfig = field(default_factory=OneStageConfig)
