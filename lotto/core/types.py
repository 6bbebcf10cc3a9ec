"""Type aliases shared across lotto's modules."""
from typing import Any, Callable

import jax

PyTree = Any
Params = PyTree      # nested dict of float arrays (Flax "params" collection)
Masks = PyTree       # same treedef as Params, bool leaves
Scores = PyTree      # same treedef as Params, float leaves ("higher = keep")
Prunable = PyTree    # same treedef as Params, Python bool leaves
ApplyFn = Callable[..., jax.Array]
