"""The run configuration: parsed once from YAML into frozen, typed objects.

Unknown keys, wrong types and impossible values are refused here, before any work, with the YAML
key and the fix in one line. Paths written in a YAML file are relative to that file; paths given
with ``--set`` are relative to the current directory, as a user typing them expects.
"""

from pipeline.config.input import InputConfig, StacConfig
from pipeline.config.isodata import IsodataConfig
from pipeline.config.loading import load_config, parse_config, predict_settings
from pipeline.config.postprocess import PostprocessConfig
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
    PredictSettings,
    SampleConfig,
)

__all__ = [
    "ClassConfig", "ComputeSettings", "Config", "DaskConfig", "FeaturesConfig", "FitSettings", "InputConfig", "IsodataConfig", "ModelConfig",
    "NormalizedDifference", "OutputConfig", "PostprocessConfig", "PredictSettings", "SampleConfig", "StacConfig", "load_config", "parse_config", "predict_settings",
]
