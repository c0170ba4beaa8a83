"""Class order, the confidence layer, and ``predict`` with a saved model, on real GeoTIFFs."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasters import (
    class_centres,
    planted_classes,
    planted_image,
    read_labels,
    write_raster,
)
from rio_cogeo.cogeo import cog_validate

from pipeline import InputError, OutputError, load_config, load_model, predict, run
from pipeline.algo.features import normalized_difference
from pipeline.algo.kernel import label_block

NAMES = ["red", "green", "blue", "nir"]
LANDCOVER = Path(sys.executable).with_name("landcover")


def scene(tmp_path, *, k=5, shape=(600, 600), seed=0, name="scene.tif"):
    truth = planted_classes(*shape, k, seed=seed)
    image = planted_image(truth, class_centres(k, 4, low=10, high=250, seed=seed), noise=3.0, dtype="uint8", seed=seed)
    image[:, :, :30] = 0  # a nodata collar
    return write_raster(tmp_path / name, image, nodata=0), truth, image


def describe(path: Path, names) -> Path:
    with rasterio.open(path, "r+") as dst:
        for band, name in enumerate(names, start=1):
            dst.set_band_description(band, name)
    return path


def test_brightness_order_is_stable_under_a_change_of_seed(tmp_path, make_config):
    path, truth, _ = scene(tmp_path)
    labels = []
    for seed in (0, 1):
        config = make_config([path], name=f"s{seed}.yaml", model={"k": 5}, sample={"seed": seed, "size": 40_000},
                             output={"path": str(tmp_path / f"s{seed}.tif")}, dask={"chunk": 512})
        result = run(load_config(config))
        labels.append(read_labels(result.output))
        brightness = [np.mean(list(c.mean.values())) for c in result.report.classes]
        assert brightness == sorted(brightness)
    assert load_model(tmp_path / "s0.model.json").seed != load_model(tmp_path / "s1.model.json").seed
    np.testing.assert_array_equal(labels[0], labels[1])  # the same planted class has the same number
    assert len(np.unique(labels[0][:, 30:])) == 5


def test_order_by_ndvi_numbers_classes_by_their_ndvi(tmp_path, make_config):
    path, _, _ = scene(tmp_path)
    config = make_config([path], input={"band_names": NAMES}, model={"k": 5, "order_by": "ndvi"}, dask={"chunk": 512})
    result = run(load_config(config))
    means = [c.mean for c in result.report.classes]
    ndvi = [float(normalized_difference(np.float64(m["nir"]), np.float64(m["red"]))) for m in means]
    assert ndvi == sorted(ndvi) and ndvi != sorted(np.mean(list(m.values())) for m in means)
    assert load_model(result.model_path).fit.order_by == "ndvi"


def test_confidence_cog_is_valid_and_nodata_exactly_where_labels_are_0(tmp_path, make_config):
    path, _, image = scene(tmp_path)
    config = make_config([path], model={"k": 5}, output={"confidence": True}, dask={"chunk": 512})
    result = run(load_config(config))
    assert result.confidence_path == tmp_path / "out" / "labels.confidence.tif"
    valid, errors, _ = cog_validate(str(result.confidence_path), quiet=True)
    assert valid, errors
    labels = read_labels(result.output)
    with rasterio.open(result.confidence_path) as src:
        margin = src.read(1)
        assert src.dtypes[0] == "float32" and math.isnan(src.nodata) and src.overviews(1)
        assert (src.crs, src.transform) == (rasterio.open(result.output).crs, rasterio.open(result.output).transform)
    assert (labels == 0).sum() == 600 * 30
    np.testing.assert_array_equal(np.isnan(margin), labels == 0)
    assert (margin[labels > 0] >= 0).all() and margin[labels > 0].max() > 0
    # The file holds the kernel's margin for the saved model, pixel for pixel.
    pixels = image.astype(np.float32)
    pixels[:, labels == 0] = np.nan
    _, _, expected = label_block(pixels, load_model(result.model_path).centroids, with_margin=True)
    np.testing.assert_array_equal(margin, expected)


def test_predict_with_a_runs_model_reproduces_the_run(tmp_path, make_config):
    path, _, _ = scene(tmp_path)
    features = {"indices": ["ndvi"], "scaling": "standard"}
    config = make_config([path], input={"band_names": NAMES}, features=features, model={"k": 5},
                         output={"confidence": True}, dask={"chunk": 512})
    fitted = run(load_config(config))
    again = predict(fitted.model_path, [str(path)], out=tmp_path / "again" / "labels.tif", confidence=True)
    np.testing.assert_array_equal(read_labels(again.output), read_labels(fitted.output))
    assert again.output.read_bytes() == fitted.output.read_bytes()  # the COG is deterministic
    assert again.confidence_path.read_bytes() == fitted.confidence_path.read_bytes()
    assert again.report.classes == fitted.report.classes
    saved = json.loads(again.model_path.read_text())
    assert saved["centroids"] == json.loads(fitted.model_path.read_text())["centroids"]
    assert saved["features"]["names"] == NAMES + ["ndvi"]


def test_predict_refuses_imagery_unlike_the_models(tmp_path, make_config):
    path, _, image = scene(tmp_path)
    fitted = run(load_config(make_config([path], input={"band_names": NAMES}, model={"k": 3})))
    three = write_raster(tmp_path / "rgb.tif", image[:3])
    wide = write_raster(tmp_path / "wide.tif", image.astype("uint16"))
    swapped = describe(write_raster(tmp_path / "nrgb.tif", image[[3, 0, 1, 2]]), ["nir", "red", "green", "blue"])
    named = describe(write_raster(tmp_path / "named.tif", image, nodata=0), ["Red", "Green", "Blue", "NIR"])
    cases = [
        (three, r"rgb.tif: has 3 band\(s\) but the model was fitted on 4-band imagery; predict needs imagery with the bands"),
        (wide, r"wide.tif: dtype uint16 differs from the model's uint8"),
        (swapped, r"nrgb.tif: band 1 is named 'nir' but the model's band 1 is 'red'"),
    ]
    out = tmp_path / "new" / "labels.tif"
    for source, message in cases:
        with pytest.raises(InputError, match=message):
            predict(fitted.model_path, [str(source)], out=out)
    assert not out.exists()
    done = predict(fitted.model_path, [str(named)], out=out)  # descriptions that agree, in any case
    np.testing.assert_array_equal(read_labels(done.output), read_labels(fitted.output))
    with pytest.raises(OutputError, match=r"labels.tif: already exists; pass --overwrite or choose another --out"):
        predict(fitted.model_path, [str(named)], out=out)


def test_predict_command_as_a_user_runs_it(tmp_path, make_config):
    path, _, image = scene(tmp_path, shape=(300, 400))
    fitted = run(load_config(make_config([path], model={"k": 3})))
    done = subprocess.run([str(LANDCOVER), "predict", str(fitted.model_path), "scene.tif", "--out", "p/labels.tif", "--quiet"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done.stderr
    np.testing.assert_array_equal(read_labels(tmp_path / "p" / "labels.tif"), read_labels(fitted.output))
    assert {p.name for p in (tmp_path / "p").iterdir()} == {p.name for p in fitted.output.parent.iterdir()}  # the same files as run
    three = write_raster(tmp_path / "rgb.tif", image[:3])
    before = three.read_bytes()
    done = subprocess.run([str(LANDCOVER), "predict", str(fitted.model_path), str(three), "--out", str(tmp_path / "q.tif")],
                          capture_output=True, text=True, timeout=300)
    *progress, error = done.stderr.splitlines()  # progress lines (the mosaic opened), then one error line
    assert done.returncode == 2 and error.startswith("error: ") and "error" not in " ".join(progress)
    assert "rgb.tif: has 3 band(s)" in error and "Traceback" not in done.stderr
    assert not (tmp_path / "q.tif").exists() and three.read_bytes() == before


def chunk_records(rows: int, cols: int) -> set[str]:
    """The names of the records of a rows x cols grid of chunks, as the write tasks leave them."""
    return {f"chunk-{i:05d}-{j:05d}.npz" for i in range(rows) for j in range(cols)}


def test_predict_computes_on_the_scheduler_and_chunks_it_is_given(tmp_path, make_config, watch_parts):
    # 1500 x 1300: 3 x 3 chunks of 512 and 2 x 2 of 1024, the last row and column of each partial
    path, _, _ = scene(tmp_path, shape=(1500, 1300))
    with watch_parts(tmp_path / "out" / ".labels.tif.parts") as small:
        fitted = run(load_config(make_config([path], model={"k": 3}, dask={"chunk": 512})))
    options = ["--set", "dask.scheduler=local-cluster", "--set", "dask.workers=1", "--set", "dask.chunk=1024"]
    with watch_parts(tmp_path / "c" / ".labels.tif.parts") as large:
        done = subprocess.run([str(LANDCOVER), "predict", str(fitted.model_path), "scene.tif", "--out", "c/labels.tif", *options],
                              capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0 and "dask: tcp://" in done.stderr and "1 worker(s)" in done.stderr, done.stderr
    # Each write task left its chunk's record: the two runs really were cut differently ...
    assert small.records() == chunk_records(3, 3) and large.records() == chunk_records(2, 2)
    assert not (tmp_path / "out" / ".labels.tif.parts").exists() and not (tmp_path / "c" / ".labels.tif.parts").exists()
    # ... and wrote the same COG: the bytes do not depend on the chunks.
    assert (tmp_path / "c" / "labels.tif").read_bytes() == fitted.output.read_bytes()
    assert len(np.unique(read_labels(fitted.output)[:, 30:])) == 3
    refused = subprocess.run([str(LANDCOVER), "predict", str(fitted.model_path), "scene.tif", "--out", "d.tif", "--set", "model.k=3"],
                             capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert refused.returncode == 2 and refused.stderr == "error: --set: unknown key 'model'; valid keys at the top level are: dask, postprocess\n"
    assert not (tmp_path / "d.tif").exists()
