"""The real NAIP scenes in ../shared/data/naip, as a mosaic (skipped with a reason when absent)."""

import numpy as np
import rasterio
import rasterio.features
import rioxarray
from rio_cogeo.cogeo import cog_validate

import pipeline
from pipeline import load_config, run
from pipeline.algo.cleanup import Cleanup, clean
from pipeline.io.mosaic import open_mosaic, to_dask
from pipeline.stages.edge import input_spec


def test_naip_mosaic_to_valid_cog(naip_scenes, make_config):
    k = 6
    config = load_config(make_config(naip_scenes, model={"k": k, "n_init": 3}, sample={"size": 200_000}))
    result = run(config)
    valid, errors, _ = cog_validate(str(result.output), quiet=True)
    assert valid, errors
    mosaic = open_mosaic(input_spec(config.input), chunk=config.dask.chunk)
    pixels = to_dask(mosaic).compute()
    expected_valid = ~np.isnan(pixels).any(axis=0)
    with rasterio.open(result.output) as src:
        labels = src.read(1)
        colormap = src.colormap(1)
        assert src.nodata == 0 and src.crs.to_epsg() == 26914 and src.res == (5.0, 5.0)
    assert all(c in colormap for c in range(k + 1))
    assert (labels[expected_valid] >= 1).all() and (labels[expected_valid] <= k).all()
    assert (labels[~expected_valid] == 0).all()
    # The newest scene is drawn on top (it sits at the mosaic's origin, snapped to the 5 m grid).
    with rasterio.open(naip_scenes[-1]) as newest:
        np.testing.assert_array_equal(pixels[:, : newest.height, : newest.width], newest.read())
    assert result.report.totals.valid_pixels == int(expected_valid.sum())
    assert result.report.totals.area_m2 == expected_valid.sum() * 25.0


def test_the_sieve_agrees_with_gdal_on_real_labels(naip_scenes):
    # docs/algorithms.md#cleanup: after majority 3, sieve 16 8-connected agrees with GDAL on
    # 99.99 % of the four scenes' valid pixels (capped sizes and contacts alone: 99.61 %).
    data = rioxarray.open_rasterio(naip_scenes[-1], chunks={"band": -1, "y": 2048, "x": 2048}, lock=False)
    raw = pipeline.classify(data, pipeline.fit(data, k=7, seed=0)).values
    voted = clean(raw, Cleanup(majority=3), k=7).labels
    ours = clean(voted, Cleanup(sieve=16, connectivity=8), k=7).labels
    gdal = rasterio.features.sieve(voted, size=16, connectivity=8, mask=voted > 0)
    valid = voted > 0
    assert (ours != voted).sum() > 0.01 * valid.sum()  # the sieve did work
    assert (ours == gdal)[valid].mean() >= 0.999
