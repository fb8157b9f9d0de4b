"""Building configs from presets, `key=value` overrides and JSON, with errors that name the field."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from ista.config.schema import RunConfig

CHOICES = {  # fields with a closed set of values
    "method": ("ista", "darts", "onestage", "train"),
    "device": ("auto", "cpu", "cuda"),
    "amp": ("auto", "off", "bf16", "fp16"),
    "channels_last": ("auto", "on", "off"),
    "data.dataset": ("cifar10", "imagenet", "digits"),
    "data.loader": ("auto", "ffcv", "torch"),
    "optim.schedule": ("cosine", "linear", "constant"),
    "arch.solver": ("exact", "cvxpy", "mosek"),
}
POSITIVE = (
    "epochs", "batch_size", "eval_every", "network.channels", "network.layers", "optim.lr", "arch.lr",
    "onestage.search_lr", "onestage.max_search_epochs", "timeout_s",
)  # fmt: skip
NON_NEGATIVE = (
    "seed", "data.subset", "data.workers", "data.cutout", "network.auxiliary_weight", "network.drop_path",
    "optim.lr_min", "optim.momentum", "optim.weight_decay", "optim.grad_clip", "optim.warmup_epochs",
    "optim.label_smoothing", "arch.weight_decay", "arch.lam", "arch.recover_every", "onestage.threshold",
    "onestage.param_cap",
)  # fmt: skip
BELOW_ONE = ("network.drop_path", "optim.label_smoothing")


class ConfigError(ValueError):
    """A config key or value that is not valid; the message names the field."""


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_from_dict(data: dict[str, Any], cls: type = RunConfig, prefix: str = "") -> Any:
    """The inverse of `config_to_dict`; unknown keys are errors (a typo must not be silently ignored)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config field(s) {[prefix + k for k in unknown]}; valid: {sorted(names)}")
    values = {}
    for name, value in data.items():
        if dataclasses.is_dataclass(hints[name]):
            values[name] = config_from_dict(value, hints[name], f"{prefix}{name}.")
        else:
            values[name] = _coerce(f"{prefix}{name}", hints[name], value)
    return validate(cls(**values)) if cls is RunConfig else cls(**values)


def apply_overrides(config: RunConfig, overrides: list[str]) -> RunConfig:
    """Applies `section.field=value` strings, e.g. `optim.lr=0.1 epochs=10`."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. optim.lr=0.1)")
        config = _replace_path(config, key.strip().split("."), text.strip(), key.strip())
    return validate(config)


def _replace_path(node: Any, path: list[str], text: str, key: str) -> Any:
    hints = typing.get_type_hints(type(node))
    name = path[0]
    if name not in hints:
        valid = ", ".join(sorted(hints))
        raise ConfigError(f"unknown config field {key!r}: {type(node).__name__} has {valid}")
    if dataclasses.is_dataclass(hints[name]):
        if len(path) == 1:
            raise ConfigError(
                f"{key!r} is a section; set one of its fields, e.g. {key}.{_first_field(hints[name])}=..."
            )
        value = _replace_path(getattr(node, name), path[1:], text, key)
    elif len(path) > 1:
        raise ConfigError(f"{'.'.join(path[:1])!r} in {key!r} is a value, not a section")
    else:
        value = _coerce(key, hints[name], text)
    return dataclasses.replace(node, **{name: value})


def _first_field(cls: type) -> str:
    return dataclasses.fields(cls)[0].name


def _coerce(key: str, kind: Any, value: Any) -> Any:
    if isinstance(value, str) and kind is not str:
        text = value.lower()
        if kind is bool:
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        try:
            return kind(value)
        except ValueError:
            raise ConfigError(f"{key}: expected {kind.__name__}, got {value!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not kind:
        raise ConfigError(f"{key}: expected {kind.__name__}, got {value!r}")
    return value


def validate(config: RunConfig) -> RunConfig:
    """Checks values that types cannot: choices, signs, ranges."""
    flat = flatten_config(config)
    for key, choices in CHOICES.items():
        if flat[key] not in choices:
            raise ConfigError(f"{key}: {flat[key]!r} is not one of {', '.join(choices)}")
    for key in POSITIVE:
        if not flat[key] > 0:
            raise ConfigError(f"{key}: must be > 0, got {flat[key]}")
    for key in NON_NEGATIVE:
        if not flat[key] >= 0:
            raise ConfigError(f"{key}: must be ≥ 0, got {flat[key]}")
    if not 0 < config.data.train_portion < 1:
        raise ConfigError(f"data.train_portion: must be in (0, 1), got {config.data.train_portion}")
    if not (0 <= config.arch.beta1 < 1 and 0 <= config.arch.beta2 < 1):
        raise ConfigError(
            f"arch.beta1/beta2: must be in [0, 1), got {config.arch.beta1}, {config.arch.beta2}"
        )
    for key in BELOW_ONE:
        if not flat[key] < 1:
            raise ConfigError(f"{key}: must be < 1, got {flat[key]}")
    if config.optim.schedule == "cosine" and config.optim.lr_min > config.optim.lr:
        raise ConfigError(
            f"optim.lr_min ({config.optim.lr_min}) must not exceed optim.lr ({config.optim.lr})"
        )
    if config.network.layers < 3:
        raise ConfigError(f"network.layers: need ≥ 3 cells (two are reductions), got {config.network.layers}")
    return config


def flatten_config(config: Any) -> dict[str, Any]:
    """{"optim.lr": 0.2, ...}: the dotted keys that overrides and error messages use."""
    return _flatten(config_to_dict(config))


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat
