import pytest
import torch
from torch import nn

from ista.space.counting import count_params_m
from ista.space.ops import PRIMITIVES, FactorizedReduce, ReLUConvBN, build_op, drop_path


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_index_order_is_darts_without_none():
    # method.md §1: the op index of z is k mod 7 in exactly this order.
    assert PRIMITIVES == (
        "max_pool_3x3",
        "avg_pool_3x3",
        "skip_connect",
        "sep_conv_3x3",
        "sep_conv_5x5",
        "dil_conv_3x3",
        "dil_conv_5x5",
    )


@pytest.mark.parametrize("bn", ["none", "search", "onestage"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", PRIMITIVES)
def test_output_shape_and_backward(name, stride, bn):
    torch.manual_seed(0)
    op = build_op(name, 8, stride, affine=bn != "search", bn_after_free=bn)
    x = torch.randn(2, 8, 12, 12, requires_grad=True)
    y = op(x)
    assert y.shape == (2, 8, 12 // stride, 12 // stride)
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("c", [8, 36])
def test_param_counts_match_formulas(c):
    # method.md §10: sep_conv_k = 2(k²C + C² + 2C); dil_conv_k = k²C + C² + 2C; pools and Identity are free.
    for k in (3, 5):
        assert n_params(build_op(f"sep_conv_{k}x{k}", c, 1)) == 2 * (k * k * c + c * c + 2 * c)
        assert n_params(build_op(f"dil_conv_{k}x{k}", c, 2)) == k * k * c + c * c + 2 * c
    for name in ("max_pool_3x3", "avg_pool_3x3", "skip_connect"):
        assert n_params(build_op(name, c, 1)) == 0
        assert n_params(build_op(name, c, 1, bn_after_free="onestage")) == 2 * c  # the absorbing BN
        assert n_params(build_op(name, c, 1, affine=False, bn_after_free="search")) == 0
    # A stride-2 skip is FactorizedReduce, which already ends in a BN: nothing is added.
    assert n_params(build_op("skip_connect", c, 2, bn_after_free="onestage")) == c * c + 2 * c
    assert n_params(FactorizedReduce(3 * c, c)) == 3 * c * c + 2 * c
    assert n_params(ReLUConvBN(4 * c, c, 1, 1, 0)) == 4 * c * c + 2 * c
    assert n_params(build_op("sep_conv_3x3", c, 1, affine=False)) == 2 * (9 * c + c * c)


def test_avg_pool_excludes_padding():
    x = torch.ones(1, 1, 4, 4)
    x[0, 0, 0, 0] = 5.0
    y = build_op("avg_pool_3x3", 1, 1)(x)
    assert y[0, 0, 0, 0].item() == pytest.approx((5 + 1 + 1 + 1) / 4)  # 4 in-image cells, not 9


def test_search_pool_bn_and_onestage_identity_wrap():
    assert isinstance(build_op("skip_connect", 4, 1), nn.Identity)
    wrapped = build_op("skip_connect", 4, 1, bn_after_free="onestage")
    assert isinstance(wrapped, nn.Sequential) and isinstance(wrapped[1], nn.BatchNorm2d) and wrapped[1].affine
    search_pool = build_op("max_pool_3x3", 4, 1, affine=False, bn_after_free="search")
    assert isinstance(search_pool[1], nn.BatchNorm2d) and not search_pool[1].affine
    assert isinstance(build_op("skip_connect", 4, 1, bn_after_free="search"), nn.Identity)


def test_factorized_reduce_odd_input():
    y = FactorizedReduce(4, 6)(torch.randn(2, 4, 7, 7))
    assert y.shape == (2, 6, 4, 4)  # the same grid as a stride-2 3×3 conv with padding 1


def test_bad_op_and_variant():
    with pytest.raises(ValueError, match="unknown op 'none'"):
        build_op("none", 4, 1)
    with pytest.raises(ValueError, match="bn_after_free"):
        build_op("skip_connect", 4, 1, bn_after_free="sometimes")


def test_drop_path_masks_whole_samples_and_rescales():
    torch.manual_seed(0)
    x = torch.ones(4000, 2, 3, 3)
    y = drop_path(x, 0.2)
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 1.25}
    assert (per_sample == per_sample[:, :1]).all()  # one decision per sample
    assert (per_sample[:, 0] == 0).float().mean().item() == pytest.approx(0.2, abs=0.03)
    assert drop_path(x, 0.0) is x


def test_counting_excludes_auxiliary():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(10, 10)
            self.auxiliary_head = nn.Linear(10, 10)

    assert count_params_m(M()) == pytest.approx(110 / 1e6)
