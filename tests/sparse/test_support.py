import numpy as np
import pytest
import torch

from ista.space.encoding import CODE_SIZE, NODE_OFFSETS, NODE_SIZES
from ista.space.genotypes import PUBLISHED
from ista.space.ops import PRIMITIVES
from ista.sparse.lasso import solve_lasso
from ista.sparse.measurement import draw_measurements, init_codes
from ista.sparse.support import NodeMap, cell_weights, genotype_from_codes, top_support


def test_top_support_order_and_ties():
    assert top_support(np.array([0.1, -0.9, 0.5, 0.0])).tolist() == [2, 1]  # second largest first
    assert top_support(np.array([0.3, 0.3, 0.3, 0.1])).tolist() == [
        1,
        2,
    ]  # ties: the higher index ranks higher
    with pytest.raises(ValueError, match="at least s=2"):
        top_support(np.array([1.0]))


def test_forward_map_equals_the_paper_formula():
    # w_S = z_S + A_Sᵀ(b − A_S z_S), 0 off S (method.md §2.5), checked in float64 against numpy.
    rng = np.random.default_rng(0)
    A = rng.random((7, 28))
    b = rng.standard_normal(7)
    z = solve_lasso(A, b + 0.1 * rng.standard_normal(7))  # z recovered at another b, as within an epoch
    node = NodeMap.from_code(A, z, dtype=torch.float64)
    S = top_support(z)
    expected = np.zeros(28)
    expected[S] = z[S] + A[:, S].T @ (b - A[:, S] @ z[S])
    assert np.allclose(node.weights(torch.from_numpy(b)).numpy(), expected, atol=1e-14, rtol=0)


def test_gradient_is_A_S_times_upstream_and_gradcheck():
    rng = np.random.default_rng(1)
    A = rng.random((7, 35))
    z = solve_lasso(A, 1e-3 * rng.standard_normal(7))
    node = NodeMap.from_code(A, z, dtype=torch.float64)
    b = torch.randn(7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(node.weights, (b,))
    upstream = torch.randn(35, dtype=torch.float64)
    (node.weights(b) @ upstream).backward()
    S = node.support
    assert torch.allclose(b.grad, torch.from_numpy(A[:, S] @ upstream.numpy()[S]))


def test_cell_weights_layout():
    A = draw_measurements(0)["normal"]
    b = init_codes(0)["normal"]
    maps = [NodeMap.from_code(a, solve_lasso(a, code)) for a, code in zip(A, b, strict=True)]
    w = cell_weights(b, maps)
    assert w.shape == (CODE_SIZE,) and w.dtype == torch.float32
    expected = sorted(NODE_OFFSETS[j] + int(k) for j, m in enumerate(maps) for k in m.support)
    assert w.nonzero().flatten().tolist() == expected


def test_genotype_from_hand_made_codes():
    # Rebuild ISTA_twostage from codes whose two largest entries sit at its (input, op) pairs.
    g = PUBLISHED["ISTA_twostage"]
    codes = {}
    for cell in ("normal", "reduce"):
        pairs = getattr(g, cell)
        codes[cell] = []
        for j, n in enumerate(NODE_SIZES):
            z = np.full(n, 1e-4)
            second, first = pairs[2 * j], pairs[2 * j + 1]
            z[7 * second[1] + PRIMITIVES.index(second[0])] = -0.5  # sign does not matter, magnitude does
            z[7 * first[1] + PRIMITIVES.index(first[0])] = 0.9
            codes[cell].append(z)
    assert genotype_from_codes(codes["normal"], codes["reduce"]) == g


def test_measurements_are_seeded_and_shaped():
    A1, A2, A3 = draw_measurements(5), draw_measurements(5), draw_measurements(6)
    for cell in ("normal", "reduce"):
        assert [a.shape for a in A1[cell]] == [(7, 14), (7, 21), (7, 28), (7, 35)]
        assert all(np.array_equal(x, y) for x, y in zip(A1[cell], A2[cell], strict=True))
        assert all(a.min() >= 0 and a.max() < 1 for a in A1[cell])
    assert not np.array_equal(A1["normal"][0], A3["normal"][0])
    assert not np.array_equal(A1["normal"][0][:, :14], A1["reduce"][0])  # independent per cell type
    b = init_codes(5)
    assert [x.shape for x in b["normal"]] == [(7,)] * 4 and b["normal"][0].dtype == torch.float32
    assert torch.equal(b["reduce"][3], init_codes(5)["reduce"][3])
    allb = torch.cat(b["normal"] + b["reduce"])
    assert 3e-4 < allb.std().item() < 3e-3  # 1e-3·N(0, I)
