"""One-stage search (Algorithm 2): termination, freezing, the parameter cap, the phase switch, resume."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ista.config import apply_overrides, preset
from ista.data.splits import open_split
from ista.runner import build_task
from ista.search.one_stage import OneStage
from ista.space.cells import EvalCell
from ista.space.counting import count_params_m
from ista.space.encoding import NODE_OFFSETS
from ista.space.genotypes import CELL_TYPES
from ista.space.networks import build_eval_network, build_search_network
from ista.sparse.measurement import initial_codes
from ista.sparse.support import genotype_from_codes
from ista.train.checkpoint import load_checkpoint
from ista.train.engine import build_loaders, run_epochs

ISTA = Path(sys.executable).with_name("ista")
TINY = ["network.channels=4", "network.layers=3", "batch_size=32", "data.workers=1"]


def tiny(root, *more):
    return apply_overrides(preset("cifar10-one-stage"), [f"data.root={root}", *TINY, *more])


class Quiet:
    def start_epoch(self, *a): ...
    def step(self, *a): ...
    def end_epoch(self, *a): ...


def train(task, config, epochs, start=0):
    """Runs the real engine over the real loaders; returns each epoch's metrics."""
    loaders = build_loaders(config, open_split(config.data, True), open_split(config.data, False))
    history = []
    run_epochs(task, loaders, seed=config.seed, start_epoch=start, epochs=start + epochs,
               on_epoch_end=lambda e, m: history.append(m), progress=Quiet())  # fmt: skip
    return history


def all_codes(task):
    return task.method.code.parameters()


def op_bns(task, cell_type, node):
    """The affine BNs of one node's candidate ops in every cell of one type, as ((cell, flat index), bn)."""
    for i, cell in enumerate(task.model.cells):
        if cell.reduction == (cell_type == "reduce"):
            for f in range(NODE_OFFSETS[node], NODE_OFFSETS[node] + [14, 21, 28, 35][node]):
                for bn in cell.ops[f].modules():
                    if isinstance(bn, torch.nn.BatchNorm2d) and bn.affine:
                        yield (i, f), bn


def test_terminated_nodes_freeze_b_and_train_their_bn(tmp_path, write_cifar):
    write_cifar(tmp_path, per_batch=32, digits=True)
    config = tiny(tmp_path, "onestage.threshold=1e9")  # a loose threshold: every node terminates at once
    task = build_task(config, open_split(config.data, True), torch.device("cpu"))
    (first,) = train(task, config, 1)
    assert first["phase"] == "search" and len(first["terminated"]) == 8 and first["searching"] == []
    for _, bn in op_bns(task, "normal", 0):  # frozen while searching: still γ = 1, β = 0
        assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.equal(
            bn.bias, torch.zeros_like(bn.bias)
        )
    codes = [b.detach().clone() for b in all_codes(task)]
    bns = {key: (bn.weight.detach().clone(), bn.bias.detach().clone())
           for c in CELL_TYPES for j in range(4) for key, bn in op_bns(task, c, j)}  # fmt: skip

    (extra,) = train(task, config, 1, start=1)  # the extra epoch with everything frozen (§12.9)
    assert extra["phase"] == "search" and task.method.phase == "train"
    assert all(torch.equal(b, saved) for b, saved in zip(all_codes(task), codes, strict=True))
    moved = set()
    for c in CELL_TYPES:
        support = {NODE_OFFSETS[j] + int(k) for j in range(4) for k in task.method.code.maps[c][j].support}
        for j in range(4):
            for key, bn in op_bns(task, c, j):
                changed = not (torch.equal(bn.weight, bns[key][0]) and torch.equal(bn.bias, bns[key][1]))
                assert not changed or key[1] in support  # only the ops that run learn
                moved |= {key} if changed else set()
    assert moved  # the absorbed weights do train


def test_searching_nodes_move_and_the_cap_rejects(tmp_path, write_cifar):
    write_cifar(tmp_path, per_batch=32, digits=True)
    config = tiny(tmp_path, "onestage.threshold=0", "onestage.param_cap=1e-6")
    task = build_task(config, open_split(config.data, True), torch.device("cpu"))
    z0 = {c: [z.copy() for z in task.method.code.z[c]] for c in CELL_TYPES}
    b0 = [b.detach().clone() for b in all_codes(task)]
    (metrics,) = train(task, config, 1)
    assert metrics["terminated"] == [] and len(metrics["searching"]) == 8
    assert all(not torch.equal(b, saved) for b, saved in zip(all_codes(task), b0, strict=True))
    assert metrics["rejected"] and metrics["candidate_params_m"] > 1e-6
    z = task.method.code.z
    assert all(np.array_equal(a, b) for c in CELL_TYPES for a, b in zip(z[c], z0[c], strict=True))
    assert max(metrics["z_distance"].values()) > 0


def _one_stage(root: Path, out: Path) -> list[str]:
    return ["search", "--preset", "cifar10-one-stage", f"data.root={root}", *TINY, "epochs=2",
            "onestage.max_search_epochs=1", "onestage.threshold=0", "--out", str(out), "--quiet"]  # fmt: skip


def _history(run_dir: Path):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.endswith("_s")} for line in lines]


def test_phases_and_a_resume_across_the_switch(tmp_path, write_cifar, cli, kill_when):
    write_cifar(tmp_path / "data", per_batch=32, digits=True)
    code, _, err = cli(*_one_stage(tmp_path / "data", tmp_path / "straight"))
    assert code == 0, err
    history = _history(tmp_path / "straight")
    # searching until the epoch limit freezes the rest, one extra frozen epoch, then 2 training epochs
    assert [m["phase"] for m in history] == ["search", "search", "train", "train"]
    assert history[0]["forced"] and not history[0]["searching"]
    assert [m["lr"] for m in history] == [0.025, 0.025, 0.025, 0.0125]  # constant, then cosine
    assert [m["drop_path"] for m in history] == [0.0, 0.0, 0.0, 0.1]

    args = [str(ISTA), *_one_stage(tmp_path / "data", tmp_path / "resumed")]
    interrupted = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "resumed" / "checkpoint.pt"
    stopped_at = kill_when(
        interrupted, lambda: load_checkpoint(checkpoint)["epoch"] if checkpoint.exists() else None
    )
    assert stopped_at < 2, "the run passed the switch before it could be interrupted"
    code, _, err = cli(*_one_stage(tmp_path / "data", tmp_path / "resumed"))  # the same command resumes
    assert code == 0, err
    assert _history(tmp_path / "resumed") == history
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["task"]
    b = load_checkpoint(checkpoint)["task"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["method"]["train_start"] == 2


@pytest.mark.parametrize("dataset", ["cifar", "imagenet"])
def test_the_cap_counts_a_candidate_without_building_it(dataset, monkeypatch):
    """The cap's measure is read off the super-net (which holds every op of the target net), not from a
    target net built at each recovery (80 ms for 20 cells here): equal to the built net's count."""
    from ista.sparse.code import SparseCode

    config = apply_overrides(preset("cifar10-one-stage"), ["network.channels=6", "network.layers=5"])
    model = build_search_network(dataset, 6, 5, num_classes=7, onestage=True, auxiliary=True, in_channels=1)
    initial = initial_codes(0, "streams", one_stage=True)
    code = SparseCode(0, torch.device("cpu"), lam=1e-5, solver="exact", draws="streams", initial=initial)
    method = OneStage(config, model, code)
    rng = np.random.default_rng(0)
    for _ in range(5):
        z = {c: [rng.standard_normal(n) for n in (14, 21, 28, 35)] for c in CELL_TYPES}
        net = build_eval_network(genotype_from_codes(z["normal"], z["reduce"]), dataset, 6, 5,
                                 num_classes=7, onestage=True, in_channels=1)  # fmt: skip
        with monkeypatch.context() as patch:
            patch.setattr(EvalCell, "__init__", lambda *a, **k: pytest.fail("a target net was built"))
            counted = method.target_params_m(z)
        assert counted == pytest.approx(count_params_m(net), abs=1e-12)
