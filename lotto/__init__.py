"""lotto: sparse-network research (pruning at init, lottery tickets) on JAX."""

__version__ = "0.1.0"
