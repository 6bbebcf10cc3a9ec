"""Pruning at initialization, and one-shot pruning of a trained network.

The scores, selection, schedules, distributions and ablations they combine
are pure functions in `lotto.core`; `at_init.prune` runs them single-shot or
iteratively (all rounds in one compiled `fori_loop`). One-shot pruning of a
finished run works layer by layer on calibration statistics of each layer's
inputs: magnitude and Wanda masks (`oneshot`), SparseGPT's reconstruction
(`sparsegpt`), and the registry a job picks them from (`oneshot_methods`).
"""
from lotto.pruning.at_init import (COUNT_RULES, HOMOGENEOUS_ONLY, check_method, default_iterations,
                                   methods_for, prune, round_counts)
from lotto.pruning.oneshot_methods import ONESHOT_METHODS, OneShotMethod, OneShotSettings

__all__ = ["COUNT_RULES", "HOMOGENEOUS_ONLY", "ONESHOT_METHODS", "OneShotMethod",
           "OneShotSettings", "check_method", "default_iterations", "methods_for", "prune",
           "round_counts"]
