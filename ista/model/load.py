"""The found model for use: a run's trained network, or a genotype's untrained one, as a plain module from
images to logits, with what its inputs need attached (side, channels, normalisation, class names).

Loading never executes code from a file: the checkpoint is read with `weights_only` (`load_checkpoint`),
the settings and data facts are JSON.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ista.config.io import config_from_dict
from ista.config.schema import RunConfig
from ista.data.datasets import Facts, dataset
from ista.methods import METHODS
from ista.rundir.files import CHECKPOINT, DATA, GENOTYPE, RESULT
from ista.rundir.read import read_config, read_json
from ista.space.genotypes import Genotype, load_genotype
from ista.space.networks import Network, build_eval_network
from ista.train.checkpoint import CheckpointError, load_checkpoint
from ista.train.step import check_format


class FoundModel(nn.Module):
    """N×C×H×W images, normalised by `facts.mean` and `facts.std`, to N×classes logits, in eval mode.

    A one-stage run's network is its super-net running the found support, scaled by the recovered codes:
    those are held as buffers, so the module is still a function of the images alone (and exports so).
    """

    def __init__(
        self,
        network: Network,
        facts: Facts,
        genotype: Genotype,
        weights: tuple[torch.Tensor, torch.Tensor] | None = None,
        run_dir: Path | None = None,
    ):
        super().__init__()
        self.network, self.facts, self.genotype, self.run_dir = network, facts, genotype, run_dir
        self.fixed = weights is not None
        for name, w in zip(("arch_normal", "arch_reduce"), weights or (None, None), strict=True):
            self.register_buffer(
                name, None if w is None else w.detach().clone()
            )  # constants: they move along
        self.eval()

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        return self.facts.channels, self.facts.size, self.facts.size

    @property
    def classes(self) -> tuple[str, ...]:
        return self.facts.classes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        weights = (self.arch_normal, self.arch_reduce) if self.fixed else None
        logits, _ = self.network(images, weights)
        return logits


def load_model(
    source: str | Path,
    dataset: str | None = None,
    device: str | torch.device = "cpu",
    *,
    classes: int | None = None,
    size: int | None = None,
    in_channels: int | None = None,
) -> FoundModel:
    """The trained network of an `ista train` run directory (or of a finished one-stage run) in eval mode on
    `device`; or, given a genotype (a published name, a JSON file or the DARTS text) and `dataset`, its
    untrained target network of the paper's size for that data set's stem.

    `classes`, `size` and `in_channels` give a genotype's shape where the data set leaves it to the data
    (`folder`); an untrained network's normalisation is the data set's where it is fixed, else none (mean 0,
    std 1). A search run's directory, an unfinished run, a damaged checkpoint, or one of another version is
    one clear error.
    """
    path = Path(source).expanduser()
    if is_run_dir(path):
        if dataset is not None or classes or size or in_channels:
            raise ValueError(
                f"{path} is a run directory: its data set and shape are its own; give no dataset"
            )
        model = _trained(path)
    else:
        if dataset is None:
            raise ValueError(
                f"{source} is no run directory; to build a genotype's untrained network, give dataset=..."
            )
        facts = untrained_facts(dataset, classes, size, in_channels)
        genotype = load_genotype(str(source))
        network = build_eval_network(
            genotype, facts.stem, num_classes=len(facts.classes), in_channels=facts.channels
        )
        model = FoundModel(network, facts, genotype)
    return model.to(torch.device(device)).eval()


def is_run_dir(source: str | Path) -> bool:
    """Whether `source` names a folder (a genotype's DARTS text is too long a name for some systems)."""
    try:
        return Path(source).expanduser().is_dir()
    except OSError:
        return False


def untrained_facts(name: str, classes: int | None, size: int | None, in_channels: int | None) -> Facts:
    """A data set's shape for an untrained network: the declaration's, or what is given where it has none."""
    declared = dataset(name)
    n, side = classes or declared.num_classes, size or declared.size
    if not n or not side:
        raise ValueError(
            f"dataset={name} reads its classes and image side from the data; give classes and size"
        )
    names = declared.classes if declared.classes and len(declared.classes) == n else tuple(map(str, range(n)))
    channels = in_channels or declared.channels or 3
    mean, std = declared.mean or (0.0,) * channels, declared.std or (1.0,) * channels
    return Facts(name, names, side, channels, mean, std, declared.test_split)


def read_run_config(run_dir: Path) -> RunConfig:
    """A run directory's resolved settings, or a clear error that it is none."""
    return config_from_dict(read_config(run_dir))


def _trained(run_dir: Path) -> FoundModel:
    from ista.runner import build_method

    config = read_run_config(run_dir)
    if not METHODS[config.method].gives_model:
        raise ValueError(
            f"{run_dir} is a search run (method={config.method}): its network is a super-net, not a model. "
            f"Train its genotype (ista train --genotype {run_dir / GENOTYPE}) and load that run"
        )
    if not (run_dir / RESULT).is_file():
        raise ValueError(f"{run_dir} has not finished (no {RESULT}): load it when it has")
    facts = Facts.from_dict(read_json(run_dir, DATA))
    state = load_checkpoint(run_dir / CHECKPOINT)
    task: dict[str, Any] = state.get("task", {})
    check_format(task)
    # W as trained: built on the CPU without the engine (no optimizer, no DDP), seeded as the run was
    with torch.random.fork_rng(devices=[]):
        method = build_method(_for_loading(config), facts, torch.device("cpu"))
    try:
        method.model.load_state_dict(task["model"])
        method.load_state_dict(task["method"])
    except (KeyError, RuntimeError) as err:
        raise CheckpointError(
            f"{run_dir / CHECKPOINT} does not fit the network its settings describe ({err}); it is "
            "damaged or from another run"
        ) from None
    weights = method.arch_weights()
    genotype = Genotype.from_json((run_dir / GENOTYPE).read_text())
    network = method.model
    assert isinstance(network, Network)
    return FoundModel(network, facts, genotype, weights, run_dir)


def _for_loading(config: RunConfig) -> RunConfig:
    """A run's settings for rebuilding its network in one process: plain BN (the same buffers as the
    synchronised one) and the exact solver for the first recovery the one-stage method makes as it is built
    (the checkpoint's codes replace it; a MOSEK run loads without a licence)."""
    return replace(config, sync_bn=False, arch=replace(config.arch, solver="exact"))
