"""Class names and colours for programs: the palette overrides, a JSON legend and a STAC item.

GeoTIFF has no place for class names outside a ``.aux.xml`` sidecar (which many tools drop), so
besides the COG tags we write ``<stem>.legend.json`` and a STAC item whose asset carries the
classification extension (v2.0.0: each class's ``value``, a machine ``name`` of letters, digits,
'-' and '_', its ``title`` as configured, ``color_hint`` as hex without '#'; nodata flagged).
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any

import pystac
import rasterio
from pystac.extensions.classification import Classification, ClassificationExtension
from pystac.extensions.projection import ProjectionExtension
from rasterio.warp import transform_bounds

from pipeline.algo.kernel import NODATA_LABEL
from pipeline.products.report import Report

COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


def legend(report: Report) -> dict[str, Any]:
    """value, name, colour, pixels and % of the valid area of each class, from the class report;
    with suggested names, the rule that suggested each (``suggested_by``)."""
    return {
        "nodata": NODATA_LABEL,
        "classes": [
            {"value": c.value, "name": c.name, "color": c.colour, "pixels": c.pixels, "percent": c.percent}
            | ({"suggested_by": c.suggested_by} if c.suggested_by else {})
            for c in report.classes
        ],
    }


def stac_item(cog: Path, report: Report, *, href: str, item_id: str, sidecars: dict[str, str]) -> dict[str, Any]:
    """A STAC item for the label COG whose asset carries ``classification:classes``, with the
    metadata ``sidecars`` (asset key → href) beside it.

    ``datetime`` is when the labels were made: the inputs' acquisition dates are not known here.
    """
    with rasterio.open(cog) as src:
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
        epsg, wkt = src.crs.to_epsg(), src.crs.to_wkt()
        shape, transform = [src.height, src.width], list(src.transform)[:6]
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    item = pystac.Item(
        id=item_id,
        geometry={"type": "Polygon", "coordinates": [ring]},
        bbox=[west, south, east, north],
        datetime=now,
        properties={"created": pystac.utils.datetime_to_str(now)},
    )
    projection = ProjectionExtension.ext(item, add_if_missing=True)
    # A CRS without an EPSG code (e.g. a custom UTM) is written as WKT2 instead.
    projection.apply(code=f"EPSG:{epsg}" if epsg else None, wkt2=None if epsg else wkt, shape=shape, transform=transform)
    labels = pystac.Asset(href=href, media_type=COG_MEDIA_TYPE, title="land-cover classes", roles=["data"])
    item.add_asset("labels", labels)
    ClassificationExtension.ext(labels, add_if_missing=True).apply(classes=_classes(report))
    for key, path in sidecars.items():
        item.add_asset(key, pystac.Asset(href=path, media_type=pystac.MediaType.JSON, roles=["metadata"]))
    return item.to_dict(include_self_link=False, transform_hrefs=False)


def _classes(report: Report) -> list[Classification]:
    """Nodata, then classes 1..k; ``name`` is the configured name made machine-readable (the
    extension allows only letters, digits, '-' and '_'), the name itself is the ``title``."""
    classes = [Classification.create(value=NODATA_LABEL, name="nodata", title="nodata", description="no data", nodata=True)]
    used = {"nodata"}
    for c in report.classes:
        name = machine_name(c.name)
        if name in used:  # "a b" and "a-b" both read a-b: keep names unique
            name = f"{name}_{c.value}"
        used.add(name)
        description = f"k-means class {c.value} of {len(report.classes)}: {c.percent:.2f} % of the valid area"
        if c.suggested_by:
            description += f"; name suggested by a spectral rule ({c.suggested_by}), to be checked"
        classes.append(
            Classification.create(value=c.value, name=name, title=c.name, description=description, color_hint=c.colour.lstrip("#").upper())
        )
    return classes


def machine_name(name: str) -> str:
    """'forest <dense> & wet' → 'forest-dense-wet': runs of other characters become one '-'."""
    return re.sub(r"[^0-9A-Za-z_]+", "-", name).strip("-") or "class"
