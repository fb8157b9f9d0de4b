"""Evaluation training (`ista train`): schedules, the loss, the ImageNet network, and tiny real runs."""

import json
import sys
from pathlib import Path

import pytest
import torch

import ista
from ista.config import apply_overrides, preset
from ista.data.splits import open_data, open_split
from ista.runner import build_task, run
from ista.space.genotypes import PUBLISHED
from ista.space.networks import build_eval_network
from ista.train.schedules import drop_path_at, learning_rate

ISTA = Path(sys.executable).with_name("ista")
TINY_NET = ["network.channels=8", "network.layers=3", "batch_size=32"]


def test_the_imagenet_scripts_linear_decay_and_warm_up():
    o = preset("imagenet-eval").optim

    def script(e, epochs=250, lr=o.lr, warmup=o.warmup_epochs):
        return learning_rate(e, epochs, lr, schedule=o.schedule, warmup=warmup)

    def linear_lr(e, epochs, lr):
        return script(e, epochs, lr, warmup=0)

    assert [script(e) for e in range(5)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert script(5) == pytest.approx(0.5 * 240 / 245)  # 0.5·(245 − e)/245 after it
    assert linear_lr(244, 250, 0.5) == pytest.approx(0.5 / 245)
    assert linear_lr(245, 250, 0.5) == pytest.approx(0.5 * 5 / (245 * 5))  # the gentle last five
    assert linear_lr(249, 250, 0.5) == pytest.approx(0.5 / (245 * 5))
    assert linear_lr(1, 3, 0.3) == pytest.approx(0.2)  # shorter than the tail: plain linear


def test_drop_path_ramps_linearly_from_zero():
    assert [drop_path_at(e, 600, 0.2) for e in (0, 300, 599)] == pytest.approx([0.0, 0.1, 0.2 * 599 / 600])


def test_loss_is_label_smoothed_main_plus_weighted_auxiliary(tmp_path, write_cifar):
    write_cifar(tmp_path, per_batch=8)
    config = apply_overrides(
        preset("imagenet-eval"),
        ["genotype=DARTS_V2", "data.dataset=cifar10", f"data.root={tmp_path}", *TINY_NET],
    )
    task = build_task(config, open_split(config.data, train=True), torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    logits, aux, y = torch.randn(6, 10, generator=g), torch.randn(6, 10, generator=g), torch.arange(6)

    def smoothed(z):  # (1 − ε)·CE + ε·mean over classes of −log p, written out
        log_p = z.log_softmax(1)
        return (-(0.9 * log_p[torch.arange(6), y] + 0.1 * log_p.mean(1))).mean()

    assert task.loss(logits, aux, y) == pytest.approx(float(smoothed(logits) + 0.4 * smoothed(aux)), rel=1e-6)
    assert task.loss(logits, None, y) == pytest.approx(float(smoothed(logits)), rel=1e-6)  # eval mode


def test_imagenet_network_shapes_at_224():
    net = build_eval_network(PUBLISHED["ISTA_ImageNet"], "imagenet", num_classes=1000, auxiliary=True)
    logits, aux = net(torch.randn(2, 3, 224, 224))
    assert logits.shape == aux.shape == (2, 1000)
    net.eval()
    assert net(torch.randn(1, 3, 224, 224))[1] is None  # the auxiliary head only trains


def test_two_epochs_of_evaluation_training_reduce_the_loss(tmp_path, write_cifar, cli):
    write_cifar(tmp_path / "data", per_batch=64, digits=True)  # real handwritten digits, learnable
    args = [
        "train",
        "--genotype",
        "ISTA_twostage",
        "--preset",
        "cifar10-eval",
        f"data.root={tmp_path / 'data'}",
    ]
    args += [*TINY_NET, "epochs=2", "optim.lr=0.05", "--out", str(tmp_path / "run"), "--quiet"]
    code, out, err = cli(*args)
    assert code == 0, err
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert [m["drop_path"] for m in history] == pytest.approx([0.0, 0.1])  # 0.2·epoch/2
    assert "final test error: " in out and {"test_acc", "test_top5", "test_loss"} <= set(history[-1])
    saved = json.loads((tmp_path / "run" / "genotype.json").read_text())
    assert saved == PUBLISHED["ISTA_twostage"].to_dict()

    code, _, err = cli(*args[:1], "--genotype", "NOPE", *args[3:])
    assert code == 2 and "'NOPE' is not a published genotype" in err


def test_onestage_variant_has_a_bn_after_each_parameter_free_op(tmp_path, write_cifar):
    write_cifar(tmp_path, per_batch=8)
    counts = {}
    for onestage in ("false", "true"):
        overrides = ["genotype=ISTA_onestage", f"data.root={tmp_path}", f"network.onestage={onestage}"]
        config = apply_overrides(preset("cifar10-eval"), overrides)
        task = build_task(config, open_split(config.data, train=True), torch.device("cpu"))
        counts[onestage] = sum(isinstance(m, torch.nn.BatchNorm2d) for m in task.model.modules())
    g = PUBLISHED["ISTA_onestage"]  # 18 normal and 2 reduction cells; a stride-2 skip has its own BN
    free = sum("pool" in op or op == "skip_connect" for op, _ in g.normal) * 18
    free += sum("pool" in op or (op == "skip_connect" and i >= 2) for op, i in g.reduce) * 2
    assert counts["true"] - counts["false"] == free > 0


def test_imagenet_presets_run_end_to_end_on_tiny_data(tmp_path, write_image_folder):
    src = write_image_folder(tmp_path / "imagenet", train=4, val=2)
    common = [f"data.root={src}", "data.loader=torch", "data.workers=1", "network.channels=8",
              "network.layers=3", "batch_size=6", "epochs=1", "optim.warmup_epochs=0"]  # fmt: skip
    evaluated = run(
        apply_overrides(
            preset("imagenet-eval"), [*common, "genotype=ISTA_ImageNet", "amp=bf16", "channels_last=on"]
        ),
        tmp_path / "eval",
        show_progress=False,
    )
    assert evaluated.history[-1]["test_top5"] == 1.0  # 3 classes: the true one is always in the top 5
    searched_config = apply_overrides(preset("imagenet-one-stage"), [*common, "onestage.max_search_epochs=1"])
    searched = run(
        searched_config,
        tmp_path / "one-stage",
        show_progress=False,
    )
    assert [m["phase"] for m in searched.history] == ["search", "search", "train"]
    model = ista.load_model(tmp_path / "one-stage")  # the super-net on the found support, as a model
    _, val = open_data(searched_config.data, True)
    with torch.inference_mode():
        x, y = next(
            iter(val.loader(torch.arange(val.size), val.size, augment=False, shuffle=False).epoch(0, 0))
        )
        assert (model(x).argmax(1) == y).double().mean().item() == searched.history[-1]["test_acc"]
    env = json.loads((tmp_path / "eval" / "env.json").read_text())
    assert env["amp"] == "torch.bfloat16"
