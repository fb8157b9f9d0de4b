"""Two-stage search epochs with 1 and with 2 gloo processes at the same per-process batch, side by side.

Each configuration runs a real `ista.runner.run` (torchrun-style variables, one thread per process) on
synthetic CIFAR-format images; the runs alternate, round after round. Reported: seconds per step,
scaling efficiency t(1 process)/t(2 processes) at equal per-process batch (1.0 = perfect), and the share
of the epoch spent in recovery + broadcast.

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
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    from ista.config import apply_overrides, preset
    from ista.distributed.runtime import stop
    from ista.runner import run

    try:
        run(apply_overrides(preset("cifar10-two-stage"), overrides), out, show_progress=False)
    finally:
        stop()


def epoch(world: int, data: Path, out: Path, args) -> dict[str, float]:
    overrides = [f"data.root={data}", f"data.subset={args.images}", f"batch_size={args.batch}", "epochs=1",
                 "data.workers=1", "data.augment=false", "device=cpu"]  # fmt: skip
    mp.spawn(rank_main, args=(world, free_port(), str(out), overrides), nprocs=world, join=True)
    (metrics,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = -(-args.images // 2 // (args.batch * world))
    return {
        "step_s": metrics["epoch_s"] / steps,
        "recovery_share": metrics["recovery_s"] / metrics["epoch_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=32, help="per process")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from ista.data.synthetic import write_cifar10_folder

    results: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_cifar10_folder(data, per_batch=args.images // 5)
        for r in range(args.rounds):
            for world in (1, 2):
                results[world].append(epoch(world, data, Path(tmp) / f"run-{world}-{r}", args))
    step = {w: statistics.median(x["step_s"] for x in results[w]) for w in results}
    share = {w: statistics.median(x["recovery_share"] for x in results[w]) for w in results}
    print(json.dumps({
        "bench": "scaling",
        "images": args.images,
        "batch_per_process": args.batch,
        "cpus": len(os.sched_getaffinity(0)),
        "step_s": {str(w): round(v, 4) for w, v in step.items()},
        "efficiency_2_processes": round(step[1] / step[2], 3),
        "recovery_share_of_epoch": {str(w): round(v, 5) for w, v in share.items()},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
