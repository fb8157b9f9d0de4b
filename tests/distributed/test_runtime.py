"""Multi-process runs with real gloo process groups, started the way torchrun starts them."""

import json
import os

import numpy as np
import pytest
import torch.multiprocessing as mp

from ista.config import apply_overrides, preset
from ista.distributed.runtime import Placement, detect, first_host

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


def search_as_rank(rank: int, world: int, port: int, out: str, overrides: list[str]) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip
    import torch

    from ista.distributed.runtime import stop
    from ista.runner import run

    torch.set_num_threads(1)  # two ranks on two cores: one thread each, or they thrash
    try:
        result = run(apply_overrides(preset("demo"), overrides), out, show_progress=False)
        history = [{k: v for k, v in m.items() if not k.endswith("_s")} for m in result.history]  # no timings
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump({"genotype": result.genotype.to_text(), "history": history}, f)
    finally:
        stop()


def test_two_ranks_agree_and_match_one_process_with_the_same_global_batch(tmp_path, free_port):
    two, one = tmp_path / "two", tmp_path / "one"
    mp.spawn(search_as_rank, args=(2, free_port, str(two), [*TINY, "batch_size=16"]), nprocs=2, join=True)
    ranks = [json.loads((two / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]  # one genotype, one set of metrics, on both ranks
    env = json.loads((two / "env.json").read_text())
    assert env["world_size"] == 2 and env["launcher"] == "torchrun"
    mp.spawn(search_as_rank, args=(1, free_port, str(one), [*TINY, "batch_size=32"]), nprocs=1, join=True)
    single = json.loads((one / "rank0.json").read_text())
    assert single["genotype"] == ranks[0]["genotype"]
    for a, b in zip(single["history"], ranks[0]["history"], strict=True):  # BN over the global batch
        for key in ("train_loss", "arch_loss", "valid_loss", "train_acc", "valid_acc"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
        for cell in ("normal", "reduce"):
            za, zb = (np.concatenate(m["z"][cell]) for m in (a, b))
            assert np.allclose(za, zb, rtol=1e-3, atol=1e-7)
