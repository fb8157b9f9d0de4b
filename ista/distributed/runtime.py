"""Where this process sits in a run, from whichever launcher started it, and the process group it joins.

Launchers name the same facts differently: torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT (submitit's TorchDistributedEnvironment exports the same names); a plain `srun` sets
SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID and the node list. Without either the run is one process.
The process group gets a timeout, so a rank that cannot reach the others, or a dead rank, fails the job
instead of holding its allocation until the time limit.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar, cast

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class Placement:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    launcher: str = "single"  # torchrun (or submitit) | srun | single


def detect(environ: Mapping[str, str] = os.environ) -> Placement:
    if "RANK" in environ and "WORLD_SIZE" in environ:
        return Placement(
            int(environ["RANK"]),
            int(environ["WORLD_SIZE"]),
            int(environ.get("LOCAL_RANK", 0)),
            environ.get("MASTER_ADDR", "127.0.0.1"),
            int(environ.get("MASTER_PORT", 29500)),
            "torchrun",
        )
    tasks = int(environ.get("SLURM_NTASKS") or environ.get("SLURM_STEP_NUM_TASKS") or 1)
    if tasks > 1 and "SLURM_PROCID" in environ:
        nodes = environ.get("SLURM_STEP_NODELIST") or environ["SLURM_JOB_NODELIST"]
        port = int(environ.get("MASTER_PORT", 20000 + int(environ.get("SLURM_JOB_ID", 0)) % 40000))
        rank, local = int(environ["SLURM_PROCID"]), int(environ.get("SLURM_LOCALID", 0))
        return Placement(rank, tasks, local, first_host(nodes), port, "srun")
    return Placement()


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list (`n[1-2,5]`, `a1,b2`): scontrol's expansion where available."""
    try:
        out = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=30
        )
        if out.returncode == 0 and out.stdout.split():
            return out.stdout.split()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    match = re.match(r"([^,\[]+)(?:\[(\d+))?", nodelist)
    if not match:
        raise ValueError(f"cannot read the Slurm node list {nodelist!r}")
    return match.group(1) + (match.group(2) or "")


def task_cpus(environ: Mapping[str, str] = os.environ) -> int | None:
    """The CPUs a launched task was given: `ista launch --cpus-per-task` (ISTA_CPUS_PER_TASK) or Slurm's
    (SLURM_CPUS_PER_TASK), capped by the affinity mask; inside a Slurm job without either, the mask (srun's
    binding). None outside a launched task: the process keeps PyTorch's default."""
    mask = len(os.sched_getaffinity(0))
    given = environ.get("ISTA_CPUS_PER_TASK") or environ.get("SLURM_CPUS_PER_TASK")
    if given:
        return max(1, min(int(given), mask))
    return mask if "SLURM_JOB_ID" in environ else None


def use_cpus(cpus: int | None) -> None:
    """Intra-op threads for this process, and OMP/MKL threads for the processes it starts (loader workers):
    tasks that share a machine each start as many threads as the whole machine has cores otherwise, and
    thrash (3 local demo seeds on 2 cores: epochs of up to 191 s instead of 5–8 s)."""
    if cpus is None:
        return
    torch.set_num_threads(cpus)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(cpus)


@contextlib.contextmanager
def own_process_state() -> Iterator[None]:
    """Undoes what a seed's task sets in its process (environment, threads) when it ends: the debug executor
    runs seeds in the submitting process, which goes on as it was (a later run there would otherwise take
    the seed's CPUs for its own)."""
    environ, threads = dict(os.environ), torch.get_num_threads()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(environ)
        torch.set_num_threads(threads)


class PlacementError(ValueError):
    """Ranks and GPUs do not match: one line before NCCL fails with a message that names neither."""


def gpu_index(local_rank: int, visible: int) -> int:
    """This task's GPU among the `visible` ones: the one of its local rank, or the only one a task sees
    when Slurm binds one GPU to each task (--gpus-per-task). More tasks than GPUs is an error."""
    if local_rank < visible:
        return local_rank
    if visible == 1:
        return 0  # bound to its own GPU, or sharing one: `shared_gpus` tells the two apart
    raise PlacementError(
        f"local rank {local_rank} on a node where {visible} GPUs are visible: more tasks per node than GPUs, "
        f"and NCCL cannot run two ranks on one GPU; start at most {visible} tasks per node (ista launch: "
        "--tasks-per-node = --gpus-per-node)"
    )


def shared_gpus(devices: list[tuple[str, str]]) -> str | None:
    """Which ranks share a GPU, from every rank's (host, GPU UUID); None if none do."""
    ranks: dict[tuple[str, str], list[int]] = {}
    for rank, device in enumerate(devices):
        ranks.setdefault(device, []).append(rank)
    shared = [f"ranks {', '.join(map(str, r))} on {host}" for (host, _), r in ranks.items() if len(r) > 1]
    return "; ".join(shared) or None


def start(placement: Placement, device: str, timeout_s: float) -> torch.device:
    """Joins the process group (NCCL on GPUs, gloo on CPUs) and returns this rank's device."""
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(gpu_index(placement.local_rank, torch.cuda.device_count()))
    global _control
    if placement.world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            "nccl" if use_cuda else "gloo",
            init_method=f"tcp://{placement.master_addr}:{placement.master_port}",
            rank=placement.rank,
            world_size=placement.world_size,
            timeout=timedelta(seconds=timeout_s),
        )
        # the per-step stop decision is a host value: on GPUs it goes over gloo, never syncing the device
        _control = _all_ranks_group("gloo", timeout_s) if use_cuda else None
        if use_cuda:  # before NCCL's first collective, over gloo
            uuid = str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
            devices: list = [None] * placement.world_size
            dist.all_gather_object(devices, (socket.gethostname(), uuid), group=_control)
            if shared := shared_gpus(devices):
                raise PlacementError(f"two ranks were given one GPU ({shared}); give each task its own GPU")
    return torch.device("cuda", torch.cuda.current_device()) if use_cuda else torch.device("cpu")


_control: dist.ProcessGroup | None = None  # the process group of `any_rank` (None: the default one)


def _all_ranks_group(backend: str, timeout_s: float) -> dist.ProcessGroup:
    """A new process group of every rank (so this one is a member: never `GroupMember.NON_GROUP_MEMBER`)."""
    return cast(dist.ProcessGroup, dist.new_group(backend=backend, timeout=timedelta(seconds=timeout_s)))


def stop() -> None:
    global _control
    _control = None
    if dist.is_initialized():
        dist.destroy_process_group()


def world() -> tuple[int, int]:
    """(rank, world size) of the current process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum over ranks, on `t`'s device (NCCL reduces on the GPU, gloo on the CPU)."""
    if world()[1] == 1:
        return t
    on = (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )
    total = t.to(on, copy=True)
    dist.all_reduce(total)
    return total.to(t.device)


def any_rank(flags: list[int]) -> list[int]:
    """The largest value of each flag over the ranks (a signal that reached any rank reaches all)."""
    if world()[1] == 1:
        return flags
    t = torch.tensor(flags, dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_control)
    return t.tolist()


def average_gradients(parameters) -> None:
    """Averages the gradients of parameters outside DDP (the codes b) over the ranks, in one all-reduce."""
    if world()[1] == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if grads:
        flat = torch.cat([g.reshape(-1) for g in grads]) / world()[1]
        dist.all_reduce(flat)
        for g, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
            g.copy_(part.view_as(g))


class PeerFailure(RuntimeError):
    """Another rank died or hangs: one line instead of the backend's traceback."""


def peer_failure(err: BaseException, timeout_s: float) -> PeerFailure | None:
    """What a backend error in a collective means for this rank, or None if `err` is not one. (gloo says
    "Connection reset/closed by peer" when a rank died and "Timed out" when one hangs; NCCL hangs end in
    its watchdog, which aborts the process itself.)"""
    text, rank = str(err), world()[0]
    if not (isinstance(err, dist.DistError) or any(w in text for w in ("gloo", "NCCL", "ProcessGroup"))):
        return None
    if "timed out" in text.lower() or "timeout" in text.lower():
        return PeerFailure(
            f"rank {rank}: no answer from the other ranks within timeout_s={timeout_s:g} s: a rank hangs or "
            "stopped without closing its connections (its log says why); if a step, an evaluation or a "
            "checkpoint legitimately takes longer, raise timeout_s"
        )
    peer = re.search(r"\[([^\]]+)\]:\d+", text)
    return PeerFailure(
        f"rank {rank}: a peer rank{f' on {peer.group(1)}' if peer else ''} vanished (its connection "
        "closed: it died or was killed, and its log says why); the run's checkpoint is intact, so run the "
        "same command again to resume"
    )


def broadcast_object(value):
    """Rank 0's value on every rank."""
    if world()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value) -> list:
    """Every rank's value, in rank order, on every rank."""
    if world()[1] == 1:
        return [value]
    values: list = [None] * world()[1]
    dist.all_gather_object(values, value)
    return values


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def check_agreement(text: str, what: str) -> str:
    """Raises unless every rank holds the same `text` (e.g. the genotype); returns its hash."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    digests = gather_objects(digest)
    if len(set(digests)) > 1:
        raise RuntimeError(f"ranks disagree on the {what}: hashes per rank {digests}")
    return digest


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    """DDP over W when there are several ranks. The support changes at every recovery, so some parameters
    go unused in a step: `find_unused_parameters` lets DDP reduce the others without waiting for them."""
    if world()[1] == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def resolve_device(name: str) -> torch.device:
    """`device=auto|cpu|cuda` as a torch device: auto is a GPU when one is visible."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda but no CUDA GPU is visible; use device=cpu or device=auto")
    return torch.device(name)


class StoppedByRank0(ValueError):
    """The other ranks' side of an error rank 0 met in `on_rank0` (its type and message)."""


def on_rank0(work: Callable[[], T]) -> T:
    """`work()` on rank 0 and its value on every rank; its error stops the other ranks too."""
    value, error = None, None
    if world()[0] == 0:
        try:
            value = work()
        except Exception as err:
            error = err
    message = None if error is None else f"{type(error).__name__}: {error}"
    value, message = broadcast_object((value, message))
    if error is not None:
        raise error
    if message is not None:
        raise StoppedByRank0(f"rank 0 stopped the run: {message}")
    return value
