"""Pruning scores ("higher = keep"), one signature for every method.

    scores = method(ctx, params, masks, batch_stats, batch, key)

`ctx` (a `ScoringContext`) holds the static parts (apply_fn, input shape);
`batch` is (inputs, labels) preprocessed, or None for data-free methods.
Every method returns a pytree with the params' treedef (non-prunable leaves
get scores too; selection ignores them). `make_scorer` returns the jitted
function, built once per (method, model), so calling it again with the same
shapes never retraces.

Conventions (README.md, "Conventions"): SNIP = |theta * g| with the gradient taken on
one class-balanced batch; GraSP keep-score = theta * Hg with logits / T,
T = 200 (remove the smallest); grasp_abs = |theta * Hg|; SynFlow =
|theta| * dR/d|theta| with an all-ones input, BN in eval mode, computed in
float64 by default (x64 enabled only inside the scoring call), or in float32
with every layer rescaled by a power of two each round (`core.rescaling`).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from lotto.core import masks as masks_lib
from lotto.core import rescaling
from lotto.core.errors import ConfigError
from lotto.core.registry import Registry
from lotto.core.types import ApplyFn, Masks, Params, PyTree, Scores

Batch = tuple[jax.Array, jax.Array] | None


@dataclasses.dataclass(frozen=True)
class ScoringContext:
  """Static information a score needs.

  Attributes:
    apply_fn: `model.apply(variables, x, train=...)`.
    input_shape: shape of one example (for SynFlow's all-ones input).
    temperature: GraSP's logit temperature.
    synflow_dtype: "float64" (default; x64 scoped to scoring and selection),
      "float32_rescaled" (float32 with each kernel times a power of two chosen
      each round, so no layer leaves float32's range; every score comes out
      times one common power of two: the ranking is plain float32's) or
      "float32" (plain: under/overflows on deep nets). Float32 ranks like
      float64 up to its rounding: the same masks on LeNet-300-100 and LeNet-5,
      not on VGG-16 (BUILD_NOTES.md). On a ResNet the residual sums leave only
      the stem and the output layer to rescale (`rescaling.ScalePlan`).
    grasp_params: what GraSP differentiates: "weights" (default: g and Hg over
      the prunable weights only, biases and norm params held fixed, as the
      authors' code and Synaptic-Flow do) or "all" (every param).
    prunable: which leaves are the weights (None: every leaf with ndim > 1,
      the default prunable choice). Static: a pytree of Python bools.
    synflow_abs_batch_stats: SynFlow also takes |.| of the BN running
      statistics, as Synaptic-Flow does (default False: they are used as they
      are; they differ only once trained, e.g. when scoring at step k).
    obd_probes: Rademacher probes of OBD's Hutchinson Hessian-diagonal
      estimate (default 10).
    synflow_plan: the network's rescaling plan (`rescaling.scale_plan`); set
      by `resolve_synflow`, else read from the network when scoring.
  """
  apply_fn: ApplyFn
  input_shape: tuple[int, ...]
  temperature: float = 200.0
  synflow_dtype: str = "float64"
  grasp_params: str = "weights"
  prunable: PyTree = None
  synflow_abs_batch_stats: bool = False
  obd_probes: int = 10
  synflow_plan: rescaling.ScalePlan | None = None


SYNFLOW_DTYPES = ("float64", "float32_rescaled", "float32")
ScoreFn = Callable[[ScoringContext, Params, Masks, PyTree, Batch, jax.Array], Scores]
SCORES: Registry[ScoreFn] = Registry("pruning method")
DATA_DEPENDENT = ("snip", "grasp", "grasp_abs", "obd")


def _variables(params, batch_stats):
  return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def _loss(ctx: ScoringContext, params, batch_stats, batch, temperature: float = 1.0):
  x, y = batch
  logits = ctx.apply_fn(_variables(params, batch_stats), x, train=False)  # BN in eval mode
  return optax.softmax_cross_entropy_with_integer_labels(logits / temperature, y).mean()


@SCORES.register("magnitude")
def magnitude(ctx, params, masks, batch_stats, batch, key) -> Scores:
  """|theta|."""
  del ctx, masks, batch_stats, batch, key
  return jax.tree.map(jnp.abs, params)


@SCORES.register("random")
def random(ctx, params, masks, batch_stats, batch, key) -> Scores:
  """I.i.d. uniform scores from `key` (one independent stream per leaf)."""
  del ctx, masks, batch_stats, batch
  leaves, treedef = jax.tree.flatten(params)
  return jax.tree.unflatten(treedef, [
      jax.random.uniform(jax.random.fold_in(key, i), p.shape) for i, p in enumerate(leaves)])


@SCORES.register("snip")
def snip(ctx, params, masks, batch_stats, batch, key) -> Scores:
  """|theta * dL/dtheta| of the masked network on `batch` (= |dL/dc| at c = 1)."""
  del key
  masked = masks_lib.apply(params, masks)
  grads = jax.grad(lambda p: _loss(ctx, p, batch_stats, batch))(masked)
  return jax.tree.map(lambda p, g: jnp.abs(p * g), masked, grads)


GRASP_PARAMS = ("weights", "all")


def _weights_only(ctx: ScoringContext, params: Params):
  """`merge(w)`: params with the weights from `w` and every other leaf held fixed."""
  if ctx.grasp_params == "all":
    return lambda w: w
  flags = ctx.prunable if ctx.prunable is not None else jax.tree.map(
      lambda p: p.ndim > 1, params)
  return lambda w: jax.tree.map(lambda f, new, old: new if f else jax.lax.stop_gradient(old),
                                flags, w, params)


def hessian_vector_product(grad_fn: Callable[[Params], Params], params: Params,
                           vector: Params) -> Params:
  """H v, H the Jacobian of `grad_fn` (a gradient) at `params`.

  Forward-over-reverse (a JVP of the gradient along v) where the model allows
  it; a model whose convolutions carry a custom gradient
  (`lotto.models.conv_grad`, so XLA:CPU runs them fast in loops) cannot be
  forward-differentiated, and takes reverse-over-reverse instead (the gradient
  of grad . v, v held constant): the same product at about twice the cost.
  """
  if "custom_vjp" not in str(jax.make_jaxpr(grad_fn)(params)):  # a trace; nothing runs
    return jax.jvp(grad_fn, (params,), (vector,))[1]
  vector = jax.lax.stop_gradient(vector)
  return jax.grad(lambda p: sum(jnp.vdot(a, b) for a, b in zip(
      jax.tree.leaves(grad_fn(p)), jax.tree.leaves(vector))))(params)


def _hessian_gradient(ctx, params, batch_stats, batch):
  """H g of the tempered loss, g its gradient (g held constant).

  With `ctx.grasp_params == "weights"` the non-weight leaves are held fixed:
  their g is 0 and Hg is H_WW g_W over the weights W only.
  Forward-over-reverse (a JVP of the gradient along g) where the model allows:
  the same product as differentiating g . grad(L) again, at about half the
  cost (BUILD_NOTES.md); `hessian_vector_product`.
  """
  merge = _weights_only(ctx, params)
  loss = lambda p: _loss(ctx, merge(p), batch_stats, batch, ctx.temperature)  # noqa: E731
  g = jax.lax.stop_gradient(jax.grad(loss)(params))
  return hessian_vector_product(jax.grad(loss), params, g)


@SCORES.register("grasp")
def grasp(ctx, params, masks, batch_stats, batch, key) -> Scores:
  """theta * Hg (keep the largest = remove the smallest), logits / T."""
  del key
  masked = masks_lib.apply(params, masks)
  hg = _hessian_gradient(ctx, masked, batch_stats, batch)
  return jax.tree.map(lambda p, h: p * h, masked, hg)


@SCORES.register("grasp_abs")
def grasp_abs(ctx, params, masks, batch_stats, batch, key) -> Scores:
  """|theta * Hg| (the "Missing the Mark" variant)."""
  return jax.tree.map(jnp.abs, grasp(ctx, params, masks, batch_stats, batch, key))


def hutchinson_hessian_diagonal(loss_fn: Callable[[Params], jax.Array], params: Params,
                                key: jax.Array, probes: int) -> Params:
  """Hutchinson's estimate of diag(H): the mean of z * (H z) over `probes` Rademacher z.

  Unbiased: E[z_i (Hz)_i] = H_ii because E[z_i z_j] = 0 for i != j; the
  variance of one probe at i is sum_{j != i} H_ij**2, so it is exact for a
  diagonal Hessian. Each H z is one Hessian-vector product
  (`hessian_vector_product`: forward-over-reverse, or reverse-over-reverse
  through `conv_grad`'s convolutions); probe p draws z from `fold_in(key, p)`,
  one stream per leaf.
  """
  if not isinstance(probes, int) or isinstance(probes, bool) or probes < 1:
    raise ValueError(f"probes must be a positive integer; got {probes!r}")
  leaves, treedef = jax.tree.flatten(params)
  grad = jax.grad(loss_fn)

  def accumulate(probe, total):
    probe_key = jax.random.fold_in(key, probe)
    z = jax.tree.unflatten(treedef, [
        jax.random.rademacher(jax.random.fold_in(probe_key, i), p.shape, p.dtype)
        for i, p in enumerate(leaves)])
    hz = hessian_vector_product(grad, params, z)
    return jax.tree.map(lambda t, a, b: t + a * b, total, z, hz)

  zeros = jax.tree.map(jnp.zeros_like, params)
  total = jax.lax.fori_loop(0, probes, accumulate, zeros)
  return jax.tree.map(lambda t: t / probes, total)


def obd_saliency(loss_fn: Callable[[Params], jax.Array], weights: Params, key: jax.Array,
                 probes: int = 10) -> Scores:
  """Optimal Brain Damage (LeCun et al. 1989): 0.5 * h_ii * w_i**2, h_ii by Hutchinson.

  The second-order estimate of the loss increase from removing w_i alone at
  a minimum; "higher = keep". `loss_fn` maps the (masked) weights to the loss.
  """
  diagonal = hutchinson_hessian_diagonal(loss_fn, weights, key, probes)
  return jax.tree.map(lambda w, h: 0.5 * h * w * w, weights, diagonal)


@SCORES.register("obd")
def obd(ctx, params, masks, batch_stats, batch, key) -> Scores:
  """OBD saliency of the masked network on `batch` (`ctx.obd_probes` probes from `key`)."""
  masked = masks_lib.apply(params, masks)
  return obd_saliency(lambda p: _loss(ctx, p, batch_stats, batch), masked, key, ctx.obd_probes)


@SCORES.register("synflow")
def synflow(ctx, params, masks, batch_stats, batch, key) -> Scores:
  """|theta| * dR/d|theta|, R = sum of outputs on an all-ones input (data-free).

  Runs in the dtype of `params` (the scorer casts to float64 under x64). With
  `ctx.synflow_dtype == "float32_rescaled"` the linearized network is first
  rescaled by powers of two (`core.rescaling`): every score is plain float32's
  times the same 2**E, bit for bit, so it ranks as plain float32 does (float32
  rounding included) without leaving float32's range.
  """
  del batch, key
  dtype = jax.tree.leaves(params)[0].dtype
  linear = masks_lib.apply(jax.tree.map(jnp.abs, params), masks)
  stats = jax.tree.map(lambda s: s.astype(dtype), batch_stats)
  if ctx.synflow_abs_batch_stats:
    stats = jax.tree.map(jnp.abs, stats)
  ones = jnp.ones((1, *ctx.input_shape), dtype)

  def forward(p, s):
    return ctx.apply_fn(_variables(p, s), ones, train=False)

  if ctx.synflow_dtype == "float32_rescaled":
    plan = ctx.synflow_plan
    if plan is None:
      plan = rescaling.scale_plan(forward, linear, stats)
    linear, stats = rescaling.rescale(plan, linear, stats,
                                      rescaling.kernel_exponents(plan, linear))
  grads = jax.grad(lambda p: jnp.sum(forward(p, stats)))(linear)
  return jax.tree.map(lambda p, g: p * g, linear, grads)


def resolve_synflow(ctx: ScoringContext, params: Params, batch_stats: PyTree) -> ScoringContext:
  """`ctx` checked, with the rescaling plan of this network for "float32_rescaled".

  Reads only shapes (one trace of the model, no computation).

  Raises:
    ConfigError: an unknown `synflow_dtype` (listing the valid ones).
  """
  if ctx.synflow_dtype not in SYNFLOW_DTYPES:
    raise ConfigError(f"unknown synflow dtype {ctx.synflow_dtype!r}; valid choices: "
                      f"{', '.join(SYNFLOW_DTYPES)}")
  if ctx.synflow_dtype != "float32_rescaled" or ctx.synflow_plan is not None:
    return ctx
  ones = jnp.ones((1, *ctx.input_shape), jnp.float32)
  plan = rescaling.scale_plan(
      lambda p, s: ctx.apply_fn(_variables(p, s), ones, train=False), params, batch_stats or {})
  return dataclasses.replace(ctx, synflow_plan=plan)


def make_scorer(method: str, ctx: ScoringContext):
  """The jitted scorer `fn(params, masks, batch_stats, batch, key) -> scores`.

  SynFlow in float64 casts params to float64 and runs under `jax.enable_x64`,
  returning float64 scores; call the selection under x64 too (see
  `pruning.prune`), since ranking them in float32 would merge tiny scores.

  Raises:
    ConfigError: unknown method (listing the valid ones) or SynFlow dtype.
  """
  fn = SCORES.get(method)
  if method != "synflow":
    return jax.jit(lambda p, m, s, b, k: fn(ctx, p, m, s, b, k))
  built = {}  # the resolved context (rescaling plan) and its jitted scorer, per network

  def scorer(params, masks, batch_stats, batch, key):
    signature = jax.tree.structure((params, batch_stats)), tuple(
        (x.shape, x.dtype) for x in jax.tree.leaves((params, batch_stats)))
    if signature not in built:
      resolved = resolve_synflow(ctx, params, batch_stats)
      built[signature] = resolved, jax.jit(lambda p, m, s, b, k: fn(resolved, p, m, s, b, k))
    resolved, jitted = built[signature]
    if resolved.synflow_dtype != "float64":
      return jitted(params, masks, batch_stats, batch, key)
    with jax.enable_x64(True):
      params64 = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)
      return jitted(params64, masks, batch_stats, batch, key)

  return scorer
