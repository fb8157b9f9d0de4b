"""What being ready for preemption costs a run: the per-step stop decision and the step checkpoints.

On 2 gloo ranks (one thread each), in one run, side by side:
  * the stop decision (`Stops.due`: one 2-number all-reduce) per call, against a two-stage super-net step;
  * two-stage search epochs with `checkpoint_every_s=0` (the decision only) and with a step checkpoint at
    every step (`checkpoint_every_s=1e-9`), alternating, and what one step checkpoint adds.

    python bench/preemption.py [--images 512] [--batch 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank: int, port: int, out: str, overrides: list[str], calls: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip
    import torch

    torch.set_num_threads(1)
    from ista.config import apply_overrides, preset
    from ista.distributed import runtime
    from ista.distributed.preemption import Stops
    from ista.runner import run

    try:
        runtime.start(runtime.detect(), "cpu", 600)
        stops = Stops(0)
        runtime.barrier()
        started = time.perf_counter()
        for _ in range(calls):
            stops.due()
        decision_s = (time.perf_counter() - started) / calls
        result = run(apply_overrides(preset("demo"), overrides), out, show_progress=False)
        if rank == 0:
            Path(out, "bench.json").write_text(
                json.dumps({"decision_s": decision_s, "epoch_s": result.history[-1]["epoch_s"]})
            )
    finally:
        runtime.stop()


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    base = [f"data.subset={args.images}", f"batch_size={args.batch}", "network.channels=8",
            "network.layers=5", "epochs=1", "data.workers=1"]  # fmt: skip
    steps = args.images // 2 // 2 // args.batch  # the W-half, sharded over 2 ranks
    modes = {"decision only": "checkpoint_every_s=0", "step checkpoint every step": "checkpoint_every_s=1e-9"}
    results: dict[str, list[dict]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for mode, setting in modes.items():
                out = str(Path(tmp) / f"{r}-{len(results[mode])}-{mode.split()[0]}")
                mp.spawn(rank_main, args=(free_port(), out, [*base, setting], args.calls), nprocs=2)
                results[mode].append(json.loads(Path(out, "bench.json").read_text()))
    epoch = {m: statistics.median(x["epoch_s"] for x in v) for m, v in results.items()}
    decision = statistics.median(x["decision_s"] for v in results.values() for x in v)
    step = epoch["decision only"] / steps
    print(f"2 gloo ranks, {steps} steps an epoch, {args.rounds} rounds (medians)")
    print(f"stop decision: {decision * 1e6:.0f} µs per step = {decision / step:.3%} of a step "
          f"({step:.3f} s: the epoch's time / its steps)")  # fmt: skip
    extra = (epoch["step checkpoint every step"] - epoch["decision only"]) / steps
    plain, every = epoch["decision only"], epoch["step checkpoint every step"]
    print(f"epoch: {plain:.2f} s (decision only), {every:.2f} s (a step checkpoint at every step): "
          f"{extra * 1e3:.0f} ms per step checkpoint = {extra / step:.1%} of a step")  # fmt: skip
    row = {"bench": "preemption", "steps": steps, "decision_s": decision, "step_s": step,
           "step_checkpoint_s": extra, "epoch_s": epoch}  # fmt: skip
    print(json.dumps(row))


if __name__ == "__main__":
    main()
