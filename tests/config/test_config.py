import json

import pytest

from ista.cli.main import main
from ista.config import PRESETS, ConfigError, apply_overrides, config_from_dict, config_to_dict, preset


def test_paper_presets():
    supp = preset("cifar10-two-stage")  # the supplement, §1.2
    assert (supp.epochs, supp.batch_size, supp.optim.lr, supp.optim.lr_min) == (50, 256, 0.2, 0.0)
    assert (supp.optim.momentum, supp.optim.weight_decay, supp.optim.grad_clip) == (0.9, 3e-4, 5.0)
    assert (supp.arch.lr, supp.arch.beta1, supp.arch.beta2, supp.arch.weight_decay) == (
        6e-4,
        0.5,
        0.999,
        1e-3,
    )
    assert (supp.arch.lam, supp.network.channels, supp.network.layers, supp.data.train_portion) == (
        1e-5,
        16,
        8,
        0.5,
    )
    code = preset("cifar10-two-stage-code")  # the official README command
    assert (code.optim.lr, code.optim.lr_min, code.batch_size, code.seed) == (0.1, 1e-3, 256, 2)
    assert preset("cifar10-darts").method == "darts"
    assert preset("demo").data.dataset == "digits"


@pytest.mark.parametrize("name", PRESETS)
def test_round_trip(name):
    config = preset(name)
    assert config_from_dict(json.loads(json.dumps(config_to_dict(config)))) == config


def test_overrides():
    config = apply_overrides(
        preset("demo"), ["epochs=3", "optim.lr=0.5", "data.augment=yes", "arch.solver=cvxpy"]
    )
    assert (config.epochs, config.optim.lr, config.data.augment, config.arch.solver) == (
        3,
        0.5,
        True,
        "cvxpy",
    )
    assert preset("demo").epochs == 25  # presets are not mutated


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=fast", "optim.lr: expected float, got 'fast'"),
        (
            "optim.lrate=1",
            "unknown config field 'optim.lrate': OptimConfig has clip_arch, grad_clip, label_smoothing, lr",
        ),
        ("optim=1", "'optim' is a section"),
        ("epochs=0", "epochs: must be > 0"),
        ("optim.weight_decay=-1", "optim.weight_decay: must be ≥ 0"),
        ("data.train_portion=1", r"data.train_portion: must be in \(0, 1\)"),
        ("arch.solver=fista", "arch.solver: 'fista' is not one of exact, cvxpy, mosek"),
        ("data.augment=maybe", "data.augment: expected true or false"),
        ("optim.lr_min=1", r"optim.lr_min \(1.0\) must not exceed optim.lr"),
        ("network.layers=2", "must be ≥ 3"),
        ("nonsense", "not of the form key=value"),
    ],
)
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(preset("demo"), [override])


def test_unknown_keys_in_saved_config():
    data = config_to_dict(preset("demo"))
    data["optim"]["lrr"] = 1
    with pytest.raises(ConfigError, match=r"unknown config field\(s\) \['optim.lrr'\]"):
        config_from_dict(data)


def test_cli_print_config_and_errors(capsys):
    assert main(["search", "--preset", "cifar10-two-stage", "optim.lr=0.3", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (
        printed["optim"]["lr"] == 0.3
        and printed["batch_size"] == 256
        and printed["preset"] == "cifar10-two-stage"
    )
    assert main(["search", "--preset", "cifar10-two-stage", "epochs=-1", "--print-config"]) == 2
    assert "epochs: must be > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse lists the valid presets
        main(["search", "--preset", "cifar100"])
    assert "invalid choice: 'cifar100'" in capsys.readouterr().err


def test_target_and_one_stage_presets_are_the_papers_settings():
    e = preset("cifar10-eval")  # method.md §4
    assert (e.method, e.epochs, e.batch_size, e.data.cutout) == ("train", 600, 96, 16)
    assert (e.network.channels, e.network.layers, e.network.auxiliary_weight, e.network.drop_path) == (
        36, 20, 0.4, 0.2,
    )  # fmt: skip
    assert (e.optim.lr, e.optim.lr_min, e.optim.weight_decay, e.optim.grad_clip) == (0.025, 0.0, 3e-4, 5.0)
    o = preset("cifar10-one-stage")  # §6
    assert (o.method, o.epochs, o.batch_size, o.arch.lr, o.arch.beta1, o.arch.weight_decay) == (
        "onestage", 600, 96, 3e-4, 0.5, 1e-3,
    )  # fmt: skip
    assert (o.onestage.threshold, o.onestage.param_cap, o.onestage.search_lr) == (1e-3, 3.7, 0.025)
    assert o.network == e.network and o.optim == e.optim
    i = preset("imagenet-one-stage")  # §7
    assert (i.data.dataset, i.batch_size, i.network.channels, i.network.layers, i.epochs) == (
        "imagenet", 1024, 48, 14, 250,
    )  # fmt: skip
    assert (i.arch.lr, i.optim.lr, i.optim.weight_decay, i.optim.label_smoothing) == (6e-3, 0.5, 3e-5, 0.1)
    assert (i.optim.schedule, i.network.auxiliary_weight, i.onestage.search_lr) == ("linear", 0.4, 0.5)
    v = preset("imagenet-eval")
    assert (v.method, v.optim.warmup_epochs, v.optim.grad_clip, v.data.jitter) == ("train", 5, 5.0, True)
    assert v.optim == i.optim and v.network == i.network


@pytest.mark.parametrize(
    ("name", "override", "method"),
    [
        ("cifar10-two-stage", "network.auxiliary_weight=0.4", "ista"),  # the two-stage super-net has no head
        ("cifar10-darts", "arch.solver=cvxpy", "darts"),  # DARTS recovers nothing
        ("cifar10-darts", "arch.draws=official", "darts"),
        ("cifar10-one-stage", "data.train_portion=0.6", "onestage"),  # one batch for b and W
        ("cifar10-one-stage", "data.eval_augment=true", "onestage"),
        ("cifar10-eval", "arch.lr=0.1", "train"),  # nothing to learn but W
        ("cifar10-eval", "onestage.threshold=0.1", "train"),
        ("cifar10-eval", "optim.clip_arch=true", "train"),
    ],
)
def test_a_setting_the_method_does_not_use_is_an_error(name, override, method):
    with pytest.raises(ConfigError, match=rf"is set, but method={method} does not use it \(it is used by "):
        apply_overrides(preset(name), [override])


def test_a_preset_setting_is_explicit_too():
    # cifar10-eval sets the auxiliary weight; the two-stage search has no auxiliary head to weigh
    with pytest.raises(ConfigError, match=r"network\.auxiliary_weight=0\.4 is set, but method=ista"):
        apply_overrides(preset("cifar10-eval"), ["method=ista"])
    # and the error says what the method does use in that section
    uses = r"of arch\.\*, darts uses arch\.lr, arch\.beta1, arch\.beta2, arch\.weight_decay\. "
    with pytest.raises(ConfigError, match=uses):
        apply_overrides(preset("cifar10-darts"), ["arch.lam=1e-4"])


def test_every_preset_sets_only_what_its_method_uses():
    for name in PRESETS:
        apply_overrides(preset(name), [])  # validates


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.augment=false", "data.cutout=16"], "data.cutout is part of the training augmentation"),
        (["data.augment=false", "data.jitter=true"], "data.jitter is part of the training augmentation"),
        (["optim.schedule=linear", "optim.lr_min=0.01"], "cosine schedule's floor"),
        (["optim.clip_arch=true", "optim.grad_clip=0"], "needs optim.grad_clip > 0"),
    ],
)
def test_settings_that_would_have_no_effect_are_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(preset("cifar10-two-stage"), overrides)


def test_choices_and_bounds_are_declared_next_to_the_field():
    from ista.config.io import declarations

    meta, default = declarations()["arch.solver"]
    assert meta["choices"] == ("exact", "cvxpy", "mosek") and default == "exact"
    assert meta["methods"] == ("ista", "onestage")
    assert declarations()["optim.lr"][0]["bounds"] == ">0"
