"""Features: the pure transform, per block and whole, and through a run on real GeoTIFFs."""

from dataclasses import replace

import numpy as np
import pytest
import rasterio
from rasters import (
    assign_labels,
    class_centres,
    planted_classes,
    planted_image,
    read_labels,
    write_raster,
)
from sklearn.metrics import adjusted_rand_score

from pipeline import ConfigError, InputError, load_config, load_model, run
from pipeline.algo.features import (
    Features,
    Index,
    normalized_difference,
)
from pipeline.algo.sample import draw_sample
from pipeline.config import FeaturesConfig
from pipeline.io.mosaic import open_mosaic, to_dask
from pipeline.stages.edge import features_of, input_spec

NAMES = ("red", "green", "blue", "nir")


def scene(tmp_path, *, k=4, shape=(700, 600), seed=0):
    truth = planted_classes(*shape, k, seed=seed)
    image = planted_image(truth, class_centres(k, 4, low=10, high=250, seed=seed), noise=3.0, dtype="uint8", seed=seed)
    image[:, :40, :] = 0  # a nodata collar
    return write_raster(tmp_path / "scene.tif", image, nodata=0), truth, image


def test_normalized_difference_is_safe_at_zero_and_keeps_nan():
    a = np.array([0.0, 10.0, 0.0, np.nan, 3.0], dtype=np.float32)
    b = np.array([0.0, 30.0, 5.0, 1.0, -3.0], dtype=np.float32)
    with np.errstate(all="raise"):  # no division by zero is even attempted
        nd = normalized_difference(a, b)
    np.testing.assert_array_equal(nd, [0.0, -0.5, -1.0, np.nan, 0.0])
    assert nd.dtype == np.float32


def test_ndvi_per_block_equals_ndvi_on_the_whole_array(tmp_path, make_config):
    path, _, image = scene(tmp_path)
    config = load_config(make_config([path], input={"band_names": list(NAMES)}, features={"indices": ["ndvi", {"name": "gn", "a": "green", "b": "NIR"}]}))
    mosaic = open_mosaic(input_spec(config.input), chunk=512)  # 2 x 2 chunks, the last ones partial
    features = features_of(config.features, mosaic.band_names)
    assert features.names == (*NAMES, "ndvi", "gn") and features.indices[0] == Index("ndvi", "nir", "red")
    data = to_dask(mosaic)
    per_block = data.map_blocks(features.apply, chunks=(6, *data.chunks[1:]), dtype=np.float32).compute()
    whole = features.apply(data.compute())
    np.testing.assert_array_equal(per_block, whole)
    # ... and both are the NDVI of the file's pixels, NaN in the collar.
    red, nir = image[0].astype(np.float64), image[3].astype(np.float64)
    expected = np.where(red + nir > 0, (nir - red) / np.where(red + nir > 0, red + nir, 1), 0)
    np.testing.assert_allclose(whole[4, 40:], expected[40:], rtol=1e-6)
    assert np.isnan(whole[:, :40]).all() and not np.isnan(whole[:, 40:]).any()


def test_standard_scaling_uses_the_sample_and_unscales():
    rng = np.random.default_rng(0)
    sample = np.column_stack([rng.normal(100, 20, 5000), rng.normal(50, 5, 5000), np.full(5000, 7.0)]).astype(np.float32)
    spec = Features(("red", "nir", "flat"), ("red", "nir", "flat"), (Index("ndvi", "nir", "red"),), "standard")
    fitted = spec.fitted(sample)
    scaled = fitted.apply(sample.T)
    np.testing.assert_allclose(scaled[:2].mean(axis=1), 0, atol=1e-4)
    np.testing.assert_allclose(scaled[[0, 1, 3]].std(axis=1), 1, rtol=1e-3)
    assert fitted.std[2] == 1.0 and (scaled[2] == 0).all()  # a constant feature is left unscaled
    unscaled = replace(spec, scaling="none").apply(sample.T)
    np.testing.assert_allclose(fitted.unscale(scaled.T.astype(np.float64)), unscaled.T, rtol=1e-5, atol=1e-5)
    assert Features.from_json(fitted.to_json(), fitted.band_names) == fitted


def test_run_with_ndvi_and_standard_scaling_labels_with_the_same_transform(tmp_path, make_config):
    path, truth, image = scene(tmp_path)
    features = {"bands": ["red", "green", "nir"], "indices": ["ndvi"], "scaling": "standard"}
    config = load_config(make_config([path], input={"band_names": list(NAMES)}, features=features, model={"k": 4}, dask={"chunk": 512}))
    result = run(config)
    labels = read_labels(result.output)
    assert adjusted_rand_score(truth[40:].ravel(), labels[40:].ravel()) == 1.0 and (labels[:40] == 0).all()
    model = load_model(result.model_path)
    assert model.features.names == ("red", "green", "nir", "ndvi") and model.centroids.shape == (4, 4)
    # The scaling statistics are those of the sample's features ...
    sample = draw_sample(open_mosaic(input_spec(config.input), chunk=512), size=config.sample.size, seed=0).pixels
    raw = Features(NAMES, ("red", "green", "nir"), (Index("ndvi", "nir", "red"),)).apply(sample.T)
    np.testing.assert_allclose(model.features.mean, raw.mean(axis=1, dtype=np.float64), rtol=1e-5)
    np.testing.assert_allclose(model.features.std, raw.std(axis=1, dtype=np.float64), rtol=1e-5)
    # ... and the labels are the saved model's transform and centroids applied to the file.
    pixels = image.astype(np.float32)
    pixels[:, :40] = np.nan
    np.testing.assert_array_equal(labels, assign_labels(model.features.apply(pixels), model.centroids))
    # The report keeps the input spectra and adds the features.
    first = result.report.classes[0]
    assert list(first.mean) == list(NAMES) and list(first.feature_mean) == ["red", "green", "nir", "ndvi"]
    for entry in result.report.classes:  # feature means are in the features' own units
        assert entry.feature_mean["red"] == pytest.approx(entry.mean["red"], rel=1e-5)
        assert -1 <= entry.feature_mean["ndvi"] <= 1
    with rasterio.open(result.output) as src:
        assert "ndvi=" in src.tags()["CLASS_1"]


def test_feature_and_band_name_mistakes_are_named(tmp_path, make_config):
    path, _, _ = scene(tmp_path, shape=(100, 100))
    cases = [
        ({"features": {"indices": ["ndvi"]}}, r"features.indices: ndvi needs input bands named red and nir, but the bands are band1, band2, band3, band4; name them with input.band_names"),
        ({"input": {"band_names": list(NAMES)}, "features": {"bands": ["swir"]}}, r"features.bands: no input band is named 'swir' \(the bands are red, green, blue, nir\)"),
        ({"input": {"band_names": list(NAMES)}, "features": {"indices": [{"name": "x", "a": "red", "b": "tir"}]}}, r"features.indices\[0\] \(x\): no input band is named 'tir'"),
        ({"model": {"order_by": "ndvi"}}, r"model.order_by: ndvi needs input bands named red and nir"),
    ]
    for sections, message in cases:
        with pytest.raises(ConfigError, match=message):
            run(load_config(make_config([path], **sections)))
    with pytest.raises(InputError, match=r"input.band_names: 3 name\(s\) for the 4 band\(s\) read from .*scene.tif \(bands \[1, 2, 3, 4\]\); give one name per band"):
        run(load_config(make_config([path], input={"band_names": ["red", "green", "blue"]})))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_features_config_refuses_duplicate_and_empty_features(tmp_path, make_config):
    with pytest.raises(ConfigError, match=r"features: a name is listed twice .* in \['ndvi', 'ndvi'\]; give every feature its own name"):
        load_config(make_config(["x.tif"], features={"bands": ["ndvi"], "indices": ["ndvi"]}))
    with pytest.raises(ConfigError, match=r"features.bands is empty and features.indices lists nothing"):
        load_config(make_config(["x.tif"], features={"bands": []}))
    with pytest.raises(ConfigError, match=r"'features.scaling': .*use \"none\" or \"standard\""):
        load_config(make_config(["x.tif"], features={"scaling": "minmax"}))
    assert FeaturesConfig().bands is None
