"""The methods ista runs, each declared once: what it is, and where its code is.

The config's field declarations (`setting(methods=...)`), the runner, the model loader, `ista params`,
the reports and the protocols read these traits instead of naming methods. Adding a method (say
PC-DARTS) is its module (a `ista.train.step.Method` with a `build` class method) and one line here.
This module imports nothing: the config reads it before torch is loaded.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

SUPERNET, ONESTAGE_SUPERNET, TARGET = "supernet", "onestage-supernet", "target"


@dataclass(frozen=True)
class MethodSpec:
    name: str
    # an architecture step on a held-out batch, then a W step (Algorithm 1): the training split is halved,
    # and the held-out accuracy ranks the seeds of a two-stage search
    bilevel: bool
    learns_architecture: bool  # its result is a genotype (a search), not a trained target network
    sparse_codes: bool  # compressed codes b, fixed measurements A and the LASSO recovery (method.md §3)
    # the network it trains: the two-stage super-net, the one-stage super-net (every op of the target net,
    # the architecture as codes), or a genotype's target network
    network: str
    title: str  # what the progress line calls a run of it
    code: str  # "module:Class" of its `ista.train.step.Method`, imported when a run is built

    @property
    def trains_genotype(self) -> bool:
        """It trains a given genotype's target network (an evaluation training)."""
        return self.network == TARGET

    @property
    def one_stage(self) -> bool:
        """It trains the one-stage super-net, whose target net is the one-stage variant (method.md §6)."""
        return self.network == ONESTAGE_SUPERNET

    @property
    def gives_model(self) -> bool:
        """Its trained network is a model to use (`ista.load_model`); a two-stage super-net is not."""
        return self.network != SUPERNET

    def method_class(self) -> Any:
        module, name = self.code.split(":")
        return getattr(importlib.import_module(module), name)


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("ista", bilevel=True, learns_architecture=True, sparse_codes=True, network=SUPERNET,
                   title="ista search", code="ista.search.two_stage:TwoStage"),
        MethodSpec("darts", bilevel=True, learns_architecture=True, sparse_codes=False, network=SUPERNET,
                   title="darts search", code="ista.search.darts:Darts"),
        MethodSpec("onestage", bilevel=False, learns_architecture=True, sparse_codes=True,
                   network=ONESTAGE_SUPERNET, title="one-stage search",
                   code="ista.search.one_stage:OneStage"),
        MethodSpec("train", bilevel=False, learns_architecture=False, sparse_codes=False, network=TARGET,
                   title="training", code="ista.train.step:Method"),
    )
}  # fmt: skip


def having(trait: str) -> tuple[str, ...]:
    """The names of the methods with `trait` (a MethodSpec field or property) true."""
    return tuple(name for name, spec in METHODS.items() if getattr(spec, trait))
