"""Pure pytree math of sparse networks: masks, scores, selection and what they combine.

No Flax, no ml_collections, no orbax: everything takes params, masks, an
`apply_fn` and explicit PRNG keys, is jittable where it computes on arrays,
and never reads a config.
"""
