"""End to end through ``run(config)`` on real GeoTIFFs with planted spectral classes."""

from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio
from PIL import Image
from rasters import (
    assign_labels,
    class_centres,
    planted_classes,
    planted_image,
    read_labels,
    write_raster,
)
from rio_cogeo.cogeo import cog_validate
from scipy.spatial.distance import cdist
from sklearn.metrics import adjusted_rand_score

from pipeline import DataError, InputError, OutputError, load_config, load_model, run
from pipeline.algo.sample import draw_sample
from pipeline.io.mosaic import open_mosaic, to_dask
from pipeline.stages.edge import input_spec


def planted(tmp_path: Path, *, k=5, bands=4, dtype="uint8", shape=(1300, 1100), noise=3.0, seed=0, **write):
    truth = planted_classes(*shape, k, seed=seed)
    high = {"uint8": 250, "uint16": 4000, "float32": 1.0}[dtype]
    centres = class_centres(k, bands, low=high * 0.04, high=high, seed=seed)
    image = planted_image(truth, centres, noise=noise * high / 250, dtype=dtype, seed=seed)
    return write_raster(tmp_path / "image.tif", image, **write), truth, image


def run_on(make_config, paths, **sections):
    return run(load_config(make_config(paths, **sections)))


def test_planted_classes_recovered_exactly_across_chunk_borders(tmp_path, make_config):
    path, truth, _ = planted(tmp_path, k=6)
    result = run_on(make_config, [path], model={"k": 6}, dask={"chunk": 512})  # 3 x 3 chunks
    labels = read_labels(result.output)
    assert adjusted_rand_score(truth.ravel(), labels.ravel()) == 1.0
    assert labels.min() == 1 and labels.max() == 6


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("bands", [3, 4, 8])
def test_band_counts_and_dtypes(tmp_path, make_config, bands, dtype):
    path, truth, _ = planted(tmp_path, k=4, bands=bands, dtype=dtype, shape=(600, 700), seed=bands)
    result = run_on(make_config, [path], model={"k": 4}, dask={"chunk": 512})
    assert adjusted_rand_score(truth.ravel(), read_labels(result.output).ravel()) == 1.0
    assert result.model.bands == tuple(range(1, bands + 1))


def test_k_2(tmp_path, make_config):
    path, truth, _ = planted(tmp_path, k=2, shape=(700, 600))
    result = run_on(make_config, [path], model={"k": 2}, dask={"chunk": 512})
    assert adjusted_rand_score(truth.ravel(), read_labels(result.output).ravel()) == 1.0


def test_k_254_every_pixel_gets_its_nearest_centroid(tmp_path, make_config):
    path, truth, image = planted(tmp_path, k=254, bands=3, shape=(600, 600), noise=1.0, seed=4)
    result = run_on(make_config, [path], model={"k": 254}, sample={"size": 100_000}, dask={"chunk": 512})
    labels = read_labels(result.output)
    pixels = image.reshape(3, -1).T.astype(np.float64)
    expected = cdist(pixels, result.model.centroids, "sqeuclidean").argmin(axis=1) + 1
    np.testing.assert_array_equal(labels.ravel(), expected)
    assert labels.min() >= 1 and labels.max() <= 254 and len(np.unique(labels)) > 200
    with rasterio.open(result.output) as src:
        assert len({src.colormap(1)[c] for c in range(1, 255)}) > 1


def test_nodata_is_every_band_not_one_band(tmp_path, make_config):
    path, truth, image = planted(tmp_path, k=3, shape=(600, 600))
    image = image.copy()
    image[:, :50, :] = 0  # a nodata collar: every band 0
    image[3, 300:320, 300:320] = 0  # water: NIR alone reads 0 and stays valid
    write_raster(path, image, nodata=0)
    result = run_on(make_config, [path], model={"k": 3}, dask={"chunk": 512})
    labels = read_labels(result.output)
    assert (labels[:50] == 0).all()
    assert (labels[50:] > 0).all()
    assert result.report.totals.nodata_pixels == 50 * 600
    with rasterio.open(result.output) as src:
        assert src.nodata == 0


def test_nan_and_inf_are_invalid(tmp_path, make_config):
    path, truth, image = planted(tmp_path, k=3, dtype="float32", shape=(600, 600))
    image = image.copy()
    image[1, 10:20, 10:20] = np.nan
    image[2, 500:510, 0:10] = np.inf
    write_raster(path, image)
    labels = read_labels(run_on(make_config, [path], model={"k": 3}, dask={"chunk": 512}).output)
    assert (labels[10:20, 10:20] == 0).all() and (labels[500:510, 0:10] == 0).all()
    assert (labels > 0).sum() == 600 * 600 - 200


def test_alpha_band_masks_and_is_never_a_feature(tmp_path, make_config):
    path, truth, image = planted(tmp_path, k=3, shape=(600, 600))
    alpha = np.full(truth.shape, 255, dtype=np.uint8)
    alpha[:, :40] = 0
    write_raster(path, image, alpha=alpha)
    result = run_on(make_config, [path], model={"k": 3}, dask={"chunk": 512})
    labels = read_labels(result.output)
    assert result.model.bands == (1, 2, 3, 4)
    assert (labels[:, :40] == 0).all() and (labels[:, 40:] > 0).all()
    assert adjusted_rand_score(truth[:, 40:].ravel(), labels[:, 40:].ravel()) == 1.0
    with pytest.raises(InputError, match=r"input.bands: band 5 of .*image.tif is its alpha band"):
        run_on(make_config, [path], input={"bands": [1, 5]})


def test_rgba_marked_nir_can_be_declared_data(tmp_path, make_config, caplog):
    _, truth, image = planted(tmp_path, k=3, shape=(600, 600))
    image = image.copy()
    image[3, :100] = 0  # NIR of water: 0, which GDAL's implied alpha would turn into a mask
    path = tmp_path / "rgbn.tif"
    with rasterio.open(path, "w", driver="GTiff", height=600, width=600, count=4, dtype="uint8", crs="EPSG:32614",
                       transform=rasterio.transform.from_origin(500_000, 5_200_000, 2, 2)) as dst:
        dst.write(image)  # no PHOTOMETRIC: GDAL marks band 4 as alpha
    auto = run_on(make_config, [path], model={"k": 3})
    assert auto.model.bands == (1, 2, 3) and "band 4 is marked alpha" in caplog.text
    declared = run_on(make_config, [path], model={"k": 3}, input={"alpha": "none"}, output={"overwrite": True})
    assert declared.model.bands == (1, 2, 3, 4)
    assert (read_labels(declared.output) > 0).all()


def test_mosaic_labels_agree_with_single_tiles_and_across_seams(tmp_path, make_config):
    _, truth, image = planted(tmp_path, k=5, shape=(1200, 1000))
    # Four overlapping tiles (64-pixel overlaps, like NAIP's buffer), unaligned with the chunks.
    cuts = [(0, 664, 0, 564), (0, 664, 500, 1000), (600, 1200, 0, 564), (600, 1200, 500, 1000)]
    tiles = []
    for n, (r0, r1, c0, c1) in enumerate(cuts):
        origin = (500_000.0 + 2.0 * c0, 5_200_000.0 - 2.0 * r0)
        tiles.append(write_raster(tmp_path / f"tile_{n}.tif", image[:, r0:r1, c0:c1], origin=origin))
    result = run_on(make_config, tiles, model={"k": 5}, dask={"chunk": 512})
    mosaic_labels = read_labels(result.output)
    assert mosaic_labels.shape == truth.shape
    # With the same model, the whole scene labelled at once equals the mosaic (so seams agree) ...
    np.testing.assert_array_equal(mosaic_labels, assign_labels(image.astype(np.float32), result.model.centroids))
    assert adjusted_rand_score(truth.ravel(), mosaic_labels.ravel()) == 1.0
    # ... and so does each tile opened and labelled alone.
    for tile, (r0, r1, c0, c1) in zip(tiles, cuts):
        alone = to_dask(open_mosaic(input_spec(load_config(make_config([tile], name="one.yaml")).input), chunk=512))
        labels = alone.map_blocks(assign_labels, result.model.centroids, drop_axis=0, dtype=np.uint8).compute()
        np.testing.assert_array_equal(labels, mosaic_labels[r0:r1, c0:c1])


def test_mixed_tiles_are_refused_naming_both_files(tmp_path, make_config):
    image = np.full((4, 100, 100), 9, dtype=np.uint8)
    a = write_raster(tmp_path / "a.tif", image)
    b = write_raster(tmp_path / "b.tif", image[:3], origin=(500_200.0, 5_200_000.0))
    c = write_raster(tmp_path / "c.tif", image, crs="EPSG:32615")
    with pytest.raises(InputError, match=r"b.tif: band count 3 differs from .*a.tif \(4\)"):
        run_on(make_config, [a, b])
    with pytest.raises(InputError, match=r"c.tif: CRS EPSG:32615 differs from .*a.tif \(EPSG:32614\); set input.crs \(e.g. EPSG:32614\) to reproject them on the fly"):
        run_on(make_config, [a, c])


def test_model_json_round_trips_and_inertia_is_the_exact_sse(tmp_path, make_config):
    path, _, _ = planted(tmp_path, k=4, shape=(700, 700))
    config = load_config(make_config([path], model={"k": 4}, sample={"size": 50_000, "seed": 3}, dask={"chunk": 512}))
    result = run(config)
    model = load_model(result.model_path)
    np.testing.assert_array_equal(model.centroids, result.model.centroids)
    assert (model.k, model.bands, model.sample_size, model.seed) == (4, (1, 2, 3, 4), 50_000, 3)
    assert model.palette == result.model.palette and model.fit.n_iter >= 1
    sample = draw_sample(open_mosaic(input_spec(config.input), chunk=512), size=50_000, seed=3).pixels
    exact = cdist(sample.astype(np.float64), model.centroids, "sqeuclidean").min(axis=1).sum()
    assert model.inertia == pytest.approx(exact, rel=1e-9)


def test_same_seed_same_sample_on_any_scheduler(tmp_path):
    path, _, _ = planted(tmp_path, k=3, shape=(900, 900))
    mosaic = open_mosaic(input_spec(load_config_for(tmp_path, path).input), chunk=512)
    threaded = draw_sample(mosaic, size=20_000, seed=5, window=128, min_windows=8).pixels
    for scheduler in ("synchronous", "processes"):
        with dask.config.set(scheduler=scheduler, num_workers=2):
            np.testing.assert_array_equal(draw_sample(mosaic, size=20_000, seed=5, window=128, min_windows=8).pixels, threaded)
    assert len(threaded) == 20_000
    assert not np.array_equal(threaded, draw_sample(mosaic, size=20_000, seed=6, window=128, min_windows=8).pixels)


def load_config_for(tmp_path, path):
    config = tmp_path / "s.yaml"
    config.write_text(f"input: {{paths: ['{path}']}}\n")
    return load_config(config)


def test_sample_all_fits_every_valid_pixel(tmp_path, make_config):
    path, truth, _ = planted(tmp_path, k=3, shape=(600, 600))
    result = run_on(make_config, [path], model={"k": 3}, sample={"size": "all"}, dask={"chunk": 512})
    assert result.model.sample_size == 600 * 600
    assert adjusted_rand_score(truth.ravel(), read_labels(result.output).ravel()) == 1.0


def test_cog_report_and_sidecars(tmp_path, make_config):
    path, truth, _ = planted(tmp_path, k=4, shape=(1300, 1100))
    result = run_on(make_config, [path], model={"k": 4}, dask={"chunk": 1024})
    valid, errors, warnings = cog_validate(str(result.output), quiet=True)
    assert valid, errors
    with rasterio.open(result.output) as src:
        assert src.overviews(1) and src.block_shapes[0] == (512, 512) and src.compression.name == "deflate"
        assert set(src.colormap(1)) >= set(range(5)) and src.tags()["CLASS_2"].startswith("class 2:")
        assert src.crs.to_epsg() == 32614 and src.transform.c == 500_000.0
    report = result.report
    counts = np.bincount(truth.ravel(), minlength=4)
    assert sorted(c.pixels for c in report.classes) == sorted(counts)
    assert report.totals.area_m2 == pytest.approx(1300 * 1100 * 4.0)
    assert set(report.timings) == {"open", "sample", "first_look", "fit", "label_write", "finalise", "place", "total"}
    assert report.timings["first_look"] <= report.timings["sample"]  # the sample's first part
    with Image.open(result.quicklook_path) as quicklook, rasterio.open(result.output) as src:
        assert quicklook.mode == "P" and max(quicklook.size) <= 1024  # each pixel a class: its palette colour
        labels = src.read(1, out_shape=quicklook.size[::-1], resampling=rasterio.enums.Resampling.nearest)
        colours = np.asarray(quicklook.convert("RGB"))
    palette = np.array([result.model.palette[c][:3] for c in range(result.model.k + 1)], dtype=np.uint8)
    assert np.array_equal(colours, palette[labels])
    assert [p.name for p in result.output.parent.iterdir() if p.name.startswith(".")] == []  # no staging, no parts


def test_existing_output_refused_and_left_untouched(tmp_path, make_config):
    path, _, _ = planted(tmp_path, k=3, shape=(600, 600))
    first = run_on(make_config, [path], model={"k": 3})
    before = first.output.read_bytes()
    with pytest.raises(OutputError, match=r"labels.tif: already exists; set output.overwrite: true"):
        run_on(make_config, [path], model={"k": 4})
    assert first.output.read_bytes() == before
    again = run_on(make_config, [path], model={"k": 4}, output={"overwrite": True})
    assert again.model.k == 4


def test_all_nodata_and_too_few_pixels(tmp_path, make_config):
    image = np.zeros((4, 600, 600), dtype=np.uint8)
    empty = write_raster(tmp_path / "empty.tif", image, nodata=0)
    with pytest.raises(DataError, match=r"empty.tif: no valid pixel"):
        run_on(make_config, [empty])
    image[:, 0, :3] = 50
    few = write_raster(tmp_path / "few.tif", image, nodata=0)
    with pytest.raises(DataError, match=r"only 3 valid pixel\(s\) .* model.k is 7"):
        run_on(make_config, [few])
    image[:, 1:] = 200
    image[:, 300:] = 90
    two = write_raster(tmp_path / "two.tif", image, nodata=0)  # three colours, asked for seven classes
    with pytest.raises(DataError, match=r"only 3 distinct spectral group\(s\) but model.k is 7; lower model.k to 3"):
        run_on(make_config, [two])
    assert not (tmp_path / "out" / "labels.tif").exists()
