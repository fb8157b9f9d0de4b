"""Entry point of the `ista` console script."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ista import __version__
from ista.cli import (
    data,
    demo,
    export,
    kendall,
    launch,
    params,
    predict,
    protocol,
    search,
    show,
    summarize,
    train,
)
from ista.distributed.preemption import Interrupted
from ista.distributed.runtime import PeerFailure
from ista.distributed.runtime import stop as stop_process_group
from ista.model.export import ExportError
from ista.sparse.errors import SolverError
from ista.train.checkpoint import CheckpointError
from ista.train.engine import NonFiniteLossError

COMMANDS = {
    "demo": demo,
    "search": search,
    "train": train,
    "launch": launch,
    "protocol": protocol,
    "data": data,
    "summarize": summarize,
    "kendall": kendall,
    "params": params,
    "show": show,
    "predict": predict,
    "export": export,
}

# bad input, a damaged checkpoint, an unlicensed solver, a diverged run, a lost rank, a failed export
EXPECTED = (ValueError, OSError, SolverError, CheckpointError, NonFiniteLossError, PeerFailure, ExportError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ista", description="ISTA-NAS: architecture search by sparse coding."
    )
    parser.add_argument("--version", action="version", version=f"ista {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        module.add_parser(sub, name)
    return parser


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, with KEY=VALUE overrides allowed anywhere among the options (argparse's
    intermixed parsing, which works per subcommand: it does not support a parser with subcommands)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    if argv and argv[0] in commands and argv[0] != "data":  # `ista data` has subcommands of its own
        args = commands[argv[0]].parse_intermixed_args(argv[1:])
        args.command = argv[0]
        return args
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    try:
        return COMMANDS[args.command].run(args)
    except Interrupted as stop:  # USR2/SIGTERM: the step it finished is checkpointed
        print(f"ista {args.command}: {stop}; checkpoint {stop.checkpoint}. Run the same command again to "
              "resume from that step", file=sys.stderr)  # fmt: skip
        return stop.exit_code
    except EXPECTED as err:  # say why, without a traceback
        print(f"ista {args.command}: error: {err}", file=sys.stderr)
        return 2
    finally:
        stop_process_group()  # a clean exit also after a peer failed


if __name__ == "__main__":
    sys.exit(main())
