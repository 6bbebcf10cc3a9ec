"""Exact power-of-two rescaling of SynFlow's linearized network (float32 SynFlow).

SynFlow scores the network with |params|, an all-ones input and BN in eval
mode. Every operation on that path is positively homogeneous (ReLU, max- and
average-pooling, sums, products, BN's affine map), so the network has a
rescaling symmetry: multiply kernel i by 2**e_i and each other leaf by
2**(its coefficients . e), where the coefficients of a bias, a BN shift (beta)
and a BN running mean are those of the activation they are added to (the sum
of the exponents of the kernels upstream: prod_{j <= l} c_j for layer l of a
chain) and a BN scale (gamma) or running variance has none. Then every
activation is multiplied by a power of two, R by 2**E with E = output . e,
and every score p * dR/dp (of any leaf) by the same 2**E, because the scores
are R's derivatives along the leaves' own scalings. One constant for all
leaves, so a global selection across layers ranks exactly as before.

Multiplying by a power of two is exact in floating point, so the rescaled
float32 computation is, bit for bit, 2**E times the plain float32 one
wherever that stays in range (up to subnormals); the exponents are chosen
each round so that every layer maps an all-ones input to about ones (e_i =
-round(log2(mean row sum of the surviving |kernel|))), which keeps a deep
network's activations, gradients and scores in float32's range.

`scale_plan` finds the coefficients by reading the network's jaxpr: kernels
(float leaves with ndim > 1) get one exponent each; a leaf first combined
additively with an activation takes that activation's coefficients; a leaf
only multiplied (BN scale, variance under rsqrt) takes none. Where two values
with different coefficients are added (a residual connection: x + F(x)), or a
value passes a non-homogeneous operation, the kernels that differ are frozen
(exponent 0), which keeps the symmetry exact; a plan with frozen kernels
cannot keep every layer in range (`ScalePlan.complete` is False).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np

from lotto.core.types import Params, PyTree

Coefficients = tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ScalePlan:
  """How each leaf scales with the kernels' exponents e (one exponent per kernel).

  Attributes:
    kernels: indices of the kernel leaves in the params' flattening order.
    params: per param leaf, its exponent coefficients over the kernels.
    stats: per batch-stats leaf, its exponent coefficients.
    output: R's coefficients: every score is multiplied by 2**(output . e).
    frozen: per kernel, True if its exponent stays 0 (on one side of a residual
      sum, or before a non-homogeneous operation).
  """
  kernels: tuple[int, ...]
  params: tuple[Coefficients, ...]
  stats: tuple[Coefficients, ...]
  output: Coefficients
  frozen: tuple[bool, ...]

  @property
  def complete(self) -> bool:
    """Whether every kernel is rescaled (a chain of layers: MLPs, VGG, Conv-n)."""
    return not any(self.frozen)


class _Agnostic:
  """A zero constant: it takes any scale."""


class _Ignored:
  """A non-float value (a comparison, an index): it carries no scale."""


AGNOSTIC, IGNORED = _Agnostic(), _Ignored()


@dataclasses.dataclass(frozen=True)
class _Unknown:
  """A non-kernel leaf whose coefficients are not known yet."""
  leaf: int


# Operations through which a value keeps its scale (first operand; others are indices).
_PASS = frozenset({
    "reshape", "broadcast_in_dim", "transpose", "squeeze", "expand_dims", "convert_element_type",
    "reduce_sum", "reduce_max", "reduce_min", "reduce_window_max", "reduce_window_min",
    "reduce_window_sum", "neg", "abs", "copy", "copy_p", "slice", "dynamic_slice", "gather",
    "rev", "cumsum", "cummax", "cummin", "reduce_precision"})
# Operations whose (float) operands must share one scale, which the result has.
_ADDITIVE = frozenset({"add", "add_any", "sub", "max", "min", "concatenate", "pad", "clamp",
                       "select_n", "dynamic_update_slice"})
# Comparisons of values of one scale do not change when it does; their result is not a float.
_COMPARISONS = frozenset({"eq", "ne", "gt", "ge", "lt", "le"})
# Results that do not depend on the scale of their operands.
_INVARIANT = frozenset({"sign", "argmax", "argmin", "is_finite"})
_PRODUCTS = frozenset({"mul", "dot_general", "conv_general_dilated"})
_CALLS = frozenset({"jit", "pjit", "closed_call", "core_call", "custom_jvp_call",
                    "custom_vjp_call", "custom_vjp_call_jaxpr", "remat", "checkpoint"})


def _is_float(aval) -> bool:
  return hasattr(aval, "dtype") and jnp.issubdtype(aval.dtype, jnp.floating)


class _Analysis:
  """Propagates scale coefficients through a jaxpr (see the module docstring)."""

  def __init__(self, kernels: int):
    self.kernels = kernels
    self.resolved: dict[int, np.ndarray] = {}
    self.frozen = np.zeros(kernels, bool)

  def zero(self) -> np.ndarray:
    return np.zeros(self.kernels, np.int64)

  def get(self, scale):
    if isinstance(scale, _Unknown) and scale.leaf in self.resolved:
      return self.resolved[scale.leaf]
    return scale

  def as_vector(self, scale) -> np.ndarray:
    """A known vector, resolving an unknown leaf to 0 (it is only multiplied)."""
    scale = self.get(scale)
    if isinstance(scale, _Unknown):
      self.resolved[scale.leaf] = self.zero()
      return self.resolved[scale.leaf]
    return scale if isinstance(scale, np.ndarray) else self.zero()

  def unify(self, scales: list) -> Any:
    """The common scale of operands that are added; freezes kernels where they differ."""
    scales = [self.get(s) for s in scales if s is not AGNOSTIC and s is not IGNORED]
    known = [s for s in scales if isinstance(s, np.ndarray)]
    unknown = [s for s in scales if isinstance(s, _Unknown)]
    if not known:
      if not unknown:
        return AGNOSTIC
      if len({u.leaf for u in unknown}) == 1:
        return unknown[0]
      known = [self.zero()]  # constants added together: leave them unscaled
    for other in known[1:]:
      self.frozen |= other != known[0]
    for u in unknown:
      self.resolved[u.leaf] = known[0]
    return known[0]

  def freeze(self, vector: np.ndarray) -> None:
    self.frozen |= vector != 0

  def literal(self, value) -> Any:
    array = np.asarray(value)
    if not jnp.issubdtype(array.dtype, jnp.floating):
      return IGNORED
    return AGNOSTIC if not np.any(array) else self.zero()

  def run(self, jaxpr, consts, inputs: list) -> list:
    env = {}
    for var, value in zip(jaxpr.constvars, consts):
      env[var] = self.literal(value)
    for var, scale in zip(jaxpr.invars, inputs):
      env[var] = scale if _is_float(var.aval) else IGNORED

    def read(atom):
      return self.literal(atom.val) if isinstance(atom, jex.Literal) else env[atom]

    for eqn in jaxpr.eqns:
      args = [read(a) for a in eqn.invars]
      outs = self.equation(eqn, args)
      for var, scale in zip(eqn.outvars, outs):
        env[var] = scale if _is_float(var.aval) else IGNORED
    return [read(a) for a in jaxpr.outvars]

  def equation(self, eqn, args: list) -> list:
    name, count = eqn.primitive.name, len(eqn.outvars)
    if name in _CALLS:
      sub = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
      if isinstance(sub, jex.ClosedJaxpr) and len(sub.jaxpr.invars) == len(args):
        return self.run(sub.jaxpr, sub.consts, args)
      if isinstance(sub, jex.Jaxpr) and len(sub.invars) == len(args):
        return self.run(sub, [], args)
    if name in _PASS:
      return [self.get(args[0])] * count
    if name in _ADDITIVE:
      operands = args[1:] if name == "select_n" else args
      if name == "dynamic_update_slice":
        operands = args[:2]
      return [self.unify(operands)] * count
    if name in _COMPARISONS:
      self.unify(args)
      return [IGNORED] * count
    if name in _INVARIANT:
      return [self.zero()] * count
    if name in _PRODUCTS or name == "div":
      if any(self.get(a) is AGNOSTIC for a in args[:2]) and name != "div":
        return [AGNOSTIC] * count
      a, b = self.as_vector(args[0]), self.as_vector(args[1])
      return [a - b if name == "div" else a + b] * count
    if name == "integer_pow":
      return [eqn.params["y"] * self.as_vector(args[0])] * count
    if name == "square":
      return [2 * self.as_vector(args[0])] * count
    # Anything else (exp, rsqrt of a variance, control flow): its inputs must stay
    # unscaled, so the kernels they depend on are frozen; the result is unscaled.
    for arg in args:
      if arg is not AGNOSTIC and arg is not IGNORED:
        self.freeze(self.as_vector(arg))
    return [self.zero()] * count


def scale_plan(forward: Callable[[Params, PyTree], jax.Array], params: Params,
               batch_stats: PyTree) -> ScalePlan:
  """Reads the rescaling symmetry of `forward(params, batch_stats)` (shapes only).

  Args:
    forward: the linearized network, e.g. `apply_fn(variables, ones, train=False)`.
    params, batch_stats: arrays or `jax.ShapeDtypeStruct`s of the leaves.

  Returns:
    The plan: kernel leaves, each leaf's coefficients, R's, and frozen kernels.
  """
  param_leaves, param_def = jax.tree.flatten(params)
  stat_leaves, stat_def = jax.tree.flatten(batch_stats)
  abstract = lambda leaves: [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves]  # noqa: E731
  closed = jax.make_jaxpr(lambda p, s: forward(jax.tree.unflatten(param_def, p),
                                               jax.tree.unflatten(stat_def, s)))(
      abstract(param_leaves), abstract(stat_leaves))
  kernels = tuple(i for i, x in enumerate(param_leaves) if len(x.shape) > 1)
  analysis = _Analysis(len(kernels))
  inputs = []
  for i, _ in enumerate(param_leaves + stat_leaves):
    if i in kernels:
      inputs.append(np.eye(len(kernels), dtype=np.int64)[kernels.index(i)])
    else:
      inputs.append(_Unknown(i))
  (output,) = analysis.run(closed.jaxpr, closed.consts, inputs)
  output = analysis.as_vector(output)
  keep = ~analysis.frozen
  coefficients = [tuple(int(c) for c in analysis.as_vector(s) * keep) for s in inputs]
  return ScalePlan(kernels=kernels, params=tuple(coefficients[:len(param_leaves)]),
                   stats=tuple(coefficients[len(param_leaves):]),
                   output=tuple(int(c) for c in output * keep),
                   frozen=tuple(bool(f) for f in analysis.frozen))


def _pow2(k: jax.Array) -> jax.Array:
  """2.0**k in float32, exactly, for integer k in [-126, 127] (built from its bits)."""
  return jax.lax.bitcast_convert_type((k.astype(jnp.int32) + 127) << 23, jnp.float32)


def times_pow2(x: jax.Array, k: jax.Array) -> jax.Array:
  """x * 2**k, exact unless the result leaves float32's normal range (|k| < 379)."""
  for _ in range(3):  # one float32 power of two spans at most 2**+-127
    step = jnp.clip(k, -126, 127)
    x = x * _pow2(step).astype(x.dtype)
    k = k - step
  return x


def kernel_exponents(plan: ScalePlan, params: Params) -> jax.Array:
  """Each kernel's exponent: -round(log2(mean row sum)) of its (masked, |.|) values.

  A kernel of shape [..., out] maps an all-ones input to rows summing to about
  its mean row sum; 2**e brings that to about 1. Frozen kernels, and kernels
  whose sum is 0 or not finite, get 0.
  """
  leaves = jax.tree.leaves(params)
  exponents = []
  for index, frozen in zip(plan.kernels, plan.frozen):
    w = leaves[index]
    gain = jnp.sum(w.astype(jnp.float32)) / w.shape[-1]
    e = -jnp.round(jnp.log2(gain))
    usable = jnp.isfinite(e) & (gain > 0) & (not frozen)
    exponents.append(jnp.where(usable, jnp.clip(e, -126, 127), 0.0).astype(jnp.int32))
  return jnp.stack(exponents) if exponents else jnp.zeros((0,), jnp.int32)


def _scale(leaves: list, coefficients: tuple[Coefficients, ...], e: jax.Array) -> list:
  out = []
  for x, c in zip(leaves, coefficients):
    if any(c):
      x = times_pow2(x, jnp.dot(jnp.asarray(c, jnp.int32), e))
    out.append(x)
  return out


def rescale(plan: ScalePlan, params: Params, batch_stats: PyTree,
            exponents: jax.Array) -> tuple[Params, PyTree]:
  """(params, batch_stats) with every leaf times 2**(its coefficients . exponents)."""
  param_leaves, param_def = jax.tree.flatten(params)
  stat_leaves, stat_def = jax.tree.flatten(batch_stats)
  return (jax.tree.unflatten(param_def, _scale(param_leaves, plan.params, exponents)),
          jax.tree.unflatten(stat_def, _scale(stat_leaves, plan.stats, exponents)))


def output_exponent(plan: ScalePlan, exponents: jax.Array) -> jax.Array:
  """E: rescaled scores are the true scores times 2**E."""
  return jnp.dot(jnp.asarray(plan.output, jnp.int32), exponents)
