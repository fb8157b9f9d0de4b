"""Result pictures across seeds: training curves (mean with a ±std band), support changes per node over
epochs (when did the architecture settle), and each seed's cells. Written with matplotlib's object API (no
global pyplot state, no display needed), atomically, one PNG per figure."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from ista.report.cell_plot import save_genotype_figure
from ista.rundir.atomic import replacing
from ista.rundir.read import read_metrics
from ista.space.genotypes import CELL_TYPES, NODES, Genotype

CURVES = {  # metric: (label, as a percentage)
    "valid_acc": ("super-net held-out accuracy (%)", True),
    "test_acc": ("test accuracy (%)", True),
    "train_acc": ("training accuracy (%)", True),
    "train_loss": ("training loss", False),
}


def write_plots(summary: list[dict[str, Any]], out: str | Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for g in summary:
        name = _slug(g["group"])
        title = Path(g["group"]).name or g["group"]
        histories = {r["seed"]: read_metrics(r["run_dir"]) for r in g["runs"]}
        histories = {seed: h for seed, h in histories.items() if h}
        if histories:
            written.append(curves(histories, out / f"{name}-curves.png", title))
        if any("support" in m for h in histories.values() for m in h):
            written.append(support_changes(histories, out / f"{name}-supports.png", title))
        for r in g["runs"]:
            if r["genotype"]:
                caption = f"{title}, seed {r['seed']}: genotype {r['fingerprint']} ({r['state']})"
                path = out / f"{name}-seed-{r['seed']}-cells.png"
                written.append(save_genotype_figure(Genotype.from_text(r["genotype"]), path, caption))
    return written


def curves(histories: dict[int, list[dict[str, Any]]], path: Path, title: str) -> Path:
    """The main metric and the training loss per epoch: every seed thin, the mean thick, ±std shaded."""
    from matplotlib.figure import Figure

    present = [k for k in CURVES if any(k in m for h in histories.values() for m in h)]
    main = next((k for k in ("valid_acc", "test_acc", "train_acc") if k in present), present[0])
    shown = [main, *(["train_loss"] if "train_loss" in present and main != "train_loss" else [])]
    fig = Figure(figsize=(6 * len(shown), 4.5), layout="constrained")
    for ax, key in zip(np.atleast_1d(fig.subplots(1, len(shown))), shown, strict=True):
        label, percent = CURVES[key]
        series = {s: _series(h, key, 100 if percent else 1) for s, h in histories.items()}
        for seed, (x, y) in sorted(series.items()):
            ax.plot(x, y, lw=0.8, alpha=0.5, label=f"seed {seed}")
        epochs, mean, std = _mean_std(series.values())
        ax.plot(epochs, mean, color="black", lw=2, label=f"mean of {len(series)}")
        ax.fill_between(epochs, mean - std, mean + std, color="grey", alpha=0.3, label="± std")
        ax.set(xlabel="epoch", ylabel=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{title}: {len(histories)} seed(s)", fontsize=11)
    return _save(fig, path)


def support_changes(histories: dict[int, list[dict[str, Any]]], path: Path, title: str) -> Path:
    """Per node (rows) and epoch (columns): the share of seeds whose support changed at that recovery."""
    from matplotlib.figure import Figure

    nodes = [(cell, j) for cell in CELL_TYPES for j in range(NODES)]
    epochs = max(len(h) for h in histories.values())
    changed = np.zeros((len(nodes), epochs))
    counted = np.zeros(epochs)
    last_change = {}
    for seed, history in histories.items():
        supports = [m.get("support") for m in history]
        for t in range(1, len(supports)):
            now, before = supports[t], supports[t - 1]
            if now is None or before is None:
                continue
            counted[t] += 1
            for i, (cell, j) in enumerate(nodes):
                if set(now[cell][j]) != set(before[cell][j]):
                    changed[i, t] += 1
                    last_change[seed] = t
    share = np.divide(changed, counted, out=np.zeros_like(changed), where=counted > 0)[:, 1:]
    fig = Figure(figsize=(max(8.0, 0.2 * epochs + 4), 4.5), layout="constrained")
    ax = fig.subplots()
    extent = (0.5, epochs - 0.5, len(nodes) - 0.5, -0.5)  # columns are epochs 1 … epochs−1
    image = ax.imshow(
        share, aspect="auto", cmap="Reds", vmin=0, vmax=1, interpolation="nearest", extent=extent
    )
    ax.set_yticks(range(len(nodes)), [f"{cell} node {j}" for cell, j in nodes])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch: the support after this epoch's recovery against the one after the epoch before")
    fig.colorbar(image, ax=ax, label="share of seeds whose support changed")
    settled = ", ".join(f"seed {s}: {t}" for s, t in sorted(last_change.items())) or "none"
    fig.suptitle(f"{title}: support changes per node\nlast change ({settled})", fontsize=11)
    return _save(fig, path)


def _series(history: list[dict[str, Any]], key: str, scale: float) -> tuple[np.ndarray, np.ndarray]:
    points = [(m.get("epoch", i), scale * m[key]) for i, m in enumerate(history) if key in m]
    return np.array([p[0] for p in points]), np.array([p[1] for p in points])


def _mean_std(series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per epoch, over the seeds that reached it (sample std, as in the summary)."""
    values: dict[int, list[float]] = {}
    for x, y in series:
        for e, v in zip(x, y, strict=True):
            values.setdefault(int(e), []).append(float(v))
    epochs = np.array(sorted(values))
    return (
        epochs,
        np.array([np.mean(values[e]) for e in epochs]),
        np.array([np.std(values[e], ddof=1) if len(values[e]) > 1 else 0.0 for e in epochs]),
    )


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).name or name).strip("_") or "runs"


def _save(fig, path: Path) -> Path:
    with replacing(path, keep_suffix=True) as tmp:
        fig.savefig(tmp, dpi=120)
    return path
