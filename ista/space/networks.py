"""The DARTS macro networks (method.md §11.3–§11.6), shared by target nets and search super-nets.

One `Network` stacks cells after a CIFAR or ImageNet stem, doubles the channels at the reduction cells
(L/3 and 2L/3), taps an optional auxiliary head after the second reduction cell and ends in a linear
classifier. Target nets use `EvalCell`s; super-nets use `SearchCell`s and take the architecture weights
in `forward`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ista.space.cells import EvalCell, SearchCell
from ista.space.encoding import NodeSupports
from ista.space.genotypes import Genotype

Cell = EvalCell | SearchCell
CellFactory = Callable[[int, int, int, bool, bool], Cell]  # (C_pp, C_p, C, reduction, reduction_prev)


STEMS = ("cifar", "imagenet")  # one 3×3 conv keeping the side; three stride-2 convs (224 → 28)
TARGET_SIZES = {"cifar": (36, 20), "imagenet": (48, 14)}  # the paper's target net, (C, cells) (§4, §7)


def auxiliary_fits(side: int, stem: str) -> bool:
    """Whether the auxiliary head's pool-and-2×2-conv leaves 1×1 from images of this side: its pool (5, stride
    3; ImageNet: 2) must make 2×2 of the map after the second reduction cell."""
    halvings = 2 + (3 if stem == "imagenet" else 0)  # the stem's stride-2 convs, then the two reductions
    for _ in range(halvings):
        side = -(-side // 2)
    return side >= 5 and (side - 5) // (2 if stem == "imagenet" else 3) + 1 == 2


def check_auxiliary(side: int, stem: str) -> None:
    """A clear error where the auxiliary head would fail on images of this side."""
    if not auxiliary_fits(side, stem):
        fits = [s for s in range(1, 1025) if auxiliary_fits(s, stem)]
        raise ValueError(
            f"the auxiliary head does not fit {side}×{side} images: with the {stem} stem it needs a side of "
            f"{fits[0]}–{fits[-1]} px; set network.auxiliary_weight=0, or data.size within that range"
        )


class AuxiliaryHead(nn.Sequential):
    """DARTS auxiliary classifier; the ImageNet one pools with stride 2 and has no BN after the 768 conv."""

    def __init__(self, c: int, num_classes: int, imagenet: bool = False):
        layers: list[nn.Module] = [
            nn.ReLU(),
            nn.AvgPool2d(5, stride=2 if imagenet else 3, padding=0, count_include_pad=False),
            nn.Conv2d(c, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(),
            nn.Conv2d(128, 768, 2, bias=False),
        ]
        if not imagenet:  # DARTS kept the ImageNet typo to match its paper (§11.6)
            layers.append(nn.BatchNorm2d(768))
        layers += [nn.ReLU(), nn.Flatten(), nn.Linear(768, num_classes)]
        super().__init__(*layers)


def _stem(
    kind: str, c: int, in_channels: int, stem_multiplier: int
) -> tuple[nn.Module, nn.Module | None, int]:
    """The stem(s) and the channels they output."""
    if kind == "cifar":
        c_stem = stem_multiplier * c
        conv = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        return conv, None, c_stem
    if kind == "imagenet":  # three stride-2 convs: 224 → 28
        stem0 = nn.Sequential(
            nn.Conv2d(in_channels, c // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c // 2),
            nn.ReLU(),
            nn.Conv2d(c // 2, c, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c),
        )
        stem1 = nn.Sequential(
            nn.ReLU(), nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c)
        )
        return stem0, stem1, c
    raise ValueError(f"unknown stem {kind!r}; expected 'cifar' or 'imagenet'")


class Network(nn.Module):
    """Stem → L cells → global pool → classifier; returns (logits, auxiliary logits or None).

    `drop_path_prob` is set by the training loop each epoch (it ramps, §11.7).
    """

    def __init__(
        self,
        make_cell: CellFactory,
        c: int,
        num_classes: int,
        layers: int,
        stem: str = "cifar",
        auxiliary: bool = False,
        in_channels: int = 3,
        stem_multiplier: int = 3,
    ):
        super().__init__()
        self.layers = layers
        self.drop_path_prob = 0.0
        self.stem0, self.stem1, c_stem = _stem(stem, c, in_channels, stem_multiplier)
        c_pp, c_p, c_cur = c_stem, c_stem, c
        reduction_prev = stem == "imagenet"  # the ImageNet stem0 output is twice the size of stem1's
        self.reductions = (layers // 3, 2 * layers // 3)
        cells = []
        c_aux = c_p
        for i in range(layers):
            reduction = i in self.reductions
            if reduction:
                c_cur *= 2
            cell = make_cell(c_pp, c_p, c_cur, reduction, reduction_prev)
            cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c_cur
            if i == self.reductions[1]:
                c_aux = c_p
        self.cells = nn.ModuleList(cells)
        self.auxiliary_head = (
            AuxiliaryHead(c_aux, num_classes, imagenet=stem == "imagenet") if auxiliary else None
        )
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(
        self, x: torch.Tensor, weights: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`weights` = (normal, reduce) architecture weights of a super-net, each of shape (98,)."""
        s0 = self.stem0(x)
        s1 = s0 if self.stem1 is None else self.stem1(s0)
        logits_aux = None
        for i, cell in enumerate(self.cells):
            w = None if weights is None else weights[1 if cell.reduction else 0]
            s0, s1 = s1, cell(s0, s1, w, self.drop_path_prob)
            if i == self.reductions[1] and self.auxiliary_head is not None and self.training:
                logits_aux = self.auxiliary_head(s1)
        logits = self.classifier(torch.flatten(self.global_pooling(s1), 1))
        return logits, logits_aux

    def search_cells(self) -> list[SearchCell]:
        """The cells of a super-net; an error for a target net, whose cells have no support."""
        cells = [cell for cell in self.cells if isinstance(cell, SearchCell)]
        if len(cells) != len(self.cells):
            raise TypeError("a target network has no support: only a super-net's search cells have one")
        return cells

    def set_support(self, normal: NodeSupports, reduce: NodeSupports) -> None:
        """Which candidates the search cells run, per cell type (see `SearchCell.set_support`)."""
        for cell in self.search_cells():
            cell.set_support(reduce if cell.reduction else normal)


def super_net(model: nn.Module) -> Network:
    """`model` as the super-net of a search; an error for any other model."""
    if not isinstance(model, Network):
        raise TypeError(
            f"a search runs on a super-net (a Network of search cells), got {type(model).__name__}"
        )
    return model


def build_eval_network(
    genotype: Genotype,
    stem: str = "cifar",
    channels: int | None = None,
    layers: int | None = None,
    num_classes: int = 10,
    auxiliary: bool = False,
    onestage: bool = False,
    in_channels: int = 3,
) -> Network:
    """The target network of a genotype (default size: the paper's for the stem); `onestage` adds a BN after
    every parameter-free op (§6.6)."""
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}; expected one of {', '.join(STEMS)}")
    default_channels, default_layers = TARGET_SIZES[stem]

    def make_cell(c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool) -> EvalCell:
        return EvalCell(genotype, c_pp, c_p, c, reduction, reduction_prev, onestage=onestage)

    return Network(
        make_cell,
        channels or default_channels,
        num_classes,
        layers or default_layers,
        stem=stem,
        auxiliary=auxiliary,
        in_channels=in_channels,
    )


def build_search_network(
    stem: str = "cifar",
    channels: int = 16,
    layers: int = 8,
    num_classes: int = 10,
    onestage: bool = False,
    auxiliary: bool = False,
    in_channels: int = 3,
) -> Network:
    """A super-net of search cells.

    Two-stage (default): every cell BN is affine=False and pools get a BN(affine=False), as in DARTS
    (§3.1, §11.5). One-stage: all BNs affine and a BN after every parameter-free op (§6.1).
    """
    affine, bn = (True, "onestage") if onestage else (False, "search")

    def make_cell(c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool) -> SearchCell:
        return SearchCell(c_pp, c_p, c, reduction, reduction_prev, affine=affine, bn_after_free=bn)

    return Network(
        make_cell, channels, num_classes, layers, stem=stem, auxiliary=auxiliary, in_channels=in_channels
    )
