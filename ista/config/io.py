"""Building configs from presets, `key=value` overrides and JSON, with errors that name the field."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from ista.config.schema import BOUNDS, RunConfig


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
    """Checks what types cannot: each field's declared choices and bounds (`ista.config.schema.setting`),
    that every field set away from its default is used by the run's method, and a few cross-field rules."""
    declared = declarations()
    flat = flatten_config(config)
    for key, (meta, _) in declared.items():
        value = flat[key]
        if meta["choices"] and value not in meta["choices"]:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(meta['choices'])}")
        if meta["bounds"]:
            test, says = BOUNDS[meta["bounds"]]
            if not test(value):
                raise ConfigError(f"{key}: {says}, got {value}")
    _check_used(config.method, flat, declared)
    o, d = config.optim, config.data
    if o.schedule == "cosine" and o.lr_min > o.lr:
        raise ConfigError(f"optim.lr_min ({o.lr_min}) must not exceed optim.lr ({o.lr})")
    if o.schedule != "cosine" and o.lr_min:
        raise ConfigError(f"optim.lr_min is the cosine schedule's floor; schedule {o.schedule} has none")
    for key, value in (("data.cutout", d.cutout), ("data.jitter", d.jitter)):
        if value and not d.augment:
            raise ConfigError(f"{key} is part of the training augmentation; it needs data.augment=true")
    if o.clip_arch and not o.grad_clip:
        raise ConfigError("optim.clip_arch widens the gradient clip; it needs optim.grad_clip > 0")
    return config


def declarations(cls: type = RunConfig, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Dotted key → (the field's declaration: choices, bounds, methods; its default), for every value."""
    out: dict[str, tuple[Any, Any]] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(declarations(hints[f.name], f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = (f.metadata, f.default)
    return out


def _check_used(method: str, flat: dict[str, Any], declared: dict[str, tuple[Any, Any]]) -> None:
    """A field set away from its default, in a preset or on the command line, must be one the method uses."""
    for key, (meta, default) in declared.items():
        if method in meta["methods"] or flat[key] == default:
            continue
        section = key.rpartition(".")[0]
        used = [
            k for k, (m, _) in declared.items() if k.rpartition(".")[0] == section and method in m["methods"]
        ]
        where = f"{section}.*" if section else "the top-level fields"
        uses = f"of {where}, {method} uses {', '.join(used)}" if used else f"{method} uses no {where} field"
        raise ConfigError(
            f"{key}={flat[key]!r} is set, but method={method} does not use it (it is used by "
            f"{', '.join(meta['methods'])}); {uses}. Remove the setting, or choose a method that uses it."
        )


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
