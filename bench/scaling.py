"""Two-stage search epochs: 1 process, 2 independent processes side by side, and 2 gloo processes of one
run, all at the same per-process batch.

Each configuration runs a real `ista.runner.run` (one thread per process) on synthetic CIFAR-format
images; the configurations alternate, round after round. The two independent runs share the cores but
not a process group, so they separate what the machine costs (two processes on shared cores, memory
bandwidth) from what synchronisation costs (DDP, synchronised BN, the rank-0 recovery's broadcast):

    machine efficiency         = t(1 process) / t(2 independent)
    synchronisation efficiency = t(2 independent) / t(2 ranks)
    efficiency                 = t(1 process) / t(2 ranks) = machine × synchronisation   (1.0 = perfect)

plus the share of the epoch spent in recovery + broadcast.

    python bench/scaling.py [--images 2048] [--batch 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
from pathlib import Path

import torch
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank: int, world: int, port: int, out: str, overrides: list[str]) -> None:
    """One process: rank `rank` of a `world`-rank run, or (port 0) an independent run of its own."""
    if port:
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    else:
        out = f"{out}-{rank}"
    torch.set_num_threads(1)
    from ista.config import apply_overrides, preset
    from ista.distributed.runtime import stop
    from ista.runner import run

    try:
        run(apply_overrides(preset("cifar10-two-stage"), overrides), out, show_progress=False)
    finally:
        stop()


def epoch(mode: str, data: Path, out: Path, args) -> dict[str, float]:
    """mode: "1" (one process), "2 independent" (two runs side by side), "2 ranks" (one run of two)."""
    ranks = 2 if mode == "2 ranks" else 1
    overrides = [f"data.root={data}", f"data.subset={args.images}", f"batch_size={args.batch}", "epochs=1",
                 "data.workers=1", "data.augment=false", "device=cpu"]  # fmt: skip
    port = free_port() if ranks == 2 else 0
    mp.spawn(rank_main, args=(2, port, str(out), overrides), nprocs=1 if mode == "1" else 2, join=True)
    processes = 1 if mode == "1" else 2
    dirs = [out] if port else [Path(f"{out}-{i}") for i in range(processes)]
    steps = -(-args.images // 2 // (args.batch * ranks))
    runs = [json.loads((d / "metrics.jsonl").read_text().splitlines()[0]) for d in dirs]
    return {
        "step_s": statistics.mean(m["epoch_s"] for m in runs) / steps,
        "recovery_share": statistics.mean(m["recovery_s"] / m["epoch_s"] for m in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=32, help="per process")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from ista.data.synthetic import write_cifar10_folder

    modes = ("1", "2 independent", "2 ranks")
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_cifar10_folder(data, per_batch=args.images // 5)
        for r in range(args.rounds):
            for i, mode in enumerate(modes):
                results[mode].append(epoch(mode, data, Path(tmp) / f"run-{i}-{r}", args))
    step = {m: statistics.median(x["step_s"] for x in results[m]) for m in modes}
    share = {m: statistics.median(x["recovery_share"] for x in results[m]) for m in modes}
    print(json.dumps({
        "bench": "scaling",
        "images": args.images,
        "batch_per_process": args.batch,
        "cpus": len(os.sched_getaffinity(0)),
        "step_s": {m: round(v, 4) for m, v in step.items()},
        "machine_efficiency": round(step["1"] / step["2 independent"], 3),
        "synchronisation_efficiency": round(step["2 independent"] / step["2 ranks"], 3),
        "efficiency_2_ranks": round(step["1"] / step["2 ranks"], 3),
        "recovery_share_of_epoch": {m: round(v, 5) for m, v in share.items()},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
