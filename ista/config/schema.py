"""The configuration dataclasses. Frozen: they change only through `dataclasses.replace`.

Each field declares, next to its default, its allowed values and the methods that use it (`setting`).
`ista.config.io.validate` reads those declarations: a value out of range is an error, and so is a field
set (in a preset or on the command line) for a method that does not use it: no setting is silently
ignored. Runtime facts (rank, device actually used, job id) never go here; they live in the run's env.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ista.data.datasets import DATASETS
from ista.methods import METHODS as DECLARED
from ista.methods import having

METHODS = tuple(DECLARED)
BILEVEL = having("bilevel")  # the held-out half: train_portion, eval_augment
ARCH = having("learns_architecture")  # the architecture's optimizer
SPARSE = having("sparse_codes")  # λ, the solver, the draws of A and b

# Bounds a numeric field may declare: name → (test, what the error says).
BOUNDS: dict[str, tuple[Any, str]] = {
    ">0": (lambda v: v > 0, "must be > 0"),
    ">=0": (lambda v: v >= 0, "must be ≥ 0"),
    "[0,1)": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "(0,1)": (lambda v: 0 < v < 1, "must be in (0, 1)"),
    ">=3": (lambda v: v >= 3, "must be ≥ 3 (two cells are reductions)"),
}


def setting(
    default: Any, *, choices: tuple[str, ...] = (), bounds: str = "", methods: tuple[str, ...] = METHODS
) -> Any:
    """A config field with its allowed values and the methods that use it, declared once, here."""
    assert not bounds or bounds in BOUNDS, bounds
    return field(default=default, metadata={"choices": choices, "bounds": bounds, "methods": methods})


@dataclass(frozen=True)
class DataConfig:
    # a declared data set (`ista.data.datasets`): cifar10 | cifar100 | svhn | imagenet | digits
    # (scikit-learn's real 8×8 digits, shipped with it) | folder (train/<class>/* of any images)
    dataset: str = setting("cifar10", choices=tuple(DATASETS))
    # the raw data: the folder holding cifar-10-batches-py, cifar-100-python, SVHN's .mat files, or an
    # image tree's train/ (and val/ or test/)
    root: str = setting("")
    beton: str = setting("")  # the folder `ista data` wrote train.beton/test.beton into (read with FFCV)
    # the side the network sees, in px: 0 = the data set's own (fixed, or a folder's median image side);
    # resolved when a run starts and recorded in config.json. Up to 64 px: the CIFAR stem and pad-and-crop.
    size: int = setting(0, bounds=">=0")
    # auto (ffcv when `beton` is set and ffcv imports) | ffcv | torch
    loader: str = setting("auto", choices=("auto", "ffcv", "torch"))
    workers: int = setting(0, bounds=">=0")  # loader threads/processes; 0 = the CPUs this process may use
    # the first part trains W, the rest trains b and is the held-out set (method.md §3.2)
    train_portion: float = setting(0.5, bounds="(0,1)", methods=BILEVEL)
    # use N training images (0 = all), drawn stratified with seed 0: every class in its share
    subset: int = setting(0, bounds=">=0")
    # the training augmentation: pad-and-crop (CIFAR: 4 px, §11.9) or random-resized crops, and flips
    # where the data set has them (not for digits)
    augment: bool = setting(True)
    cutout: int = setting(0, bounds=">=0")  # square side of cutout when augmenting (16 in evaluation, §4)
    jitter: bool = setting(False)  # colour jitter when augmenting (the ImageNet evaluation script's, §7)
    # Evaluate the super-net on the held-out half with the training augmentation, as the official code
    # does (its held-out queue is the b-step's augmented one); false: the un-augmented view.
    eval_augment: bool = setting(False, methods=BILEVEL)


@dataclass(frozen=True)
class NetworkConfig:
    """The super-net of a search, or the target net of `ista train`."""

    channels: int = setting(16, bounds=">0")
    layers: int = setting(8, bounds=">=3")
    # weight of the auxiliary head's loss (0.4 in the target recipes), 0 = no head; the two-stage
    # super-net has none
    auxiliary_weight: float = setting(0.0, bounds=">=0", methods=("onestage", "train"))
    # drop-path probability reached at the last epoch, ramped linearly from 0 (§4); one-stage: the
    # training phase only
    drop_path: float = setting(0.0, bounds="[0,1)")
    # the target net with a BN after every parameter-free op (§6.6); the one-stage super-net always has it
    onestage: bool = setting(False, methods=("train",))


@dataclass(frozen=True)
class OptimConfig:
    """SGD on the network weights W; the learning rate is a function of the epoch (`ista.train.schedules`)."""

    lr: float = setting(0.2, bounds=">0")
    lr_min: float = setting(0.0, bounds=">=0")  # the cosine schedule's floor
    momentum: float = setting(0.9, bounds=">=0")
    weight_decay: float = setting(3e-4, bounds=">=0")
    grad_clip: float = setting(5.0, bounds=">=0")  # global gradient norm, 0 = no clipping
    # Also count the architecture's gradients in the clip norm, as the official two-stage code does (its
    # b is a registered parameter, and b's gradient then holds the held-out and the training loss's
    # parts: §12.13); false: the norm covers W only, as DARTS and the official one-stage code do.
    clip_arch: bool = setting(False, methods=ARCH)
    # cosine (lr → lr_min) | linear (the ImageNet script's decay, §7) | constant
    schedule: str = setting("cosine", choices=("cosine", "linear", "constant"))
    # linear warm-up from lr/warmup to lr (the ImageNet script: 5 when batch > 256)
    warmup_epochs: int = setting(0, bounds=">=0")
    # on the losses that train (W's and the architecture's); evaluation reports plain cross-entropy
    label_smoothing: float = setting(0.0, bounds="[0,1)")


@dataclass(frozen=True)
class ArchConfig:
    """Adam on the architecture variables (ISTA: the codes b; DARTS: the α's) and the recovery settings."""

    lr: float = setting(6e-4, bounds=">0", methods=ARCH)
    beta1: float = setting(0.5, bounds="[0,1)", methods=ARCH)
    beta2: float = setting(0.999, bounds="[0,1)", methods=ARCH)
    weight_decay: float = setting(1e-3, bounds=">=0", methods=ARCH)
    lam: float = setting(1e-5, bounds=">=0", methods=SPARSE)  # λ of Eq. (9)
    solver: str = setting("exact", choices=("exact", "cvxpy", "mosek"), methods=SPARSE)
    # also recover every N steps (0: only at the end of each epoch, as the official code)
    recover_every: int = setting(0, bounds=">=0", methods=SPARSE)
    # how the seed draws A and the initial b: streams (independent numpy streams of the seed) | official
    # (the official code's draws, bit for bit: `ista.sparse.measurement`)
    draws: str = setting("streams", choices=("streams", "official"), methods=SPARSE)


@dataclass(frozen=True)
class OneStageConfig:
    """Algorithm 2's termination and the training that follows it in the same run (method.md §6)."""

    # node j terminates when ‖z_new − z_prev‖₂ ≤ threshold after a recovery
    threshold: float = setting(1e-3, bounds=">=0", methods=("onestage",))
    # reject architectures whose target net has ≥ this many M params (0 = off)
    param_cap: float = setting(3.7, bounds=">=0", methods=("onestage",))
    # then the nodes still searching are frozen as they are (logged); the official loop's bound is its
    # epoch count (600)
    max_search_epochs: int = setting(300, bounds=">0", methods=("onestage",))
    # After termination the run trains for `epochs` more epochs with `optim.schedule` from `optim.lr`,
    # and drop-path ramps to `network.drop_path`; during the search the lr is `search_lr`, constant
    # (after `optim.warmup_epochs`).
    search_lr: float = setting(0.025, bounds=">0", methods=("onestage",))


@dataclass(frozen=True)
class LogConfig:
    """Records besides the run directory's own (metrics.jsonl, progress.json)."""

    # TensorBoard scalars per epoch (losses, accuracies, lr, recovery time, support changes) and the
    # genotype as text, in RUN_DIR/tensorboard (pip install 'ista[tensorboard]')
    tensorboard: bool = setting(False)


@dataclass(frozen=True)
class RunConfig:
    preset: str = setting("custom")
    # ista (Algorithm 1) | darts (first-order DARTS, the dense baseline) | onestage (Algorithm 2) |
    # train (evaluation training of `genotype`)
    method: str = setting("ista", choices=METHODS)
    # a published name, a JSON/text file, or the genotype's text
    genotype: str = setting("", methods=("train",))
    epochs: int = setting(50, bounds=">0")  # onestage: the epochs after termination
    batch_size: int = setting(256, bounds=">0")
    seed: int = setting(2, bounds=">=0")
    device: str = setting("auto", choices=("auto", "cpu", "cuda"))
    # torch deterministic algorithms (slower on GPU; CPU runs are exact anyway)
    deterministic: bool = setting(False)
    cudnn_benchmark: bool = setting(True)  # cuDNN autotuning (ignored when deterministic)
    # mixed precision of the network's forward: auto (CUDA: bf16 where supported, else fp16; CPU: off) |
    # off | bf16 | fp16. Architecture weights are always computed in fp32.
    amp: str = setting("auto", choices=("auto", "off", "bf16", "fp16"))
    channels_last: str = setting("auto", choices=("auto", "on", "off"))  # auto: on for CUDA
    # held-out (two-stage searches) or test (train, onestage) accuracy every N epochs, and after the last
    eval_every: int = setting(1, bounds=">0")
    # several ranks: BN statistics over the global batch, as one process would have
    sync_bn: bool = setting(True)
    # collectives across ranks: a dead or unreachable rank fails the job after this
    timeout_s: float = setting(1800.0, bounds=">0")
    # also checkpoint at the step boundary after every this many seconds (0 = off): what a node that dies
    # without a signal loses at most; USR2/SIGTERM always checkpoint the step they interrupt
    checkpoint_every_s: float = setting(1200.0, bounds=">=0")
    data: DataConfig = field(default_factory=DataConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    arch: ArchConfig = field(default_factory=ArchConfig)
    onestage: OneStageConfig = field(default_factory=OneStageConfig)
    log: LogConfig = field(default_factory=LogConfig)
