"""Runtime: where arrays live and where files go.

`devices` (mesh, placement, process rank, the CPU-convolution loop policy),
`checkpoints` (the only orbax importer), `runs` (workdir layout, config
hashes, atomic writes by process 0 only), `metrics` (writers: JSON history,
stdout progress).
"""
