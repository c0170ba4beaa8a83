"""Class names and colours for programs: the palette overrides, a JSON legend and a STAC item.

GeoTIFF has no place for class names outside a ``.aux.xml`` sidecar (which many tools drop), so
besides the COG tags we write ``<stem>.legend.json`` and a STAC item using the classification
extension (v1.1.0: ``value`` and ``name`` required, ``color_hint`` as hex without '#').
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import rasterio
from rasterio.warp import transform_bounds

from .config import ClassConfig
from .label import NODATA_LABEL

CLASSIFICATION_EXTENSION = "https://stac-extensions.github.io/classification/v1.1.0/schema.json"
PROJECTION_EXTENSION = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"
STAC_VERSION = "1.0.0"
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


def apply_class_colours(
    palette: dict[int, tuple[int, int, int]], classes: tuple[ClassConfig, ...] | None
) -> dict[int, tuple[int, int, int]]:
    """The computed palette with every configured ``color`` put in place of its class's entry."""
    result = dict(palette)
    for label, entry in enumerate(classes or (), start=1):
        if entry.rgb is not None:
            result[label] = entry.rgb
    return result


def legend(report: dict[str, Any]) -> dict[str, Any]:
    """value, name, colour, pixels and % of the valid area of each class, from the class report."""
    return {
        "nodata": NODATA_LABEL,
        "classes": [
            {
                "value": c["class"],
                "name": c["name"],
                "color": c["colour"],
                "pixels": c["pixels"],
                "percent": c["percent"],
            }
            for c in report["classes"]
        ],
    }


def stac_item(cog: Path, report: dict[str, Any], *, href: str, item_id: str, sidecars: dict[str, str]) -> dict[str, Any]:
    """A STAC item for the label COG whose asset carries ``classification:classes``.

    ``datetime`` is when the labels were made: the inputs' acquisition dates are not known here.
    """
    with rasterio.open(cog) as src:
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
        epsg = src.crs.to_epsg()
        shape, transform = [src.height, src.width], list(src.transform)[:6]
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    classes = [{"value": NODATA_LABEL, "name": "nodata", "description": "no data"}] + [
        {
            "value": c["class"],
            "name": c["name"],
            "description": f"k-means class {c['class']} of {len(report['classes'])}: {c['percent']:.2f} % of the valid area",
            "color_hint": c["colour"].lstrip("#").upper(),
        }
        for c in report["classes"]
    ]
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [CLASSIFICATION_EXTENSION, PROJECTION_EXTENSION],
        "id": item_id,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": [west, south, east, north],
        "properties": {
            "datetime": now,
            "created": now,
            "proj:epsg": epsg,
            "proj:shape": shape,
            "proj:transform": transform,
        },
        "links": [],
        "assets": {
            "labels": {
                "href": href,
                "type": COG_MEDIA_TYPE,
                "title": "land-cover classes",
                "roles": ["data"],
                "classification:classes": classes,
            },
            **{name: {"href": path, "type": "application/json", "roles": ["metadata"]} for name, path in sidecars.items()},
        },
    }
