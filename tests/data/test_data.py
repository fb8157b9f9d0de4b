import pickle

import numpy as np
import pytest
import torch

from ista.data.augment import Finish, random_crop_flip
from ista.data.loaders import ImageLoader, rank_shard, split_indices
from ista.data.sources import DataError, ImageSet, load_cifar10, load_digits


def test_cifar_reader(tmp_path, write_cifar):
    folder = write_cifar(tmp_path)
    train = load_cifar10(tmp_path)
    assert train.images.shape == (100, 3, 32, 32) and train.images.dtype == torch.uint8
    with open(folder / "data_batch_2", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    assert np.array_equal(train.images[20].numpy().reshape(-1), raw[b"data"][0])  # channel-major rows
    assert load_cifar10(folder, train=False).labels.shape == (20,)


def test_cifar_errors_name_the_file(tmp_path, write_cifar):
    with pytest.raises(DataError, match=r"does not exist; expected ROOT/cifar-10-batches-py"):
        load_cifar10(tmp_path / "nowhere")
    folder = write_cifar(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"missing CIFAR-10 file .*data_batch_3"):
        load_cifar10(tmp_path)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3 is not a CIFAR-10 python batch"):
        load_cifar10(tmp_path)


def test_digits_are_real_images_with_a_fixed_stratified_test_split():
    from sklearn.datasets import load_digits as scikit_learns

    digits, theirs = load_digits(), scikit_learns()  # its file, read without importing scikit-learn
    assert digits.images.shape == (1797, 1, 8, 8) and digits.images.max() == 255
    assert np.array_equal(digits.images[:, 0].numpy(), np.round(theirs.images * (255 / 16)))
    assert np.array_equal(digits.labels.numpy(), theirs.target)
    assert sorted(digits.labels.unique().tolist()) == list(range(10))
    train, test = load_digits(train=True), load_digits(train=False)
    assert (len(train.labels), len(test.labels)) == (1497, 300)
    assert torch.bincount(test.labels).tolist() == [30] * 10
    # together exactly the 1,797 images, and the same split every time
    both = torch.cat([train.images, test.images]).flatten(1)
    assert sorted(map(bytes, both.numpy())) == sorted(map(bytes, digits.images.flatten(1).numpy()))
    assert torch.equal(load_digits(train=False).images, test.images)
    assert train.mean == test.mean and train.std == test.std  # the training split's statistics


def test_split_by_index():
    train, held = split_indices(10, 0.5)
    assert train.tolist() == [0, 1, 2, 3, 4] and held.tolist() == [5, 6, 7, 8, 9]
    with pytest.raises(ValueError, match="empty half"):
        split_indices(1, 0.5)


def test_loader_order_is_a_function_of_seed_and_epoch():
    images = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).repeat(1, 1, 2, 2)
    data = ImageSet(images, torch.arange(40), (0.0,), (1 / 255,), 10)
    loader = ImageLoader(data, torch.arange(10, 40), 8, Finish(data.mean, data.std))
    first = [y.tolist() for _, y in loader.epoch(seed=1, epoch=0)]
    assert [y.tolist() for _, y in loader.epoch(seed=1, epoch=0)] == first
    assert [y.tolist() for _, y in loader.epoch(seed=1, epoch=1)] != first
    assert sorted(y for batch in first for y in batch) == list(range(10, 40)) and len(loader) == 4
    x, y = next(loader.epoch(seed=1, epoch=0))
    assert torch.allclose(x[:, 0, 0, 0], y.float())  # normalised with mean 0, std 1/255: back to the byte


def test_random_crop_flip_is_a_shifted_window():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    g = torch.Generator().manual_seed(0)
    out = random_crop_flip(x, g, padding=2)
    g = torch.Generator().manual_seed(0)
    offsets = torch.randint(0, 5, (2, 2), generator=g)
    flips = torch.rand(2, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (2,) * 4)
    for i in range(2):
        r, c = offsets[0, i], offsets[1, i]
        window = padded[i, :, r : r + 6, c : c + 6]
        assert torch.equal(out[i], window.flip(-1) if flips[i] else window)


def test_ranks_share_one_order_and_pad_like_distributed_sampler():
    order = torch.tensor([4, 0, 3, 1, 2])
    assert rank_shard(order, 0, 2).tolist() == [4, 3, 2] and rank_shard(order, 1, 2).tolist() == [0, 1, 4]
    assert rank_shard(order, 0, 1) is order


def test_folder_loader_repeats_and_resumes_an_epoch_exactly(tmp_path, write_image_folder):
    from ista.config.schema import DataConfig
    from ista.data.splits import open_split

    root = write_image_folder(tmp_path, train=3, val=1)
    split = open_split(DataConfig(dataset="imagenet", root=str(root), loader="torch", workers=1), train=True)
    assert split.reader == "torch" and split.size == 9 and split.num_classes == 3
    loader = split.loader(torch.arange(9), 4, augment=True, jitter=True, cutout=16)
    first = list(loader.epoch(seed=0, epoch=0))
    assert len(first) == len(loader) == 3 and first[0][0].shape == (4, 3, 224, 224)
    again, other = list(loader.epoch(seed=0, epoch=0)), list(loader.epoch(seed=0, epoch=1))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0][0], other[0][0])
    interrupted = loader.epoch(seed=0, epoch=0)
    next(interrupted)  # resumed after its first batch: the very crops of the uninterrupted pass
    resumed = list(loader.epoch(seed=0, epoch=0, **interrupted.state()))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first[1:], resumed, strict=True))
    assert open_split(DataConfig(dataset="digits"), train=False).size == 300


def test_a_pass_copies_nothing_per_batch_and_draws_where_the_batch_is():
    """On a GPU, a draw made on the host and copied over, or a batch copied from pageable memory, waits for
    the GPU's queue to drain, so the host never runs ahead. A pass copies only its order, once; every
    per-image draw of the crop, flip, cutout and colour jitter names the batch's device (the jitter's
    order is a host draw: Python acts on it)."""
    from torch.overrides import TorchFunctionMode

    class Watch(TorchFunctionMode):
        copies, undirected = 0, []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in (torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.copy_):
                Watch.copies += 1
            if func in (torch.rand, torch.randint, torch.randn) and "device" not in kwargs:
                Watch.undirected.append(func.__name__)
            return func(*args, **kwargs)

    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    data = ImageSet(images, torch.arange(64) % 10, (0.5,) * 3, (0.25,) * 3, 10)
    finish = Finish(data.mean, data.std, cutout=4, jitter=True)
    loader = ImageLoader(data, torch.arange(64), 8, finish, crop=True)
    with Watch():
        batches = list(loader.epoch(seed=0, epoch=0))
    assert len(batches) == 8 and Watch.copies <= 1 and Watch.undirected == []
