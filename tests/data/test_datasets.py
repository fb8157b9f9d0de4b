"""Data sets as declarations: CIFAR-100 and SVHN in their real formats, folders of the user's own images
(real digits as greyscale PNGs, tiles of real photographs), stratified subsets, and bad input."""

import json
import os

import numpy as np
import pytest
import torch

from ista.config.schema import DataConfig
from ista.data.datasets import DATASETS
from ista.data.sources import DataError
from ista.data.splits import ffcv_import_error, open_data, stratified_order, training_order
from ista.data.synthetic import write_cifar100_folder, write_digits_tree, write_photo_tree, write_svhn_files

needs_ffcv = pytest.mark.skipif(
    ffcv_import_error() is not None and not os.environ.get("ISTA_REQUIRE_FFCV"),
    reason=f"ffcv is not installed: {ffcv_import_error()}",
)
SMALL_PAGES = 1 << 21


@pytest.fixture(scope="module")
def digits_tree(tmp_path_factory):
    return write_digits_tree(tmp_path_factory.mktemp("digits"))


def share(labels, classes):
    return torch.bincount(labels, minlength=classes).double() / len(labels)


def test_a_stratified_order_keeps_every_class_in_its_share_in_any_prefix():
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)  # sorted by class, as folders are read
    order = stratified_order(labels, 0)
    assert sorted(order.tolist()) == list(range(100)) and torch.equal(order, stratified_order(labels, 0))
    for n in (10, 20, 50, 100):
        counts = torch.bincount(labels[order[:n]], minlength=3)
        assert (counts - torch.tensor([0.6, 0.3, 0.1]) * n).abs().max() <= 1, (n, counts)
    subset = training_order(labels, 20, mixed=False)
    train, held = labels[subset[:10]], labels[subset[10:]]  # a two-stage search's halves
    assert torch.bincount(train).tolist() == [6, 3, 1] and torch.bincount(held).tolist() == [6, 3, 1]
    assert torch.equal(training_order(labels, 0, mixed=True), torch.arange(100))  # the official halves
    assert sorted(labels[training_order(labels, 3, mixed=True)].tolist()) == [0, 0, 1]  # 1.8, 0.9, 0.3


def test_cifar100_and_svhn_read_their_real_formats(tmp_path):
    write_cifar100_folder(tmp_path / "c100", train=200, test=50)
    train, test = open_data(DataConfig(dataset="cifar100", root=str(tmp_path / "c100")))
    assert train.size == 200 and test.size == 50 and train.num_classes == 100
    assert train.facts.classes[:3] == ("apple", "aquarium_fish", "baby") and train.facts.stem == "cifar"
    write_svhn_files(tmp_path / "svhn", train=120, test=40)
    from scipy.io import loadmat

    mat = loadmat(tmp_path / "svhn" / "train_32x32.mat")
    train, _ = open_data(DataConfig(dataset="svhn", root=str(tmp_path / "svhn")))
    assert train.source.images.shape == (120, 3, 32, 32) and not train.flip
    assert torch.equal(train.source.images[5], torch.from_numpy(mat["X"][..., 5]).permute(2, 0, 1))
    assert train.source.labels.tolist() == [int(y) % 10 for y in mat["y"][:, 0]]  # label 10 is the digit 0

    (tmp_path / "svhn" / "test_32x32.mat").unlink()
    with pytest.raises(DataError, match=r"missing SVHN file .*test_32x32.mat; expected ROOT/\{train_32x32"):
        open_data(DataConfig(dataset="svhn", root=str(tmp_path / "svhn")))
    from scipy.io import savemat

    savemat(
        tmp_path / "svhn" / "test_32x32.mat", {"X": np.zeros((28, 28, 3, 4), np.uint8), "y": np.ones((4, 1))}
    )
    with pytest.raises(DataError, match=r"X of shape \(28, 28, 3, 4\) .* expected 32×32×3×N"):
        open_data(DataConfig(dataset="svhn", root=str(tmp_path / "svhn")))
    (tmp_path / "c100" / "cifar-100-python" / "train").write_bytes(b"\x80\x02 not a pickle")
    with pytest.raises(DataError, match="train is not a CIFAR-100 python batch"):
        open_data(DataConfig(dataset="cifar100", root=str(tmp_path / "c100")))
    with pytest.raises(DataError, match=r"CIFAR-100 folder .*nowhere/cifar-100-python does not exist"):
        open_data(DataConfig(dataset="cifar100", root=str(tmp_path / "nowhere")))


def test_a_folder_of_grey_digits_is_read_at_its_own_size_with_a_stratified_test_split(digits_tree):
    train, test = open_data(DataConfig(dataset="folder", root=str(digits_tree)))
    facts = train.facts
    assert (facts.size, facts.channels, facts.stem, facts.test_split) == (8, 1, "cifar", "train")
    assert facts.classes == tuple(map(str, range(10))) and train.crop == "pad" and facts.padding == 1
    assert train.source.images.shape[1:] == (1, 8, 8) and train.size + test.size == 1797
    assert share(test.source.labels, 10).sub(0.1).abs().max() < 0.01  # 10% of every digit held out
    x = train.source.images.double() / 255
    assert facts.mean == pytest.approx((x.mean().item(),)) and facts.std[0] == pytest.approx(x.std().item())
    subset, _ = open_data(DataConfig(dataset="folder", root=str(digits_tree), subset=100), test=False)
    labels = subset.source.labels[subset.indices]
    assert torch.bincount(labels).tolist() == [10] * 10  # stratified, unlike the first 100 files (all 0s)
    bigger, _ = open_data(DataConfig(dataset="folder", root=str(digits_tree), size=16), test=False)
    assert bigger.source.images.shape[1:] == (1, 16, 16)  # upscaled only when asked


def test_folders_of_colour_tiles_and_of_large_photos(tmp_path, write_image_folder):
    tiles = write_photo_tree(tmp_path / "tiles", classes=3, per_class=6, side=40)
    train, test = open_data(DataConfig(dataset="folder", root=str(tiles)))
    assert (train.facts.size, train.facts.channels, train.facts.stem) == (40, 3, "cifar")
    assert train.size == 15 and test.size == 3 and train.flip  # one of each class's six held out
    photos = write_image_folder(tmp_path / "photos", train=4, val=2)  # 80–600 px JPEGs, with val/
    train, test = open_data(DataConfig(dataset="folder", root=str(photos), workers=1))
    facts = train.facts
    assert (
        facts.stem == "imagenet" and facts.size > 64 and train.crop == "resized" and facts.test_split == "val"
    )
    x, y = next(iter(test.loader(torch.arange(test.size), 6, augment=False, shuffle=False).epoch(0, 0)))
    assert x.shape == (6, 3, facts.size, facts.size) and y.tolist() == [0, 0, 1, 1, 2, 2]


def test_bad_folders_give_one_clear_line(tmp_path, digits_tree):
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 256, (12, 12), dtype=np.uint8)

    def tree(name, classes=("a", "b"), n=3):
        for c in classes:
            (tmp_path / name / "train" / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(noise).save(tmp_path / name / "train" / c / f"{i}.png")
        return tmp_path / name

    def fails(root, match, **settings):
        with pytest.raises(DataError, match=match):
            open_data(DataConfig(dataset="folder", root=str(root), **settings))

    empty = tree("empty")
    (empty / "train" / "c").mkdir()
    fails(empty, r"class folder .*empty/train/c holds no images")
    fails(tree("one", classes=("a",)), r"one/train has a single class folder \(a\); a classifier needs two")
    mixed = tree("mixed")
    Image.new("RGB", (12, 12)).save(mixed / "train" / "b" / "colour.png")
    fails(mixed, r"images of mixed channel counts: .*/a/0.png is greyscale and .*/b/colour.png is in colour")
    unknown = tree("unknown")
    (unknown / "val" / "z").mkdir(parents=True)
    Image.new("L", (12, 12)).save(unknown / "val" / "z" / "0.png")
    fails(unknown, "unknown/val has classes not in the training split: z")
    truncated = tree("truncated")
    png = truncated / "train" / "b" / "1.png"
    png.write_bytes(png.read_bytes()[:100])
    fails(truncated, f"cannot read image {png}")
    fails(tree("tiny"), "data.size=2 is too small: the two reduction cells need 4 px or more", size=2)
    fails(tmp_path / "nowhere", r"image folder .*nowhere/train does not exist")
    with pytest.raises(DataError, match=r"dataset=folder needs data.root \(holding ROOT/train/<class>/\*"):
        open_data(DataConfig(dataset="folder"))


def test_the_auxiliary_head_says_which_sides_it_fits(digits_tree, tmp_path, cli):
    args = ["--preset", "demo-eval", "--genotype", "DARTS_V2", "data.dataset=folder",
            f"data.root={digits_tree}", "network.auxiliary_weight=0.4",
            "--out", str(tmp_path / "run")]  # fmt: skip
    code, _, err = cli("train", *args)
    expected = "the auxiliary head does not fit 8×8 images: with the cifar stem it needs a side of 29–40 px"
    assert code == 2 and expected in err, err
    assert not (tmp_path / "run" / "config.json").exists()  # nothing written


@needs_ffcv
@pytest.mark.parametrize("name", ["cifar100", "svhn", "folder-grey", "folder-colour"])
def test_ffcv_and_torch_readers_agree(name, tmp_path, digits_tree):
    from ista.data.beton import write_betons

    if name == "cifar100":
        src = write_cifar100_folder(tmp_path / "src", train=60, test=20).parent
    elif name == "svhn":
        src = write_svhn_files(tmp_path / "src", train=60, test=20)
    elif name == "folder-grey":
        src = digits_tree
    else:
        src = write_photo_tree(tmp_path / "src", classes=3, per_class=6, side=24)
    dataset = name.split("-")[0]
    manifest = write_betons(dataset, src, tmp_path / "beton", page_size=SMALL_PAGES, workers=1)
    assert manifest["facts"]["dataset"] == dataset
    torch_data = DataConfig(dataset=dataset, root=str(src), loader="torch", subset=30)
    ffcv_data = DataConfig(
        dataset=dataset, beton=str(tmp_path / "beton"), loader="ffcv", subset=30, workers=1
    )
    for a, b in zip(open_data(torch_data), open_data(ffcv_data), strict=True):
        assert a.facts == b.facts and torch.equal(a.indices, b.indices)
        batches = [
            s.loader(torch.arange(s.size), 8, augment=False, shuffle=False).epoch(0, 0) for s in (a, b)
        ]
        (xa, ya), (xb, yb) = (next(iter(p)) for p in batches)
        assert torch.equal(xa, xb) and torch.equal(ya, yb), name


@needs_ffcv
def test_betons_written_for_other_data_are_refused(tmp_path, digits_tree, cli):
    code, out, err = cli(
        "data", "folder", "--src", str(digits_tree), "--out", str(tmp_path / "b"), "--workers", "1"
    )
    assert code == 0 and "10 classes, 8 px, 1 channel(s)" in out, out + err
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["facts"]["size"] == 8

    def fails(match, **settings):
        with pytest.raises(DataError, match=match):
            open_data(DataConfig(beton=str(tmp_path / "b"), loader="ffcv", **settings))

    fails(r"b holds 'folder' files, not 'cifar10'", dataset="cifar10")
    fails(r"holds 8×8 images and data.size=16: write them again with `ista data folder --size 16`",
          dataset="folder", size=16)  # fmt: skip
    other = write_digits_tree(tmp_path / "other")
    for c in ("8", "9"):
        for image in (other / "train" / c).iterdir():
            image.unlink()
        (other / "train" / c).rmdir()
    fails(r"written for the classes 0, 1, 2, 3 … \(10\), and .*other has 0, 1, 2, 3 … \(8\)",
          dataset="folder", root=str(other))  # fmt: skip


def test_every_declared_data_set_is_documented():
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for name in DATASETS:
        assert f"`{name}`" in readme, name


TINY = ["network.channels=4", "network.layers=3", "batch_size=32", "epochs=1"]


def test_a_search_on_a_folder_of_grey_digits_learns_at_their_own_size(digits_tree, tmp_path, cli):
    args = ["--preset", "demo", f"data.root={digits_tree}", "data.dataset=folder", "epochs=2", "--quiet"]
    code, out, err = cli("search", *args, "--out", str(tmp_path / "s"))
    assert code == 0, out + err
    last = json.loads((tmp_path / "s" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["valid_acc"] > 0.4  # chance: 10%
    assert json.loads((tmp_path / "s" / "config.json").read_text())["data"]["size"] == 8
    facts = json.loads((tmp_path / "s" / "data.json").read_text())
    assert (facts["size"], facts["channels"], facts["num_classes"], facts["stem"]) == (8, 1, 10, "cifar")


def test_search_and_train_read_cifar100_and_svhn_files(tmp_path, cli):
    c100 = write_cifar100_folder(tmp_path / "c100", train=64, test=32).parent
    svhn = write_svhn_files(tmp_path / "svhn", train=64, test=32)
    code, out, err = cli("search", "--preset", "cifar100-two-stage", f"data.root={c100}", *TINY, "--quiet",
                         "--out", str(tmp_path / "search"))  # fmt: skip
    assert code == 0, out + err
    genotype = str(tmp_path / "search" / "genotype.json")
    code, out, err = cli("train", "--preset", "svhn-eval", "--genotype", genotype, f"data.root={svhn}", *TINY,
                         "network.auxiliary_weight=0", "--quiet",
                         "--out", str(tmp_path / "train"))  # fmt: skip
    assert code == 0 and "final test error" in out, out + err
    for run, classes in (("search", 100), ("train", 10)):
        assert json.loads((tmp_path / run / "data.json").read_text())["num_classes"] == classes
    code, out, _ = cli("summarize", str(tmp_path / "search"), str(tmp_path / "train"))
    assert "on cifar100 (100 classes" in out and "on svhn (10 classes" in out, out
    code, out, _ = cli("summarize", str(tmp_path / "search"), str(tmp_path / "train"), "--json")
    runs = [g["runs"][0] for g in json.loads(out)]
    assert [(r["dataset"], r["classes"], r["size"]) for r in runs] == [
        ("cifar100", 100, 32),
        ("svhn", 10, 32),
    ]


def test_a_run_on_a_folder_whose_images_changed_is_not_resumed(tmp_path, cli):
    tiles = write_photo_tree(tmp_path / "tiles", classes=2, per_class=8, side=16)
    args = ["search", "--preset", "demo", "data.dataset=folder", f"data.root={tiles}", *TINY, "batch_size=4",
            "--quiet", "--out", str(tmp_path / "run")]  # fmt: skip
    assert cli(*args)[0] == 0
    write_photo_tree(tmp_path / "more", classes=2, per_class=8, side=16, seed=1)
    for image in (tmp_path / "more" / "train" / "class_0").iterdir():
        image.rename(tiles / "train" / "class_0" / f"new_{image.name}")
    checkpoint = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    code, _, err = cli(*args)
    assert code == 2 and "was trained on other data: its mean, std differ from what" in err, err
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == checkpoint


@pytest.mark.parametrize("method", ["darts", "onestage"])
def test_darts_and_one_stage_run_on_a_folder(method, digits_tree, tmp_path, cli):
    if method == "darts":
        settings = ["--preset", "cifar10-darts"]
    else:  # at 8 px: no auxiliary head, no 16-px cutout
        settings = ["--preset", "cifar10-one-stage", "network.auxiliary_weight=0", "data.cutout=0",
                    "onestage.max_search_epochs=1", "onestage.param_cap=0"]  # fmt: skip
    data = ["data.dataset=folder", f"data.root={digits_tree}", "data.subset=128"]
    code, out, err = cli("search", *settings, *data, *TINY, "--quiet", "--out", str(tmp_path / "run"))
    assert code == 0, out + err
    assert (tmp_path / "run" / "genotype.png").stat().st_size > 0  # the cell pictures
