import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ista.config import apply_overrides, preset
from ista.data.splits import open_split
from ista.runner import build_task, run
from ista.space.genotypes import CELL_TYPES, Genotype
from ista.sparse.broadcast import recover

TINY = ["data.subset=240", "batch_size=32", "network.channels=4", "network.layers=3"]
ISTA = Path(sys.executable).with_name("ista")
TIMINGS = ("epoch_s", "recovery_s")


def tiny(method="ista", *more):
    return apply_overrides(preset("demo"), [*TINY, f"method={method}", *more])


def test_one_epoch_records_everything(tmp_path):
    result = run(tiny("ista", "epochs=1"), tmp_path, show_progress=False)
    for name in (
        "config.json",
        "metrics.jsonl",
        "genotype.json",
        "env.json",
        "checkpoint.pt",
        "genotype.png",
        "draws.json",
    ):
        assert (tmp_path / name).exists(), name
    (metrics,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    keys = ("train_loss", "train_acc", "arch_loss", "arch_acc", "valid_acc", "lr", "z", "support", "genotype")
    for key in (*keys, *TIMINGS):
        assert key in metrics, key
    assert [len(z) for z in metrics["z"]["normal"]] == [14, 21, 28, 35]
    assert Genotype.from_dict(json.loads((tmp_path / "genotype.json").read_text())) == result.genotype
    env = json.loads((tmp_path / "env.json").read_text())
    assert (
        env["seed"] == 0
        and env["solver"] == "exact"
        and env["versions"]["torch"] == torch.__version__.split("+")[0]
    )


def _count_op_calls(model):
    calls = {}
    for c, cell in enumerate(model.cells):
        for f, op in enumerate(cell.ops):
            op.register_forward_hook(lambda *_, key=(c, f): calls.__setitem__(key, calls.get(key, 0) + 1))
    return calls


def test_only_support_ops_run_and_b_gradient_is_A_S_times_dL_dw():
    config = tiny()
    split = open_split(config.data, train=True)
    task, data = build_task(config, split, torch.device("cpu")), split.source
    calls = _count_op_calls(task.model)
    x, y = data.images[:16].float() / 255, data.labels[:16]
    task.start_epoch(0)
    task.train_step((x, y), (x, y))  # one b-step and one W-step: two forwards
    for c, cell in enumerate(task.model.cells):
        active = {f for node in cell.active for f, _ in node}
        assert len(active) == 8
        assert {f for (cc, f) in calls if cc == c} == active and all(calls[(c, f)] == 2 for f in active)

    # ∂L/∂b_j = A_S ∂L/∂w_S (method.md §2.6), against autograd through the whole super-net.
    weights = task.arch_weights()
    for w in weights:
        w.retain_grad()
    code = task.method.code
    for b in code.parameters():
        b.grad = None
    torch.nn.functional.cross_entropy(task.model(x, weights)[0], y).backward()
    for i, cell in enumerate(CELL_TYPES):
        offset = 0
        for node_map, b in zip(code.maps[cell], code.codes[cell], strict=True):
            dw = weights[i].grad[offset : offset + node_map.size][node_map.support]
            assert torch.allclose(b.grad, node_map.A_S @ dw, atol=1e-7)
            offset += node_map.size


def test_recover_every_step_uses_the_latest_codes():
    config = tiny("ista", "arch.recover_every=1")
    split = open_split(config.data, train=True)
    task, data = build_task(config, split, torch.device("cpu")), split.source
    x, y = data.images[:16].float() / 255, data.labels[:16]
    task.start_epoch(0)
    task.train_step((x, y), (x, y))
    code = task.method.code
    A = [a for cell in CELL_TYPES for a in code.A[cell]]
    expected = recover(A, code.parameters())
    got = [z for cell in CELL_TYPES for z in code.z[cell]]
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))


def test_darts_baseline_runs_all_candidates_and_uses_darts_rule(tmp_path):
    config = tiny("darts", "epochs=1")
    split = open_split(config.data, train=True)
    task, data = build_task(config, split, torch.device("cpu")), split.source
    calls = _count_op_calls(task.model)
    x, y = data.images[:8].float() / 255, data.labels[:8]
    task.start_epoch(0)
    task.train_step((x, y), (x, y))
    assert len(calls) == 98 * len(task.model.cells)
    with torch.no_grad():  # hand-made α: node 0 prefers sep_conv_3x3 on input 1, then skip on input 0
        for alpha in task.method.alphas.values():
            alpha.zero_()
            alpha[1, 3], alpha[0, 2] = 5.0, 3.0
    g = task.method.genotype()
    assert g.normal[:2] == (("sep_conv_3x3", 1), ("skip_connect", 0))
    result = run(config, tmp_path, show_progress=False)
    assert "alphas" in result.history[0] and len(result.history) == 1


def test_run_directory_guards(tmp_path, cli):
    run(tiny("ista", "epochs=1"), tmp_path, show_progress=False)
    with pytest.raises(ValueError, match=r"other settings \(optim\.lr: 0\.1 → 0\.2\)"):
        run(tiny("ista", "epochs=1", "optim.lr=0.2"), tmp_path, show_progress=False)
    with pytest.raises(ValueError, match=r"--resume: no checkpoint\.pt"):
        run(tiny("ista", "epochs=1"), tmp_path / "empty", resume=True, show_progress=False)
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    from ista.train.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="damaged"):
        run(tiny("ista", "epochs=1"), tmp_path, show_progress=False)
    code, _, err = cli("search", "--preset", "demo", *TINY, "epochs=1", "--out", tmp_path, "--quiet")
    assert code == 2 and "damaged" in err and "Traceback" not in err
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"garbage"  # nothing lost or overwritten


def test_cifar_layout_through_the_cli(tmp_path, write_cifar, cli):
    write_cifar(tmp_path / "data", per_batch=16)
    out = tmp_path / "run"
    args = ["search", "--preset", "cifar10-two-stage", f"data.root={tmp_path / 'data'}", "epochs=1"]
    args += ["batch_size=16", "network.channels=4", "network.layers=3", "--out", str(out), "--quiet"]
    code, out, err = cli(*args)
    assert code == 0, err
    assert "genotype: Genotype(normal=[" in out
    code, _, err = cli(*args[:3], "data.root=/nonexistent", "--out", tmp_path / "x")
    assert code == 2
    assert "CIFAR-10 folder /nonexistent/cifar-10-batches-py does not exist" in err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU to detect host syncs")
@pytest.mark.parametrize("method", ["ista", "darts"])
def test_search_step_has_no_host_sync(method):
    config = apply_overrides(tiny(method), ["device=cuda"])
    split = open_split(config.data, train=True)
    task, data = build_task(config, split, torch.device("cuda")), split.source
    x, y = (data.images[:16].float() / 255).cuda(), data.labels[:16].cuda()
    task.start_epoch(0)
    task.train_step((x, y), (x, y))  # warm-up: cuDNN autotuning and lazy optimizer state may sync
    torch.cuda.set_sync_debug_mode("error")
    try:
        task.train_step((x, y), (x, y))
    finally:
        torch.cuda.set_sync_debug_mode("default")
