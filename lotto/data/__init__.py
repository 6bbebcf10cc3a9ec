"""Data: registered datasets, the (seed, epoch) batch order, and input preprocessing.

`load_dataset(name)` returns host arrays; the training set lives on the
device and each block of steps receives only its int32 batch indices
(`batch_indices`), so the data order is a function of the global step.
"""
from lotto.data.batching import balanced_batch, batch_indices, epoch_permutation
from lotto.data.inputs import InputSpec, augment_images, preprocess
from lotto.data.mnist1d import MNIST1D_ARGS, default_cache_dir, load_mnist1d
from lotto.data.mnist_5k import load_mnist_5k
from lotto.data.registry import DATASETS, Dataset, DatasetSpec, load_dataset
from lotto.data.tfds import load_tfds

__all__ = [
    "DATASETS", "Dataset", "DatasetSpec", "InputSpec", "MNIST1D_ARGS", "augment_images",
    "balanced_batch", "batch_indices", "default_cache_dir", "epoch_permutation",
    "load_dataset", "load_mnist1d", "load_mnist_5k", "load_tfds", "preprocess",
]
