"""Data: registered datasets, the (seed, epoch) batch order, the input pipelines and
input preprocessing.

`load_dataset(name)` returns host arrays (or, for a streamed tfds training set,
random-access `Examples` on disk). With the `resident` pipeline the training set
lives on the device and each block of steps receives only its int32 batch indices
(`batch_indices`); with `stream` the host reads each block's examples in that same
order (`StepStream`). Either way the data order is a function of the global step.
"""
from lotto.data.batching import (balanced_batch, balanced_sample, batch_indices,
                                 epoch_permutation)
from lotto.data.cropped_images import CroppedImages, host_augmented
from lotto.data.examples import (ArrayExamples, Examples, RecordExamples, Subset, example_bytes,
                                 read_all, write_examples)
from lotto.data.inputs import InputSpec, augment_images, preprocess
from lotto.data.mnist1d import MNIST1D_ARGS, default_cache_dir, load_mnist1d
from lotto.data.mnist_5k import load_mnist_5k
from lotto.data.registry import DATASETS, Dataset, DatasetSpec, load_dataset
from lotto.data.stream import (DEFAULT_RESIDENT_LIMIT_MB, PIPELINES, StepStream,
                               choose_pipeline)
from lotto.data.tfds import TfdsExamples, load_tfds, open_tfds

__all__ = [
    "ArrayExamples", "CroppedImages", "DATASETS", "DEFAULT_RESIDENT_LIMIT_MB", "Dataset", "DatasetSpec",
    "Examples", "InputSpec", "MNIST1D_ARGS", "PIPELINES", "RecordExamples", "StepStream",
    "Subset", "TfdsExamples", "augment_images", "balanced_batch", "balanced_sample",
    "batch_indices", "choose_pipeline", "default_cache_dir", "epoch_permutation",
    "example_bytes", "host_augmented", "load_dataset", "load_mnist1d", "load_mnist_5k", "load_tfds", "open_tfds",
    "preprocess", "read_all", "write_examples",
]
