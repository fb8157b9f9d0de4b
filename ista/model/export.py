"""A found model as a file that runs without ista: ONNX (torch's exporter), a `torch.export` program
(.pt2) or TorchScript, each taking any batch size, with a `model.json` card beside it.

Every export is checked before it is kept: the written file is loaded back and run on a batch of another
size than the one it was traced with, and its logits must equal PyTorch's within `RTOL` and `ATOL`.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ista.model.load import FoundModel
from ista.rundir.atomic import replacing, write_json
from ista.rundir.files import CONFIG, ENV, RESULT
from ista.rundir.read import read_json
from ista.rundir.records import environment
from ista.space.counting import count_macs_m, count_params_m

FORMATS = ("onnx", "pt2", "torchscript")
SUFFIXES = {"onnx": ".onnx", "pt2": ".pt2", "torchscript": ".pt"}
RTOL, ATOL = 1e-4, 1e-4  # float32 logits, as np.allclose; the runtimes order some sums differently
CARD = "model.json"
MAX_BATCH = 4096  # every export takes any batch size up to this
Program = Callable[[], torch.export.ExportedProgram]  # the model's `torch.export` program, made once


class ExportError(RuntimeError):
    """An export that cannot be made or does not reproduce the model; nothing is left behind."""


def export(model: FoundModel, outputs: Mapping[str, str | Path]) -> dict[str, Any]:
    """Writes `model` in each format of `outputs` (format → file) and its card beside the files; returns the
    card. One `torch.export` program serves the ONNX and the .pt2 file."""
    unknown = sorted(set(outputs) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown export format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    model = copy.deepcopy(model).cpu().eval()  # exported from the CPU; the caller's model stays where it is
    g = torch.Generator().manual_seed(0)
    traced_with = torch.randn(2, *model.input_shape, generator=g)  # 2: a batch of 1 would be specialised
    checked_with = torch.randn(3, *model.input_shape, generator=g)
    with torch.inference_mode():
        expected = model(checked_with).numpy()
    program = functools.cache(
        lambda: torch.export.export(model, (traced_with,), dynamic_shapes={"images": {0: _batch()}})
    )
    exports: dict[str, Any] = {}
    for fmt, out in outputs.items():
        out = Path(out).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        with replacing(out, keep_suffix=True) as tmp:  # torch reads .pt2 by its name
            _WRITERS[fmt](model, traced_with, program, tmp)
            got = _RUNNERS[fmt](tmp, checked_with.numpy())
            same_shape = got.shape == expected.shape
            difference = float(np.abs(got - expected).max()) if same_shape else float("inf")
            if not same_shape or not np.allclose(got, expected, RTOL, ATOL):
                raise ExportError(
                    f"the {fmt} export does not reproduce the model: logits of shape {got.shape} differ from "
                    f"PyTorch's {expected.shape} by up to {difference:.3g}; {out} was not written"
                )
        exports[fmt] = {"file": out.name, "max_abs_difference": difference}
    card = model_card(model, exports)
    for folder in {Path(out).expanduser().parent for out in outputs.values()}:
        before = read_json(folder, CARD, {})
        same = (before.get("fingerprint"), before.get("run_dir")) == (card["fingerprint"], card["run_dir"])
        # another format of the same model exported here before: one card lists them all
        earlier = before.get("exports", {}) if same else {}
        write_json(folder / CARD, {**card, "exports": {**earlier, **exports}})
    return card


def model_card(model: FoundModel, exports: dict[str, Any]) -> dict[str, Any]:
    """What a user of the file needs (input, preprocessing, classes) and where it came from."""
    f = model.facts
    run = model.run_dir
    config, result, env = ({} if run is None else read_json(run, name, {}) for name in (CONFIG, RESULT, ENV))
    final = result.get("final", {})
    exported = environment()
    return {
        "genotype": model.genotype.to_text(),
        "fingerprint": model.genotype.fingerprint(),
        "dataset": f.dataset,
        "classes": list(f.classes),
        "input": {
            "name": "images",
            "shape": ["batch", *model.input_shape],
            "dtype": "float32",
            "layout": "NCHW, " + ("greyscale" if f.channels == 1 else "RGB"),
            "preprocess": preprocessing(f.size, f.stem),
            "mean": list(f.mean),
            "std": list(f.std),
        },
        "output": {"name": "logits", "shape": ["batch", len(f.classes)]},
        "params_m": round(count_params_m(model.network), 6),
        "macs_m": round(count_macs_m(model, model.input_shape), 3),
        "test_acc": final.get("test_acc"),
        "test_top5": final.get("test_top5"),
        "method": config.get("method"),
        "seed": config.get("seed"),
        "run_dir": str(run.resolve()) if run else None,
        "trained_with": {"versions": env.get("versions"), "git_commit": env.get("git_commit")},
        "exported_with": {"versions": exported["versions"], "git_commit": exported["git_commit"]},
        "tolerance": {"rtol": RTOL, "atol": ATOL},
        "exports": exports,
    }


def preprocessing(size: int, stem: str) -> str:
    """The evaluation view of an image file, in words (`ista.data.folders.evaluation_view` does it)."""
    if stem == "cifar":
        fit = f"centre-cropped to a square and resized to {size}×{size} (bilinear) unless it is that size"
    else:
        fit = (
            f"resized to {round(size * 256 / 224)} px on its short side (bilinear), centre {size}×{size} crop"
        )
    return f"{fit}; pixel values / 255, then (x - mean) / std per channel"


def _batch() -> Any:
    """The dynamic batch dimension (made when needed: `torch.export` costs every `ista` start 0.2 s)."""
    return torch.export.Dim("batch", min=1, max=MAX_BATCH)


def _write_onnx(model: FoundModel, example: torch.Tensor, program: Program, path: Path) -> None:
    try:
        import onnxscript  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise ExportError("--format onnx needs torch's ONNX exporter: pip install 'ista[export]'") from None
    onnx = torch.onnx.export(
        program(), (example,), dynamo=True, input_names=["images"], output_names=["logits"], verbose=False
    )
    assert onnx is not None  # dynamo=True returns the program
    onnx.save(str(path), external_data=False)


def _write_pt2(model: FoundModel, example: torch.Tensor, program: Program, path: Path) -> None:
    torch.export.save(program(), str(path))


def _write_torchscript(model: FoundModel, example: torch.Tensor, program: Program, path: Path) -> None:
    with _quiet_jit(), torch.no_grad():
        torch.jit.save(torch.jit.trace(model, example, check_trace=False), str(path))  # checked below


def _run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    try:
        import onnxruntime
    except ImportError:
        raise ExportError("checking an ONNX export needs onnxruntime: pip install 'ista[export]'") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"images": x})[0]


def _run_pt2(path: Path, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return torch.export.load(str(path)).module()(torch.from_numpy(x)).numpy()


def _run_torchscript(path: Path, x: np.ndarray) -> np.ndarray:
    with _quiet_jit(), torch.inference_mode():
        return torch.jit.load(str(path)).eval()(torch.from_numpy(x)).numpy()


@contextlib.contextmanager
def _quiet_jit() -> Iterator[None]:
    """TorchScript without torch's deprecation notices (said once, in the README) and its tracer's notes on
    shape tests (the image side is fixed, so they hold)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


_WRITERS: dict[str, Callable[[FoundModel, torch.Tensor, Program, Path], None]] = {
    "onnx": _write_onnx, "pt2": _write_pt2, "torchscript": _write_torchscript}  # fmt: skip
_RUNNERS: dict[str, Callable[[Path, np.ndarray], np.ndarray]] = {
    "onnx": _run_onnx, "pt2": _run_pt2, "torchscript": _run_torchscript}  # fmt: skip
