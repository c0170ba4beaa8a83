"""Start-up: what a command imports before it does anything (the costs are measured in
scripts/benchmark.py, never timed here)."""

import subprocess
import sys

import numpy as np
from rasters import write_raster

HEAVY = ("dask", "xarray", "rasterio", "numba", "sklearn", "matplotlib", "pydantic", "distributed")


def imported_after(code: str) -> set[str]:
    """The HEAVY packages a fresh interpreter holds after running ``code``."""
    probe = f"{code}\nimport sys\nprint('loaded:', *(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=120)
    return set(done.stdout.splitlines()[-1].split()[1:])


def test_help_and_import_pipeline_load_no_heavy_library():
    assert imported_after("from pipeline.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass") == set()
    assert imported_after("import pipeline\nassert issubclass(pipeline.ConfigError, pipeline.LandcoverError)") == set()


def test_public_names_resolve_on_first_use():
    loaded = imported_after("import pipeline\nassert callable(pipeline.fit) and pipeline.Model.load and 'fit' in dir(pipeline)")
    assert {"dask", "numba"} <= loaded


def test_a_threaded_run_never_imports_distributed(tmp_path, make_config):
    image = np.random.default_rng(0).integers(0, 255, (3, 300, 300), dtype=np.uint8)
    write_raster(tmp_path / "scene.tif", image)
    config = make_config([tmp_path / "scene.tif"], model={"k": 3})
    loaded = imported_after(f"import pipeline\npipeline.run(pipeline.load_config({str(config)!r}))")
    assert "dask" in loaded and "distributed" not in loaded
    assert (tmp_path / "out" / "labels.tif").exists()


def test_a_finished_command_leaves_its_objects_to_the_os(tmp_path, make_config):
    # The collector's full passes over the objects the imports made cost ~0.4 s of a small run,
    # and the exit's another ~0.5 s: a command freezes them after its imports and when it has
    # finished, and the collector stays on for the run's own garbage.
    image = np.random.default_rng(0).integers(0, 255, (3, 300, 300), dtype=np.uint8)
    write_raster(tmp_path / "scene.tif", image)
    config = make_config([tmp_path / "scene.tif"], model={"k": 3})
    probe = (
        "import gc\nfrom pipeline.cli import main\nthresholds = gc.get_threshold()\n"
        f"main(['run', {str(config)!r}, '--quiet'], standalone_mode=False)\nprint(gc.isenabled() and gc.get_threshold() == thresholds, gc.get_freeze_count())"
    )
    done = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=120)
    enabled, frozen = done.stdout.split()[-2:]
    assert enabled == "True" and int(frozen) > 0
    assert (tmp_path / "out" / "labels.tif").exists()
