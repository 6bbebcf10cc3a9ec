"""Pruning at initialization: drivers that score a network and select its mask.

The scores, selection, schedules, distributions and ablations they combine
are pure functions in `lotto.core`; this package runs them single-shot or
iteratively (one compiled `fori_loop`, or one compiled round per round).
"""
from lotto.pruning.at_init import COUNT_RULES, LOOPS, default_iterations, prune, round_counts

__all__ = ["COUNT_RULES", "LOOPS", "default_iterations", "prune", "round_counts"]
