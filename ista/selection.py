"""Which genotype an evaluation trains: `best:SEARCH_EXPERIMENT` is chosen when the training is launched or
started, from that search experiment's results on disk and its seeds' states (the paper's best-of-k,
`ista.report.protocols.best_of_k`); any other genotype spec is a name, a file or a text, passed through."""

from __future__ import annotations

from pathlib import Path

from ista.report.protocols import Selection, best_of_k
from ista.report.summary import collect
from ista.rundir.experiment import RECORD


def choose_genotype(spec: str) -> tuple[str, Selection | None]:
    """(the genotype to train, the selection to log, for `best:` specs)."""
    if not spec.startswith("best:"):
        return spec, None
    from ista.launch.status import seed_states  # a seed without a result: its scheduler's state

    experiment = Path(spec.removeprefix("best:")).expanduser().resolve()
    if not (experiment / RECORD).is_file():
        raise ValueError(f"--genotype {spec}: {experiment} is not an experiment folder (no {RECORD})")
    selection = best_of_k([run for _, _, run in collect([experiment], seed_states)], experiment)
    return selection.genotype, selection
