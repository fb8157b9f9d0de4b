"""The one step engine: every method honours amp and channels-last with fp32 architecture weights, the
official two-stage clip, and the engine loop's own rules (non-finite loss, eval_every, an early stop)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from ista.config import RunConfig, apply_overrides, preset
from ista.data.splits import open_split
from ista.runner import build_task
from ista.train.engine import Loaders, NonFiniteLossError, build_loaders, run_epochs
from ista.train.step import Method, StepEngine, autocast_dtype

TINY = ["data.subset=96", "batch_size=16", "network.channels=4", "network.layers=3"]
CONFIGS = {  # each method on scikit-learn's digits, at toy size
    "ista": ("demo", []),
    "darts": ("demo", ["method=darts"]),
    "onestage": ("demo", ["method=onestage", "onestage.param_cap=0"]),
    "train": ("cifar10-eval", ["genotype=DARTS_V2", "data.dataset=digits", "network.auxiliary_weight=0"]),
}


def tiny(method: str, *more: str):
    name, overrides = CONFIGS[method]
    config = apply_overrides(preset(name), [*overrides, *TINY, *more])
    split = open_split(config.data, train=True)
    task = build_task(config, split, torch.device("cpu"))
    x, y = split.source.images[:16].float() / 255, split.source.labels[:16]
    return config, task, (x, y)


@pytest.mark.parametrize("method", list(CONFIGS))
def test_amp_autocasts_the_forward_and_the_architecture_stays_fp32(method):
    _, task, batch = tiny(method, "amp=bf16", "channels_last=on")
    seen = {"conv": set(), "weights": [], "channels_last": []}
    for module in task.model.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(lambda m, i, out: seen["conv"].add(out.dtype))

    def before(model, args):
        x, weights = args
        seen["channels_last"].append(x.is_contiguous(memory_format=torch.channels_last))
        seen["weights"].append(None if weights is None else {w.dtype for w in weights})

    task.model.register_forward_pre_hook(before)
    task.start_epoch(0)
    stats = task.train_step(batch, batch)
    metrics = task.evaluate(iter([batch]))
    assert seen["conv"] == {torch.bfloat16}  # every convolution ran in bf16, training and evaluation
    assert all(seen["channels_last"])
    expected = None if method == "train" else {torch.float32}
    assert seen["weights"] and all(w == expected for w in seen["weights"])
    assert all(math.isfinite(float(v) / n) for v, n in stats.values())
    assert 0 <= metrics[f"{task.method.eval_prefix}_acc"] <= 1
    assert str(task.dtype) == "torch.bfloat16"


def test_amp_auto_takes_fp16_where_bf16_would_be_emulated(monkeypatch):
    """torch's default bf16 test counts emulation as support, so a V100 or T4 would run slow bf16: these
    stand in for the answers of such a GPU (emulated only) and of an A100 or H100 (native)."""
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert autocast_dtype("auto", cuda) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert autocast_dtype("auto", cuda) == torch.bfloat16
    assert autocast_dtype("bf16", cuda) == torch.bfloat16  # asked for: what the user set
    assert autocast_dtype("auto", torch.device("cpu")) is None


FP16 = {  # every method in fp16 on the CPU, and the official two-stage clip
    "ista": ["amp=fp16"],
    "ista-clip_arch": ["amp=fp16", "optim.clip_arch=true"],
    "darts": ["amp=fp16"],
    "onestage": ["amp=fp16"],
    "train": ["amp=fp16"],
}


def _w(task):
    return [p.detach().clone() for p in task.w_parameters]


@pytest.mark.parametrize("case", list(FP16))
def test_fp16_skips_overflowing_steps_and_lowers_the_scale(case):
    """A scale far too large for fp16 (2^20): the first steps overflow; each is skipped (W untouched, no
    momentum yet) and halves the scale, until steps go through with finite losses."""
    _, task, batch = tiny(case.split("-")[0], *FP16[case])
    assert task.scaler.is_enabled() and task.dtype == torch.float16
    task.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**20)
    task.start_epoch(0)
    skipped, scales = 0, []
    for _ in range(12):
        before = _w(task)
        stats = task.train_step(batch, batch)
        scales.append(task.scaler.get_scale())
        if all(torch.equal(a, b) for a, b in zip(before, _w(task), strict=True)):
            assert not task.w_optimizer.state  # skipped: SGD never stepped, not even on zeroed gradients
            skipped += 1
        else:
            break
    assert 1 <= skipped < 12 and scales[:skipped] == [2.0 ** (20 - i) for i in range(1, skipped + 1)]
    assert task.w_optimizer.state and math.isfinite(float(stats["train_loss"][0]))
    assert math.isfinite(task.evaluate(iter([batch]))[f"{task.method.eval_prefix}_loss"])


@pytest.mark.parametrize("method", ["ista", "darts", "onestage"])
def test_an_fp16_overflow_in_the_architecture_gradient_alone_skips_ws_step(method):
    """optim.clip_arch puts the architecture's gradient from W's loss into W's clip norm. When that part
    alone overflows (forced here on the first step), W's step is skipped and the scale lowered; before,
    W's own check passed, the norm was inf, the clip factor 0, and W stepped on zeroed gradients."""
    _, task, batch = tiny(method, "amp=fp16", "optim.clip_arch=true")
    original, calls = task.method.arch_weights, []

    def overflowing():
        normal, reduce = original()
        calls.append(normal.requires_grad)
        if len(calls) == (2 if task.method.bilevel else 1):  # the forward of W's loss in the first step
            normal.register_hook(lambda g: torch.full_like(g, float("inf")))
        return normal, reduce

    task.method.arch_weights = overflowing
    task.start_epoch(0)
    before = _w(task)
    task.train_step(batch, batch)
    assert all(torch.equal(a, b) for a, b in zip(before, _w(task), strict=True))
    assert not task.w_optimizer.state and task.scaler.get_scale() == 2.0**15
    task.train_step(batch, batch)  # the next step goes through
    assert not all(torch.equal(a, b) for a, b in zip(before, _w(task), strict=True))


def test_an_fp16_step_never_reads_the_scale_on_the_host(monkeypatch):
    """`GradScaler.get_scale()` copies the scale to the host, a sync on a GPU; the official clip's path
    called it at every step to unscale b's part by hand."""
    _, task, batch = tiny("ista", "amp=fp16", "optim.clip_arch=true")
    monkeypatch.setattr(torch.amp.GradScaler, "get_scale", lambda self: pytest.fail("get_scale in a step"))
    task.start_epoch(0)
    task.train_step(batch, batch)


def test_a_checkpoint_resumes_in_another_precision():
    """amp=auto resolves per GPU kind, and a requeued job can land on another: a bf16 checkpoint resumes
    in fp16 with a fresh scaler (torch alone refuses: "The source state dict is empty"), and back."""
    _, bf16, batch = tiny("ista", "amp=bf16")
    bf16.start_epoch(0)
    bf16.train_step(batch, batch)
    _, fp16, _ = tiny("ista", "amp=fp16")
    fp16.load_state_dict(bf16.state_dict())
    assert fp16.scaler.get_scale() == 2.0**16
    assert all(torch.equal(a, b) for a, b in zip(_w(bf16), _w(fp16), strict=True))
    fp16.start_epoch(0)
    assert math.isfinite(float(fp16.train_step(batch, batch)["train_loss"][0]))
    bf16.load_state_dict(fp16.state_dict())
    assert bf16.state_dict()["amp"] == "torch.bfloat16" and fp16.state_dict()["amp"] == "torch.float16"


@pytest.mark.parametrize("method", ["ista", "darts"])
def test_the_bilevel_searches_follow_the_configured_schedule(method):
    _, task, _ = tiny(method, "optim.schedule=linear", "optim.warmup_epochs=2", "epochs=10", "optim.lr=0.4")
    lrs = []
    for epoch in range(10):
        task.start_epoch(epoch)
        lrs.append(task.lr)
    assert lrs[:3] == pytest.approx([0.2, 0.4, 0.4 * 3 / 5])  # warm-up, then the linear decay


def test_label_smoothing_reaches_the_bilevel_loss():
    _, task, (_, y) = tiny("ista", "optim.label_smoothing=0.3")
    logits = torch.randn(len(y), 10)
    expected = nn.functional.cross_entropy(logits, y, label_smoothing=0.3)
    assert task.loss(logits, None, y) == pytest.approx(float(expected))


def _grads(model, code, x, y, b):
    """∂L/∂W and ∂L/∂b of a plain forward at codes b (the code's parameters are set to b first)."""
    with torch.no_grad():
        for p, value in zip(code.parameters(), b, strict=True):
            p.copy_(value)
    loss = nn.functional.cross_entropy(model(x, code.weights())[0], y)
    params = list(model.parameters())
    grads = torch.autograd.grad(loss, params + code.parameters(), allow_unused=True)
    return [g for g in grads[: len(params)] if g is not None], list(grads[len(params) :])


@pytest.mark.parametrize("clip_arch", [False, True])
def test_the_clip_norm_counts_b_only_when_asked(clip_arch):
    """The official two-stage clip (optim.clip_arch=true): b's gradient, its held-out part plus its
    training part, joins W's in the norm; by default the norm is W's alone."""
    _, task, (x, y) = tiny("ista", f"optim.clip_arch={str(clip_arch).lower()}", "optim.grad_clip=1e9")
    code, model = task.method.code, task.model
    x_va, y_va = x.flip(0), y.flip(0)
    W0 = {k: v.clone() for k, v in model.state_dict().items()}
    b0 = [p.detach().clone() for p in code.parameters()]
    task.start_epoch(0)
    stats = task.train_step((x, y), (x_va, y_va))
    b1 = [p.detach().clone() for p in code.parameters()]
    engine_b_grad = [p.grad.clone() for p in code.parameters()]

    model.load_state_dict(W0)
    _, g_val = _grads(model, code, x_va, y_va, b0)
    g_w, g_train = _grads(model, code, x, y, b1)
    norm_w2 = sum(float(g.pow(2).sum()) for g in g_w)
    g_b = [v + t for v, t in zip(g_val, g_train, strict=True)]
    expected = math.sqrt(norm_w2 + (sum(float(g.pow(2).sum()) for g in g_b) if clip_arch else 0.0))
    assert float(stats["grad_norm"][0]) == pytest.approx(expected, rel=1e-5)
    if clip_arch:
        assert all(torch.allclose(e, g, atol=1e-8) for e, g in zip(engine_b_grad, g_b, strict=True))


def test_held_out_evaluation_is_augmented_only_when_asked():
    for value, crop in (("false", False), ("true", True)):
        config = apply_overrides(preset("demo"), [*TINY, "data.augment=true", f"data.eval_augment={value}"])
        loaders = build_loaders(config, open_split(config.data, train=True))
        assert loaders.held_out.crop and loaders.evaluate.crop is crop


def test_one_stage_recovers_every_n_steps_when_asked():
    _, task, batch = tiny("onestage", "arch.recover_every=1")
    code = task.method.code
    before = [z.copy() for c in code.z for z in code.z[c]]
    task.start_epoch(0)
    task.train_step(batch, None)  # b moved, and its nodes were re-solved right after the step
    now, fresh = [z for c in code.z for z in code.z[c]], code.recover()
    assert all(np.array_equal(a, b) for a, b in zip(now, [z for c in fresh for z in fresh[c]], strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(now, before, strict=True))


# --- the engine loop, on a tiny method ---------------------------------------------------------------
class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x, weights=None):
        return self.fc(x), None


class Batches:
    """A fixed list of batches with the loaders' interface."""

    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def epoch(self, seed, epoch):
        return iter(self.batches)


class Quiet:
    def start_epoch(self, *a): ...
    def step(self, *a): ...
    def end_epoch(self, *a): ...


class StopsAfter(Method):
    def end_epoch(self, epoch):
        self.done = epoch == 1
        return {}


def _run(method_cls=Method, epochs=5, eval_every=1, x=None):
    torch.manual_seed(0)
    config = RunConfig(method="train", genotype="DARTS_V2", epochs=epochs, eval_every=eval_every)
    task = StepEngine(config, method_cls(config, Linear()), torch.device("cpu"))
    x = torch.randn(8, 4) if x is None else x
    batches = Batches([(x, torch.arange(8) % 3)] * 2)
    history = []
    loaders = Loaders(train=batches, evaluate=batches)
    run_epochs(task, loaders, seed=0, start_epoch=0, epochs=epochs, eval_every=eval_every,
               on_epoch_end=lambda e, m: history.append(m), progress=Quiet())  # fmt: skip
    return history


def test_engine_evaluates_every_n_epochs_and_after_the_last():
    history = _run(epochs=5, eval_every=2)
    assert [m["epoch"] for m in history if "test_acc" in m] == [1, 3, 4]
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_engine_stops_when_the_method_is_done():
    assert [m["epoch"] for m in _run(StopsAfter)] == [0, 1]


def test_engine_stops_on_a_non_finite_loss():
    with pytest.raises(NonFiniteLossError, match="is not finite at epoch 0, step 2"):
        _run(x=torch.full((8, 4), float("nan")))
