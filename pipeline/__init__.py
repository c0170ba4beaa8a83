"""Unsupervised land-cover classification of huge rasters: one global K-Means, one COG of labels."""

from .config import Config, load_config
from .errors import ConfigError, DataError, InputError, LandcoverError, OutputError
from .predict import predict
from .model import Model, load_model
from .run import RunResult, run

__all__ = [
    "Config",
    "ConfigError",
    "DataError",
    "InputError",
    "LandcoverError",
    "Model",
    "OutputError",
    "RunResult",
    "load_config",
    "load_model",
    "predict",
    "run",
]
