"""A network's time per batch where it will run: warm-up passes, then timed rounds, their median and spread.

Inference as deployed: eval mode, no autograd, optional autocast and channels-last; on CUDA each round is
timed between synchronisations, so the figure is the GPU's work, not the launch's.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn

AMP = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    batch: int,
    device: str = "cpu",
    amp: str = "off",
    channels_last: bool = False,
    warmup: int = 3,
    rounds: int = 10,
) -> dict[str, Any]:
    """Milliseconds per batch of `batch` images (median, min, max over `rounds`) and images per second."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but no CUDA GPU is visible; time on --device cpu")
    if amp not in AMP:
        raise ValueError(f"unknown amp {amp!r}; choose one of {', '.join(AMP)}")
    if warmup < 0 or rounds < 1 or batch < 1:
        raise ValueError("the batch and the rounds must be at least 1, the warm-up passes at least 0")
    target = torch.device(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(target).to(memory_format=memory_format).eval()
    x = torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(0))
    x = x.to(target, memory_format=memory_format)
    dtype = AMP[amp]
    times = []
    with torch.inference_mode(), torch.autocast(target.type, dtype=dtype, enabled=dtype is not None):
        for i in range(warmup + rounds):
            _sync(target)
            start = time.perf_counter()
            model(x)
            _sync(target)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    median = statistics.median(times)
    return {
        "device": device,
        "device_name": torch.cuda.get_device_name(target) if target.type == "cuda" else _cpu_name(),
        "threads": torch.get_num_threads(),
        "batch": batch,
        "amp": amp,
        "channels_last": channels_last,
        "rounds": rounds,
        "median_ms": round(median, 4),
        "min_ms": round(min(times), 4),
        "max_ms": round(max(times), 4),
        "images_per_s": round(batch / median * 1e3, 2),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cpu_name() -> str:
    """The CPU's model name (Linux), else the platform's word for it."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            return names[0]
    except OSError:
        pass
    return platform.processor() or "cpu"
