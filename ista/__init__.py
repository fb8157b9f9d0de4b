"""ISTA-NAS: neural architecture search by sparse coding (Yang et al., NeurIPS 2020), for clusters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ista.model.load import load_model


def __getattr__(name: str) -> Any:
    """`ista.load_model`, imported on first use: `import ista` stays free of torch."""
    if name == "load_model":
        from ista.model.load import load_model

        return load_model
    raise AttributeError(f"module 'ista' has no attribute {name!r}")


__all__ = ["__version__", "load_model"]
