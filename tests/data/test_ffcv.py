"""FFCV files written from real layouts and read back: CIFAR-10 against torchvision's reader, ImageNet-style
JPEG folders, bad sources, and a two-process distributed read."""

import os
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ista.config.schema import DataConfig
from ista.data.augment import Finish
from ista.data.sources import CIFAR10_CLASSES, DataError
from ista.data.splits import ffcv_import_error, open_split

pytestmark = pytest.mark.skipif(  # CI sets ISTA_REQUIRE_FFCV, so there these tests cannot skip
    ffcv_import_error() is not None and not os.environ.get("ISTA_REQUIRE_FFCV"),
    reason=f"ffcv is not installed: {ffcv_import_error()}",
)
SMALL_PAGES = 1 << 21  # FFCV's smallest page, so that test files stay small
RAW = Finish((0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255))  # leaves pixel values as they are (as floats)


def write_cifar_beton(tmp_path, write_cifar, **kwargs):
    from ista.data.beton import write_betons

    write_cifar(tmp_path / "src", **kwargs)
    write_betons("cifar10", tmp_path / "src", tmp_path / "beton", page_size=SMALL_PAGES, workers=2)
    return tmp_path / "beton"


def torchvision_cifar(root, train):
    import torchvision

    class Unchecked(torchvision.datasets.CIFAR10):
        """torchvision's reader minus the MD5 sums of the official archive (these files are made here)."""

        def _check_integrity(self):
            return True

        def _load_meta(self):
            self.classes = list(CIFAR10_CLASSES)

    return Unchecked(str(root), train=train)


def all_batches(loader, seed=0, epoch=0):
    xs, ys = zip(*loader.epoch(seed, epoch), strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_cifar_beton_gives_torchvisions_images_and_labels(tmp_path, write_cifar):
    beton = write_cifar_beton(tmp_path, write_cifar)
    for train, name in ((True, "train"), (False, "test")):
        split = open_split(DataConfig(beton=str(beton)), train=train)
        assert split.reader == "ffcv" and split.size == (100 if train else 20) and split.num_classes == 10
        x, y = all_batches(split.loader(torch.arange(split.size), 16, augment=False, shuffle=False))
        reference = torchvision_cifar(tmp_path / "src", train)
        expected = torch.from_numpy(reference.data).permute(0, 3, 1, 2)  # N×32×32×3 uint8 → N×3×32×32
        assert torch.equal(x, Finish(split.mean, split.std)(expected, None)), name
        assert y.tolist() == reference.targets


def test_cifar_training_view_is_pad4_crop_and_flip(tmp_path, write_cifar):
    from ista.data.ffcv_loader import FfcvLoader

    beton = write_cifar_beton(tmp_path, write_cifar)
    path = beton / "train.beton"
    loader = FfcvLoader(path, torch.arange(100), 25, RAW, crop="pad", workers=2, shuffle=False)
    x = all_batches(loader)[0].round()
    original = torch.from_numpy(torchvision_cifar(tmp_path / "src", True).data).permute(0, 3, 1, 2).float()
    padded = torch.nn.functional.pad(original, (4, 4, 4, 4))
    shifts = set()
    for i in range(100):
        windows = set()
        for r, c in np.ndindex(9, 9):
            window = padded[i, :, r : r + 32, c : c + 32]
            flips = {flip for flip in (False, True) if torch.equal(x[i], window.flip(-1) if flip else window)}
            windows |= {(r, c, flip) for flip in flips}
        assert windows, f"image {i} is not a shifted (and possibly flipped) window of its original"
        shifts |= windows
    assert len({s[:2] for s in shifts}) > 20 and {s[2] for s in shifts} == {False, True}


def test_two_stage_split_and_subset_on_the_ffcv_path(tmp_path, write_cifar):
    from ista.config import apply_overrides, preset
    from ista.train.engine import build_loaders

    beton = write_cifar_beton(tmp_path, write_cifar)
    overrides = [f"data.beton={beton}", "data.subset=60", "batch_size=8"]
    config = apply_overrides(preset("cifar10-two-stage"), overrides)
    split = open_split(config.data, train=True)
    loaders = build_loaders(config, split)
    _, train_labels = all_batches(loaders.train)
    _, held_labels = all_batches(loaders.evaluate)
    labels = torch.tensor(torchvision_cifar(tmp_path / "src", True).targets)
    torch_split = open_split(replace(config.data, beton="", root=str(tmp_path / "src")), train=True)
    assert torch.equal(split.indices, torch_split.indices)  # one stratified subset on both paths
    chosen = labels[split.indices]
    assert (
        sorted(train_labels.tolist()) == sorted(chosen[:30].tolist())
        and held_labels.tolist() == chosen[30:].tolist()
    )
    expected = torch.bincount(labels, minlength=10) * 30 / 100  # each half holds every class in its share
    for half in (train_labels, held_labels):
        assert (torch.bincount(half, minlength=10) - expected).abs().max() <= 1


def test_imagenet_jpeg_beton_decodes_to_the_recipes_views(tmp_path, write_image_folder):
    from ista.data.beton import write_betons

    src = write_image_folder(tmp_path / "src")
    manifest = write_betons(
        "imagenet", src, tmp_path / "beton", image_by_image={"max_res": 600}, page_size=SMALL_PAGES, workers=2
    )
    assert manifest["splits"]["val"]["images"] == 6 and manifest["num_classes"] == 3
    config = DataConfig(dataset="imagenet", root=str(src), beton=str(tmp_path / "beton"), workers=2)
    views = {}
    for loader in ("ffcv", "torch"):
        val = open_split(replace(config, loader=loader), train=False)
        assert val.reader == loader and val.num_classes == 3
        x, y = views[loader] = all_batches(val.loader(torch.arange(6), 4, augment=False, shuffle=False))
        assert x.shape == (6, 3, 224, 224) and y.tolist() == [0, 0, 1, 1, 2, 2]
        train = open_split(replace(config, loader=loader), train=True)
        x, y = all_batches(train.loader(torch.arange(train.size), 5, augment=True, jitter=True))
        assert x.shape == (12, 3, 224, 224) and sorted(y.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    # Resize-256 + centre-224 by FFCV (from the stored copy, half of them JPEG again) and by torchvision
    # (from the JPEG): the same view up to resampling and JPEG noise, image by image.
    a, b = views["ffcv"][0].flatten(1), views["torch"][0].flatten(1)
    correlation = torch.nn.functional.cosine_similarity(a - a.mean(1, True), b - b.mean(1, True))
    assert correlation.mean() > 0.95 and correlation.min() > 0.9  # a 4-pixel shift gives 0.83 on average


def test_bad_sources_name_the_file_and_leave_no_finished_file(tmp_path, write_image_folder, write_cifar):
    from ista.data.beton import write_betons

    with pytest.raises(DataError, match=r"image folder .*nowhere/train does not exist"):
        write_betons("imagenet", tmp_path / "nowhere", tmp_path / "out")
    flat = tmp_path / "flat"
    write_image_folder(flat)
    for image in (flat / "val" / "n01440764").iterdir():
        image.rename(flat / "val" / image.name)
    (flat / "val" / "n01440764").rmdir()
    with pytest.raises(DataError, match=r"val holds 2 images outside class folders \(e.g. n01440764_0"):
        write_betons("imagenet", flat, tmp_path / "out")
    (flat / "val" / "odd").mkdir()
    for image in (flat / "val").glob("*.JPEG"):
        image.rename(flat / "val" / "odd" / image.name)
    with pytest.raises(DataError, match=r"val has classes not in the training split: odd"):
        write_betons("imagenet", flat, tmp_path / "out")

    src = write_image_folder(tmp_path / "broken")
    bad = src / "val" / "n01443537" / "n01443537_1.JPEG"
    bad.write_bytes(b"\xff\xd8 this is not a JPEG")
    with pytest.raises(DataError, match=f"cannot read image {bad}"):
        write_betons("imagenet", src, tmp_path / "out", page_size=SMALL_PAGES, workers=2)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["train.beton"]  # no val.beton, no leftovers

    with pytest.raises(DataError, match=r"train.beton already exists; pass --force"):
        write_betons(
            "imagenet", write_image_folder(tmp_path / "good"), tmp_path / "out", page_size=SMALL_PAGES
        )

    beton = write_cifar_beton(tmp_path / "c", write_cifar)
    (beton / "test.beton").write_bytes((beton / "test.beton").read_bytes()[:1000])
    with pytest.raises(DataError, match=r"test.beton is not a readable .beton file"):
        open_split(DataConfig(beton=str(beton)), train=False)
    with pytest.raises(DataError, match="does not exist; write it with `ista data`"):
        open_split(DataConfig(beton=str(tmp_path)), train=True)
    with pytest.raises(DataError, match="already exists"):
        write_betons("cifar10", tmp_path / "c" / "src", beton)


def test_ista_data_command(tmp_path, write_cifar):
    from ista.cli.main import main

    write_cifar(tmp_path / "src")
    assert main(["data", "cifar10", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "b")]) == 0
    assert {p.name for p in (tmp_path / "b").iterdir()} == {"train.beton", "test.beton", "manifest.json"}
    assert main(["data", "cifar10", "--src", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c")]) == 2


def read_shards(rank: int, port: int, path: str, out: str) -> None:
    from datetime import timedelta

    import numba

    from ista.data.ffcv_loader import FfcvLoader
    from ista.data.loaders import ImageLoader
    from ista.data.sources import load_cifar10

    assert not numba.config.DISABLE_JIT
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=60))
    try:
        data = load_cifar10(os.path.join(path, "src"))
        shards = {
            "ffcv": FfcvLoader(
                os.path.join(path, "beton", "train.beton"),
                torch.arange(100),
                16,
                RAW,
                crop="none",
                workers=1,
                rank=rank,
                world=2,
            ),
            "torch": ImageLoader(data, torch.arange(100), 16, RAW, rank=rank, world=2),
        }

        def which(x):  # which image each row is: match it against the originals
            match = (x.round().flatten(1)[:, None] == data.images.flatten(1)[None].float()).all(-1)
            return match.float().argmax(1).numpy()

        for name, loader in shards.items():
            for epoch in (0, 1):
                x = all_batches(loader, seed=5, epoch=epoch)[0]
                assert len(x) == 50 and -(-len(x) // 16) == len(loader)
                np.save(f"{out}/{name}-{epoch}-{rank}.npy", which(x))
            # an epoch resumed after its first 2 batches reads exactly this rank's remaining images
            interrupted = loader.epoch(5, 1)
            for _ in range(2):
                next(interrupted)
            resumed = loader.epoch(5, 1, **interrupted.state())
            np.save(f"{out}/{name}-resumed-{rank}.npy", which(torch.cat([x for x, _ in resumed])))
    finally:
        dist.destroy_process_group()


def test_two_ranks_read_disjoint_shards_of_every_image_and_resume_mid_epoch(
    tmp_path, write_cifar, free_port, monkeypatch
):
    """Also the suite's proof that FFCV's pipelines compile and run as numba code (conftest.py)."""
    write_cifar_beton(tmp_path, write_cifar)
    monkeypatch.setenv("NUMBA_DISABLE_JIT", "0")  # the spawned ranks import numba afresh
    mp.spawn(read_shards, args=(free_port, str(tmp_path), str(tmp_path)), nprocs=2, join=True)
    for name in ("ffcv", "torch"):
        orders = {}
        for epoch in (0, 1):
            ranks = [np.load(tmp_path / f"{name}-{epoch}-{r}.npy") for r in (0, 1)]
            assert sorted(np.concatenate(ranks).tolist()) == list(range(100)), name
            orders[epoch] = ranks[0].tolist()
        assert orders[0] != orders[1]  # a new order each epoch
        for r in (0, 1):
            full = np.load(tmp_path / f"{name}-1-{r}.npy")
            assert np.load(tmp_path / f"{name}-resumed-{r}.npy").tolist() == full[32:].tolist(), name


def test_falls_back_to_torch_with_a_notice_when_ffcv_does_not_import(tmp_path, write_cifar, cli, monkeypatch):
    from ista.data import splits

    beton = write_cifar_beton(tmp_path, write_cifar)
    for name in ("ffcv", "ffcv.loader"):  # as on a machine without ffcv
        monkeypatch.setitem(sys.modules, name, None)
    splits.ffcv_import_error.cache_clear()
    splits._notice.cache_clear()
    try:
        args = ["search", "--preset", "cifar10-two-stage", f"data.beton={beton}", "epochs=1", "batch_size=50",
                "network.layers=3", "network.channels=4", "device=cpu"]  # fmt: skip
        code, _, err = cli(*args, f"data.root={tmp_path / 'src'}", "--quiet", "--out", tmp_path / "run")
        assert code == 0, err
        notices = [line for line in err.splitlines() if line.startswith("ista: ffcv is not available")]
        assert len(notices) == 1 and "with the torch loader instead" in notices[0]
        assert '"data_reader": "torch"' in (tmp_path / "run" / "env.json").read_text()
        code, _, err = cli(*args, "--quiet", "--out", tmp_path / "run2")
        assert code == 2 and "data.beton needs ffcv, which does not import" in err
    finally:
        splits.ffcv_import_error.cache_clear()
