"""Runs a search or a training into a run directory: build, resume, train, record. The CLI and launchers
call this; every method goes through the same engine and the same run-directory layout, under the
directory's lock (`ista.rundir.lock`), with step checkpoints on preemption signals and on a timer
(`ista.distributed.preemption`), resuming from wherever the last checkpoint was written."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from ista.config.io import ConfigError
from ista.config.schema import RunConfig
from ista.data.datasets import Facts
from ista.data.splits import Split, open_data
from ista.distributed import runtime, sync_bn
from ista.distributed.preemption import Interrupted, Stops
from ista.methods import METHODS
from ista.report.cell_plot import save_genotype_figure
from ista.report.console import RunProgress
from ista.rundir import records
from ista.rundir.files import CHECKPOINT, GENOTYPE, PICTURE, SELECTION, TENSORBOARD
from ista.rundir.lock import RunLock
from ista.rundir.read import read_json
from ista.space.genotypes import Genotype, load_genotype
from ista.space.networks import build_eval_network, build_search_network, check_auxiliary
from ista.sparse.code import SparseCode
from ista.sparse.measurement import initial_codes
from ista.train.checkpoint import load_checkpoint, resume_point, set_rng_state
from ista.train.engine import build_loaders, run_epochs
from ista.train.recorder import Recorder, claim
from ista.train.step import Method, StepEngine


@dataclass
class RunResult:
    run_dir: Path
    genotype: Genotype
    history: list[dict[str, Any]]


def build_task(config: RunConfig, data: Split, device: torch.device) -> StepEngine:
    """The method of `config.method` on its network, in the step engine."""
    return StepEngine(config, build_method(config, data.facts, device), device)


def build_method(config: RunConfig, facts: Facts, device: torch.device) -> Method:
    """The method of `config.method` (as `ista.methods` declares it) on its network for data holding
    `facts`, W initialised from the seed (`ista.load_model` builds a run's network this way, without the
    engine)."""
    spec = METHODS[config.method]
    torch.manual_seed(config.seed)  # W's initialisation (and the official draws of b that follow it)
    net, a = config.network, config.arch
    shape: dict[str, Any] = {
        "num_classes": len(facts.classes),
        "in_channels": facts.channels,
        "auxiliary": net.auxiliary_weight > 0,
    }
    model: torch.nn.Module
    if spec.trains_genotype:
        genotype = load_genotype(config.genotype)
        model = build_eval_network(
            genotype, facts.stem, net.channels, net.layers, onestage=net.onestage, **shape
        )
    else:
        model = build_search_network(facts.stem, net.channels, net.layers, onestage=spec.one_stage, **shape)
    code = None
    if spec.sparse_codes:
        initial = initial_codes(config.seed, a.draws, one_stage=spec.one_stage)
        code = SparseCode(config.seed, device, lam=a.lam, solver=a.solver, draws=a.draws, initial=initial)
    model = (sync_bn.convert if config.sync_bn else (lambda m: m))(model.to(device))
    return spec.method_class().build(config, model, code, device)


def run(
    config: RunConfig,
    run_dir: str | Path,
    resume: bool = False,
    show_progress: bool = True,
    files: dict[str, Any] | None = None,
) -> RunResult:
    """Any method into a run directory: build, resume from its checkpoint if there is one, train, record.

    Started by torchrun, submitit or srun with several processes, every rank runs this; rank 0 alone
    writes the run directory (a shared file system), holding its lock (`ista.rundir.lock`) for the whole run,
    and every rank reads the checkpoint to resume. `files` are JSON records to write once the directory is
    this run's. On USR2/SIGTERM the run checkpoints the step it finished and raises `Interrupted`.
    """
    run_dir = Path(run_dir)
    files = dict(files or {})
    if METHODS[config.method].trains_genotype:
        if not config.genotype:
            raise ConfigError("method=train needs a genotype (ista train --genotype NAME|FILE|TEXT)")
        from ista.selection import choose_genotype

        # `best:SEARCH_EXPERIMENT` (a protocol's evaluation stage) is chosen now, from the results on disk
        genotype, selection = choose_genotype(config.genotype)
        if selection:
            config = replace(config, genotype=genotype)
            files[SELECTION] = selection.to_dict()
        load_genotype(config.genotype)  # a bad genotype is an error before anything is written
    if config.log.tensorboard:
        from ista.report.tensorboard import writer_class

        writer_class()  # so is a missing TensorBoard
    runtime.use_cpus(runtime.task_cpus())
    if config.deterministic:  # cuBLAS is deterministic only with this, read when its first handle is made
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    placement = runtime.detect()
    device = runtime.start(placement, runtime.resolve_device(config.device).type, config.timeout_s)
    lock = RunLock(run_dir) if runtime.world()[0] == 0 else None
    try:
        with Stops(config.checkpoint_every_s) as stops:
            return _run(config, run_dir, resume, show_progress, files, device, placement, lock, stops)
    except RuntimeError as err:
        failure = runtime.peer_failure(err, config.timeout_s)
        if failure is None:
            raise
        raise failure from None
    finally:
        if lock is not None:
            lock.release()


def _run(
    config: RunConfig,
    run_dir: Path,
    resume: bool,
    show_progress: bool,
    files: dict[str, Any],
    device: torch.device,
    placement: runtime.Placement,
    lock: RunLock | None,
    stops: Stops,
) -> RunResult:
    rank, world = runtime.world()
    main = rank == 0
    spec = METHODS[config.method]
    # the data first: bad data is an error before anything is written; data.size resolved, as recorded
    data, test = open_data(config.data, not spec.bilevel, device, rank, world)
    config = replace(config, data=replace(config.data, size=data.facts.size))
    if config.network.auxiliary_weight > 0:
        try:
            check_auxiliary(data.facts.size, data.facts.stem)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    # before anything is written: a held directory is an error naming its holder
    has_checkpoint = bool(runtime.on_rank0(partial(_claim, lock, config, run_dir, resume, data.facts)))
    if torch.are_deterministic_algorithms_enabled() != config.deterministic:  # setting it imports inductor
        torch.use_deterministic_algorithms(config.deterministic)  # (1.6 s a process start on 2 cores)
    torch.backends.cudnn.benchmark = config.cudnn_benchmark and not config.deterministic
    path = run_dir / CHECKPOINT
    start_epoch, position, resumed = 0, None, None
    if has_checkpoint:  # read before the task is built: a damaged or mismatched one fails at once
        state = load_checkpoint(path)
        start_epoch, position, rng = resume_point(state, path, rank, world)
    task = build_task(config, data, device)
    torch.manual_seed(config.seed * 1000 + rank)  # drop-path masks differ per rank, as the data do
    history: list[dict[str, Any]] = []
    if has_checkpoint:
        task.load_state_dict(state["task"])
        set_rng_state(rng)
        history = state["history"]
        resumed = {"epoch": start_epoch, "step": position["step"] if position else 0}
        written_amp = state["task"].get("amp", str(task.dtype))
        if written_amp != str(task.dtype):  # amp=auto on another kind of GPU: the run goes on, not exactly
            resumed["amp"] = written_amp
            if main:
                print(f"ista: {run_dir} was written with autocast {written_amp} and goes on with "
                      f"{task.dtype} (amp={config.amp} on {device}); a run started with amp=bf16 or amp=fp16 "
                      "keeps its precision on any GPU", file=sys.stderr)  # fmt: skip
    run_facts = {
        "device": str(device),
        "world_size": world,
        "launcher": placement.launcher,
        "seed": config.seed,
        "solver": config.arch.solver,
        "method": config.method,
        "data_reader": data.reader,
        "loader_workers": data.workers,
        "amp": str(task.dtype),
        "channels_last": task.channels_last,
        "resumed_from_epoch": resumed and resumed["epoch"],
        "resumed_from_step": resumed and resumed["step"],
        "amp_before_resume": resumed and resumed.get("amp"),  # set when amp=auto resolved differently
        "lock_taken_over_from": lock and lock.took_over,  # a dead run's lock this run took over
    }
    scalars = None
    if main and config.log.tensorboard:
        from ista.report.tensorboard import EpochScalars

        scalars = EpochScalars(run_dir / TENSORBOARD)  # one event folder per run; a resume appends
    recorder = Recorder(run_dir, task, history, lock, scalars)
    trained = load_genotype(config.genotype).to_dict() if spec.trains_genotype else None
    recorder.start(run_facts, data.facts, files, trained)
    loaders = build_loaders(config, data, test)
    epochs = task.method.total_epochs()
    if not task.done:
        try:
            shown, record = show_progress and main, run_dir if main else None
            with RunProgress(epochs, spec.title, enabled=shown, run_dir=record) as progress:
                run_epochs(
                    task,
                    loaders,
                    seed=config.seed,
                    start_epoch=start_epoch,
                    epochs=epochs,
                    eval_every=config.eval_every,
                    on_epoch_end=recorder.epoch_end,
                    progress=progress,
                    stops=stops,
                    on_step_checkpoint=recorder.step_checkpoint,
                    position=position,
                )
        except Interrupted as stop:
            runtime.barrier()  # every rank knows the checkpoint is written
            stop.checkpoint = path
            raise
        finally:
            if scalars is not None:
                scalars.close()
    runtime.barrier()
    genotype = Genotype.from_dict(read_json(run_dir, GENOTYPE))
    if main:
        save_genotype_figure(
            genotype, run_dir / PICTURE, f"{config.preset}: {spec.title}, seed {config.seed}"
        )
        records.write_result(run_dir, genotype.to_text(), history)
    return RunResult(run_dir, genotype, history)


def _claim(lock: RunLock | None, config: RunConfig, run_dir: Path, resume: bool, facts: Facts) -> bool:
    """Rank 0's: the directory's lock, then the claim (`ista.train.recorder.claim`)."""
    assert lock is not None
    lock.acquire()
    return claim(config, run_dir, resume, facts)
