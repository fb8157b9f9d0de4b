"""The found model in use (issue 24): loaded in Python, exported and run without ista, asked to classify
image files, and timed; on one tiny real `ista train` run of a published genotype on real digit images."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import ista
from ista.config import preset
from ista.config.io import config_to_dict
from ista.data.folders import split_folder
from ista.data.splits import open_data
from ista.data.synthetic import write_digits_tree
from ista.model.load import read_run_config
from ista.space.genotypes import PUBLISHED
from ista.train.checkpoint import CheckpointError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cli):
    """Two epochs of ISTA_twostage's target network (3 cells, C=8) on scikit-learn's 8×8 digits as PNGs (no
    cutout: 16 px would cover them)."""
    root = tmp_path_factory.mktemp("model")
    digits = write_digits_tree(root / "digits")
    args = ["train", "--genotype", "ISTA_twostage", "--preset", "cifar10-eval", "data.dataset=folder",
            f"data.root={digits}", "network.channels=8", "network.layers=3", "network.auxiliary_weight=0",
            "data.cutout=0", "network.drop_path=0", "batch_size=64", "epochs=2", "optim.lr=0.05", "--out",
            root / "run", "--quiet"]  # fmt: skip
    code, _, err = cli(*args)
    assert code == 0, err
    return root / "run", digits


def test_load_model_gives_the_runs_own_evaluation(trained):
    run_dir, _ = trained
    model = ista.load_model(run_dir)
    assert not model.training and model.input_shape == (1, 8, 8) and model.classes == tuple("0123456789")
    assert model.genotype == PUBLISHED["ISTA_twostage"]
    data = json.loads((run_dir / "data.json").read_text())
    assert model.facts.mean == tuple(data["mean"]) and model.facts.std == tuple(data["std"])
    _, test = open_data(read_run_config(run_dir).data, True)
    correct = 0
    with torch.inference_mode():
        for x, y in test.loader(torch.arange(test.size), 64, augment=False, shuffle=False).epoch(0, 0):
            correct += int((model(x).argmax(1) == y).sum())
    final = json.loads((run_dir / "result.json").read_text())["final"]
    assert correct / test.size == final["test_acc"] > 0.3  # it learned (chance: 10%), and it is the same net

    untrained = ista.load_model("ISTA_twostage", dataset="cifar10")
    assert untrained.input_shape == (3, 32, 32) and untrained(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="dataset=folder reads its classes and image side from the data"):
        ista.load_model("ISTA_twostage", dataset="folder")


def test_what_is_no_trained_model_gets_one_clear_line(trained, tmp_path):
    run_dir, _ = trained
    with pytest.raises(ValueError, match="is not a run directory"):
        ista.load_model(tmp_path)
    search = tmp_path / "search"
    search.mkdir()
    (search / "config.json").write_text(json.dumps(config_to_dict(preset("demo"))))
    with pytest.raises(ValueError, match=r"is a search run \(method=ista\): its network is a super-net"):
        ista.load_model(search)

    def copy(name, drop=(), checkpoint=None):
        folder = tmp_path / name
        folder.mkdir()
        for f in run_dir.iterdir():
            if f.is_file() and f.name not in drop:
                (folder / f.name).write_bytes(f.read_bytes())
        if checkpoint is not None:
            (folder / "checkpoint.pt").write_bytes(checkpoint)
        return folder

    with pytest.raises(ValueError, match="has not finished"):
        ista.load_model(copy("unfinished", drop=("result.json",)))
    whole = (run_dir / "checkpoint.pt").read_bytes()
    with pytest.raises(CheckpointError, match="it is damaged or not an ista checkpoint"):
        ista.load_model(copy("damaged", checkpoint=whole[: len(whole) // 2]))
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    state["task"]["format"] = 1
    older = copy("older")
    torch.save(state, older / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="written by an older ista"):
        ista.load_model(older)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):  # what unpickling would call
            return (marker.touch, ())

    crafted = copy("crafted")
    torch.save({"epoch": 1, "task": Payload()}, crafted / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="refused to read checkpoint"):
        ista.load_model(crafted)
    assert not marker.exists()


RUN_WITHOUT_ISTA = """
import json, sys
sys.modules["ista"] = None  # `import ista` fails in this process
try:
    import ista
    raise SystemExit("ista was importable")
except ImportError:
    pass
import numpy as np, onnxruntime, torch
x = np.load(sys.argv[1] + "/x.npy")
out = {
    "onnx": onnxruntime.InferenceSession(sys.argv[1] + "/model.onnx").run(["logits"], {"images": x})[0],
    "pt2": torch.export.load(sys.argv[1] + "/model.pt2").module()(torch.from_numpy(x)).detach().numpy(),
    "torchscript": torch.jit.load(sys.argv[1] + "/model.pt")(torch.from_numpy(x)).detach().numpy(),
}
np.savez(sys.argv[1] + "/out.npz", **out)
"""


def test_exports_reproduce_the_logits_in_a_process_without_ista(trained, tmp_path, cli):
    run_dir, _ = trained
    code, out, err = cli("export", run_dir, "--format", "onnx", "pt2", "--out", tmp_path)
    for fmt, name in (("onnx", "model.onnx"), ("pt2", "model.pt2")):
        assert code == 0 and f"wrote {tmp_path / name} ({fmt}, input batch×1×8×8" in out, err
    code, out, err = cli(
        "export", run_dir, "--format", "torchscript", "--out", tmp_path / "model.pt"
    )  # a file
    assert code == 0 and f"wrote {tmp_path / 'model.pt'} (torchscript, input batch×1×8×8" in out, err
    card = json.loads((tmp_path / "model.json").read_text())
    assert sorted(card["exports"]) == ["onnx", "pt2", "torchscript"]
    final = json.loads((run_dir / "result.json").read_text())["final"]
    assert card["test_acc"] == final["test_acc"] and card["classes"] == list("0123456789")
    assert card["input"]["shape"] == ["batch", 1, 8, 8] and card["seed"] == 0 and card["params_m"] > 0
    assert "git_commit" in card["trained_with"] and card["trained_with"]["versions"]["torch"]
    x = np.random.default_rng(0).standard_normal((5, 1, 8, 8)).astype(np.float32)  # a batch of 5: dynamic
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(RUN_WITHOUT_ISTA))
    done = subprocess.run([sys.executable, script, tmp_path], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with torch.inference_mode():
        expected = ista.load_model(run_dir)(torch.from_numpy(x)).numpy()
    got = np.load(tmp_path / "out.npz")
    for fmt in ("onnx", "pt2", "torchscript"):
        np.testing.assert_allclose(got[fmt], expected, rtol=1e-4, atol=1e-4, err_msg=fmt)


def test_predict_classifies_files_as_the_test_split_is_seen(trained, tmp_path, cli):
    run_dir, digits = trained
    _, held_out, _ = split_folder(digits)  # the run's test split: 10% of each class, held out with seed 0
    files = [path for path, _ in held_out.samples[:12]]
    (tmp_path / "notes.txt").write_text("not an image")
    code, out, err = cli("predict", run_dir, *files, tmp_path / "notes.txt", "--json", "--top-k", "3")
    assert code == 1 and f"skipped: cannot read image {tmp_path / 'notes.txt'}" in err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["file"] for r in rows] == files and all(len(r["top"]) == 3 for r in rows)
    assert all(r["top"][0]["p"] >= r["top"][1]["p"] >= r["top"][2]["p"] for r in rows)
    model = ista.load_model(run_dir)
    _, test = open_data(read_run_config(run_dir).data, True)
    x, _ = next(iter(test.loader(torch.arange(12), 12, augment=False, shuffle=False).epoch(0, 0)))
    with torch.inference_mode():
        expected = [model.classes[i] for i in model(x).argmax(1).tolist()]
    assert [r["top"][0]["class"] for r in rows] == expected  # the run's own preprocessing

    code, out, err = cli("predict", run_dir, digits / "train" / "7")
    assert code == 0 and "class" in out and "0007.png" in out, err


def test_latency_is_measured_recorded_and_summarised(trained, cli):
    run_dir, _ = trained
    common = ["--latency", "--batch", "1", "4", "--rounds", "3", "--warmup", "1"]
    code, out, err = cli("params", run_dir, *common, "--json")
    assert code == 0, err
    timings = json.loads(out)["latency"]
    assert [t["batch"] for t in timings] == [1, 4] and all(t["device"] == "cpu" for t in timings)
    assert all(t["min_ms"] <= t["median_ms"] <= t["max_ms"] for t in timings)
    assert timings[1]["images_per_s"] == pytest.approx(4 / timings[1]["median_ms"] * 1e3, rel=1e-3)
    assert json.loads((run_dir / "latency.json").read_text()) == timings
    code, out, err = cli("params", "ISTA_twostage", "DARTS_V2", *common, "--channels", "8", "--layers", "3")
    assert code == 0 and "ms b=1" in out and "img/s b=4" in out and "DARTS_V2" in out, err
    code, out, err = cli("summarize", run_dir)
    assert code == 0 and "ms/batch" in out and f"{timings[0]['median_ms']:.2f} (b=1, cpu)" in out, err
    code, _, err = cli("params", "DARTS_V2", "--batch", "8")
    assert code == 2 and "--batch time the network: add --latency" in err
    code, _, err = cli("params", "DARTS_V2", "--device", "cpu")  # a default's value, given, is refused too
    assert code == 2 and "--device time the network: add --latency" in err
