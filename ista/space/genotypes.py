"""The `Genotype` type, its DARTS text and JSON forms, and the published genotypes (method.md §10).

A genotype lists, for each intermediate node of a cell, two (op, input state) pairs; pairs 2k and 2k+1 feed
node k+2. ISTA-NAS may pick two ops on the same input, which the format expresses as two pairs.
The text form is parsed with `ast`, never evaluated, so a genotype file cannot run code.
"""

from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ista.space.ops import PRIMITIVES

NODES = 4  # intermediate nodes per cell (the DARTS cell space)
CELL_TYPES = ("normal", "reduce")  # the two cells a genotype names
FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")

Pair = tuple[str, int]


class GenotypeError(ValueError):
    """A genotype that is malformed or outside the ISTA-NAS search space."""


@dataclass(frozen=True)
class Genotype:
    normal: tuple[Pair, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Pair, ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self) -> None:
        for cell in CELL_TYPES:
            object.__setattr__(self, cell, _check_pairs(cell, getattr(self, cell)))
            concat = f"{cell}_concat"
            object.__setattr__(self, concat, _check_concat(concat, getattr(self, concat)))

    def to_text(self) -> str:
        """The DARTS `genotypes.py` form, e.g. `Genotype(normal=[('sep_conv_3x3', 1), ...], ...)`."""
        parts = []
        for cell in ("normal", "reduce"):
            pairs = ", ".join(f"({op!r}, {i})" for op, i in getattr(self, cell))
            parts.append(f"{cell}=[{pairs}]")
            parts.append(f"{cell}_concat={_concat_text(getattr(self, cell + '_concat'))}")
        return f"Genotype({', '.join(parts)})"

    def to_dict(self) -> dict[str, list]:
        return {
            "normal": [[op, i] for op, i in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, i] for op, i in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def fingerprint(self) -> str:
        """10 hex digits naming the architecture: equal for the same cells whatever order each node's two
        pairs are listed in, so identical architectures group together across seeds and methods."""
        cells = [
            [sorted(pairs[k : k + 2]) for k in range(0, len(pairs), 2)]
            for pairs in (self.normal, self.reduce)
        ]
        canonical = json.dumps([cells, self.normal_concat, self.reduce_concat])
        return hashlib.sha256(canonical.encode()).hexdigest()[:10]

    def skip_connects(self, cell: str = "normal") -> int:
        """How many skip_connect edges a cell has: in the normal cell, the indicator of DARTS' collapse."""
        return sum(op == "skip_connect" for op, _ in getattr(self, cell))

    @classmethod
    def from_dict(cls, data: Any) -> Genotype:
        if not isinstance(data, dict):
            raise GenotypeError(
                f"genotype JSON must be an object with fields {FIELDS}, got {type(data).__name__}"
            )
        _check_fields(data.keys())
        return cls(**{name: data[name] for name in FIELDS})

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise GenotypeError(f"malformed genotype JSON: {err}") from None
        return cls.from_dict(data)

    @classmethod
    def from_text(cls, text: str) -> Genotype:
        """Parses the DARTS text form without evaluating it."""
        try:
            tree = ast.parse(text.strip(), mode="eval").body
        except SyntaxError as err:
            raise GenotypeError(f"malformed genotype text: {err.msg} at column {err.offset}") from None
        if not (
            isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id == "Genotype"
        ):
            raise GenotypeError("genotype text must be a call Genotype(normal=..., normal_concat=..., ...)")
        if len(tree.args) > len(FIELDS):
            raise GenotypeError(f"Genotype(...) takes at most {len(FIELDS)} fields, got {len(tree.args)}")
        values = {name: _literal(name, node) for name, node in zip(FIELDS, tree.args, strict=False)}
        for keyword in tree.keywords:
            if keyword.arg is None or keyword.arg in values:
                raise GenotypeError(f"field {keyword.arg or '**'} given twice or unpacked in genotype text")
            values[keyword.arg] = _literal(keyword.arg, keyword.value)
        _check_fields(values.keys())
        return cls(**values)


def _check_fields(names) -> None:
    unknown = sorted(set(names) - set(FIELDS))
    if unknown:
        raise GenotypeError(f"unknown genotype field(s) {unknown}; expected {FIELDS}")
    missing = [name for name in FIELDS if name not in names]
    if missing:
        raise GenotypeError(f"genotype is missing field(s) {missing}")


def _literal(field: str, node: ast.expr) -> Any:
    """A list/tuple literal, or `range(a, b)` for a concat field."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        if node.keywords or not 1 <= len(node.args) <= 2:
            raise GenotypeError(f"{field}: range() takes one or two integer arguments")
        bounds = [_literal(field, arg) for arg in node.args]
        if not all(type(b) is int for b in bounds):
            raise GenotypeError(f"{field}: range() takes integer arguments, got {bounds}")
        return list(range(*bounds))
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise GenotypeError(f"{field}: expected a literal list, got {ast.unparse(node)!r}") from None


def _check_pairs(cell: str, pairs: Any) -> tuple[Pair, ...]:
    if not isinstance(pairs, (list, tuple)):
        raise GenotypeError(f"{cell}: expected a list of (op, input) pairs, got {type(pairs).__name__}")
    if len(pairs) != 2 * NODES:
        raise GenotypeError(
            f"{cell}: expected {2 * NODES} (op, input) pairs (2 for each of {NODES} nodes), "
            f"found {len(pairs)}"
        )
    checked = []
    for p, pair in enumerate(pairs):
        where = f"{cell}[{p}]"
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise GenotypeError(f"{where}: expected an (op, input) pair, got {pair!r}")
        op, index = pair
        if op not in PRIMITIVES:
            hint = " (ISTA-NAS has no zero op)" if op == "none" else ""
            raise GenotypeError(f"{where}: unknown op {op!r}{hint}; expected one of {', '.join(PRIMITIVES)}")
        node = p // 2 + 2  # state index of the node this pair feeds
        if type(index) is not int or not 0 <= index < node:
            raise GenotypeError(
                f"{where}: input {index!r} must be an integer state index < {node} "
                f"(pair {p} feeds node {node})"
            )
        checked.append((op, index))
    return tuple(checked)


def _check_concat(field: str, concat: Any) -> tuple[int, ...]:
    if isinstance(concat, range):
        concat = list(concat)
    if not isinstance(concat, (list, tuple)) or not concat:
        raise GenotypeError(f"{field}: expected a non-empty list of state indices, got {concat!r}")
    for index in concat:
        if type(index) is not int or not 0 <= index < NODES + 2:
            raise GenotypeError(f"{field}: state index {index!r} is not an integer in [0, {NODES + 2})")
    if len(set(concat)) != len(concat):
        raise GenotypeError(f"{field}: repeated state index in {list(concat)}")
    return tuple(concat)


def _concat_text(concat: tuple[int, ...]) -> str:
    if concat == tuple(range(concat[0], concat[-1] + 1)):
        return f"range({concat[0]}, {concat[-1] + 1})"
    return str(list(concat))


def _g(normal: list[Pair], reduce: list[Pair]) -> Genotype:
    return Genotype(tuple(normal), tuple(range(2, 6)), tuple(reduce), tuple(range(2, 6)))


# Copied from the official repositories (method.md §10).
# fmt: off
PUBLISHED: dict[str, Genotype] = {
    "ISTA_twostage": _g(
        [("skip_connect", 0), ("dil_conv_3x3", 1), ("sep_conv_5x5", 0), ("dil_conv_3x3", 2),
         ("dil_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 2), ("skip_connect", 0)],
        [("avg_pool_3x3", 0), ("sep_conv_5x5", 1), ("dil_conv_5x5", 2), ("max_pool_3x3", 1),
         ("dil_conv_5x5", 3), ("sep_conv_3x3", 1), ("dil_conv_5x5", 4), ("sep_conv_5x5", 1)],
    ),
    "ISTA_onestage": _g(
        [("skip_connect", 0), ("dil_conv_3x3", 1), ("sep_conv_3x3", 1), ("dil_conv_5x5", 2),
         ("avg_pool_3x3", 3), ("sep_conv_3x3", 1), ("sep_conv_5x5", 1), ("sep_conv_3x3", 2)],
        [("avg_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 0), ("max_pool_3x3", 1),
         ("sep_conv_5x5", 1), ("avg_pool_3x3", 0), ("max_pool_3x3", 0), ("dil_conv_5x5", 2)],
    ),
    "ISTA_ImageNet": _g(
        [("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 2),
         ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("dil_conv_5x5", 4)],
        [("skip_connect", 0), ("sep_conv_3x3", 1), ("dil_conv_5x5", 2), ("sep_conv_3x3", 0),
         ("sep_conv_3x3", 0), ("skip_connect", 2), ("sep_conv_3x3", 2), ("skip_connect", 3)],
    ),
    "DARTS_V1": _g(
        [("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
         ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
        [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
         ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
    ),
    "DARTS_V2": _g(
        [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
         ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
        [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
         ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    ),
}
# fmt: on


def load_genotype(spec: str) -> Genotype:
    """A published name, a JSON or text file, or the JSON/DARTS text itself."""
    if spec in PUBLISHED:
        return PUBLISHED[spec]
    text = spec.strip()
    if not text.startswith(("Genotype", "{")):
        path = Path(spec)
        if not path.is_file():
            raise GenotypeError(
                f"{spec!r} is not a published genotype ({', '.join(PUBLISHED)}), an existing file, "
                "JSON or DARTS text"
            )
        try:
            text = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as err:
            raise GenotypeError(f"cannot read genotype file {path}: {err}") from None
        try:
            return Genotype.from_json(text) if text.startswith("{") else Genotype.from_text(text)
        except GenotypeError as err:
            raise GenotypeError(f"{path}: {err}") from None
    return Genotype.from_json(text) if text.startswith("{") else Genotype.from_text(text)
