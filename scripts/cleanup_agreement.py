"""Our sieve against GDAL's on real labels: the share of valid pixels on which they agree.

    python scripts/cleanup_agreement.py [--scenes ../shared/data/naip] [--k 7] [--json agreement.json]

Each scene is fitted on its own (k classes, seed 0) and labelled; the labels as classified and
after ``majority: 3`` go through our sieve (``algo/cleanup.py``, on the whole scene: the same
array as chunk by chunk) and ``rasterio.features.sieve`` (GDAL's ``GDALSieveFilter``, nodata
masked) at the same threshold and connectivity. Where they differ, it says how: both changed the
pixel, to different classes (a speck between two large patches: GDAL takes the globally larger);
only GDAL changed it (a chain of small patches, which GDAL follows to a large one); only ours.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import rasterio.features
import rioxarray

import pipeline
from pipeline.algo.cleanup import Cleanup, clean

CASES = ((16, 4), (16, 8), (64, 8), (100, 8))  # (sieve, connectivity)


def scene_labels(path: Path, k: int) -> np.ndarray:
    data = rioxarray.open_rasterio(path, chunks={"band": -1, "y": 2048, "x": 2048}, lock=False)
    return pipeline.classify(data, pipeline.fit(data, k=k, seed=0)).values


def compare(labels: list[np.ndarray], sieve: int, connectivity: int) -> dict[str, float | int]:
    agree = valid_total = both = gdal_only = ours_only = 0
    for raw in labels:
        ours = clean(raw, Cleanup(sieve=sieve, connectivity=connectivity), k=int(raw.max())).labels
        gdal = rasterio.features.sieve(raw, size=sieve, connectivity=connectivity, mask=raw > 0)
        valid = raw > 0
        differ = (ours != gdal) & valid
        agree += int(((ours == gdal) & valid).sum())
        valid_total += int(valid.sum())
        both += int((differ & (ours != raw) & (gdal != raw)).sum())
        gdal_only += int((differ & (ours == raw)).sum())
        ours_only += int((differ & (gdal == raw)).sum())
    return {"agree_percent": round(100 * agree / valid_total, 3), "both_changed": both, "gdal_only": gdal_only, "ours_only": ours_only}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "naip")
    parser.add_argument("--k", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    raw = [scene_labels(path, args.k) for path in sorted(args.scenes.glob("*.tif"))]
    voted = [clean(labels, Cleanup(majority=3), k=args.k).labels for labels in raw]
    result = {}
    for name, inputs in (("raw labels", raw), ("after majority: 3", voted)):
        for sieve, connectivity in CASES:
            row = compare(inputs, sieve, connectivity)
            result[f"{name}, sieve {sieve}, {connectivity}-connected"] = row
            print(f"{name:>18}  sieve {sieve:>3}  {connectivity}-conn.  {row['agree_percent']:.2f} %  "
                  f"differ: both changed {row['both_changed']}, GDAL only {row['gdal_only']}, ours only {row['ours_only']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
