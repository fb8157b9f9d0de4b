"""The GPU check: every CUDA path of ista in one short call (`bench/gpu.sh`), sized for 8 minutes on one
H100/H200 from a bare machine (PyTorch, NumPy, SciPy, pytest; no network, no ffcv, cvxpy or submitit).

Each check runs in its own process under its own time budget; everything it prints goes to the console
and to OUT/gpu.log; the end is a summary, one line per check (passed, failed with its reason, or its
figure), also in OUT/gpu-summary.txt and as JSON lines in OUT/gpu.jsonl.

    bench/gpu.sh [--dry-run] [--only NAME,NAME] [--device cuda|cpu]

`--dry-run` lists the checks and their budgets (no GPU needed); `--device cpu` runs what can run on a CPU
(the tiny runs and the USR2 resume), to try the script out where there is no GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 480  # the whole call, checks one after another
TINY = ["network.channels=8", "network.layers=5", "batch_size=32", "data.workers=2", "epochs=1"]
SEARCH = ["data.subset=256", *TINY]
ONE_STAGE = ["onestage.param_cap=0", "onestage.max_search_epochs=1"]
RUNS = {  # name: (ista command line, amp it must record: "auto" = what amp=auto picks here)
    "run:two-stage": (["search", "--preset", "cifar10-two-stage", *SEARCH], "auto"),
    "run:darts-fp16": (["search", "--preset", "cifar10-darts", "amp=fp16", *SEARCH], "torch.float16"),
    "run:two-stage-fp16-clip_arch": (
        ["search", "--preset", "cifar10-two-stage-code", "amp=fp16", *SEARCH],
        "torch.float16",
    ),
    "run:one-stage-official": (
        ["search", "--preset", "cifar10-one-stage", "arch.draws=official", *ONE_STAGE, *SEARCH],
        "auto",
    ),
    "run:train-deterministic": (
        ["train", "--preset", "cifar10-eval", "--genotype", "ISTA_twostage", "deterministic=true", *SEARCH],
        "auto",
    ),
}
RUN_CHECK = "python -m ista {}: exit 0, the amp in env.json, finite metrics"


@dataclass(frozen=True)
class Check:
    name: str
    budget_s: int
    what: str
    cpu: bool = False  # also meaningful with --device cpu


CHECKS = [
    Check("env", 10, "the GPU, driver, torch and CUDA versions; what amp=auto picks; TF32 defaults"),
    Check("host-sync-tests", 45, "the host-sync tests in full: sparse forward and search steps never sync"),
    *[Check(name, 25, RUN_CHECK.format(" ".join(argv[:3])), cpu=True) for name, (argv, _) in RUNS.items()],
    Check("usr2-resume", 45, "USR2 mid-epoch: step checkpoint, exit 140, resume to the end; exact?", True),
    Check("cpu-cuda-agreement", 30, "one two-stage step on the CPU and on CUDA, fp32, TF32 off"),
    Check("syncs-per-step", 30, "host syncs per step of the real loop, data included (default amp, fp16)"),
    Check("step-fp32", 50, "sparse vs dense search step, fp32, batch 64 and 256"),
    Check("step-bf16", 35, "sparse vs dense search step, bf16 autocast, batch 64 and 256"),
    Check("search-epoch", 90, "one full-size two-stage search epoch (50,000 images, batch 256)"),
]
assert sum(c.budget_s for c in CHECKS) <= BUDGET_S


# --- the driver ---------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="list the checks and their budgets")
    parser.add_argument("--only", help="comma-separated check names")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--run", help=argparse.SUPPRESS)  # one check, in the child process
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        return child(args.run, Path(args.work), args.device)
    chosen = [c for c in CHECKS if not args.only or c.name in args.only.split(",")]
    if args.dry_run:
        for c in chosen:
            print(f"{c.name:32} {c.budget_s:4d} s  {c.what}")
        print(f"{'total':32} {sum(c.budget_s for c in chosen):4d} s  (at most {BUDGET_S} s)")
        return 0
    out = Path(os.environ.get("OUT") or "/tmp/ista-gpu")
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with open(out / "gpu.log", "w") as log, tempfile.TemporaryDirectory(prefix="ista-gpu-") as work:
        for c in chosen:
            if args.device == "cpu" and not c.cpu:
                results.append({"check": c.name, "status": "skipped", "reason": "needs CUDA"})
                continue
            results.append(run_check(c, Path(work), args.device, log))
        lines = [summary_line(r) for r in results]
        text = "\n".join(["", "=== summary ===", *lines, ""])
        print(text)
        log.write(text)
    (out / "gpu-summary.txt").write_text("\n".join(lines) + "\n")
    (out / "gpu.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
    return int(any(r["status"] == "failed" for r in results))


def run_check(c: Check, work: Path, device: str, log) -> dict:
    """The check in a child process under its budget; its output to the console and the log as it comes."""
    banner = f"\n=== {c.name} (budget {c.budget_s} s): {c.what}\n"
    print(banner, end="", flush=True)
    log.write(banner)
    command = [sys.executable, __file__, "--run", c.name, "--work", str(work), "--device", device]
    started = time.perf_counter()
    child_process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)  # fmt: skip
    result = None
    timer = _Timer(child_process, c.budget_s)
    for line in child_process.stdout:
        print(line, end="", flush=True)
        log.write(line)
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
    code = child_process.wait()
    timer.cancel()
    if timer.fired:
        result = {"status": "failed", "reason": f"timed out after {c.budget_s} s"}
    elif result is None:
        result = {"status": "failed", "reason": f"exit {code} without a result"}
    return {"check": c.name, **result, "s": round(time.perf_counter() - started, 1)}


class _Timer:
    """Kills the check's whole process group when its budget runs out."""

    def __init__(self, process: subprocess.Popen, seconds: float):
        import threading

        self.fired = False
        self._timer = threading.Timer(seconds, self._kill, (process,))
        self._timer.start()

    def _kill(self, process: subprocess.Popen) -> None:
        self.fired = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def cancel(self) -> None:
        self._timer.cancel()


def summary_line(r: dict) -> str:
    detail = r.get("figure") or r.get("reason") or ""
    took = f" ({r['s']} s)" if "s" in r else ""
    return f"{r['check']:32} {r['status']:8} {detail}{took}"


# --- the checks, each in its own process -------------------------------------------------------------
class CheckFailed(Exception):
    pass


def child(name: str, work: Path, device: str) -> int:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        if name.startswith("run:"):
            figure = check_run(name, work, device)
        else:
            figure = globals()["check_" + name.replace("-", "_")](work, device)
        result = {"status": "passed", "figure": figure}
    except CheckFailed as err:
        result = {"status": "failed", "reason": str(err)}
    except Exception as err:  # a crash is a finding too: its traceback is in the log above
        import traceback

        traceback.print_exc()
        result = {"status": "failed", "reason": f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"}
    print("RESULT " + json.dumps(result), flush=True)
    return 0


SOURCE = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def python(argv: list[str]) -> subprocess.CompletedProcess:
    """`python ARGV` from this source tree, the end of its output passed on to the log."""
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=SOURCE, cwd=ROOT)
    print(done.stdout[-4000:], done.stderr[-4000:], sep="\n")
    return done


def ista(argv: list[str]) -> subprocess.CompletedProcess:
    return python(["-m", "ista", *argv])


def cifar(work: Path) -> Path:
    """A synthetic CIFAR-10 folder in the official layout (made once, shared by the runs)."""
    from ista.data.synthetic import write_cifar10_folder

    root = work / "cifar"
    if not root.exists():
        write_cifar10_folder(root, per_batch=256)
    return root


def expected_amp(amp: str, device: str) -> str:
    import torch

    from ista.train.step import autocast_dtype

    return str(autocast_dtype("auto", torch.device(device))) if amp == "auto" else amp


def finite_metrics(run_dir: Path) -> list[dict]:
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    bad = [(m["epoch"], k) for m in history for k, v in m.items()
           if isinstance(v, float) and not math.isfinite(v)]  # fmt: skip
    if not history or bad:
        raise CheckFailed(f"non-finite metrics {bad}" if bad else "no metrics written")
    return history


def check_run(name: str, work: Path, device: str) -> str:
    argv, amp = RUNS[name]
    run_dir = work / name.replace(":", "-")
    done = ista([*argv, f"data.root={cifar(work)}", f"device={device}", "--out", str(run_dir), "--quiet"])
    if done.returncode != 0:
        raise CheckFailed(f"exit {done.returncode}: {(done.stderr.strip().splitlines() or [''])[-1][:300]}")
    env = json.loads((run_dir / "env.json").read_text())
    if env["amp"] != expected_amp(amp, device):
        raise CheckFailed(f"env.json records amp {env['amp']}, expected {expected_amp(amp, device)}")
    last = finite_metrics(run_dir)[-1]
    acc = last.get("valid_acc", last.get("test_acc"))
    return f"amp {env['amp']}, {last['epoch'] + 1} epochs, last accuracy {acc}, on {env['device']}"


def check_usr2_resume(work: Path, device: str) -> str:
    """A step checkpoint on USR2 (what Slurm sends before preemption), then the same command resumes it;
    with deterministic=true the result is compared with an uninterrupted run."""
    argv = ["search", "--preset", "cifar10-two-stage", "deterministic=true", "epochs=2", "data.subset=1024",
            *TINY[:-1], f"data.root={cifar(work)}", f"device={device}", "--quiet"]  # fmt: skip
    straight, stopped = work / "usr2-straight", work / "usr2-stopped"
    if (done := ista([*argv, "--out", str(straight)])).returncode != 0:
        raise CheckFailed(f"the straight run failed: exit {done.returncode}")
    command = [sys.executable, "-m", "ista", *argv, "--out", str(stopped)]
    process = subprocess.Popen(command, cwd=ROOT, env=SOURCE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)  # fmt: skip
    while not (stopped / "config.json").exists():  # written once the signal handlers are in place
        if process.poll() is not None:
            raise CheckFailed(f"the run ended before USR2: {process.stderr.read()[-300:]}")
        time.sleep(0.01)
    process.send_signal(signal.SIGUSR2)
    _, err = process.communicate(timeout=120)
    print(err[-2000:])
    if process.returncode != 128 + signal.SIGUSR2:
        raise CheckFailed(f"exit {process.returncode} after USR2, expected {128 + signal.SIGUSR2}")
    from ista.train.checkpoint import load_checkpoint

    at = load_checkpoint(stopped / "checkpoint.pt").get("position")
    if not at:
        raise CheckFailed("USR2 left no step checkpoint")
    if (done := ista([*argv, "--out", str(stopped)])).returncode != 0:
        raise CheckFailed(f"the resume failed: exit {done.returncode}")
    a, b = finite_metrics(straight), finite_metrics(stopped)
    timing = ("epoch_s", "recovery_s")
    same = [{k: v for k, v in m.items() if k not in timing} for m in a] == [
        {k: v for k, v in m.items() if k not in timing} for m in b
    ]
    exact = "identical to" if same else "DIFFERENT from"
    return f"stopped at epoch {at['epoch']}, step {at['step']}; resumed; metrics {exact} an uninterrupted run"


def check_env(work: Path, device: str) -> str:
    import torch

    from ista.train.step import autocast_dtype

    subprocess.run(["nvidia-smi"], check=False)
    cuda = torch.device("cuda")
    cap = torch.cuda.get_device_capability()
    native = torch.cuda.is_bf16_supported(including_emulation=False)
    tf32 = f"matmul {torch.backends.cuda.matmul.allow_tf32}, cuDNN {torch.backends.cudnn.allow_tf32}"
    return (f"{torch.cuda.get_device_name()} sm_{cap[0]}{cap[1]}, torch {torch.__version__}, CUDA "
            f"{torch.version.cuda}, bf16 native {native}, amp=auto → {autocast_dtype('auto', cuda)}, TF32 "
            f"{tf32}")  # fmt: skip


def check_host_sync_tests(work: Path, device: str) -> str:
    tests = ["tests/space/test_networks.py", "tests/search/test_search.py", "-k", "host_sync"]
    command = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", *tests]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=SOURCE)
    print(done.stdout, done.stderr)
    last = (done.stdout.strip().splitlines() or [""])[-1]
    if done.returncode != 0 or "skipped" in last:
        raise CheckFailed(last.strip("= "))
    return last.strip("= ")


def _tiny_task(device: str, *more: str):
    """A two-stage search task on synthetic CIFAR images and its loaders, as the runner builds them."""
    import torch

    from ista.config import apply_overrides, preset
    from ista.data.sources import CIFAR10_MEAN, CIFAR10_STD, ImageSet
    from ista.data.splits import memory_split
    from ista.runner import build_task
    from ista.train.engine import build_loaders

    config = apply_overrides(preset("cifar10-two-stage"), [*TINY, *more])
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (1024, 3, 32, 32), dtype=torch.uint8, generator=g)
    data = ImageSet(images, torch.randint(0, 10, (1024,), generator=g), CIFAR10_MEAN, CIFAR10_STD, 10)
    split = memory_split(data, device=device)
    return config, build_task(config, split, torch.device(device)), build_loaders(config, split), data


def check_cpu_cuda_agreement(work: Path, device: str) -> str:
    """The same step from the same weights and batch on both devices: fp32 with TF32 off agrees to a
    relative 1e-4 in the loss and 1e-4 of the largest weight in the updated weights."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    results = {}
    for dev in ("cpu", "cuda"):
        _, task, _, data = _tiny_task(dev, "amp=off")
        x = (data.images[:32].float() / 255).to(dev)
        y = data.labels[:32].to(dev)
        task.start_epoch(0)
        stats = task.train_step((x, y), (x.flip(0), y.flip(0)))
        loss = float(stats["train_loss"][0]) / 32
        results[dev] = (loss, [p.detach().cpu() for p in task.w_parameters])
    (l0, w0), (l1, w1) = results["cpu"], results["cuda"]
    loss_rel = abs(l0 - l1) / abs(l0)
    scale = max(float(p.abs().max()) for p in w0)
    w_diff = max(float((a - b).abs().max()) for a, b in zip(w0, w1, strict=True)) / scale
    figure = f"loss {l0:.6f} vs {l1:.6f} (rel {loss_rel:.1e}); W after the step: {w_diff:.1e} × max|W| apart"
    if loss_rel > 1e-4 or w_diff > 1e-4:
        raise CheckFailed(figure + ", over the 1e-4 tolerance")
    return figure


def check_syncs_per_step(work: Path, device: str) -> str:
    """Host syncs per step of `run_epochs` over the real loaders (augmentation on the GPU), counted with
    torch.cuda.set_sync_debug_mode, apart from the end of the epoch (evaluation, recovery, records)."""
    return "; ".join(_syncs(amp) for amp in ("auto", "fp16"))


def _syncs(amp: str) -> str:
    import collections
    import warnings

    import torch

    from ista.report.console import RunProgress
    from ista.train.engine import run_epochs

    _, task, loaders, _ = _tiny_task("cuda", f"amp={amp}", "data.cutout=16")
    phase = {"now": "warm-up"}
    for name in ("evaluate", "end_epoch"):  # what runs after the epoch's last step
        original = getattr(task, name)

        def wrapped(*a, _original=original, **k):
            phase["now"] = "epoch end"
            return _original(*a, **k)

        setattr(task, name, wrapped)
    where: collections.Counter = collections.Counter()

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message):
            where[(phase["now"], f"{Path(filename).name}:{lineno}")] += 1

    with RunProgress(2, enabled=False) as progress:
        # a warm-up epoch first: cuDNN's autotuning and the optimizers' lazy state may sync
        run_epochs(task, loaders, seed=0, start_epoch=0, epochs=1, on_epoch_end=lambda e, m: None,
                   progress=progress)  # fmt: skip
        phase["now"] = "steps"
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = record
            torch.cuda.set_sync_debug_mode("warn")
            try:
                run_epochs(task, loaders, seed=0, start_epoch=1, epochs=2, on_epoch_end=lambda e, m: None,
                           progress=progress)  # fmt: skip
            finally:
                torch.cuda.set_sync_debug_mode("default")
    steps = len(loaders.train)
    print(f"amp={amp} ({task.dtype}), {steps} steps, syncs by (phase, place):", dict(where))
    per_step = sum(n for (p, _), n in where.items() if p == "steps") / steps
    places = ", ".join(f"{w} ×{n}" for (p, w), n in where.items() if p == "steps") or "none"
    return f"{task.dtype}: {per_step:.2f} per step ({places})"


def _bench(argv: list[str]) -> str:
    done = python(argv)
    if done.returncode != 0:
        raise CheckFailed(f"exit {done.returncode}: {(done.stderr.strip().splitlines() or [''])[-1][:300]}")
    return done.stdout


def _steps(argv: list[str]) -> str:
    rows = [json.loads(line) for line in _bench(argv).splitlines() if line.startswith("{")]
    return "; ".join(
        f"batch {r['batch']}: sparse {r['sparse_step_s']} s, dense {r['dense_step_s']} s, "
        f"ratio {r['sparse_over_dense_time']}, peak {r.get('sparse_peak_mb')}/{r.get('dense_peak_mb')} MB"
        for r in rows
    )


def check_step_fp32(work: Path, device: str) -> str:
    return _steps(["bench/supernet_step.py", "--device", "cuda", "--batch", "64", "256", "--repeats", "5"])


def check_step_bf16(work: Path, device: str) -> str:
    return _steps(["bench/supernet_step.py", "--device", "cuda", "--batch", "64", "256", "--repeats", "5",
                   "--amp"])  # fmt: skip


def check_search_epoch(work: Path, device: str) -> str:
    row = json.loads(_bench(["bench/search_epoch.py", "--device", "cuda"]).strip().splitlines()[-1])
    return (f"{row['epoch_s']} s/epoch, {row['train_images_per_s']} train images/s ({row['amp']}), "
            f"recovery {row['recovery_s']} s, 50 epochs ≈ {row['projected_50_epochs_h']} h")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
