"""Seed summaries: runs collected from experiment folders and run directories, grouped, aggregated, and
turned into the two reporting protocols (ista.report.protocols), as rich tables, JSON or CSV.

A missing, running or failed seed is a row that says so; it never stops the summary.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ista.report import protocols
from ista.report.runs import RunRecord, read_run
from ista.rundir.experiment import RECORD, read_protocol, read_record, seed_dir
from ista.rundir.files import CONFIG

GROUP_BY = ("experiment", "preset", "genotype")


@dataclass
class Group:
    name: str
    runs: list[RunRecord]
    expected: int  # seeds launched (experiments) or runs named
    record: dict[str, Any] = field(default_factory=dict)  # experiment.json, when the group is one experiment

    @property
    def kinds(self) -> set[str]:
        return {r.kind for r in self.runs if r.method}

    @property
    def done(self) -> list[RunRecord]:
        return [r for r in self.runs if r.state == "done"]

    def metric(self) -> tuple[str, str]:
        """(field, label) of the number this group is judged by."""
        if self.kinds == {"search"}:
            return "valid_acc", "super-net held-out accuracy"
        return "test_err", "test error"


SeedStates = Callable[[Path], list[dict[str, Any]]]  # an experiment's seeds as its launcher sees them


def collect(
    paths: Sequence[str | Path], states: SeedStates | None = None
) -> list[tuple[str, dict[str, Any], RunRecord]]:
    """(experiment name or "", its record, run) for every seed of every experiment and every run directory.
    `states` (`ista.launch.status.seed_states`, handed in by the caller) names the launcher's state of seeds
    without a result; without it, the files alone say."""
    found: list[tuple[str, dict[str, Any], RunRecord]] = []
    for path in map(Path, paths):
        if (path / RECORD).is_file():
            try:
                record = read_record(path)
            except ValueError as err:  # a damaged experiment.json: a row that says so
                found.append(("", {}, RunRecord(str(path), state="broken", note=f"{RECORD}: {err}")))
                continue
            for row in _seed_states(path, record, states):
                run = read_run(seed_dir(path, row["seed"]), row["seed"])
                if run.state not in ("done", "broken") and "state" in row:
                    run.state, run.note = _launch_state(row, run)
                found.append((str(path), record, run))
        elif not (path / CONFIG).is_file() and (inner := _runs_below(path)):
            found.extend(collect(inner, states))  # a folder of run directories or experiments, e.g. runs/
        else:
            found.append(("", {}, read_run(path)))
    return found


def _runs_below(folder: Path, depth: int = 3) -> list[Path]:
    """Experiments and run directories up to `depth` levels below `folder` (never inside one)."""
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (path / CONFIG).is_file() or (path / RECORD).is_file():
            found.append(path)
        elif depth > 1:
            found.extend(_runs_below(path, depth - 1))
    return found


def _seed_states(experiment: Path, record: dict[str, Any], states: SeedStates | None) -> list[dict[str, Any]]:
    if states is None:
        return [{"seed": s} for s in record["seeds"]]  # the run directories alone say
    try:
        return states(experiment)
    except Exception as err:  # Slurm's accounting unreachable, a damaged submitit folder: files only
        return [
            {"seed": s, "state": "unknown", "note": f"{type(err).__name__}: {err}"} for s in record["seeds"]
        ]


def _launch_state(row: dict[str, Any], run: RunRecord) -> tuple[str, str]:
    """A seed without a result: the launcher's word (pending, running, requeued, failed and why), or missing
    when neither its run directory nor its job can be found."""
    state, note = row["state"], row.get("note") or run.note
    if not Path(run.run_dir).exists() and state in ("pending", "unknown"):
        return "missing", "no run directory and no job output"
    return state, note


def group(found: list[tuple[str, dict[str, Any], RunRecord]], by: str = "experiment") -> list[Group]:
    if by not in GROUP_BY:
        raise ValueError(f"--group-by {by!r}: choose from {', '.join(GROUP_BY)}")
    groups: dict[str, Group] = {}
    for experiment, record, run in found:
        if by == "genotype":
            key = run.fingerprint or f"no genotype ({run.state})"
        elif by == "experiment" and experiment:
            key = experiment
        else:
            key = run.preset or run.run_dir
        g = groups.setdefault(key, Group(key, [], 0, record if by == "experiment" else {}))
        g.runs.append(run)
        g.expected += 1
    return list(groups.values())


def aggregate(g: Group) -> dict[str, Any]:
    key, label = g.metric()
    values = [(r, getattr(r, key)) for r in g.done if getattr(r, key) is not None]
    lower_is_better = key == "test_err"
    ranked = sorted(values, key=lambda rv: (rv[1] if lower_is_better else -rv[1], rv[0].seed or 0))
    states: dict[str, int] = {}
    for r in g.runs:
        states[r.state] = states.get(r.state, 0) + 1

    def mean(name: str) -> float | None:
        numbers = [getattr(r, name) for r in g.done if getattr(r, name) is not None]
        return sum(numbers) / len(numbers) if numbers else None

    est = protocols.estimate([v for _, v in values])
    return {
        "metric": key,
        "label": label,
        "found": len(g.done),
        "expected": g.expected,
        "states": states,
        "estimate": asdict(est) if est else None,
        "best": {"seed": ranked[0][0].seed, key: ranked[0][1]} if ranked else None,
        "worst": {"seed": ranked[-1][0].seed, key: ranked[-1][1]} if ranked else None,
        "params_m": mean("params_m"),
        "macs_m": mean("macs_m"),
        "cost_h": mean("cost_h"),
        "devices": sorted({f"{r.device}×{r.devices}" for r in g.done if r.device}),
        "genotypes": len({r.fingerprint for r in g.done if r.fingerprint}),
    }


def protocol_lines(g: Group, everything: list[RunRecord]) -> list[dict[str, Any]]:
    """The protocols that apply to this group, each with its numbers and a sentence."""
    evaluated = protocols.evaluations(everything)
    lines: list[dict[str, Any]] = []
    selection = g.record.get("selection")
    if selection:
        lines.append({"protocol": "selection", "text": "genotype chosen as " + _describe(selection)})
    if g.kinds == {"search"}:
        try:
            chosen = protocols.best_of_k(g.runs, g.name)
        except ValueError as err:
            lines.append({"protocol": "best-of-k", "text": f"best-of-k: {err}"})
        else:
            errors = protocols.estimate(evaluated.get(chosen.fingerprint, []))
            if errors:
                text = f"best-of-k (the paper's): test error {errors.percent()} over the evaluation seeds of "
                text += f"seed {chosen.seed}'s genotype {chosen.fingerprint} (best held-out of k={chosen.k})"
            else:
                text = (
                    f"best-of-k (the paper's): seed {chosen.seed} (held-out {chosen.valid_acc:.2%}, best of "
                    f"k={chosen.k}), genotype {chosen.fingerprint}, not evaluated among the runs given"
                )
                if g.record:  # one experiment: how to evaluate it
                    text += f"; ista launch --preset cifar10-eval --genotype best:{g.name} --seeds 0-4"
            lines.append(
                {
                    "protocol": "best-of-k",
                    "seed": chosen.seed,
                    "k": chosen.k,
                    "fingerprint": chosen.fingerprint,
                    "estimate": _asdict(errors),
                    "text": text,
                }
            )
        over, evaluated_n = protocols.mean_over_searches(g.runs, evaluated)
        if over:
            text = (
                f"mean over independent searches: test error {over.percent()} (one evaluated genotype each)"
            )
        else:
            text = (
                f"mean over independent searches: {evaluated_n} of {len(g.done)} finished searches have an "
                "evaluation of their genotype among the runs given"
            )
        lines.append(
            {
                "protocol": "mean-over-searches",
                "estimate": _asdict(over),
                "evaluated": evaluated_n,
                "text": text,
            }
        )
    elif g.kinds == {"one-stage"}:
        over = protocols.estimate([r.test_err for r in g.done if r.test_err is not None])
        text = "mean over independent searches (each one-stage run's own final model): "
        text += over.percent() if over else "no finished run"
        lines.append({"protocol": "mean-over-searches", "estimate": _asdict(over), "text": text})
        lines.append(
            {
                "protocol": "best-of-k",
                "text": "best-of-k: not applicable, one-stage runs have no "
                "held-out half, and choosing by test error would select on the test set",
            }
        )
    return lines


def _asdict(estimate: protocols.Estimate | None) -> dict[str, Any] | None:
    return asdict(estimate) if estimate else None


def _describe(selection: dict[str, Any]) -> str:
    return protocols.Selection(
        **{**selection, "seeds": tuple(selection["seeds"]), "left_out": tuple(selection["left_out"])}
    ).describe()


def summarize(
    paths: list[str | Path], by: str = "experiment", states: SeedStates | None = None
) -> list[dict[str, Any]]:
    """Everything the table shows, as plain data (the --json output)."""
    found = collect(paths, states)
    everything = [run for _, _, run in found]
    return [
        {
            "group": g.name,
            "by": by,
            "preset": sorted({r.preset for r in g.runs if r.preset}),
            "method": sorted({r.method for r in g.runs if r.method}),
            "aggregate": aggregate(g),
            "protocols": protocol_lines(g, everything),
            "runs": [asdict(r) for r in g.runs],
        }
        for g in group(found, by)
    ]


CSV_FIELDS = ["group", *RunRecord.__dataclass_fields__]


def to_csv(summary: list[dict[str, Any]]) -> str:
    """One row per run, with its group's name."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for g in summary:
        for run in g["runs"]:
            writer.writerow({"group": g["group"], **run})
    return out.getvalue()


def to_json(summary: list[dict[str, Any]] | dict[str, Any]) -> str:
    return json.dumps(summary, indent=2)


def protocol_result(folder: str | Path, states: SeedStates | None = None) -> dict[str, Any] | None:
    """A protocol folder's result in the form of the paper's tables (None for any other folder): test
    error mean ± std (n), params (M), search cost, the selected seed and genotype, and τ for consistency."""
    from ista.report.kendall import consistency

    record = read_protocol(Path(folder))
    if record is None:
        return None
    name = record["protocol"]
    runs = {s["name"]: [run for _, _, run in collect([s["experiment"]], states)] for s in record["stages"]}
    searches = runs.get("search", [])
    # the evaluations of the ISTA-NAS searches (not those of the DARTS baseline, "darts-eval")
    trainings = [run for stage, found in runs.items() if stage.split("-")[0] == "eval" for run in found]
    evaluated = protocols.evaluations(trainings)
    done = [r for r in searches if r.state == "done"]
    result: dict[str, Any] = {
        "protocol": name,
        "folder": str(Path(folder).resolve()),
        "searches": f"{len(done)}/{len(searches)} done",
        "search_cost_h": sum(r.cost_h for r in done if r.cost_h) or None,  # all k searches together
        "devices": sorted({f"{r.device}×{r.devices}" for r in done if r.device}),
    }
    finished = [r for r in trainings if r.state == "done"]
    params = [r.params_m for r in finished if r.params_m is not None]
    result["params_m"] = sum(params) / len(params) if params else None
    if name == "two-stage":
        try:
            chosen = protocols.best_of_k(searches, Path(folder) / "search")
        except ValueError as err:
            result["note"] = str(err)
        else:
            result["selected"] = {"seed": chosen.seed, "valid_acc": chosen.valid_acc,
                                  "genotype": chosen.genotype, "fingerprint": chosen.fingerprint}  # fmt: skip
    if name in ("two-stage", "one-stage"):  # every evaluation training counts
        result["test_error"] = _asdict(
            protocols.estimate([r.test_err for r in finished if r.test_err is not None])
        )
    else:  # independent, consistency: each search's genotype evaluated
        result["test_error"] = _asdict(protocols.mean_over_searches(searches, evaluated)[0])
    if name == "consistency":
        taus = {"ista": consistency("search", searches, evaluated)}
        if "darts-search" in runs:
            darts = protocols.evaluations(runs.get("darts-eval", []))
            taus["darts"] = consistency("darts-search", runs["darts-search"], darts)
        result["tau"] = {m: asdict(c.tau) if c.tau else None for m, c in taus.items()}
        result["pairs"] = {m: len(c.seeds) for m, c in taus.items()}
    return result
