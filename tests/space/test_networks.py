import pytest
import torch
from torch import nn

from ista.space.cells import EvalCell, SearchCell
from ista.space.counting import count_macs_m, count_params_m
from ista.space.encoding import CODE_SIZE, DENSE_SUPPORT, NODE_OFFSETS
from ista.space.genotypes import PUBLISHED, Genotype
from ista.space.networks import build_eval_network, build_search_network


def formula_params(g: Genotype, c: int, layers: int, classes: int, imagenet: bool, onestage: bool) -> int:
    """An independent count from the formulas of method.md §10 (affine BNs, auxiliary head excluded)."""
    sep = lambda k, c: 2 * (k * k * c + c * c + 2 * c)  # noqa: E731
    dil = lambda k, c: k * k * c + c * c + 2 * c  # noqa: E731
    if imagenet:
        total = 3 * (c // 2) * 9 + 2 * (c // 2) + (c // 2) * c * 9 + 2 * c + c * c * 9 + 2 * c
        c_pp = c_p = c
    else:
        total = 81 * c + 6 * c  # stem conv 3→3C + BN
        c_pp = c_p = 3 * c
    c_cur = c
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        c_cur *= 2 if reduction else 1
        total += (c_pp * c_cur + 2 * c_cur) + (c_p * c_cur + 2 * c_cur)  # preprocess0 (FR or 1×1) and 1
        for op, index in g.reduce if reduction else g.normal:
            stride2 = reduction and index < 2
            if op.startswith("sep"):
                total += sep(int(op[-1]), c_cur)
            elif op.startswith("dil"):
                total += dil(int(op[-1]), c_cur)
            elif op == "skip_connect" and stride2:
                total += c_cur * c_cur + 2 * c_cur  # FactorizedReduce(C, C)
            elif onestage:
                total += 2 * c_cur  # BN after a pool or a stride-1 skip
        c_pp, c_p = c_p, 4 * c_cur
    return total + c_p * classes + classes


@pytest.mark.parametrize("onestage", [False, True])
@pytest.mark.parametrize("name", PUBLISHED)
def test_param_counts_match_formulas(name, onestage):
    g = PUBLISHED[name]
    cifar = build_eval_network(g, "cifar", auxiliary=True, onestage=onestage)
    assert round(count_params_m(cifar) * 1e6) == formula_params(g, 36, 20, 10, False, onestage)
    imagenet = build_eval_network(g, "imagenet", num_classes=1000, auxiliary=True, onestage=onestage)
    assert round(count_params_m(imagenet) * 1e6) == formula_params(g, 48, 14, 1000, True, onestage)


def test_published_counts():
    # method.md §10.1 (known DARTS log values, 1e-6 M).
    v2 = PUBLISHED["DARTS_V2"]
    assert count_params_m(build_eval_network(v2, "cifar", auxiliary=True)) == pytest.approx(
        3.349342, abs=1e-6
    )
    assert count_params_m(
        build_eval_network(v2, "imagenet", num_classes=1000, auxiliary=True)
    ) == pytest.approx(4.718752, abs=1e-6)
    assert count_params_m(build_eval_network(v2, onestage=True)) == pytest.approx(3.358846, abs=1e-6)
    assert count_params_m(build_eval_network(PUBLISHED["DARTS_V1"])) == pytest.approx(3.169414, abs=1e-6)
    assert count_params_m(build_search_network("cifar", 16, 8)) == pytest.approx(1.930618, abs=1e-6)


def test_onestage_supernet_count():
    net = build_search_network("cifar", 36, 20, onestage=True, auxiliary=True)
    assert count_params_m(net) == pytest.approx(20.374678, abs=1e-6)


def test_macs():
    v2 = PUBLISHED["DARTS_V2"]
    assert count_macs_m(build_eval_network(v2, auxiliary=True), (3, 32, 32)) == pytest.approx(528.4, abs=0.05)
    assert count_macs_m(build_eval_network(v2, "imagenet", num_classes=1000), (3, 224, 224)) == pytest.approx(
        529.9, abs=0.05
    )


@pytest.mark.parametrize("dataset,size", [("cifar", 32), ("imagenet", 224)])
def test_eval_network_forward_and_aux(dataset, size):
    torch.manual_seed(0)
    net = build_eval_network(
        PUBLISHED["ISTA_twostage"], dataset, channels=8, layers=5, num_classes=7, auxiliary=True
    )
    net.drop_path_prob = 0.2
    x = torch.randn(2, 3, size, size)
    logits, aux = net(x)
    assert logits.shape == (2, 7) and aux is not None and aux.shape == (2, 7)
    (logits.sum() + 0.4 * aux.sum()).backward()
    net.eval()
    logits, aux = net(x)
    assert aux is None  # the auxiliary head only trains


def test_imagenet_stem_reaches_28():
    net = build_eval_network(PUBLISHED["DARTS_V2"], "imagenet", channels=8, layers=3)
    s0 = net.stem0(torch.randn(1, 3, 224, 224))
    assert s0.shape[-1] == 56 and net.stem1(s0).shape[-1] == 28


def _all_skip(onestage: bool) -> EvalCell:
    g = Genotype(
        [("skip_connect", 0), ("skip_connect", 1)] * 4, range(2, 6), [("skip_connect", 0)] * 8, range(2, 6)
    )
    return EvalCell(g, 4, 4, 4, reduction=False, reduction_prev=False, onestage=onestage).train()


def test_drop_path_spares_identity_but_not_wrapped_skip():
    x = torch.randn(64, 4, 6, 6)
    torch.manual_seed(0)
    plain = _all_skip(onestage=False)
    assert torch.equal(plain(x, x, drop_prob=0.5), plain(x, x, drop_prob=0.5))  # Identity is exempt (DARTS)
    wrapped = _all_skip(onestage=True)
    assert not torch.equal(wrapped(x, x, drop_prob=0.5), wrapped(x, x, drop_prob=0.5))


def _count_calls(cell: SearchCell) -> list[int]:
    calls = [0] * CODE_SIZE

    def hook(f):
        def fn(module, inputs, output):
            calls[f] += 1

        return fn

    for f, op in enumerate(cell.ops):
        op.register_forward_hook(hook(f))
    return calls


def test_search_cell_runs_only_the_support():
    torch.manual_seed(0)
    cell = SearchCell(6, 6, 4, reduction=True, reduction_prev=False)
    assert len(cell.ops) == 98
    calls = _count_calls(cell)
    support = [[3, 10], [0, 20], [7, 8], [13, 34]]  # two same-input ops in node 2 are legal (§1)
    cell.set_support(support)
    active = sorted(NODE_OFFSETS[j] + k for j, ks in enumerate(support) for k in ks)
    w = torch.zeros(CODE_SIZE)
    w[active] = torch.randn(len(active))
    w.requires_grad_(True)
    s = torch.randn(2, 6, 8, 8)
    out = cell(s, s, w)
    assert out.shape == (2, 16, 4, 4)
    assert [f for f, n in enumerate(calls) if n] == active and all(calls[f] == 1 for f in active)
    out.square().sum().backward()
    assert [f for f in range(CODE_SIZE) if w.grad[f] != 0] == active

    # Weights outside the support do not matter: they are never read.
    w2 = w.detach().clone()
    w2[[f for f in range(CODE_SIZE) if f not in active]] = 5.0
    assert torch.allclose(cell(s, s, w2), out.detach())
    # The dense super-net runs all 98 candidates.
    cell.set_support(DENSE_SUPPORT)
    cell(s, s, w2)
    assert calls.count(3) == len(active) and sum(calls) == 2 * len(active) + CODE_SIZE


def test_search_cell_matches_equation():
    # Node j+2 = Σ_{k∈S_j} w_k · op_{k mod 7}(h_{k div 7}) with the right input states (§2.5).
    torch.manual_seed(0)
    cell = SearchCell(4, 4, 4, reduction=False, reduction_prev=False).eval()
    cell.set_support([[3], [14 + 5], [7 * 3 + 2], [7 * 4 + 1, 7 * 2 + 3]])
    w = torch.randn(CODE_SIZE)
    s0, s1 = torch.randn(1, 4, 5, 5), torch.randn(1, 4, 5, 5)
    h = [cell.preprocess0(s0), cell.preprocess1(s1)]
    h.append(w[3] * cell.ops[3](h[0]))
    h.append(w[14 + 14 + 5] * cell.ops[14 + 14 + 5](h[2]))
    h.append(w[35 + 23] * cell.ops[35 + 23](h[3]))
    h.append(w[63 + 29] * cell.ops[63 + 29](h[4]) + w[63 + 17] * cell.ops[63 + 17](h[2]))
    assert torch.allclose(cell(s0, s1, w), torch.cat(h[2:], dim=1))


def test_search_cell_bad_support_and_weights():
    cell = SearchCell(4, 4, 4, reduction=False, reduction_prev=False)
    with pytest.raises(ValueError, match="empty support"):
        cell.set_support([[0], [], [1], [2]])
    with pytest.raises(ValueError, match="node 0: index 14"):
        cell.set_support([[14], [0], [1], [2]])
    with pytest.raises(ValueError, match="shape"):
        cell(torch.randn(1, 4, 4, 4), torch.randn(1, 4, 4, 4), torch.zeros(14, 7))


def test_search_network_two_types_of_weights():
    torch.manual_seed(0)
    net = build_search_network("cifar", channels=4, layers=5, num_classes=3)
    net.set_support([[7, 10]] * 4, [[8, 12]] * 4)  # every node reads h_1, so every cell reaches the logits
    normal_active = [o + k for o in NODE_OFFSETS for k in (7, 10)]
    reduce_active = [o + k for o in NODE_OFFSETS for k in (8, 12)]
    normal = torch.zeros(CODE_SIZE)
    reduce = torch.zeros(CODE_SIZE)
    normal[normal_active] = 0.5
    reduce[reduce_active] = 0.5
    normal.requires_grad_(True)
    reduce.requires_grad_(True)
    logits, aux = net(torch.randn(2, 3, 16, 16), (normal, reduce))
    assert logits.shape == (2, 3) and aux is None
    logits.sum().backward()
    assert normal.grad.nonzero().flatten().tolist() == normal_active
    assert reduce.grad.nonzero().flatten().tolist() == reduce_active


def test_search_bn_conventions():
    two = build_search_network("cifar", 8, 3)
    cell_bns = [m for m in two.cells.modules() if isinstance(m, nn.BatchNorm2d)]
    assert cell_bns and not any(bn.affine for bn in cell_bns)  # §11.5
    one = build_search_network("cifar", 8, 3, onestage=True)
    assert all(m.affine for m in one.cells.modules() if isinstance(m, nn.BatchNorm2d))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU to detect host syncs")
def test_search_forward_has_no_host_sync():
    net = build_search_network("cifar", 8, 5).cuda()
    net.set_support([[0, 9]] * 4, [[3, 4]] * 4)
    w = (torch.randn(CODE_SIZE, device="cuda"), torch.randn(CODE_SIZE, device="cuda"))
    x = torch.randn(4, 3, 32, 32, device="cuda")
    net(x, w)  # warm-up (cuDNN autotuning may sync)
    torch.cuda.set_sync_debug_mode("error")
    try:
        net(x, w)[0].sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
