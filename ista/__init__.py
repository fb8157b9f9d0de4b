"""ISTA-NAS: neural architecture search by sparse coding (Yang et al., NeurIPS 2020), for clusters."""

__version__ = "0.1.0"
