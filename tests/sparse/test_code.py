"""The sparse-code component: the official draws, bit for bit, and one component for both searches."""

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from ista.config import apply_overrides, preset
from ista.data.splits import open_split
from ista.runner import build_task
from ista.space.networks import build_search_network
from ista.sparse.code import SparseCode
from ista.sparse.measurement import draw_measurements, official_one_stage_codes

SEARCH = Path(__file__).parents[2] / "ista" / "search"


def official_recipe(seed: int):
    """The official two-stage code's draws, as its trainer makes them (method.md §2.1–§2.2)."""
    np.random.seed(seed)
    A = {"normal": [], "reduce": []}
    for i in range(4):
        A["normal"].append(np.random.rand(7, 7 * (i + 2)))
        A["reduce"].append(np.random.rand(7, 7 * (i + 2)))
    torch.manual_seed(seed)
    build_search_network("cifar", 16, 8, num_classes=10)  # NetWork.__init__ draws W, then b
    b = {"normal": 1e-3 * torch.randn(4, 7), "reduce": 1e-3 * torch.randn(4, 7)}
    return A, b


@pytest.mark.parametrize("seed", [0, 2, 7])
def test_official_draws_replay_an_official_seed(seed, tmp_path, write_cifar):
    write_cifar(tmp_path, per_batch=8)
    config = apply_overrides(preset("cifar10-two-stage"), [f"seed={seed}", f"data.root={tmp_path}",
                                                           "arch.draws=official", "device=cpu"])  # fmt: skip
    code = build_task(config, open_split(config.data, train=True), torch.device("cpu")).method.code
    A, b = official_recipe(seed)
    for cell in ("normal", "reduce"):
        assert all(np.array_equal(x, y) for x, y in zip(code.A[cell], A[cell], strict=True))
        assert torch.equal(torch.stack(code.initial[cell]), b[cell])
        assert torch.equal(torch.stack([p.detach() for p in code.codes[cell]]), b[cell])
    assert code.drawn()["draws"] == "official"
    ours = draw_measurements(seed)  # the default draws are another, independent choice
    assert not np.array_equal(ours["normal"][0], A["normal"][0])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error a CPU-only machine gives")
def test_official_one_stage_draws_need_the_gpu():
    with pytest.raises(RuntimeError, match="draws b on the GPU, as the official code does"):
        official_one_stage_codes(5)


def test_both_searches_share_one_sparse_code_component():
    for name, overrides in (("demo", []), ("demo", ["method=onestage", "onestage.param_cap=0"])):
        config = apply_overrides(preset(name), [*overrides, "data.subset=64", "network.channels=4",
                                                "network.layers=3"])  # fmt: skip
        task = build_task(config, open_split(config.data, train=True), torch.device("cpu"))
        assert type(task.method.code) is SparseCode
        assert task.method.arch_parameters() == task.method.code.parameters()


def test_no_search_module_imports_another():
    for path in SEARCH.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not {m for m in imported if m.startswith("ista.search")}, path.name
