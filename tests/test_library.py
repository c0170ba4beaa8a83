"""The stages from Python, on DataArrays from rioxarray and odc-stac, as an analyst calls them."""

import datetime
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import rioxarray
import xarray as xr
import yaml
from dask.callbacks import Callback
from rasterio.warp import transform_bounds
from rasters import (
    class_centres,
    planted_classes,
    planted_image,
    read_labels,
    write_raster,
)

import pipeline
from pipeline import InputError, Model

LANDCOVER = Path(sys.executable).with_name("landcover")
SHAPE = (1100, 900)  # 3 x 2 chunks of 512, with edge chunks
K = 5


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("library")
    truth = planted_classes(*SHAPE, K, seed=4)
    image = planted_image(truth, class_centres(K, 4, low=20, high=240, seed=4), noise=8.0, dtype="uint8", seed=4)
    image[:, :60, :200] = 0  # a nodata corner: every band 0
    return write_raster(folder / "scene.tif", image, nodata=0)


def open_scene(scene: Path, chunk: int = 512) -> xr.DataArray:
    return rioxarray.open_rasterio(scene, chunks={"band": -1, "y": chunk, "x": chunk}, lock=False)


def chunk_records(rows: int, cols: int) -> set[str]:
    """The names of the records of a rows x cols grid of chunks, as the write tasks leave them."""
    return {f"chunk-{i:05d}-{j:05d}.npz" for i in range(rows) for j in range(cols)}


@pytest.fixture(scope="module")
def cli_written(scene, tmp_path_factory, watch_parts) -> tuple[Path, set[str]]:
    """``landcover run`` on the scene, as a user runs it, and the chunk records its write tasks
    left in the parts folder (seen while it ran: a finished run removes the folder)."""
    folder = tmp_path_factory.mktemp("cli")
    doc = {
        "input": {"paths": [str(scene)]},
        "model": {"k": K},
        "sample": {"size": 200_000, "seed": 3},
        "output": {"path": str(folder / "labels.tif")},
        "dask": {"chunk": 512},
    }
    (folder / "run.yaml").write_text(yaml.safe_dump(doc))
    with watch_parts(folder / ".labels.tif.parts") as seen:
        done = subprocess.run([str(LANDCOVER), "run", str(folder / "run.yaml"), "-q"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return folder / "labels.tif", seen.records()


@pytest.fixture(scope="module")
def cli_run(cli_written) -> Path:
    return cli_written[0]


class TasksRun(Callback):
    """Counts the dask tasks the local schedulers start."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def _pretask(self, key, dask, state):
        self.count += 1


def test_fit_classify_write_cog_give_the_bytes_of_landcover_run(scene, cli_written, tmp_path, watch_parts):
    cli_run, cli_records = cli_written
    data = open_scene(scene, chunk=1024)  # the run's chunks are 512: the bytes do not depend on them
    assert data.chunks[1:] == ((1024, 76), (900,))
    model = pipeline.fit(data, k=K, sample_size=200_000, seed=3)
    labels = pipeline.classify(data, model)
    with watch_parts(tmp_path / ".labels.tif.parts") as seen:
        result = pipeline.write_cog(labels, tmp_path / "labels.tif", model=model, data=data)
    # Each write task left its chunk's record: 2 x 1 chunks of 1024 here, 3 x 2 of 512 in the run.
    assert seen.records() == chunk_records(2, 1) and cli_records == chunk_records(3, 2)
    assert result.output.read_bytes() == cli_run.read_bytes()
    cli_model = Model.load(cli_run.with_name("labels.model.json"))
    np.testing.assert_array_equal(model.centroids, cli_model.centroids)
    assert model.palette == cli_model.palette
    # The sidecars a run writes, with the report's class means measured on the imagery.
    written = {p.name for p in tmp_path.iterdir()}
    assert {"labels.model.json", "labels.report.json", "labels.legend.json", "labels.stac-item.json", "labels.report.html"} <= written
    cli_report = json.loads(cli_run.with_name("labels.report.json").read_text())
    assert result.report.to_json()["classes"] == cli_report["classes"]
    # Labelling inside the write's tasks (what the run does) is the caller's choice, with the same bytes.
    classified = pipeline.write_classified(data, tmp_path / "classified" / "labels.tif", model=model)
    assert classified.output.read_bytes() == cli_run.read_bytes()
    assert classified.report.to_json()["classes"] == cli_report["classes"]


def test_classify_is_lazy_and_keeps_the_grid(scene):
    data = open_scene(scene)
    model = pipeline.fit(data, k=K, sample_size=50_000, seed=0)
    with TasksRun() as tasks:
        labels = pipeline.classify(data, model)
    assert tasks.count == 0  # nothing read, nothing computed
    assert labels.dtype == np.uint8 and labels.dims == ("y", "x") and labels.shape == SHAPE
    assert labels.rio.crs == data.rio.crs and labels.rio.transform() == data.rio.transform()
    np.testing.assert_array_equal(labels.x, data.x)
    with TasksRun() as tasks:
        values = labels.values
    assert tasks.count > 0
    assert (values[:60, :200] == 0).all() and (values[60:] > 0).all()


def test_the_mosaic_reader_gives_the_same_dataarray_and_labels(scene, tmp_path):
    mosaic = pipeline.open_imagery(str(scene), chunk=512)
    data = open_scene(scene)
    model = pipeline.fit(data, k=K, sample_size=50_000, seed=1)
    assert pipeline.fit(mosaic, k=K, sample_size=50_000, seed=1).centroids.tolist() == model.centroids.tolist()
    labels = pipeline.classify(data, model)
    np.testing.assert_array_equal(pipeline.classify(mosaic, model).values, labels.values)
    # Labels of one array with the pixels of another: the write tasks take both blocks as given.
    fused = pipeline.write_cog(labels, tmp_path / "fused.tif", model=model, data=data)
    apart = pipeline.write_cog(labels, tmp_path / "apart.tif", model=model, data=mosaic)
    assert apart.output.read_bytes() == fused.output.read_bytes()
    assert apart.report.to_json()["classes"] == fused.report.to_json()["classes"]


def test_model_save_and_load_round_trip(scene, tmp_path):
    data = open_scene(scene)
    model = pipeline.fit(data, k=K, sample_size=50_000, seed=2, features={"scaling": "standard"})
    path = model.save(tmp_path / "labels.model.json")
    loaded = Model.load(path)
    assert {k: v for k, v in loaded.to_json().items() if k != "versions"} == {
        k: v for k, v in model.to_json().items() if k != "versions"
    }
    np.testing.assert_array_equal(pipeline.classify(data, loaded).values, pipeline.classify(data, model).values)
    assert loaded.versions == model.versions and loaded.versions["numpy"] == np.__version__  # the fitting libraries, kept
    scalable = pipeline.fit(data, k=K, sample_size=50_000, seed=2, init="k-means||", n_init=3)
    assert (scalable.fit.init, scalable.fit.seeding, model.fit.seeding) == ("k-means||", "k-means||", "k-means++")


def stac_item_of(path: Path, when: datetime.datetime, name: str = "scene") -> pystac.Item:
    """A STAC item for a local 4-band GeoTIFF, with the projection and raster metadata odc-stac reads."""
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import RasterBand, RasterExtension

    with rasterio.open(path) as src:
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        epsg, shape, transform, nodata, count = src.crs.to_epsg(), [src.height, src.width], list(src.transform)[:6], src.nodata, src.count
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    item = pystac.Item(name, {"type": "Polygon", "coordinates": [ring]}, [west, south, east, north], when, {})
    asset = pystac.Asset(str(path), media_type=pystac.MediaType.GEOTIFF, roles=["data"])
    item.add_asset("image", asset)
    ProjectionExtension.add_to(item)
    projection = ProjectionExtension.ext(asset)
    projection.epsg, projection.shape, projection.transform = epsg, shape, transform
    RasterExtension.add_to(item)
    RasterExtension.ext(asset).bands = [RasterBand.create(nodata=nodata, data_type="uint8") for _ in range(count)]
    return item


def test_odc_stac_dataset_and_array_label_as_rioxarray_does(scene, cli_run, tmp_path):
    import odc.stac as odc_stac  # a test extra
    from odc.geo.geobox import GeoBox

    with rasterio.open(scene) as src:
        geobox = GeoBox((src.height, src.width), src.transform, src.crs)  # the file's own grid
    bands = [f"image.{b}" for b in range(1, 5)]
    dataset = odc_stac.load([stac_item_of(scene, datetime.datetime(2020, 6, 1))], bands=bands, geobox=geobox, chunks={"x": 512, "y": 512})
    assert dataset.sizes["time"] == 1
    model = pipeline.fit(dataset, k=K, sample_size=200_000, seed=3)  # nodata from the bands' attributes
    np.testing.assert_array_equal(model.centroids, Model.load(cli_run.with_name("labels.model.json")).centroids)
    as_array = dataset.to_array("band")  # (band, time, y, x): time is squeezed, band names kept
    labels = pipeline.classify(as_array, model, nodata=0)
    np.testing.assert_array_equal(labels.values, read_labels(cli_run))
    result = pipeline.write_cog(labels, tmp_path / "odc.tif", model=model)  # without the imagery: areas only
    np.testing.assert_array_equal(read_labels(result.output), read_labels(cli_run))
    assert all(c.mean is None for c in result.report.classes) and sum(c.pixels for c in result.report.classes) > 0
    assert model.band_names == tuple(bands)

    two_dates = odc_stac.load(
        [stac_item_of(scene, datetime.datetime(2020, 6, 1), "a"), stac_item_of(scene, datetime.datetime(2021, 6, 1), "b")],
        bands=bands, geobox=geobox, chunks={"x": 512, "y": 512}, groupby="time",
    )
    with pytest.raises(InputError, match=r"^data: time has 2 steps; .*isel\(time=0\)"):
        pipeline.fit(two_dates, k=K)


def test_arrays_the_stages_cannot_use_get_one_line(scene):
    data = open_scene(scene)
    model = pipeline.fit(data, k=K, sample_size=20_000, seed=0)
    cases = [
        (data.values, r"^data: expected an xarray.DataArray \(band, y, x\), got ndarray; open rasters with rioxarray"),
        (data.isel(band=0), r"^data: a 2-D array has no band dimension; add one with data.expand_dims\('band'\)"),
        (data > 3, r"^data: dtype bool is not a number type; convert it first"),
        (data.expand_dims(scene=[1, 2]), r"^data: dimension 'scene' \(2\) is not band, y or x; select one"),
        (data.rename(band="channel"), r"^data: dimensions .* have no band dimension .*; rename yours to 'band'"),
    ]
    for bad, message in cases:
        with pytest.raises(InputError, match=message):
            pipeline.classify(bad, model)
    with pytest.raises(InputError, match=r"^data: has 3 band\(s\) but the model was fitted on 4 .*; give the bands"):
        pipeline.classify(data.isel(band=[0, 1, 2]), model)
    with pytest.raises(pipeline.ConfigError, match=r"^fit: 'model.k': .* \(got 300\); use an integer from 2 to 254"):
        pipeline.fit(data, k=300)
    mixed = xr.Dataset({n: data.isel(band=b).drop_vars("band").assign_attrs(nodata=v) for n, b, v in (("a", 0, 0), ("b", 1, 255))})
    with pytest.raises(InputError, match=r"^data: the bands have different nodata values .*; pass nodata="):
        pipeline.fit(mixed, k=K)
    no_crs = pipeline.classify(data, model).drop_vars("spatial_ref")
    with pytest.raises(InputError, match=r"^labels: no CRS, .*rio.write_crs"):
        pipeline.write_cog(no_crs, Path("never-written.tif"), model=model)
    assert not Path("never-written.tif").exists()


NOTEBOOK = """
import logging, os, sys
import matplotlib
matplotlib.use("svg")
import rioxarray, yaml
from distributed import Client, LocalCluster, default_client, get_task_stream
import pipeline

scene, folder, threaded = sys.argv[1], sys.argv[2], sys.argv[3]
cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
client = Client(cluster)
# After the cluster: distributed sets the variables its workers start with.
environment, root_handlers = dict(os.environ), list(logging.getLogger().handlers)
doc = {"input": {"paths": [scene]}, "model": {"k": 5}, "sample": {"size": 200_000, "seed": 3},
       "output": {"path": folder + "/run/labels.tif"}, "dask": {"chunk": 512}}
with open(folder + "/run.yaml", "w") as f:
    yaml.safe_dump(doc, f)
with get_task_stream(client) as stream:
    result = pipeline.run(pipeline.load_config(folder + "/run.yaml"))
assert len(stream.data) > 0, "the run did not use the active client"
data = rioxarray.open_rasterio(scene, chunks={"band": -1, "y": 512, "x": 512}, lock=False)
model = pipeline.fit(data, k=5, sample_size=200_000, seed=3)
with get_task_stream(client) as stream:
    labels = pipeline.write_cog(pipeline.classify(data, model), folder + "/py/labels.tif", model=model, data=data)
assert len(stream.data) > 0, "write_cog did not use the active client"
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert "matplotlib.pyplot" not in sys.modules
assert default_client() is client and client.status == "running"
changed = sorted(k for k in set(os.environ) | set(environment) if os.environ.get(k) != environment.get(k))
assert not changed, changed
assert logging.getLogger().handlers == root_handlers
assert not logging.getLogger("pipeline").handlers and not logging.getLogger().filters
for path in (result.output, labels.output):
    assert open(path, "rb").read() == open(threaded, "rb").read(), path
client.close(); cluster.close()
print("ok")
"""


def test_a_notebook_session_keeps_its_backend_client_and_logging(scene, cli_run, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(NOTEBOOK), str(scene), str(tmp_path), str(cli_run)],
        capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
