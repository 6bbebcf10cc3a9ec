"""Pruning at initialization: drivers that score a network and select its mask.

The scores, selection, schedules, distributions and ablations they combine
are pure functions in `lotto.core`; `at_init.prune` runs them single-shot or
iteratively (all rounds in one compiled `fori_loop`). One-shot pruning of a
finished run (magnitude, Wanda, SparseGPT) is planned beside it.
"""
from lotto.pruning.at_init import COUNT_RULES, default_iterations, prune, round_counts

__all__ = ["COUNT_RULES", "default_iterations", "prune", "round_counts"]
