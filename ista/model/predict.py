"""Classifying image files with a found model and its own preprocessing: each file seen as the run's test
split was (`evaluation_view`), scaled to [0, 1] and normalised with the run's mean and std."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ista.data.folders import evaluation_view, read_image
from ista.data.sources import DataError
from ista.model.load import FoundModel


@dataclass(frozen=True)
class Prediction:
    file: str
    top: tuple[tuple[str, float], ...]  # (class, probability), the most probable first


def image_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files named, and every file under the folders named (sorted, hidden ones left out); a path that
    does not exist is an error."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            for p in sorted(path.rglob("*")):
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts):
                    files.append(p)
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return files


def preprocess(model: FoundModel, file: Path) -> torch.Tensor:
    """One image file as the network's input, C×H×W float32; an unreadable file is a `DataError` naming it."""
    f = model.facts
    pixels = evaluation_view(read_image(str(file), f.channels), f.size, small=f.stem == "cifar")
    mean, std = torch.tensor(f.mean).view(-1, 1, 1), torch.tensor(f.std).view(-1, 1, 1)
    return (pixels.float() / 255 - mean) / std


def predict(
    model: FoundModel, files: Iterable[Path], top_k: int = 1, batch_size: int = 64
) -> Iterator[Prediction | DataError]:
    """A prediction per file in order, or the error of a file that is no image (the others go on)."""
    device = next(model.parameters()).device
    k = min(top_k, len(model.classes))
    pending: list[tuple[Path, torch.Tensor | DataError]] = []

    def flush() -> Iterator[Prediction | DataError]:
        images = [x for _, x in pending if isinstance(x, torch.Tensor)]
        if images:
            with torch.inference_mode():
                probs = model(torch.stack(images).to(device)).float().softmax(1)
            top = iter(zip(*(t.tolist() for t in probs.topk(k, dim=1)), strict=True))
        for file, x in pending:
            if isinstance(x, DataError):
                yield x
                continue
            p, i = next(top)
            yield Prediction(str(file), tuple((model.classes[c], q) for c, q in zip(i, p, strict=True)))
        pending.clear()

    for file in files:
        try:
            pending.append((file, preprocess(model, file)))
        except DataError as err:
            pending.append((file, err))
        if len(pending) == batch_size:
            yield from flush()
    yield from flush()
