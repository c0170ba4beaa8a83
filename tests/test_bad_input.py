"""The catalogue of user mistakes, each run through the real ``landcover run`` in a subprocess.

Every case must print exactly one line ``error: ...`` naming the file or YAML key, exit with code 2,
leave nothing at the output path (nor a hidden staging folder beside it, nor a folder it made) and leave every input
byte-for-byte unchanged. The subprocesses start in parallel (each spends ~3 s importing the stack).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine
from rasters import write_raster
from test_cli import LANDCOVER, scene

OUTPUT = Path("out") / "labels.tif"


def _doc(**sections) -> dict:
    doc = {"input": {"paths": ["scene.tif"]}, "model": {"k": 3, "n_init": 1}, "output": {"path": str(OUTPUT)}}
    for section, values in sections.items():
        doc.setdefault(section, {}).update(values)
    return doc


def _tiled_scene(folder: Path, name: str) -> Path:
    """The CLI tests' scene with 2 x 2 internal tiles, so that damage can sit in the middle of the file."""
    with rasterio.open(scene(folder)) as src:
        return write_raster(folder / name, src.read(), block=256)


def _truncated(folder: Path) -> dict:
    path = _tiled_scene(folder, "truncated.tif")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return _doc(input={"paths": ["truncated.tif"]})


def _corrupt_blocks(folder: Path) -> dict:
    path = _tiled_scene(folder, "corrupt.tif")
    with rasterio.open(path) as src:
        offset = int(src.get_tag_item("BLOCK_OFFSET_1_0", "TIFF", bidx=1))
    data = bytearray(path.read_bytes())
    # The start of a compressed block: GDAL does not check DEFLATE's checksum, so damage deep inside
    # a block can decode silently into other values; a damaged stream header always fails.
    data[offset : offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    return _doc(input={"paths": ["corrupt.tif"]})


def _two_tiles(folder: Path, second: np.ndarray) -> dict:
    image = np.full((4, 100, 100), 9, dtype=np.uint8)
    write_raster(folder / "a.tif", image)
    write_raster(folder / "b.tif", second, origin=(500_200.0, 5_200_000.0))
    return _doc(input={"paths": ["a.tif", "b.tif"]})


def _nan_overlaps(folder: Path) -> dict:
    """Two float tiles overlapping by 50 columns where one of them is NaN."""
    image = np.random.default_rng(0).uniform(0, 1, (4, 100, 100)).astype(np.float32)
    write_raster(folder / "a.tif", image)
    image[:, :, :50] = np.nan
    write_raster(folder / "b.tif", image, origin=(500_100.0, 5_200_000.0))
    return _doc(input={"paths": ["a.tif", "b.tif"]}, features={"balance": "overlaps"})


def _two_zones(folder: Path) -> dict:
    image = np.full((4, 100, 100), 9, dtype=np.uint8)
    write_raster(folder / "a.tif", image)
    write_raster(folder / "b.tif", image, crs="EPSG:32615")
    return _doc(input={"paths": ["a.tif", "b.tif"]})


def _rotated(folder: Path) -> dict:
    profile = {"driver": "GTiff", "height": 64, "width": 64, "count": 4, "dtype": "uint8", "crs": "EPSG:32614"}
    with rasterio.open(folder / "rotated.tif", "w", transform=Affine(2, 0.5, 500_000, 0.5, -2, 5_200_000), **profile) as dst:
        dst.write(np.full((4, 64, 64), 7, dtype=np.uint8))
    return _doc(input={"paths": ["rotated.tif"]})


def _no_crs(folder: Path) -> dict:
    write_raster(folder / "scene.tif", np.full((4, 64, 64), 7, dtype=np.uint8), crs=None)
    return _doc()


def _nodata(folder: Path, valid_pixels: int) -> dict:
    image = np.zeros((4, 300, 300), dtype=np.uint8)
    image[:, 0, :valid_pixels] = 50
    write_raster(folder / "empty.tif", image, nodata=0)
    return _doc(input={"paths": ["empty.tif"]})


def _existing_output(folder: Path) -> dict:
    scene(folder)
    (folder / "out").mkdir()
    (folder / OUTPUT).write_bytes(b"an earlier result")
    return _doc()


def _read_only_folder(folder: Path) -> dict:
    scene(folder)
    (folder / "out").mkdir()
    (folder / "out").chmod(0o555)
    return _doc()


def _with_scene(**sections) -> Callable[[Path], dict]:
    def setup(folder: Path) -> dict:
        scene(folder)
        return _doc(**sections)

    return setup


def _with_files(files: dict[str, str], **sections) -> Callable[[Path], dict]:
    def setup(folder: Path) -> dict:
        for name, text in files.items():
            (folder / name).write_text(text)
        return _doc(**sections)

    return setup


def _directory(folder: Path) -> dict:
    (folder / "tiles").mkdir()
    write_raster(folder / "tiles" / "a.tif", np.full((4, 64, 64), 7, dtype=np.uint8))
    return _doc(input={"paths": ["tiles"]})


@dataclass(frozen=True)
class Case:
    setup: Callable[[Path], dict]
    message: str
    """A fragment of the one-line message; it always names the file or the YAML key."""
    output_existed: bool = False


CASES = {
    "missing path": Case(_with_scene(input={"paths": ["nope.tif"]}), "nope.tif: file not found; check input.paths"),
    "glob matching nothing": Case(_with_scene(input={"paths": ["tiles/*.tif"]}), "input.paths: '{dir}/tiles/*.tif' matches no file"),
    "a directory": Case(_directory, "tiles: is a directory; give its files, e.g. '{dir}/tiles/*.tif'"),
    "not a raster": Case(_with_files({"notes.tif": "field notes, not pixels"}, input={"paths": ["notes.tif"]}), "notes.tif: not a readable raster"),
    "truncated GeoTIFF": Case(_truncated, "truncated.tif: cannot decode window"),
    "corrupt blocks": Case(_corrupt_blocks, "corrupt.tif: cannot decode window"),
    "different band counts": Case(lambda f: _two_tiles(f, np.full((3, 100, 100), 9, np.uint8)), "b.tif: band count 3 differs from {dir}/a.tif (4)"),
    "different dtypes": Case(lambda f: _two_tiles(f, np.full((4, 100, 100), 9, np.uint16)), "b.tif: dtype uint16 differs from {dir}/a.tif (uint8)"),
    "different CRSs": Case(_two_zones, "b.tif: CRS EPSG:32615 differs from {dir}/a.tif (EPSG:32614); set input.crs (e.g. EPSG:32614)"),
    "balance on a single tile": Case(_with_scene(features={"balance": "overlaps"}), "features.balance: overlaps needs two or more overlapping tiles, but {dir}/scene.tif is the only one"),
    "balance with NaN overlaps": Case(_nan_overlaps, "features.balance: no valid pixel where the tiles overlap (1 overlapping pair(s), e.g. {dir}/a.tif and {dir}/b.tif)"),
    "no CRS": Case(_no_crs, "scene.tif: has no CRS; assign one"),
    "rotated transform": Case(_rotated, "rotated.tif: has a rotated geotransform"),
    "band not in file": Case(_with_scene(input={"bands": [9]}), "input.bands: band 9 does not exist in {dir}/scene.tif"),
    "all nodata": Case(lambda f: _nodata(f, 0), "empty.tif: no valid pixel in the input"),
    "fewer valid pixels than k": Case(lambda f: _nodata(f, 2), "only 2 valid pixel(s) were found but model.k is 3"),
    "k above 254": Case(_with_scene(model={"k": 255}), "'model.k': Input should be less than or equal to 254 (got 255)"),
    "k below 2": Case(_with_scene(model={"k": 1}), "'model.k': Input should be greater than or equal to 2 (got 1)"),
    "unknown YAML key": Case(_with_scene(modell={"k": 3}), "unknown key 'modell'; valid keys at the top level are"),
    "wrong YAML type": Case(_with_scene(model={"k": "7"}), "'model.k': Input should be a valid integer (got '7')"),
    "unknown scheduler": Case(_with_scene(dask={"scheduler": "cluster"}), "'dask.scheduler': not a scheduler name or a tcp://host:port address (got 'cluster')"),
    "output folder not writable": Case(_read_only_folder, "output.path: folder {dir}/out is not writable"),
    "output folder is a file": Case(_with_scene(output={"path": "scene.tif/labels.tif"}), "output.path: cannot create folder {dir}/scene.tif"),
    "output exists": Case(_existing_output, "labels.tif: already exists; set output.overwrite: true", output_existed=True),
    "output is an input": Case(_with_scene(output={"path": "scene.tif"}), "output.path: {dir}/scene.tif is one of the inputs"),
    "glob over a URL": Case(
        _with_scene(input={"paths": ["https://example.com/naip/*.tif?sig=SECRET"]}),
        "input.paths: 'https://example.com/naip/*.tif' is a glob over a URL, which GDAL cannot list",
    ),
    "missing STAC catalog": Case(
        _with_scene(input={"paths": None, "stac": {"source": "catalog.json"}}), "input.stac.source: cannot read {dir}/catalog.json"
    ),
}


def _checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@dataclass(frozen=True)
class Outcome:
    folder: Path
    before: dict[str, str]
    done: subprocess.CompletedProcess
    out_existed: bool
    """Whether the output's folder was there before the run."""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, Outcome]:
    prepared = {}
    for name, case in CASES.items():
        folder = tmp_path_factory.mktemp(name.replace(" ", "_"))
        (folder / "run.yaml").write_text(yaml.safe_dump(case.setup(folder)))
        prepared[name] = (folder, _checksums(folder))

    def launch(name: str) -> Outcome:
        folder, before = prepared[name]
        out_existed = (folder / OUTPUT).parent.exists()
        done = subprocess.run([str(LANDCOVER), "run", "run.yaml"], capture_output=True, text=True, cwd=folder, timeout=300)
        return Outcome(folder, before, done, out_existed)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(prepared, pool.map(launch, prepared)))


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_line_exit_2_nothing_written_inputs_untouched(name, outcomes):
    if name == "output folder not writable" and os.geteuid() == 0:
        pytest.skip("running as root, which ignores folder permissions")
    case, outcome = CASES[name], outcomes[name]
    folder, done = outcome.folder, outcome.done
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    error_lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and done.stderr.endswith(error_lines[0] + "\n"), done.stderr
    assert case.message.format(dir=folder) in error_lines[0]
    output = folder / OUTPUT
    assert output.exists() == case.output_existed
    if not outcome.out_existed:  # not even an empty folder (e.g. when the fit refuses the data)
        assert not output.parent.exists(), list(output.parent.iterdir())
    if output.parent.is_dir():
        assert [p.name for p in output.parent.iterdir() if p.name.endswith(".partial")] == []
    assert _checksums(folder) == outcome.before  # inputs (and an existing output) unchanged


def test_ctrl_c_while_writing_leaves_nothing(tmp_path):
    rng = np.random.default_rng(0)
    image = (np.repeat(rng.integers(20, 230, (4, 24, 24)), 128, axis=1).repeat(128, axis=2) + rng.integers(0, 9, (4, 3072, 3072)))
    source = write_raster(tmp_path / "big.tif", image.astype(np.uint8))
    doc = _doc(input={"paths": [str(source)]}, model={"k": 8}, sample={"size": 20_000}, dask={"chunk": 512})
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(doc))
    before = _checksums(tmp_path)
    # A new session, so the signal goes to the whole process group as a terminal's Ctrl-C does.
    process = subprocess.Popen(
        [str(LANDCOVER), "run", "run.yaml", "--quiet"], cwd=tmp_path, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("out/.labels.tif.parts/chunk-*.npz")):
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before writing started"
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGINT)
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 130, stderr
    # The last line (libraries may warn earlier).
    message = "interrupted: nothing was written at the output path; run again with --resume to reuse the finished parts\n"
    assert stderr.endswith("\n" + message) or stderr == message
    assert "Traceback" not in stderr
    # No output, no sidecar: only the finished parts, for --resume (tests/test_resume.py).
    assert [p.name for p in (tmp_path / "out").iterdir()] == [".labels.tif.parts"]
    assert {name: sha for name, sha in _checksums(tmp_path).items() if not name.startswith("out/")} == before
