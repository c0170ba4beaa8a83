"""Unsupervised land-cover classification of huge rasters: one global K-Means, one COG of labels.

From Python, on any (band, y, x) DataArray (rioxarray, odc-stac, stackstac, ``open_imagery``)::

    model = pipeline.fit(data, k=7, sample_size=1_000_000, seed=0)
    labels = pipeline.classify(data, model)          # lazy uint8 (y, x), 0 = nodata
    labels = pipeline.sieve(pipeline.majority(labels, 3), 16, 8)   # the map cleaned, still lazy
    pipeline.write_cog(labels, "out/labels.tif", model=model, data=data)
    # or, the same bytes, labelling inside the write's tasks:
    pipeline.write_classified(data, "out/labels.tif", model=model)
"""

from pipeline.algo.model import Model, load_model
from pipeline.config import Config, load_config
from pipeline.errors import (
    ConfigError,
    DataError,
    InputError,
    LandcoverError,
    OutputError,
    ReadError,
)
from pipeline.stages.classify import classify, confidence
from pipeline.stages.cleanup import majority, sieve
from pipeline.stages.edge import open_imagery
from pipeline.stages.fit import fit
from pipeline.stages.predict import predict
from pipeline.stages.run import run
from pipeline.stages.write import RunResult, write_classified, write_cog

__all__ = [
    "Config",
    "ConfigError",
    "DataError",
    "InputError",
    "LandcoverError",
    "Model",
    "OutputError",
    "ReadError",
    "RunResult",
    "classify",
    "confidence",
    "fit",
    "load_config",
    "load_model",
    "majority",
    "open_imagery",
    "predict",
    "run",
    "sieve",
    "write_classified",
    "write_cog",
]
