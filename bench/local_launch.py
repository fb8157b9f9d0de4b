"""Seeds on one machine: `ista launch --cluster local` against running the same seeds one after another.

Both in one run, alternating: the launch (each task's threads from --cpus-per-task, and no more tasks at
once than the CPUs allow) and a loop of `ista search` commands, one per seed, each with PyTorch's default
threads. The goal: the launch is not slower than the sequential runs.

    python bench/local_launch.py [--seeds 0-2] [--epochs 3] [--rounds 1] [--cpus-per-task 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ISTA = str(Path(sys.executable).with_name("ista"))


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="0-2")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--cpus-per-task", type=int, default=2)
    args = parser.parse_args()
    first, last = map(int, args.seeds.split("-"))
    seeds = range(first, last + 1)
    times: dict[str, list[float]] = {"launch": [], "sequential": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            launch = [ISTA, "launch", "--cluster", "local", "--preset", "demo", "--seeds", args.seeds,
                      "--wait", f"epochs={args.epochs}", "--cpus-per-task", str(args.cpus_per_task),
                      "--experiment", f"{tmp}/launch-{r}"]  # fmt: skip
            times["launch"].append(timed(launch))
            started = time.perf_counter()
            for s in seeds:
                search = [ISTA, "search", "--preset", "demo", f"seed={s}", f"epochs={args.epochs}",
                          "--out", f"{tmp}/sequential-{r}/seed-{s}", "--quiet"]  # fmt: skip
                subprocess.run(search, check=True, capture_output=True)
            times["sequential"].append(time.perf_counter() - started)
    launch, sequential = statistics.median(times["launch"]), statistics.median(times["sequential"])
    print(f"{len(seeds)} demo seeds × {args.epochs} epochs: launch --cluster local {launch:.1f} s, "
          f"one after another {sequential:.1f} s: launch/sequential = {launch / sequential:.2f}")  # fmt: skip
    row = {"bench": "local_launch", "seeds": len(seeds), "epochs": args.epochs, "launch_s": launch,
           "sequential_s": sequential, "ratio": launch / sequential, "rounds": args.rounds}  # fmt: skip
    print(json.dumps(row))


if __name__ == "__main__":
    main()
