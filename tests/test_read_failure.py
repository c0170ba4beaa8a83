"""A read that fails half-way through the write (a corrupt block here; an expired signature or a
timeout on a remote run) keeps the finished chunks, and the error line says where and what next."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from rasters import class_centres, planted_classes, planted_image, write_raster

from pipeline import ReadError, load_config, predict, run
from pipeline.config import DaskConfig

LANDCOVER = Path(sys.executable).with_name("landcover")
SHAPE = (1536, 2048)  # 3 x 4 chunks of 512


def _corrupt_last_block(path: Path) -> None:
    """Garbage over the compressed bytes of the file's last (bottom-right) 512-pixel block."""
    with rasterio.open(path) as src:
        rows, cols = -(-src.height // 512), -(-src.width // 512)
        offset = int(src.get_tag_item(f"BLOCK_OFFSET_{cols - 1}_{rows - 1}", "TIFF", bidx=1))
        size = int(src.get_tag_item(f"BLOCK_SIZE_{cols - 1}_{rows - 1}", "TIFF", bidx=1))
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("readfail")
    truth = planted_classes(*SHAPE, 3, seed=2)
    write_raster(folder / "good.tif", planted_image(truth, class_centres(3, 4, low=20, high=230, seed=2), noise=3, dtype="uint8", seed=2))
    config = folder / "run.yaml"
    config.write_text(yaml.safe_dump({
        "input": {"paths": ["good.tif"]}, "model": {"k": 3, "n_init": 1}, "sample": {"size": 20_000},
        "output": {"path": "out/labels.tif"}, "dask": {"chunk": 512},
    }))
    bad = shutil.copy(folder / "good.tif", folder / "bad.tif")
    _corrupt_last_block(Path(bad))
    return folder, run(load_config(config)), Path(bad)


def test_a_failed_read_keeps_the_finished_chunks_and_says_so(fitted, tmp_path):
    _, result, bad = fitted
    out = tmp_path / "labels.tif"
    with pytest.raises(ReadError) as caught:
        predict(result.model_path, [str(bad)], out=out, dask=DaskConfig(chunk=512))
    message = str(caught.value)
    assert message.startswith(f"{bad}: cannot decode window (1536, 1024, 512, 512)")
    parts = tmp_path / ".labels.tif.parts"
    finished = sorted(parts.glob("chunk-*.npz"))
    assert f"; {len(finished)} finished chunk(s) are kept in {parts}: delete the folder to start again" in message
    assert len(finished) < 12 and (parts / "fingerprint.json").exists()  # kept, whatever the tasks finished first
    assert not out.exists()


def test_the_cli_prints_one_line_exits_2_and_keeps_the_parts(fitted, tmp_path):
    folder, result, bad = fitted
    done = subprocess.run(
        [str(LANDCOVER), "predict", str(result.model_path), str(bad), "--out", str(tmp_path / "labels.tif"), "--set", "dask.chunk=512", "-q"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "finished chunk(s) are kept in" in lines[0] and (tmp_path / ".labels.tif.parts").is_dir()
    assert not (tmp_path / "labels.tif").exists()
