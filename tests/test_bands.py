"""One band check for every stage that applies a model: classify, confidence, write_cog, predict."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import rioxarray
from rasters import (
    class_centres,
    planted_classes,
    planted_image,
    read_labels,
    write_raster,
)

import pipeline
from pipeline import InputError, predict

NAMES = ["red", "green", "blue", "nir"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bands")
    truth = planted_classes(300, 400, 4, seed=5)
    image = planted_image(truth, class_centres(4, 4, low=30, high=220, seed=5), noise=4, dtype="uint8", seed=5)
    path = write_raster(folder / "scene.tif", image)
    with rasterio.open(path, "r+") as dst:
        dst.descriptions = tuple(NAMES)
    data = rioxarray.open_rasterio(path, chunks={"band": -1, "y": 512, "x": 512}, lock=False)
    model = pipeline.fit(data, k=4, sample_size=20_000, seed=0)
    return folder, path, image, data, model


def test_bands_in_another_order_are_refused_even_when_named_as_the_models(fitted, tmp_path):
    _, _, _, data, model = fitted
    reordered = data.sel(band=[4, 3, 2, 1])  # rioxarray keeps the file's long_name: red, green, blue, nir
    assert tuple(reordered.attrs["long_name"]) == tuple(NAMES)
    out = tmp_path / "labels.tif"
    labels = pipeline.classify(data, model)
    stages = [
        lambda: pipeline.classify(reordered, model),
        lambda: pipeline.confidence(reordered, model),
        lambda: pipeline.write_cog(labels, out, model=model, data=reordered),
    ]
    for stage in stages:
        with pytest.raises(InputError, match=r"^data: bands \[4, 3, 2, 1\] are the model's bands \[1, 2, 3, 4\] in another order; .*data.sel\(band=\[1, 2, 3, 4\]\)"):
            stage()
    assert not out.exists()


def test_a_name_that_only_starts_with_band_is_not_an_undescribed_band(fitted):
    _, _, _, data, model = fitted
    odd = data.assign_attrs(long_name=("bandit", "green", "blue", "nir"))
    with pytest.raises(InputError, match=r"^data: band 1 is named 'bandit' but the model's band 1 is 'red'; give the bands"):
        pipeline.classify(odd, model)


def test_undescribed_bands_match_by_number_and_names_ignore_case(fitted):
    _, _, _, data, model = fitted
    expected = pipeline.classify(data, model).values
    undescribed = data.copy()
    undescribed.attrs.pop("long_name")  # band1 .. band4, as GDAL names them
    np.testing.assert_array_equal(pipeline.classify(undescribed, model).values, expected)
    shouting = data.assign_attrs(long_name=tuple(n.upper() for n in NAMES))
    np.testing.assert_array_equal(pipeline.classify(shouting, model).values, expected)
    # A model fitted on undescribed bands takes described ones of the same numbers.
    plain = pipeline.fit(undescribed, k=4, sample_size=20_000, seed=0)
    assert plain.band_names == ("band1", "band2", "band3", "band4")
    np.testing.assert_array_equal(pipeline.classify(data, plain).values, pipeline.classify(undescribed, plain).values)


def test_an_undescribed_band_of_another_number_is_refused(fitted):
    _, _, _, data, model = fitted
    shifted = data.assign_coords(band=[2, 3, 4, 5])
    shifted.attrs.pop("long_name")
    with pytest.raises(InputError, match=r"^data: band 1 is named 'band2' but the model's band 1 is 'red'"):
        pipeline.classify(shifted, model)


def test_predict_refuses_the_models_bands_in_another_order(fitted, tmp_path):
    folder, path, image, data, model = fitted
    model_path = tmp_path / "model.json"
    model.save(model_path)
    undescribed = write_raster(tmp_path / "plain.tif", image)
    out = tmp_path / "out" / "labels.tif"
    done = predict(model_path, [str(undescribed)], out=out)
    np.testing.assert_array_equal(read_labels(done.output), pipeline.classify(data, model).values)
    renamed = write_raster(tmp_path / "renamed.tif", image)
    with rasterio.open(renamed, "r+") as dst:
        dst.descriptions = ("bandit", "green", "blue", "nir")
    with pytest.raises(InputError, match=r"renamed.tif: band 1 is named 'bandit' but the model's band 1 is 'red'"):
        predict(model_path, [str(renamed)], out=tmp_path / "other" / "labels.tif")
    assert not (tmp_path / "other" / "labels.tif").exists()
