"""features.balance: overlaps: corrections solved from where tiles overlap (pipeline/balance.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from affine import Affine
from rasterio.windows import Window
from rasters import (
    ORIGIN,
    RESOLUTION,
    class_centres,
    planted_classes,
    planted_image,
    read_labels,
    write_raster,
)

from pipeline import load_config, run
from pipeline.algo.balance import (
    acquisition_groups,
    balance,
    overlapping_pairs,
    pair_relation,
    pair_statistics,
    pair_windows,
    seam_pairs,
    solve_corrections,
)
from pipeline.config import InputConfig
from pipeline.io.mosaic import Mosaic, Tile, WindowRead, open_mosaic, read, read_window
from pipeline.io.remote import Href
from pipeline.stages.edge import input_spec
from pipeline.stages.predict import predict
from pipeline.stages.sweep import sweep

# --- pure maths ----------------------------------------------------------------------------------


def _relation(x: np.ndarray, y: np.ndarray):
    return pair_relation(*pair_statistics(x, y))


def test_a_known_gain_and_offset_are_recovered_exactly():
    rng = np.random.default_rng(0)
    x = rng.uniform(10, 200, (5000, 3))
    gain, offset = np.array([0.82, 1.0, 1.12]), np.array([-8.0, 3.0, 12.0])
    alpha, cx, cy = _relation(x, x * gain + offset)
    np.testing.assert_allclose(alpha, gain, rtol=1e-12)
    gains, offsets = solve_corrections(np.array([0]), np.array([1]), alpha[None], cx[None], cy[None], 2)
    # Tile 1 reads gain * v + offset where tile 0 reads v: corrected, both give the same value.
    np.testing.assert_allclose(gains[0] / gains[1], gain, rtol=1e-6)
    np.testing.assert_allclose(gains[0] * x + offsets[0], gains[1] * (x * gain + offset) + offsets[1], atol=1e-4)
    # Anchored: the two (equal-area) tiles' mean log-gain and mean offset stay 0.
    np.testing.assert_allclose(np.log(gains).sum(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(offsets.sum(axis=0), 0, atol=1e-4)


def test_identical_overlaps_give_exactly_the_identity_and_isolated_tiles_keep_it():
    x = np.random.default_rng(1).uniform(0, 255, (2000, 4))
    alpha, cx, cy = _relation(x, x)
    # Tile 2 overlaps nothing.
    gains, offsets = solve_corrections(np.array([0]), np.array([1]), alpha[None], cx[None], cy[None], 3)
    assert (gains == 1).all() and (offsets == 0).all()


def test_a_chain_of_tiles_is_solved_jointly():
    # Tiles 0-1-2-3 in a row, tile k reading v * g_k + o_k; pairs only between neighbours.
    rng = np.random.default_rng(2)
    truth_gain, truth_offset = np.array([1.0, 0.9, 1.1, 0.8]), np.array([0.0, 5.0, -4.0, 10.0])
    rows = []
    for k in range(3):
        v = rng.uniform(20, 220, (3000, 1))
        rows.append(_relation(v * truth_gain[k] + truth_offset[k], v * truth_gain[k + 1] + truth_offset[k + 1]))
    alpha, cx, cy = (np.stack(r) for r in zip(*rows))
    areas = np.array([1.0, 1.0, 1.0, 2.0])
    gains, offsets = solve_corrections(np.arange(3), np.arange(1, 4), alpha, cx, cy, 4, areas=areas)
    v = np.linspace(0, 255, 11)
    corrected = [gains[k, 0] * (v * truth_gain[k] + truth_offset[k]) + offsets[k, 0] for k in range(4)]
    for c in corrected[1:]:
        np.testing.assert_allclose(c, corrected[0], atol=1e-3)
    np.testing.assert_allclose((areas * np.log(gains[:, 0])).sum(), 0, atol=1e-5)  # area-weighted anchor


def test_tiles_of_one_naip_date_share_a_group():
    names = ["s3://naip/m_4709963_se_14_1_20090818.tif?sig=x", "m_4709964_sw_14_1_20090818.tif", "m_4709965_nw_14_1_20120731.tif", "left.tif"]
    assert acquisition_groups(names) == ("20090818", "20090818", "20120731", "left.tif")


# --- on files ------------------------------------------------------------------------------------

SHAPE = (384, 640)  # the scene the tiles are cut from
CUT = (0, 384), (256, 640)  # columns of the left and right tiles: 128 columns (20 %) shared


def _scene(seed: int = 3) -> np.ndarray:
    truth = planted_classes(*SHAPE, 5, seed=seed)
    return planted_image(truth, class_centres(5, 4, low=30, high=200, seed=seed), noise=5.0, dtype="float64", seed=seed)


def _write_pair(folder: Path, left: np.ndarray, right: np.ndarray, dtype: str = "uint8") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    cast = (lambda a: np.clip(np.rint(a), 1, 255).astype(dtype)) if dtype == "uint8" else (lambda a: a.astype(dtype))
    return [
        write_raster(folder / "left.tif", cast(left)),
        write_raster(folder / "right.tif", cast(right), origin=(ORIGIN[0] + CUT[1][0] * RESOLUTION, ORIGIN[1])),
    ]


def _cut(scene: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return scene[:, :, slice(*CUT[0])], scene[:, :, slice(*CUT[1])]


def _balanced(paths: list[Path]):
    mosaic = open_mosaic(input_spec(InputConfig(paths=tuple(map(str, paths)))), chunk=512)
    return balance(mosaic, method="overlaps", seed=0)


def test_a_reflown_tile_is_corrected_to_its_neighbour(tmp_path):
    left, right = _cut(_scene())
    gain, offset = np.array([0.85, 0.95, 1.1, 0.9]), np.array([8.0, -5.0, 2.0, 10.0])
    paths = _write_pair(tmp_path, left, right * gain[:, None, None] + offset[:, None, None])
    mosaic, record = _balanced(paths)
    assert overlapping_pairs(mosaic) == [(0, 1, Window(256, 0, 128, 384))]
    np.testing.assert_allclose(record.gains[0] / record.gains[1], gain, rtol=5e-3)  # quantiles of uint8-rounded values
    # Where the tiles overlap, each tile read alone now gives the other's values (up to rounding).
    overlap = Window(256, 0, 128, 384)
    seen = [read(WindowRead(overlap, (t,), mosaic.bands)) for t in mosaic.tiles]
    assert np.abs(seen[0] - seen[1]).mean() < 0.5
    assert record.seam_after[0] < 0.1 * record.seam_before[0]


def test_tiles_of_different_content_and_one_radiometry_keep_the_identity(tmp_path):
    # Different class mixes on each side (per-tile standardisation would shift them), the same ground in the overlap.
    scene = _scene()
    scene[:, :, :200] = scene[:, :, :200] * 0.5 + 10
    paths = _write_pair(tmp_path, *_cut(scene))
    mosaic, record = _balanced(paths)
    assert (record.gains == 1).all() and (record.offsets == 0).all()
    assert record.seam_before == record.seam_after == (0.0, 0.0, 0.0, 0.0)
    before = read_window(open_mosaic(input_spec(InputConfig(paths=tuple(map(str, paths)))), chunk=512), Window(0, 0, 640, 384))
    np.testing.assert_array_equal(read_window(mosaic, Window(0, 0, 640, 384)), before)


def _config(folder: Path, paths: list[Path], **dask) -> Path:
    doc = {
        "input": {"paths": [str(p) for p in paths]},
        "features": {"balance": "overlaps"},
        "model": {"k": 5, "n_init": 1},
        "sample": {"size": 50_000},
        "output": {"path": str(folder / "labels.tif")},
        "dask": {"chunk": 512, **dask},
    }
    path = folder / "run.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def reflown(tmp_path_factory) -> list[Path]:
    left, right = _cut(_scene(4))
    return _write_pair(tmp_path_factory.mktemp("reflown"), left, right * 0.88 + 9)


@pytest.fixture(scope="module")
def threaded(reflown, tmp_path_factory):
    return run(load_config(_config(tmp_path_factory.mktemp("threaded"), reflown)))


def test_the_corrections_are_recorded_in_the_model_report_and_page(threaded, reflown):
    model = json.loads(threaded.model_path.read_text())
    tiles = model["balance"]["tiles"]
    assert [t["path"] for t in tiles] == [str(p) for p in reflown]
    assert tiles[0]["gains"][0] / tiles[1]["gains"][0] == pytest.approx(0.88, rel=3e-3)
    assert threaded.report.balance["pairs"] == 1 and "tiles" not in threaded.report.balance
    assert "balance" in threaded.report.timings
    page = threaded.html_path.read_text()
    assert "Tile balance" in page and "data:image/png;base64," in page


def test_labels_are_the_same_on_every_scheduler_and_chunking(threaded, reflown, tmp_path):
    # One run changes both (a cluster costs ~15 s to start here): processes and 1024-pixel chunks
    # against threads and 512.
    folder = tmp_path / "cluster"
    cluster = run(load_config(_config(folder, reflown, chunk=1024, scheduler="local-cluster", workers=2, threads_per_worker=1)))
    np.testing.assert_array_equal(read_labels(cluster.output), read_labels(threaded.output))
    assert cluster.model_path.read_bytes() == threaded.model_path.read_bytes()


def test_predict_applies_the_models_corrections_and_balances_new_tiles(threaded, reflown, tmp_path):
    again = predict(threaded.model_path, [str(p) for p in reflown], out=tmp_path / "again.tif")
    np.testing.assert_array_equal(read_labels(again.output), read_labels(threaded.output))
    # The same imagery under new names: unknown to the model, balanced among themselves.
    copies = []
    for p in reflown:
        copies.append(tmp_path / f"new_{p.name}")
        copies[-1].write_bytes(p.read_bytes())
    new = predict(threaded.model_path, [str(p) for p in copies], out=tmp_path / "new.tif")
    record = json.loads(new.model_path.read_text())["balance"]
    assert record["known_tiles"] == 0 and record["pairs"] == 1
    assert (read_labels(new.output) == read_labels(threaded.output)).mean() > 0.995


def test_pair_windows_lie_in_the_overlap_on_one_block_of_the_first_tile():
    overlap = Window(300, 1000, 600, 900)
    windows = pair_windows(overlap, seed=0, i=3, j=4, origin=(100, 44))
    assert len(windows) == 4 and windows == pair_windows(overlap, seed=0, i=3, j=4, origin=(100, 44))
    for w in windows:
        assert overlap.col_off <= w.col_off and w.col_off + w.width <= overlap.col_off + overlap.width
        assert overlap.row_off <= w.row_off and w.row_off + w.height <= overlap.row_off + overlap.height
        assert (w.row_off - 100) % 256 == 0 and (w.col_off - 44) % 256 == 0  # inside one 512 block of tile i
    narrow = pair_windows(Window(0, 0, 100, 50), seed=0, i=0, j=1)
    assert narrow == [Window(0, 0, 100, 50)]


def _grid(offsets: list[tuple[int, int]], size: int = 100) -> Mosaic:
    tiles = tuple(Tile(Href(f"t{n}.tif"), r, c, size, size, "none", None, (None,)) for n, (r, c) in enumerate(offsets))
    height = max(r for r, _ in offsets) + size
    width = max(c for _, c in offsets) + size
    return Mosaic(tiles, "EPSG:32614", Affine(1, 0, 0, 0, -1, 0), height, width, (1,), ("band1",), "uint8", 512, 1)


def test_corner_overlaps_are_not_read_unless_a_tile_has_nothing_else():
    # A 3 x 3 grid with 20 % overlaps: 12 edge pairs and 8 corner pairs.
    grid = _grid([(80 * r, 80 * c) for r in range(3) for c in range(3)])
    pairs = overlapping_pairs(grid)
    assert len(pairs) == 20
    kept = seam_pairs(grid, pairs)
    assert len(kept) == 12 and all(max(w.width, w.height) == 100 for _, _, w in kept)
    # A tenth tile touching the grid only by a corner keeps its largest overlap.
    lone = _grid([(80 * r, 80 * c) for r in range(3) for c in range(3)] + [(250, 250)])
    assert [(i, j) for i, j, _ in seam_pairs(lone, overlapping_pairs(lone)) if j == 9] == [(8, 9)]


def test_sweep_fits_the_balanced_tiles_as_run_does(threaded, reflown, tmp_path):
    config = load_config(_config(tmp_path, reflown))
    swept, _, _ = sweep(config, (4, 5), out_dir=tmp_path / "sweep")
    assert {s.k: s.inertia for s in swept.scores}[5] == threaded.model.inertia
    unbalanced = load_config(_config(tmp_path / "plain", reflown), ["features.balance=none"])
    plain, _, _ = sweep(unbalanced, (5,), out_dir=tmp_path / "plain")
    assert plain.scores[0].inertia != threaded.model.inertia  # the balance changes what is fitted
