"""Chosen sparse wirings: data-free masks with guarantees, and their random controls.

Each generator returns boolean adjacency matrices, one (fan_in, fan_out) array
per weight layer; `random_like` draws the control with the same per-layer
counts as any mask. Pure numpy/JAX: no Flax, no config.
"""
from lotto.topologies.expander import expander
from lotto.topologies.radixnet import fit_radixnet, fitted_radixnet, radixnet
from lotto.topologies.random_like import random_like

__all__ = ["expander", "fit_radixnet", "fitted_radixnet", "radixnet", "random_like"]
