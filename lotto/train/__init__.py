"""Masked training: state, optimizers, the step (with its mask-update seam), blocks,
evaluation and the loop (hooks and a metric writer).

`lotto.train` never builds a model or reads a config: it trains whatever
`TrainSetup` it is given (the jobs' `Experiment` is one).
"""
