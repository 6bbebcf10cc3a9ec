"""The base config every `configs/*.py` file starts from.

Every field a job reads exists here, so configs can be locked and a misspelled
`--config.x.y=...` override is an error rather than a silently new field.
"""
from __future__ import annotations

import ml_collections


def get_base_config() -> ml_collections.ConfigDict:
  """Defaults: the MNIST-1D MLP trained with Adam for 1500 iterations."""
  config = ml_collections.ConfigDict()
  config.mode = "train"            # train | prune | prune_sweep | imp | stability | sparse_train | sparse_sweep | oneshot
  config.seed = 0
  config.seeds = ()                # a population: (0, 1, 2, 3) runs these seeds in one program
  config.data_parallel = "auto"    # auto (all devices if > 1) | on | off
  config.distributed = "auto"      # join a multi-process launch: auto (if one is found) | on | off

  config.data = ml_collections.ConfigDict()
  config.data.name = "mnist1d"
  config.data.batch_size = 100       # the global batch (over all devices)
  config.data.per_device_batch_size = 0  # or: per device (set batch_size=0); global = it x devices
  config.data.eval_batch_size = 1000
  config.data.validation_size = 500  # held out from train for early stopping
  config.data.augment = False        # CIFAR crop(4) + flip
  config.data.data_dir = ""          # tfds data_dir ("" = tfds default)
  config.data.download = False       # let tfds download (needs network)
  config.data.cache_dir = ""         # MNIST-1D cache ("" = ~/.cache/lotto)
  config.data.pipeline = "auto"      # auto (resident if it fits under resident_limit_mb) | resident | stream
  config.data.resident_limit_mb = 2048.0  # largest training set kept on the device (MB)
  config.data.image_size = 0         # side of imagenet2012's host crops (0 = 224)

  config.model = ml_collections.ConfigDict()
  config.model.name = "mlp"
  config.model.init = "torch"        # torch (open_lth) | kaiming (zero biases) | flax
  config.model.widths = (500, 500)   # hidden widths, used by "mlp" only
  # Transformer sizes (gpt, vit); 0 = the model's default (2 blocks, 4 heads, width 128 for
  # gpt and 64 for vit, context 128, 4x4 patches).
  config.model.layers = 0
  config.model.heads = 0
  config.model.width = 0
  config.model.context = 0
  config.model.patch = 0

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"     # sgd | momentum | nesterov | adam | adamw
  config.optimizer.learning_rate = 5e-3
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 0.0
  config.optimizer.skip_bias_and_norm = True  # no weight decay on ndim <= 1
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-8

  config.schedule = ml_collections.ConfigDict()
  config.schedule.name = "constant"  # constant | step | cosine
  config.schedule.warmup = "0it"
  config.schedule.drops = ()         # step schedule: durations, e.g. ("80ep", "120ep")
  config.schedule.drop_factor = 0.1

  config.train = ml_collections.ConfigDict()
  config.train.duration = "1500it"   # "<n>it" or "<n>ep"
  config.train.eval_every = "100it"  # evaluation (and block) interval
  config.train.checkpoint_every = "500it"  # resume points
  config.train.save_at = ()          # extra kept checkpoints, e.g. ("500it",)
  config.train.loop = "scan"         # scan (a block in one program) | step (one per step)
  config.train.verbose = 1           # 0 quiet | 1 progress bar, a line per run | 2 a line per eval
  config.train.tensorboard = True    # TensorBoard event files in each run's directory
  config.train.on_nan = "stop"       # stop (exit 3, results.json says diverged) | continue
  config.train.precision = "float32"  # float32 | bfloat16 (compute; params and state stay float32)

  config.masks = ml_collections.ConfigDict()
  config.masks.include = ""          # regex over key paths; "" = every kernel (ndim > 1)
  config.masks.exclude = ""          # regex of leaves never pruned, e.g. "^output/"

  config.topology = ml_collections.ConfigDict()  # a chosen start mask (train mode)
  config.topology.name = "none"      # none | radixnet | expander
  config.topology.radices = ()       # radixnet: radix lists, e.g. ((2, 2),)
  config.topology.blocks = ()        # radixnet: B_0..B_L (layer widths are B_l * N)
  config.topology.degree = 0         # expander: inputs per output unit
  config.topology.degrees = ()       # expander: one degree per layer instead, e.g. (78, 30)
  config.topology.control = "none"   # none | random (same per-layer counts, random positions)

  config.prune = ml_collections.ConfigDict()  # mode = "prune" (pruning at init)
  config.prune.method = "synflow"    # magnitude | random | snip | grasp | grasp_abs | synflow | obd
  config.prune.density = 0.1         # fraction of prunable weights kept, in (0, 1]
  config.prune.compression = 0.0     # if > 0: density = 10 ** -compression (SynFlow's c)
  config.prune.scope = "global"      # global | layerwise
  config.prune.distribution = "none"  # none (scores decide) | uniform | erk
  config.prune.normalization = "none"  # none | layer_sum (global scope)
  config.prune.iterations = 0        # 0 = default: 100 for synflow, 1 otherwise
  config.prune.schedule = "exponential"  # exponential | linear
  config.prune.ablation = "none"     # none | shuffle | shuffle_global | even | reinit | invert
  config.prune.at_step = "0it"       # score at step k of a dense run ("prune early")
  config.prune.samples_per_class = 10  # class-balanced batch for snip / grasp
  config.prune.synflow_dtype = "auto"  # auto (float64; float32_rescaled on TPU) | float64 | float32_rescaled | float32
  config.prune.grasp_params = "weights"  # weights (g, Hg over prunable weights) | all
  config.prune.count_rule = "round"  # round (round(d n)) | synaptic_flow (n - int((1 - d) n))
  config.prune.synflow_abs_batch_stats = False  # SynFlow on |BN running stats| (Synaptic-Flow)
  config.prune.obd_probes = 10       # obd: Rademacher probes of the Hessian-diagonal estimate
  config.prune.structure = "unstructured"  # unstructured | n:m (e.g. "2:4") | block:BHxBW ("block:4x4")

  config.imp = ml_collections.ConfigDict()  # mode = "imp" (lottery tickets)
  config.imp.levels = 5              # pruning levels after the dense level 0
  config.imp.fraction = 0.2          # fraction of surviving weights pruned per level
  config.imp.scope = "global"        # global | layerwise
  config.imp.layer_fractions = ()    # layerwise only: ((regex, fraction), ...), first match wins
  config.imp.exclude = ""            # regex of layers IMP never prunes, e.g. "^output/"
  config.imp.rewind = "0it"          # rewind point k: "0it" = original lottery ticket
  config.imp.branches = ()           # reinit | shuffle | random | invert | start | magnitude_after_training
  config.imp.branch_levels = ()      # levels the branches run on; () = every level >= 1
  config.imp.start_point = "init"    # "start" branch: init (theta_0) | rewind (theta_k) | final (theta_T)
  config.imp.open_lth_compat = False  # open_lth's counts: ceil(f * survivors) + 1 per level
  config.imp.structure = "unstructured"  # unstructured | n:m | block:BHxBW, at every level
  config.imp.mat_from = "final"      # magnitude_after_training: final (fine-tune) | rewind (retrain)

  config.sparse = ml_collections.ConfigDict()  # mode = "sparse_train" (sparsity during training)
  config.sparse.method = "rigl"      # static | gmp | dsd | set | rigl | srigl
  config.sparse.density = 0.1        # final density of the prunable weights, in (0, 1]
  config.sparse.compression = 0.0    # if > 0: density = 10 ** -compression
  config.sparse.distribution = "auto"  # auto (erk: static/set/rigl, uniform: gmp/dsd, fanin: srigl) | uniform | erk | fanin
  config.sparse.scope = "layerwise"  # layerwise | global (gmp: one magnitude ranking over layers)
  config.sparse.update_every = "100it"  # mask update interval (gmp, set, rigl)
  config.sparse.begin = ""           # gmp: first update ("" = 25% of training); set/rigl: none before
  config.sparse.end = ""             # gmp: final density reached ("" = 75% of training)
  config.sparse.drop_fraction = 0.3  # set/rigl: fraction of survivors dropped and regrown, in (0, 1)
  config.sparse.drop_schedule = "cosine"  # cosine | constant
  config.sparse.stop = ""            # set/rigl: no mask change from here ("" = 75% of training)
  config.sparse.grow_init = "zeros"  # zeros (grown weights start at 0)
  config.sparse.criterion = "magnitude"  # gmp: magnitude | obd
  config.sparse.threshold = 0.0      # gmp: > 0 prunes |w| < threshold at each update instead
  config.sparse.obd_probes = 10      # gmp with criterion obd: Hutchinson probes
  config.sparse.structure = "unstructured"  # gmp / dsd: unstructured | n:m | block:BHxBW
  config.sparse.ablation_threshold = 0.0  # srigl: neuron ablation's gamma_sal in [0, 1] (0 = off)
  config.sparse.execution = "masked"  # masked | condensed (MLPs, constant fan-in: static/set/srigl)

  config.dsd = ml_collections.ConfigDict()  # sparse.method = "dsd"
  config.dsd.phases = ()             # dense, sparse, dense durations; () = thirds of training
  config.dsd.final_lr_scale = 0.1    # LR multiplier of the final dense phase

  config.stability = ml_collections.ConfigDict()  # mode = "stability" (rewinding study)
  config.stability.rewind_steps = ("0it", "50it", "100it", "250it", "500it", "1000it")
  config.stability.points = 11       # evaluation points on the line between the two copies
  config.stability.levels = 0        # > 0: also IMP to this level per k (sparse instability)

  config.sweep = ml_collections.ConfigDict()  # mode = "prune_sweep": the product of these
  config.sweep.methods = ("magnitude", "random", "snip", "grasp", "synflow")
  config.sweep.densities = (0.5, 0.1, 0.03, 0.01)
  config.sweep.ablations = ("none",)
  config.sweep.at_steps = ("0it",)   # prune at init and/or later ("100it", "1ep")
  config.sweep.seeds = (0,)
  config.sweep.cells_per_program = 1  # > 1: up to this many equal-shape cells in one program

  config.oneshot = ml_collections.ConfigDict()  # mode = "oneshot" (prune a finished train run)
  config.oneshot.from_workdir = ""   # the finished train run (same model and data sections)
  config.oneshot.method = "sparsegpt"  # magnitude | wanda | sparsegpt
  config.oneshot.density = 0.5       # fraction kept in every prunable layer (n/m for n:m)
  config.oneshot.structure = "unstructured"  # unstructured | n:m (e.g. "2:4", "4:8")
  config.oneshot.calibration_examples = 128  # training examples per calibration draw
  config.oneshot.calibration_seed = 0  # which examples are drawn
  config.oneshot.calibration_seeds = ()  # a population over draws, e.g. (0, 1, 2, 3, 4)
  config.oneshot.damp = 0.01         # sparsegpt: lambda = damp * mean(diag H)
  config.oneshot.block = 128         # sparsegpt: inputs per block of lazy updates
  config.oneshot.per_output = False  # magnitude: compare |W| within each output unit
  config.oneshot.finetune = ""       # masked training after pruning: "" / "0it" = none, "200it"
  return config
