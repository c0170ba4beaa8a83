"""The run configuration: parsed once from YAML into frozen, typed objects.

Unknown keys, wrong types and impossible values are refused here, before any work, with the YAML
key and the fix in one line. Paths written in a YAML file are relative to that file; paths given
with ``--set`` are relative to the current directory, as a user typing them expects.
"""

from pipeline.config.input import InputConfig, StacConfig
from pipeline.config.loading import dask_settings, load_config, parse_config
from pipeline.config.schema import (
    ClassConfig,
    ComputeSettings,
    Config,
    DaskConfig,
    FeaturesConfig,
    FitSettings,
    ModelConfig,
    NormalizedDifference,
    OutputConfig,
    SampleConfig,
)

__all__ = [
    "ClassConfig", "ComputeSettings", "Config", "DaskConfig", "FeaturesConfig", "FitSettings", "InputConfig", "ModelConfig",
    "NormalizedDifference", "OutputConfig", "SampleConfig", "StacConfig", "dask_settings", "load_config", "parse_config",
]
