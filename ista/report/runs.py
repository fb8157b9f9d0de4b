"""What one run directory says about itself: settings, state, final numbers, cost, device and genotype.

Read from the files alone (config.json, data.json, metrics.jsonl, env.json, genotype.json, result.json),
so a summary works on a laptop with a copy of the runs, and a half-written or damaged run becomes a row
with a note instead of an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ista.data.datasets import DATASETS, Facts
from ista.methods import METHODS, having
from ista.rundir.files import CONFIG, DATA, ENV, GENOTYPE, LATENCY, RESULT
from ista.rundir.read import read_json, read_metrics
from ista.space.counting import measure
from ista.space.genotypes import Genotype

SEARCHES = having("bilevel")  # two-stage: a super-net with a held-out half to select by
TRAININGS = having("trains_genotype")  # evaluation trainings of a given genotype


@dataclass
class RunRecord:
    run_dir: str
    seed: int | None = None
    state: str = "missing"  # done, unfinished, missing, broken; from a launcher: pending, running, failed...
    note: str = ""
    preset: str | None = None
    method: str | None = None
    dataset: str | None = None
    classes: int | None = None  # of the data set (data.json)
    size: int | None = None  # the image side the network saw
    epochs: int = 0
    valid_acc: float | None = None  # the super-net's held-out accuracy after the last search epoch
    test_err: float | None = None  # top-1 error on the test split at the end (fraction)
    test_top5_err: float | None = None
    params_m: float | None = None  # of the network the genotype stands for (see `measure`)
    macs_m: float | None = None
    # device-hours: the search's (ista, darts, one-stage search phase) or the training's
    cost_h: float | None = None
    device: str | None = None  # "cpu" or the GPU's name
    devices: int | None = None  # processes (one per GPU on GPUs)
    skip_connects: int | None = None  # in the normal cell: DARTS' collapse indicator
    latency_ms: float | None = None  # median per batch at the smallest batch timed (`ista params --latency`)
    latency_at: str | None = None  # that timing's batch and device, e.g. "b=1, cpu"
    genotype: str | None = None
    fingerprint: str | None = None

    @property
    def kind(self) -> str:
        """How its seeds are reported: "search" (a two-stage search, ranked by its held-out half),
        "one-stage" (a search whose own final network is the model) or "training"."""
        spec = METHODS.get(self.method or "")
        if spec is None:
            return "unknown"
        return "search" if spec.bilevel else "one-stage" if spec.learns_architecture else "training"


def read_run(run_dir: str | Path, seed: int | None = None) -> RunRecord:
    run_dir = Path(run_dir)
    record = RunRecord(str(run_dir), seed)
    if not (run_dir / CONFIG).is_file():
        record.note = "no run directory" if not run_dir.exists() else f"no {CONFIG}: not a run directory"
        return record
    try:
        _read(run_dir, record)
    except (OSError, ValueError, KeyError, TypeError) as err:  # a damaged file: say so, keep the row
        record.state, record.note = "broken", f"{type(err).__name__}: {err}"
    return record


def _read(run_dir: Path, r: RunRecord) -> None:
    config = read_json(run_dir, CONFIG)
    r.preset, r.method, r.dataset = config["preset"], config["method"], config["data"]["dataset"]
    r.seed = config["seed"] if r.seed is None else r.seed
    history = read_metrics(run_dir)
    r.epochs = len(history)
    result = read_json(run_dir, RESULT)
    r.state = "done" if result else "unfinished"
    if not result and history:
        r.note = f"stopped or running after {len(history)} epochs"
    if r.method in SEARCHES:
        r.valid_acc = _last(history, "valid_acc")
    else:
        top1, top5 = _last(history, "test_acc"), _last(history, "test_top5")
        r.test_err = None if top1 is None else 1 - top1
        r.test_top5_err = None if top5 is None else 1 - top5
    env = read_json(run_dir, ENV, {})
    r.devices = env.get("world_size")
    if env.get("device"):
        gpus = env.get("gpus") or []
        r.device = (gpus[0] if gpus else "cuda") if env["device"].startswith("cuda") else env["device"]
    cost = [m.get("epoch_s", 0.0) for m in history if r.method in TRAININGS or m.get("phase") != "train"]
    r.cost_h = sum(cost) * (r.devices or 1) / 3600 if cost else None
    if timings := read_json(run_dir, LATENCY):
        timed = min(timings, key=lambda m: (m["batch"], m["device"] != "cpu"))
        r.latency_ms, r.latency_at = timed["median_ms"], f"b={timed['batch']}, {timed['device']}"
    text = result["genotype"] if result else None
    if text is None and (run_dir / GENOTYPE).is_file():
        text = Genotype.from_json((run_dir / GENOTYPE).read_text()).to_text()
    if text:
        genotype = Genotype.from_text(text)
        r.genotype, r.fingerprint = text, genotype.fingerprint()
        r.skip_connects = genotype.skip_connects("normal")
        facts = _facts(run_dir, config)
        if facts is not None:
            r.classes, r.size = len(facts.classes), facts.size
            counts = measure(text, *_target(config, facts))
            r.params_m, r.macs_m = counts["params_m"], counts["macs_m"]


def _last(history: list[dict[str, Any]], key: str) -> float | None:
    return next((m[key] for m in reversed(history) if key in m), None)


def _facts(run_dir: Path, config: dict[str, Any]) -> Facts | None:
    """What the run's data held (data.json); for runs of earlier releases, the declaration's fixed facts."""
    if (run_dir / DATA).is_file():
        return Facts.from_dict(read_json(run_dir, DATA))
    declared = DATASETS.get(config["data"]["dataset"])
    if declared is None:
        return None
    classes, size, channels = declared.num_classes, declared.size, declared.channels
    if classes is None or size is None or channels is None:
        return None
    names = declared.classes or tuple(map(str, range(classes)))
    return Facts(declared.name, names, size, channels, (), (), declared.test_split)


def _target(config: dict[str, Any], facts: Facts) -> tuple:
    """The network a run's genotype is counted in (`measure`'s arguments): the trained one for `train`; for
    a search, the paper's target network for its data's stem (CIFAR's 20 cells at C=36, ImageNet's 14 at
    C=48), in the one-stage variant for one-stage runs."""
    data = (facts.stem, len(facts.classes), facts.size, facts.channels)
    spec = METHODS[config["method"]]
    if spec.trains_genotype:
        net = config["network"]
        return (*data, bool(net["onestage"]), net["channels"], net["layers"])
    return (*data, spec.one_stage, None, None)
