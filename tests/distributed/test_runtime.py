"""Multi-process runs with real gloo process groups, started the way torchrun starts them."""

import json
import os

import numpy as np
import pytest
import torch.multiprocessing as mp

from ista.config import apply_overrides, preset
from ista.distributed.runtime import Placement, PlacementError, detect, first_host, gpu_index, shared_gpus

TINY = ["data.subset=256", "network.channels=4", "network.layers=3", "epochs=2", "data.workers=1"]


def test_placement_from_each_launcher():
    assert detect({}) == Placement()
    torchrun = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "n1", "MASTER_PORT": "1234"}
    assert detect(torchrun) == Placement(3, 4, 1, "n1", 1234, "torchrun")
    srun = {"SLURM_PROCID": "2", "SLURM_NTASKS": "4", "SLURM_LOCALID": "0", "SLURM_JOB_ID": "4242"}
    srun["SLURM_JOB_NODELIST"] = "gpu[07-08]"
    placed = detect(srun)
    assert (placed.rank, placed.world_size, placed.launcher, placed.master_port) == (2, 4, "srun", 24242)
    assert placed.master_addr == "gpu07" or placed.master_addr.startswith("gpu")
    assert detect({"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_JOB_NODELIST": "a"}) == Placement()
    assert first_host("a1,b2") == "a1"


def test_each_rank_gets_its_own_gpu_or_a_clear_error():
    assert [gpu_index(r, 4) for r in range(4)] == [0, 1, 2, 3]
    assert gpu_index(3, 1) == 0  # Slurm's --gpus-per-task: each task sees only its own GPU
    with pytest.raises(PlacementError, match="local rank 2 on a node where 2 GPUs are visible"):
        gpu_index(2, 2)  # was rank 2 → GPU 0, beside rank 0, and an obscure NCCL failure later
    # one GPU visible to several tasks that were not bound to their own: told apart by the GPUs' UUIDs
    assert shared_gpus([("n1", "GPU-a"), ("n1", "GPU-b"), ("n2", "GPU-a")]) is None
    assert shared_gpus([("n1", "GPU-a"), ("n1", "GPU-a"), ("n2", "GPU-c")]) == "ranks 0, 1 on n1"


def search_as_rank(rank: int, world: int, port: int, out: str, overrides: list[str]) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip

    from ista.distributed.runtime import stop
    from ista.runner import run

    try:
        result = run(apply_overrides(preset("demo"), overrides), out, show_progress=False)
        history = [{k: v for k, v in m.items() if not k.endswith("_s")} for m in result.history]  # no timings
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump({"genotype": result.genotype.to_text(), "history": history}, f)
    finally:
        stop()


def test_two_ranks_agree_and_match_one_process_with_the_same_global_batch(tmp_path, free_port):
    two, one = tmp_path / "two", tmp_path / "one"
    # one epoch: after it Adam turns float-level differences in b's near-zero gradient components into
    # steps of its learning rate, and a near tie in z can then pick other supports (seen on the digits)
    one_epoch = [*TINY, "epochs=1"]
    mp.spawn(
        search_as_rank, args=(2, free_port, str(two), [*one_epoch, "batch_size=16"]), nprocs=2, join=True
    )
    ranks = [json.loads((two / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]  # one genotype, one set of metrics, on both ranks
    env = json.loads((two / "env.json").read_text())
    assert env["world_size"] == 2 and env["launcher"] == "torchrun"
    from ista.runner import run

    single = run(apply_overrides(preset("demo"), [*one_epoch, "batch_size=32"]), one, show_progress=False)
    assert single.genotype.to_text() == ranks[0]["genotype"]
    for a, b in zip(single.history, ranks[0]["history"], strict=True):  # BN over the global batch
        for key in ("train_loss", "arch_loss", "valid_loss", "train_acc", "valid_acc"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
        for cell in ("normal", "reduce"):
            za, zb = (np.concatenate(m["z"][cell]) for m in (a, b))
            assert np.allclose(za, zb, rtol=1e-3, atol=1e-7)


def fused_bn_as_rank(rank: int, port: int, out: str) -> None:
    """A node's two active ops through `run_together` and one by one, on 2 gloo ranks."""
    import torch
    import torch.distributed as dist

    from ista.distributed import sync_bn
    from ista.space.ops import build_op

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        ops = torch.nn.ModuleList([build_op("sep_conv_3x3", 4, 1), build_op("skip_connect", 4, 2)])
        sync_bn.convert(ops)
        g = torch.Generator().manual_seed(rank)  # each rank its own batch
        xs = [torch.randn(3, 4, 8, 8, generator=g, requires_grad=True) for _ in ops]
        calls = []
        real = dist.all_reduce
        dist.all_reduce = lambda *a, **k: calls.append(1) or real(*a, **k)
        results = {}
        for name, run in (("fused", sync_bn.run_together), ("one by one", None)):
            calls.clear()
            outs = run(list(ops), xs) if run else [op(x) for op, x in zip(ops, xs, strict=True)]
            sum(o.square().sum() for o in outs).backward()
            results[name] = {"calls": len(calls), "outs": [o.detach() for o in outs],
                             "grads": [x.grad.clone() for x in xs]}  # fmt: skip
            for x in xs:
                x.grad = None
        dist.all_reduce = real
        torch.save(results, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_independent_ops_share_their_bn_all_reduces(tmp_path, free_port):
    import torch

    mp.spawn(fused_bn_as_rank, args=(free_port, str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        r = torch.load(tmp_path / f"rank{rank}.pt")
        # sep_conv has 2 BNs, the stride-2 skip (FactorizedReduce) 1: 3 + 3 one by one, 2 + 2 together
        assert (r["one by one"]["calls"], r["fused"]["calls"]) == (6, 4)
        for key in ("outs", "grads"):
            for a, b in zip(r["fused"][key], r["one by one"][key], strict=True):
                assert torch.allclose(a, b, atol=1e-6), key
