"""`ista summarize`: a table per experiment across seeds, with the paper's and ROME's protocols."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ista.report.summary import GROUP_BY

COLOURS = {
    "done": "green",
    "failed": "red",
    "broken": "red",
    "missing": "red",
    "requeued": "yellow",
    "pending": "dim",
    "unfinished": "yellow",
}


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(
        name,
        help="summarize seeds: mean ± std, best and worst seed, cost, protocols (tables, JSON, CSV, plots)",
        description="One table per experiment (or per preset or genotype) from experiment folders and run "
        "directories; missing, running and failed seeds are shown as such.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="EXPERIMENT_OR_RUN_DIR")
    p.add_argument(
        "--group-by",
        choices=GROUP_BY,
        default="experiment",
        help="experiment (default; lone run directories by preset), preset, or genotype",
    )
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the summary as JSON")
    output.add_argument("--csv", action="store_true", help="print one CSV row per run")
    p.add_argument(
        "--plots",
        type=Path,
        metavar="DIR",
        help="also write PNGs: curves across seeds, support changes per node, each seed's cells",
    )


def run(args: argparse.Namespace) -> int:
    from ista.launch.status import seed_states
    from ista.report.summary import protocol_result, summarize, to_csv, to_json

    summary = summarize(args.paths, args.group_by, seed_states)
    # protocol folders end with their result
    results = [r for r in (protocol_result(p, seed_states) for p in args.paths) if r]
    if args.json:
        print(to_json({"groups": summary, "protocols": results} if results else summary))
    elif args.csv:
        print(to_csv(summary), end="")
    else:
        from rich.console import Console

        console = Console()
        for g in summary:
            console.print(table(g))
            for line in footer(g):
                console.print(line, highlight=False)
            console.print()
        for result in results:
            console.print(protocol_table(result))
    if args.plots:
        from ista.report.plots import write_plots

        written = write_plots(summary, args.plots)
        if not (args.json or args.csv):
            print(f"plots: {len(written)} PNG files in {args.plots}")
    return 0


def _data(r: dict[str, Any]) -> str:
    """The data set as a table names it: cifar100 (100 classes, 32 px)."""
    if not r.get("classes"):
        return r["dataset"]
    return f"{r['dataset']} ({r['classes']} classes, {r['size']} px)"


def table(g: dict[str, Any]):
    from rich import box
    from rich.table import Table

    a = g["aggregate"]
    search = a["metric"] == "valid_acc"
    top5 = any((r.get("classes") or 0) >= 100 for r in g["runs"])  # ImageNet's and CIFAR-100's second figure
    data = sorted({_data(r) for r in g["runs"] if r.get("dataset")})
    title = (f"{g['group']}: {', '.join(g['preset'] + g['method'])} on {'; '.join(data) or '?'}, "
             f"{a['found']}/{a['expected']} seeds done")  # fmt: skip
    t = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 0, 0, 1),
        caption="params and MACs in millions, of the genotype's target network; skips: skip_connects "
        "in the normal cell",
        caption_justify="left",
    )
    unit = _unit(a["devices"])
    value_columns = ["held-out"] if search else ["test err", *(["top-5 err"] if top5 else [])]
    timed = any(r.get("latency_ms") is not None for r in g["runs"])
    latency = ["ms/batch"] if timed else []  # `ista params RUN --latency`
    columns = [
        "seed",
        "state",
        "ep.",
        *value_columns,
        "params",
        "MACs",
        *latency,
        unit,
        "device",
        "skips",
        "genotype",
    ]
    notes = any(r["note"] for r in g["runs"])
    for c in [*columns, *(["note"] if notes else [])]:
        right = c not in ("state", "device", "genotype", "note")
        t.add_column(c, justify="right" if right else "left", no_wrap=c != "note", overflow="fold")
    for r in g["runs"]:
        state = f"[{COLOURS[r['state']]}]{r['state']}[/]" if r["state"] in COLOURS else r["state"]
        values = [r["valid_acc"]] if search else [r["test_err"], *([r["test_top5_err"]] if top5 else [])]
        device = f"{r['device']}×{r['devices']}" if r["device"] else ""
        cells = [
            str(r["seed"]),
            state,
            str(r["epochs"]),
            *map(_percent, values),
            _number(r["params_m"], 2),
            _number(r["macs_m"], 0),
            *([f"{r['latency_ms']:.2f} ({r['latency_at']})" if r.get("latency_ms") else ""] if timed else []),
            _number(r["cost_h"], 3),
            device,
            _number(r["skip_connects"], 0),
            r["fingerprint"] or "",
            *([r["note"]] if notes else []),
        ]
        t.add_row(*cells)
    return t


def footer(g: dict[str, Any]) -> list[str]:
    a = g["aggregate"]
    lines = []
    if a["estimate"]:
        from ista.report.protocols import Estimate

        line = f"{a['label']}: {Estimate(**a['estimate']).percent()}"
        if a["best"] and a["estimate"]["n"] > 1:
            key = a["metric"]
            line += (
                f"; best seed {a['best']['seed']} ({_percent(a['best'][key])}), "
                f"worst seed {a['worst']['seed']} ({_percent(a['worst'][key])})"
            )
        lines.append(line)
    else:
        lines.append(f"{a['label']}: no finished seed")
    if a["params_m"] is not None:
        devices = ", ".join(a["devices"]) or "?"
        lines.append(
            f"params {a['params_m']:.2f} M, MACs {a['macs_m']:.0f} M (mean); "
            f"cost {_number(a['cost_h'], 3)} {_unit(a['devices'])} per run "
            f"on {devices}; {a['genotypes']} distinct genotype(s)"
        )
    lines.extend(p["text"] for p in g["protocols"])
    return lines


def protocol_table(r: dict[str, Any]):
    """A protocol's result as the paper's tables give it."""
    from rich.table import Table

    from ista.report.protocols import Estimate

    table = Table(title=f"protocol {r['protocol']}: {r['folder']}", show_header=False)
    error = Estimate(**r["test_error"]).percent() if r.get("test_error") else "no finished evaluation"
    table.add_row("test error", error)
    table.add_row("params", "" if r["params_m"] is None else f"{r['params_m']:.2f} M")
    cost = r["search_cost_h"]
    gpu = _unit(r["devices"]) == "GPU-h"
    spent = "" if cost is None else f"{cost / 24:.2f} GPU-days" if gpu else f"{cost:.3f} CPU-hours"
    table.add_row("search cost", f"{spent} (all searches together; {r['searches']})")
    if "selected" in r:
        s = r["selected"]
        table.add_row(
            "selected", f"seed {s['seed']} (held-out {s['valid_acc']:.2%}), genotype {s['fingerprint']}"
        )
        table.add_row("genotype", s["genotype"])
    if r.get("note"):
        table.add_row("note", r["note"])
    for method, tau in r.get("tau", {}).items():
        text = (
            f"{tau['tau_a']:+.4f} over {tau['n']} searches (p = {tau['p_value']:.3g})"
            if tau
            else "fewer than 2 evaluated searches"
        )
        table.add_row(f"Kendall τ ({method})", text)
    return table


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}%"


def _number(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _unit(devices: list[str]) -> str:
    """Device-hours: GPU-hours on GPUs, CPU process-hours on CPUs."""
    kinds = {d.startswith("cpu") for d in devices}
    return {frozenset({True}): "CPU-h", frozenset({False}): "GPU-h"}.get(frozenset(kinds), "device-h")
