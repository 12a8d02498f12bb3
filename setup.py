"""Packaging for tb-lstm-states."""

import pathlib

import setuptools

setuptools.setup(
    name="tb-lstm-states",
    version="0.1.0",
    description=(
        "A TensorBoard plugin to log and watch the per-timestep cell states, hidden "
        "states and gates of PyTorch LSTM, GRU and RNN layers across training"
    ),
    long_description=pathlib.Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=setuptools.find_packages(include=["tb_lstm_states", "tb_lstm_states.*"]),
    package_data={"tb_lstm_states": ["static/*"]},
    include_package_data=True,
    install_requires=[
        "tensorboard>=2.12",
        "torch>=2.1",
        "numpy>=1.22",
        "protobuf>=3.20",
        "werkzeug>=2.0",
        "scikit-learn>=1.1",
        "google-crc32c>=1.5",
        # Imported by the package itself (scikit-learn brings both along, but the
        # package must not rely on that).
        "scipy>=1.8",
        "threadpoolctl>=3",
    ],
    extras_require={
        "umap": ["umap-learn>=0.5"],
        "lightning": ["lightning>=2.0"],
        # fsspec is imported for URLs; s3fs and gcsfs handle their protocols.
        "s3": ["fsspec>=2023.1", "s3fs>=2023.1"],
        "gcs": ["fsspec>=2023.1", "gcsfs>=2023.1"],
        "test": [
            "pytest>=7",
            "pytest-timeout>=2",
            "safetensors>=0.4",
            "hypothesis>=6",
            "playwright>=1.40",
            "umap-learn>=0.5",
            "lightning>=2.0",
            "moto[server]>=5",
            "s3fs>=2023.1",
            "boto3>=1.26",
            "fsspec>=2023.1",
            # `make lint`, which `make test` runs: pinned to a minor version, as
            # their rules and formatting change between minor versions.
            "ruff>=0.17.6,<0.18",
            "mypy>=2.4.1,<2.5",
        ],
        "demo": [],
    },
    entry_points={
        "tensorboard_plugins": [
            "lstm_states = tb_lstm_states.server.loader:StatesLoader",
        ],
    },
    classifiers=[
        "Intended Audience :: Science/Research",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
