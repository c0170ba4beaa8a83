"""The typed class report: its JSON (as the report JSON has always been, plus the fit), read back."""

import json

import numpy as np
import pytest

from pipeline import InputError, Model
from pipeline.algo.balance import BalanceRecord, TileCorrection
from pipeline.algo.features import Features
from pipeline.algo.model import FitRecord
from pipeline.products.report import Report, class_report

FIT = FitRecord(init="k-means++", n_init=2, max_iter=50, n_iter=4, tol=1e-4, tol_absolute=0.5, order_by="brightness",
                seeding="k-means++", unstable=False, restarts={"count": 2, "reached_best": 2})
# Counts (nodata first), then per-class sums of the band "a" and of the feature "a".
STATS = np.array([[5, 0, 0], [3, 30, 3.0], [0, 0, 0]])
# What class_report returned for STATS before it was typed, dumped from the dict it built.
BEFORE_TYPED = {
    "classes": [
        {"class": 1, "name": "class 1", "pixels": 3, "area_m2": 12.0, "percent": 100.0, "mean": {"a": 10.0}, "feature_mean": {"a": 1.0}, "colour": "#010203"},
        {"class": 2, "name": "class 2", "pixels": 0, "area_m2": 0.0, "percent": 0.0, "mean": {"a": None}, "feature_mean": {"a": None}, "colour": "#040506"},
    ],
    "totals": {"valid_pixels": 3, "nodata_pixels": 5, "area_m2": 12.0, "pixel_area_m2": 4.0},
    "crs": "EPSG:32614",
    "timings_s": {"x": 1.235},
}


def tiny_model(**fields) -> Model:
    return Model(
        centroids=np.array([[10.0], [20.0]]), bands=(1,), band_names=("a",), features=Features(("a",), ("a",)),
        palette={0: (0, 0, 0), 1: (1, 2, 3), 2: (4, 5, 6)}, sample_size=10, seed=0, inertia=1.0, **fields,
    )


def report_of(stats: np.ndarray, model: Model, **extra) -> Report:
    return class_report(stats, model, pixel_area=4.0, crs="EPSG:32614", timings={"x": 1.23456}, **extra)


def test_the_json_is_the_report_json_as_before():
    report = report_of(STATS, tiny_model())
    assert report.to_json() == BEFORE_TYPED
    assert report.classes[0].mean == {"a": 10.0} and report.totals.valid_pixels == 3 and report.has_means


def test_balance_fit_and_config_are_added_in_order_and_read_back():
    balance = BalanceRecord(
        method="overlaps", estimator="quantiles", pairs=1, isolated_tiles=0, seam_rms_before=(2.0,), seam_rms_after=(0.5,),
        tiles=(TileCorrection("a.tif", "a.tif", (0, 0, 4, 4), (1.5,), (0.5,)), TileCorrection("b.tif", "b.tif", (0, 2, 4, 4), (0.5,), (-1.0,))),
    )
    report = report_of(STATS, tiny_model(fit=FIT, balance=balance), config={"model": {"k": 2}})
    doc = report.to_json()
    assert list(doc) == ["classes", "totals", "crs", "timings_s", "balance", "fit", "config"]
    assert doc["balance"] == {
        "method": "overlaps", "estimator": "quantiles", "pairs": 1, "isolated_tiles": 0, "seam_rms_before": [2.0],
        "seam_rms_after": [0.5], "gain_range": [0.5, 1.5], "offset_range": [-1.0, 0.5],
    }
    assert doc["fit"]["restarts"] == {"count": 2, "reached_best": 2} and doc["fit"]["n_iter"] == 4
    assert Report.from_json(json.loads(json.dumps(doc))) == report


def test_counts_only_give_no_means_and_read_back():
    report = report_of(STATS[:, :1], tiny_model())
    assert [(c.pixels, c.mean, c.feature_mean) for c in report.classes] == [(3, None, None), (0, None, None)]
    assert not report.has_means
    doc = json.loads(json.dumps(report.to_json()))
    assert doc["classes"][0]["mean"] is None and doc["totals"] == BEFORE_TYPED["totals"]
    assert Report.from_json(doc) == report


def test_stats_of_another_shape_are_refused():
    with pytest.raises(ValueError, match=r"stats of shape \(3, 2\): expected \(k \+ 1, 1\) counts"):
        report_of(STATS[:, :2], tiny_model())


def test_a_damaged_report_json_is_a_one_line_error(tmp_path):
    path = tmp_path / "labels.report.json"
    path.write_text('{"classes": []}')
    with pytest.raises(InputError, match=r"labels.report.json: the report JSON is incomplete or damaged \(KeyError"):
        Report.load(path)
    path.write_text("{")
    with pytest.raises(InputError, match=r"labels.report.json: cannot read the report JSON \(JSONDecodeError\)"):
        Report.load(path)
