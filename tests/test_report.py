"""Class names and palette in the COG, the legend and STAC sidecars, and the HTML report."""

import json
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from pystac.extensions.classification import ClassificationExtension
from pystac.extensions.projection import ProjectionExtension
from rasters import class_centres, planted_classes, planted_image, write_raster

from pipeline import ConfigError, InputError, load_config, run
from pipeline.products.html import (
    closest_pairs,
    ndvi_of_means,
    red_nir,
    report_for,
    report_paths,
)
from pipeline.products.legend import legend, machine_name, stac_item
from pipeline.products.report import ClassSummary, Report, class_report

LANDCOVER = Path(sys.executable).with_name("landcover")
CLASSES = [
    {"name": "water", "color": "#1F4E9C"},
    {"name": "forest <dense> & wet"},  # text that must be escaped in the page
    {"name": "fields", "color": "#e0c060"},
]


def landcover(*args):
    return subprocess.run([str(LANDCOVER), *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def named_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("named")
    truth = planted_classes(700, 600, 3, seed=2)
    image = planted_image(truth, class_centres(3, 4, low=10, high=250, seed=2), noise=3.0, dtype="uint8", seed=2)
    image[:, :30] = 0  # a nodata collar
    path = write_raster(tmp_path / "scene.tif", image, nodata=0)
    config = tmp_path / "run.yaml"
    config.write_text(
        json.dumps(
            {
                "input": {"paths": [str(path)]},
                "model": {"k": 3, "n_init": 1},
                "output": {"path": str(tmp_path / "out" / "labels.tif")},
                "dask": {"chunk": 512},
                "classes": CLASSES,
            }
        )
    )
    return run(load_config(config))


def test_names_and_palette_are_in_the_cog(named_run):
    with rasterio.open(named_run.output) as src:
        tags, colormap = src.tags(), src.colormap(1)
    assert [tags[f"CLASS_{i}_NAME"] for i in (1, 2, 3)] == [c["name"] for c in CLASSES]
    assert tags["CLASS_1"].startswith("water: band1=") and tags["CLASS_0"] == "nodata"
    assert colormap[1] == (0x1F, 0x4E, 0x9C, 255) and colormap[3] == (0xE0, 0xC0, 0x60, 255)
    assert colormap[2][:3] == named_run.model.palette[2] != colormap[1][:3]  # no colour given: computed
    assert named_run.report.classes[0].colour == "#1f4e9c"


def test_legend_and_stac_item_agree_with_the_report(named_run):
    folder = named_run.output.parent
    legend = json.loads((folder / "labels.legend.json").read_text())
    classes = named_run.report.classes
    assert legend["nodata"] == 0
    assert legend["classes"] == [
        {"value": c.value, "name": c.name, "color": c.colour, "pixels": c.pixels, "percent": c.percent} for c in classes
    ]
    assert sum(c["pixels"] for c in legend["classes"]) == 670 * 600  # the 30-row collar is nodata
    item = pystac.Item.from_dict(json.loads((folder / "labels.stac-item.json").read_text()))
    assert ClassificationExtension.has_extension(item) and ProjectionExtension.has_extension(item)
    projection = ProjectionExtension.ext(item)
    assert (projection.code, projection.shape) == ("EPSG:32614", [700, 600])
    assert projection.transform == list(rasterio.open(named_run.output).transform)[:6]
    asset = item.assets["labels"]
    assert (folder / asset.href).resolve() == named_run.output.resolve() and asset.roles == ["data"]
    stac_classes = ClassificationExtension.ext(asset).classes
    assert stac_classes[0].to_dict() == {"value": 0, "name": "nodata", "title": "nodata", "description": "no data", "nodata": True}
    assert [(c.value, c.title, c.color_hint) for c in stac_classes[1:]] == [(c.value, c.name, c.colour[1:].upper()) for c in classes]
    # The extension's names are machine names (letters, digits, - and _): the title keeps the configured one.
    assert [c.name for c in stac_classes[1:]] == ["water", "forest-dense-wet", "fields"]
    assert stac_classes[1].description == f"k-means class 1 of 3: {classes[0].percent:.2f} % of the valid area"
    assert all(re.fullmatch(r"[0-9A-F]{6}", c.color_hint) for c in stac_classes[1:])
    west, south, east, north = item.bbox
    assert -100 < west < east < -90 and 40 < south < north < 50  # EPSG:32614 near 500 km E, 5200 km N
    assert item.geometry["coordinates"][0][2] == [east, north]
    for key in ("model", "report", "legend"):
        assert (folder / item.assets[key].href).exists() and item.assets[key].roles == ["metadata"]


def test_html_report_is_static_escaped_and_its_images_exist(named_run):
    page = named_run.html_path.read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 2
    for source in sources:
        image = named_run.html_path.parent / source
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", source
    assert "forest &lt;dense&gt; &amp; wet" in page and "<dense>" not in page
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")
    for c in named_run.report.classes:
        assert f"{c.percent:.2f}" in page and f"{c.area_m2 / 1e4:,.1f}" in page
    assert "True colour (band1, band2, band3)" in page and "unavailable" not in page
    assert "NDVI of class mean" in page and "model:" in page and "label_write" in page


def test_report_command_rewrites_the_page(named_run):
    html = named_run.html_path
    before = html.read_text()
    html.unlink()
    done = landcover("report", named_run.output)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(html)
    assert html.read_text().split("Written ")[0] == before.split("Written ")[0]
    assert [p.name for p in html.parent.iterdir() if "partial" in p.name] == []


def test_report_of_a_missing_or_bare_file_is_a_one_line_error(tmp_path):
    with pytest.raises(InputError, match=r"nope.tif: no such file; give the COG written by 'landcover run'"):
        report_for(tmp_path / "nope.tif")
    bare = write_raster(tmp_path / "bare.tif", np.ones((1, 10, 10), dtype=np.uint8))
    done = landcover("report", bare)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "bare.model.json: cannot read the model JSON" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare.tif"]


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ([{"name": "water"}, {"name": "forest"}], r"classes: 2 entries but model.k is 3; give one \{name, color\} entry per class"),
        ([{"name": "a"}, {"name": "b"}, {"name": "c", "color": "blue"}], r"'classes\[2\].color': colours are written '#rrggbb'"),
        ([{"name": "a"}, {"name": "b"}, {"name": "c", "colour": "#000000"}], r"unknown key 'classes\[2\].colour'; valid keys under 'classes\[2\]' are: name, color"),
        ([{"name": "a"}, {"name": "a"}, {"name": "c"}], r"classes: the name 'a' is given twice"),
        ([{"name": "a"}, {"color": "#000000"}, {"name": "c"}], r"'classes\[1\].name' is required"),
    ],
)
def test_bad_classes_are_one_line_errors(tmp_path, classes, message):
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps({"input": {"paths": ["a.tif"]}, "model": {"k": 3}, "classes": classes}))
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert "\n" not in str(info.value)


def test_bad_classes_through_the_cli_write_nothing(tmp_path):
    path = tmp_path / "run.yaml"
    out = tmp_path / "out" / "labels.tif"
    path.write_text(json.dumps({"input": {"paths": ["a.tif"]}, "model": {"k": 3}, "output": {"path": str(out)}, "classes": [{"name": "x"}]}))
    done = landcover("run", path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "classes: 1 entries but model.k is 3" in done.stderr
    assert not out.parent.exists()


def test_red_nir_ndvi_and_closest_pairs():
    assert red_nir(["Red", "Green", "Blue", "NIR"])[:2] == ("Red", "NIR")
    assert red_nir(["band1", "band2", "band3", "band4"])[:2] == ("band1", "band4")
    assert red_nir(["band1", "band2", "band3"]) is None
    means = [{"red": 20.0, "nir": 60.0}, {"red": 50.0, "nir": 10.0}, {"red": None, "nir": None}, None]
    classes = tuple(ClassSummary(i, f"c{i}", None, 1, None, 25.0, m, m, "#000000") for i, m in enumerate(means, start=1))
    assert ndvi_of_means(classes, "red", "nir") == [pytest.approx(0.5), pytest.approx(-40 / 60), None, None]
    centroids = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 3.0], [50.0, 50.0]])
    distances = np.sqrt(((centroids[:, None] - centroids[None]) ** 2).sum(axis=2))
    assert closest_pairs(distances, 2) == [(1, 3, 3.0), (1, 2, 10.0)]


def test_the_report_json_reads_back_as_the_runs_report(named_run):
    saved = json.loads(named_run.report_path.read_text())
    assert Report.load(named_run.report_path) == named_run.report
    assert saved["fit"] == asdict(named_run.model.fit) and saved["config"]["model"]["k"] == 3


def _copy_run(run_result, folder: Path) -> Path:
    """The COG and its model beside it in ``folder``; the report JSON is the caller's."""
    folder.mkdir()
    cog = Path(shutil.copy(run_result.output, folder / "labels.tif"))
    shutil.copy(run_result.model_path, folder / "labels.model.json")
    return cog


def test_labels_without_their_imagery_get_a_legend_an_item_and_a_page(named_run, tmp_path):
    # A library user writing the labels without the imagery has only the counts of each class.
    full = named_run.report
    counts = np.array([[full.totals.nodata_pixels]] + [[c.pixels] for c in full.classes], dtype=np.float64)
    report = class_report(counts, named_run.model, pixel_area=full.totals.pixel_area_m2, crs=full.crs, timings={}, config=full.config)
    assert all(c.mean is None and c.feature_mean is None for c in report.classes)
    assert legend(report) == legend(full)
    item = stac_item(named_run.output, report, href="labels.tif", item_id="labels", sidecars={})
    assert item["assets"]["labels"]["classification:classes"][1]["title"] == "water"

    cog = _copy_run(named_run, tmp_path / "counted")
    (tmp_path / "counted" / "labels.report.json").write_text(json.dumps(report.to_json()))
    page = report_for(cog).read_text()
    assert "Centroid of each class" in page and "Mean spectrum" not in page and "no class means" in page
    # Every mean and NDVI cell is a dash: 3 classes x (4 bands + NDVI).
    assert page.count('<td class="num">\N{EM DASH}</td>') == 3 * 5 and "True colour (band1, band2, band3)" in page
    spectra = report_paths(cog)["spectra"].read_bytes()
    assert spectra[:8] == b"\x89PNG\r\n\x1a\n" and spectra != report_paths(named_run.output)["spectra"].read_bytes()


def test_stac_names_are_machine_names_and_unique(named_run):
    assert machine_name("forest <dense> & wet") == "forest-dense-wet" and machine_name("<>") == "class"
    first, second, third = named_run.report.classes
    report = replace(named_run.report, classes=(replace(first, name="a b"), replace(second, name="a-b"), third))
    item = stac_item(named_run.output, report, href="labels.tif", item_id="labels", sidecars={})
    classes = item["assets"]["labels"]["classification:classes"]
    assert [(c["name"], c["title"]) for c in classes[1:]] == [("a-b", "a b"), ("a-b_2", "a-b"), ("fields", "fields")]


BACKEND_CHECK = """
import sys
import matplotlib
matplotlib.use("svg")
from pipeline import load_config
from pipeline.products.html import report_for
from pipeline.stages.sweep import sweep
report_for(sys.argv[1])
sweep(load_config(sys.argv[2]), (2, 3), out_dir=sys.argv[3])
assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
assert matplotlib.rcParams["backend"] == "svg", matplotlib.rcParams["backend"]
"""


def test_the_page_and_the_sweep_plot_leave_the_backend_alone(named_run, tmp_path):
    cog = _copy_run(named_run, tmp_path / "copy")
    shutil.copy(named_run.report_path, tmp_path / "copy" / "labels.report.json")
    config = tmp_path / "sweep.yaml"
    config.write_text(json.dumps({
        "input": {"paths": named_run.report.config["input"]["paths"]}, "model": {"n_init": 1}, "sample": {"size": 20_000},
        "output": {"path": str(tmp_path / "unused.tif")},
    }))
    done = subprocess.run([sys.executable, "-c", BACKEND_CHECK, cog, config, tmp_path / "sweep"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert report_paths(cog)["html"].exists() and (tmp_path / "sweep" / "sweep.png").read_bytes()[:4] == b"\x89PNG"
