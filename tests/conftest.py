from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
NAIP = REPO.parent / "shared" / "data" / "naip"


@pytest.fixture
def make_config(tmp_path: Path):
    """Write a YAML run file into tmp_path from nested dicts and return its path."""

    def make(paths, *, name: str = "run.yaml", **sections) -> Path:
        doc = {
            "input": {"paths": [str(p) for p in paths]},
            "model": {"n_init": 1},  # restarts only cost time here; the CLI tests keep the default
            "output": {"path": str(tmp_path / "out" / "labels.tif")},
        }
        for section, values in sections.items():
            doc.setdefault(section, {}).update(values)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(doc))
        return path

    return make


@pytest.fixture(scope="session")
def naip_scenes() -> list[Path]:
    scenes = sorted(NAIP.glob("*.tif"))
    if not scenes:
        pytest.skip(f"real NAIP scenes not found at {NAIP} (see shared/data/README.md)")
    return scenes
