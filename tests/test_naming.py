"""Suggested class names (``classes: {names: auto}``): each rule on a spectrum made to meet it,
repeated names numbered, bands that cannot be read refused, and on the real scenes the names and
their rules where a reader meets them (legend, STAC item, page, COG tags), given names winning."""

from __future__ import annotations

import html
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

import pipeline
from pipeline.algo.naming import RULES, suggest_names
from pipeline.errors import ConfigError

LANDCOVER = Path(sys.executable).with_name("landcover")
BANDS = ("red", "green", "blue", "nir")
# Uniform pixels: the 2nd and 98th percentiles of every band are about 5 and 250.
SAMPLE = np.random.default_rng(0).uniform(0, 255, size=(50_000, 4))
MEANS = {  # (red, green, blue, nir) of a class mean meeting each rule, in the rules' order
    "water": (60, 70, 80, 30),
    "shadow or dark surface": (15, 15, 15, 20),
    "trees": (40, 50, 40, 120),
    "dense vegetation": (90, 110, 80, 230),
    "sparse vegetation": (100, 100, 90, 150),
    "bright bare or built": (220, 215, 210, 230),
    "bare soil or built": (130, 120, 110, 140),
}


def test_each_rule_names_the_spectrum_it_describes():
    assert list(MEANS) == [name for name, _, _ in RULES]
    suggestions = suggest_names(np.array(list(MEANS.values()), float), SAMPLE, BANDS)
    assert [s.name for s in suggestions] == list(MEANS)
    for number, (s, (red, _, _, nir)) in enumerate(zip(suggestions, MEANS.values()), start=1):
        assert f"rule {number} of {len(RULES)}" in s.rule
        assert f"NDVI {(nir - red) / (nir + red):.2f}" in s.rule


def test_band_order_does_not_matter_and_names_that_repeat_are_numbered():
    spectra = np.array([MEANS["trees"], MEANS["water"], MEANS["trees"], [np.nan] * 4, MEANS["trees"]], float)
    order = [3, 1, 0, 2]  # the same bands stored nir, green, red, blue
    names = [s.name for s in suggest_names(spectra[:, order], SAMPLE[:, order], tuple(BANDS[i] for i in order))]
    assert names == ["trees", "water", "trees 2", "class 4", "trees 3"]


def test_a_bright_surface_with_nir_below_the_visible_bands_is_not_water():
    # A salt crust on the real 2016 scene: NDVI -0.12, NIR below red, green and blue, brightness 0.9.
    crust = suggest_names(np.array([[240, 236, 230, 190]], float), SAMPLE, BANDS)[0]
    assert crust.name == "bright bare or built", crust


def test_auto_names_need_bands_named_red_and_nir():
    data = xr.DataArray(np.random.default_rng(1).integers(1, 255, (3, 64, 64), dtype=np.uint8), dims=("band", "y", "x"))
    data = data.assign_coords(band=[1, 2, 3], y=np.arange(64.0), x=np.arange(64.0))
    with pytest.raises(ConfigError, match=r"classes.names: auto needs input bands named red and nir.*input.band_names"):
        pipeline.fit(data, k=3, classes="auto", sample_size=1000)


def landcover(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(LANDCOVER), *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def named_run(naip_scenes, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("named")
    config = folder / "run.yaml"
    config.write_text(json.dumps({
        "input": {"paths": [str(p) for p in naip_scenes], "band_names": list(BANDS)},
        "model": {"k": 7, "n_init": 3},
        "sample": {"size": 200_000},
        "classes": {"names": "auto"},
        "output": {"path": str(folder / "labels.tif")},
    }))
    proc = landcover("run", config, "--quiet")
    assert proc.returncode == 0, proc.stderr
    return folder / "labels.tif"


def test_suggested_names_reach_every_product(named_run):
    stem = named_run.with_suffix("")
    model = json.loads(stem.with_suffix(".model.json").read_text())
    names, rules = model["class_names"], model["class_name_rules"]
    assert len(names) == len(set(names)) == len(rules) == 7
    legend = json.loads(stem.with_suffix(".legend.json").read_text())["classes"]
    assert [(c["name"], c["suggested_by"]) for c in legend] == list(zip(names, rules))
    stac = json.loads(stem.with_suffix(".stac-item.json").read_text())
    titled = {c["title"]: c["description"] for c in stac["assets"]["labels"]["classification:classes"] if not c.get("nodata")}
    assert all("suggested by a spectral rule" in titled[n] and rules[i] in titled[n] for i, n in enumerate(names))
    page = stem.with_suffix(".report.html").read_text()
    assert page.count(">(suggested)<") == 7 and all(html.escape(rule) in page for rule in rules)
    with rasterio.open(named_run) as src:
        assert [src.tags()[f"CLASS_{i}_NAME"] for i in range(1, 8)] == names
    # The real scenes: farmland and woodland in Minnesota; the greenest class reads as vegetation.
    report = json.loads(stem.with_suffix(".report.json").read_text())["classes"]
    ndvi = [(c["mean"]["nir"] - c["mean"]["red"]) / (c["mean"]["nir"] + c["mean"]["red"]) for c in report]
    assert names[int(np.argmax(ndvi))].startswith(("trees", "dense vegetation"))


def test_given_names_win(naip_scenes, named_run):
    config = json.loads(named_run.with_name("run.yaml").read_text())
    given = [f"cover {i}" for i in range(1, 8)]
    config["classes"] = [{"name": n} for n in given]
    config["output"]["path"] = str(named_run.with_name("given.tif"))
    path = named_run.with_name("given.yaml")
    path.write_text(json.dumps(config))
    assert landcover("run", path, "--quiet").returncode == 0
    legend = json.loads(named_run.with_name("given.legend.json").read_text())["classes"]
    assert [c["name"] for c in legend] == given and not any("suggested_by" in c for c in legend)


def test_a_mapping_other_than_names_auto_is_one_line(tmp_path, naip_scenes):
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps({"input": {"paths": [str(naip_scenes[0])]}, "classes": {"names": "smart"}, "output": {"path": str(tmp_path / "l.tif")}}))
    proc = landcover("run", path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "'classes'" in proc.stderr and "names: auto" in proc.stderr and not (tmp_path / "l.tif").exists()
