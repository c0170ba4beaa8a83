"""Unsupervised land-cover classification of huge rasters: one global K-Means, one COG of labels.

From Python, on any (band, y, x) DataArray (rioxarray, odc-stac, stackstac, ``open_imagery``)::

    model = pipeline.fit(data, k=7, sample_size=1_000_000, seed=0)
    labels = pipeline.classify(data, model)          # lazy uint8 (y, x), 0 = nodata
    pipeline.write_cog(labels, "out/labels.tif", model=model, data=data)
"""

from .config import Config, load_config
from .errors import ConfigError, DataError, InputError, LandcoverError, OutputError
from .labelling import classify, confidence
from .model import Model, fit, load_model
from .mosaic import open_imagery
from .predict import predict
from .products import RunResult, write_cog
from .run import run

__all__ = [
    "Config",
    "ConfigError",
    "DataError",
    "InputError",
    "LandcoverError",
    "Model",
    "OutputError",
    "RunResult",
    "classify",
    "confidence",
    "fit",
    "load_config",
    "load_model",
    "open_imagery",
    "predict",
    "run",
    "write_cog",
]
