"""Typed, frozen run configurations, the paper's presets, and command-line overrides."""

from ista.config.io import ConfigError, apply_overrides, config_from_dict, config_to_dict
from ista.config.presets import PRESETS, preset
from ista.config.schema import ArchConfig, DataConfig, NetworkConfig, OneStageConfig, OptimConfig, RunConfig

__all__ = [
    "PRESETS",
    "ArchConfig",
    "ConfigError",
    "DataConfig",
    "NetworkConfig",
    "OneStageConfig",
    "OptimConfig",
    "RunConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "preset",
]
