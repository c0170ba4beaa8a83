"""Unsupervised land-cover classification of huge rasters: one global K-Means, one COG of labels.

From Python, on any (band, y, x) DataArray (rioxarray, odc-stac, stackstac, ``open_imagery``)::

    model = pipeline.fit(data, k=7, sample_size=1_000_000, seed=0)
    labels = pipeline.classify(data, model)          # lazy uint8 (y, x), 0 = nodata
    labels = pipeline.sieve(pipeline.majority(labels, 3), 16, 8)   # the map cleaned, still lazy
    pipeline.write_cog(labels, "out/labels.tif", model=model, data=data)
    # or, the same bytes, labelling inside the write's tasks:
    pipeline.write_classified(data, "out/labels.tif", model=model)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pipeline.errors import (
    ConfigError,
    DataError,
    InputError,
    LandcoverError,
    OutputError,
    ReadError,
)

# Imported on first use (PEP 562): ``import pipeline`` and ``landcover --help`` must not pay for
# dask, xarray, rasterio, scikit-learn and numba (seconds) before anything asks for them.
_LAZY = {
    "Model": "pipeline.algo.model", "load_model": "pipeline.algo.model",
    "Config": "pipeline.config", "load_config": "pipeline.config",
    "classify": "pipeline.stages.classify", "confidence": "pipeline.stages.classify",
    "majority": "pipeline.stages.cleanup", "sieve": "pipeline.stages.cleanup",
    "open_imagery": "pipeline.stages.edge",
    "fit": "pipeline.stages.fit",
    "predict": "pipeline.stages.predict",
    "run": "pipeline.stages.run",
    "RunResult": "pipeline.stages.write", "write_classified": "pipeline.stages.write", "write_cog": "pipeline.stages.write",
}

if TYPE_CHECKING:
    from pipeline.algo.model import Model, load_model
    from pipeline.config import Config, load_config
    from pipeline.stages.classify import classify, confidence
    from pipeline.stages.cleanup import majority, sieve
    from pipeline.stages.edge import open_imagery
    from pipeline.stages.fit import fit
    from pipeline.stages.predict import predict
    from pipeline.stages.run import run
    from pipeline.stages.write import RunResult, write_classified, write_cog


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


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
