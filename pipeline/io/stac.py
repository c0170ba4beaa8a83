"""``input.stac`` → tile headers: a STAC search or catalog's items, from their projection metadata.

An item's ``proj:code`` (or ``proj:epsg``), ``proj:transform`` and ``proj:shape`` (on the asset or
the item) place it on the map without opening its file, so a state's thousands of items cost one
search, not thousands of round trips. Only the first item's asset is opened, for what STAC does
not say reliably (band count, dtype, alpha and mask, nodata) and to fail early on a URL that
cannot be read; items lacking projection metadata are opened too. Where items overlap (years,
re-flights), they are drawn by datetime: the newest on top by default.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from functools import lru_cache
from typing import Any

import pystac
from affine import Affine
from rasterio.crs import CRS

from pipeline.errors import InputError
from pipeline.io import signing
from pipeline.io.remote import Href, redact, scrub
from pipeline.io.sources import Header, left_in, read_headers
from pipeline.io.spec import InputSpec, StacQuery

log = logging.getLogger(__name__)

SEARCH_PAGE = 250  # items per page of an API search (Planetary Computer allows up to 1000)


def headers_from_stac(spec: InputSpec) -> list[Header]:
    """The headers of the items ``spec.stac`` finds, in drawing order (later on top)."""
    stac = spec.stac
    if stac.sign == "planetary-computer":
        signing.check_package()
    items = _drawing_order(find_items(stac), stac.on_top)
    if not items:
        raise InputError(
            f"input.stac: no item of {redact(stac.source)} matches collections={list(stac.collections or [])} "
            f"bbox={list(stac.bbox or [])} datetime={stac.datetime}; widen bbox or datetime, or check collections"
        )
    hrefs = [_href(item, stac) for item in items]
    kept = left_in(hrefs, spec.exclude, items=[item.id for item in items])
    items, hrefs = [items[n] for n in kept], [hrefs[n] for n in kept]
    placed = [_placement(item, stac.asset) for item in items]
    # The first item is opened (band layout, and an early check that the hrefs can be read),
    # so are the items STAC does not place.
    opened_at = [0] + [n for n, p in enumerate(placed) if p is None and n > 0]
    opened = read_headers([hrefs[n] for n in opened_at], spec, items=[items[n].id for n in opened_at])
    template = opened[0]
    _check_placement(template, placed[0])
    headers: list[Header | None] = [None] * len(items)
    for n, header in zip(opened_at, opened):
        headers[n] = header
    for n, (item, placement) in enumerate(zip(items, placed)):
        if headers[n] is None:
            crs, transform, (height, width) = placement
            _check_bands(item, stac.asset, template.count)
            headers[n] = Header(
                path=hrefs[n], crs=crs, transform=transform, height=height, width=width, count=template.count,
                dtype=template.dtype, alpha=template.alpha, mask=template.mask, nodata=template.nodata,
                names=template.names, item=item.id,
            )
    log.info(
        "stac: %d item(s) from %s, %s on top; %d file(s) opened, the rest placed from proj metadata",
        len(items), redact(stac.source), stac.on_top, len(opened_at),
    )
    return [h for h in headers if h is not None]


# --- finding items -------------------------------------------------------------------------------


def find_items(stac: StacQuery) -> list[pystac.Item]:
    """The items of a STAC API search, or of a static catalog, collection or item collection,
    filtered by the search's collections, bbox and datetime."""
    doc = _read_json(stac.source)
    kind = doc.get("type")
    if kind in ("Catalog", "Collection") and _is_api(doc):
        return _search_api(stac)
    if stac.query is not None:
        raise InputError(
            f"input.stac.query: {redact(stac.source)} is a static {kind.lower()}, not a STAC API, so it cannot "
            "be queried; filter with collections, bbox and datetime, or remove input.stac.query"
        )
    try:
        if kind == "FeatureCollection":
            items, base = list(pystac.ItemCollection.from_dict(doc, preserve_dict=False)), stac.source
        elif kind == "Feature":
            items, base = [pystac.Item.from_dict(doc)], stac.source
        elif kind in ("Catalog", "Collection"):
            items, base = list(pystac.read_file(stac.source).get_items(recursive=True)), None
        else:
            raise InputError(
                f"input.stac.source: {redact(stac.source)} is not a STAC catalog, collection, item collection or item "
                f"(its type is {kind!r}); give one of those, or a STAC API URL"
            )
    except (pystac.STACError, KeyError, ValueError, OSError) as exc:
        raise InputError(f"input.stac.source: cannot read the items of {redact(stac.source)} ({scrub(str(exc))}); check the catalog") from None
    if base is not None:  # relative asset hrefs are relative to the item (collection) read
        _resolve_relative(items, base)
    found = [i for i in items if _matches(i, stac)]
    return found[: stac.max_items] if stac.max_items else found


def _read_json(source: str) -> dict[str, Any]:
    try:
        text = pystac.StacIO.default().read_text(source)
    except (OSError, ValueError, pystac.STACError) as exc:  # urllib's errors are OSErrors
        raise InputError(
            f"input.stac.source: cannot read {redact(source)} ({scrub(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)}); "
            "check the URL or path"
        ) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        raise InputError(f"input.stac.source: {redact(source)} is not JSON; give a STAC API URL or a catalog file") from None
    if not isinstance(doc, dict):
        raise InputError(f"input.stac.source: {redact(source)} is not a STAC document; give a STAC API URL or a catalog file")
    return doc


def _is_api(doc: dict[str, Any]) -> bool:
    conforms = doc.get("conformsTo") or []
    return any("item-search" in c for c in conforms) or any(link.get("rel") == "search" for link in doc.get("links", []))


def _search_api(stac: StacQuery) -> list[pystac.Item]:
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    try:
        search = Client.open(stac.source).search(
            collections=list(stac.collections) if stac.collections else None,
            bbox=list(stac.bbox) if stac.bbox else None,
            datetime=stac.datetime,
            query=stac.query,
            max_items=stac.max_items,
            limit=SEARCH_PAGE,
        )
        return list(search.items())  # pystac-client follows the "next" links page by page
    except APIError as exc:
        raise InputError(f"input.stac: the STAC API {redact(stac.source)} refused the search ({scrub(str(exc))[:200]}); check the search keys") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"input.stac.source: cannot search {redact(stac.source)} ({scrub(str(exc))[:200]}); check the URL") from None


def _resolve_relative(items: list[pystac.Item], base: str) -> None:
    """Asset hrefs relative to the document they were read from, made absolute."""
    from pystac.utils import make_absolute_href

    for item in items:
        for asset in item.assets.values():
            asset.href = make_absolute_href(asset.href, base)


def _matches(item: pystac.Item, stac: StacQuery) -> bool:
    if stac.collections and item.collection_id not in stac.collections:
        return False
    if stac.bbox and item.bbox:
        west, south, east, north = stac.bbox
        if item.bbox[0] > east or item.bbox[2] < west or item.bbox[1] > north or item.bbox[3] < south:
            return False
    if stac.datetime:
        start, end = _interval(stac.datetime)
        when = _when(item)
        if when is None or (start and when < start) or (end and when >= end):
            return False
    return True


def _interval(text: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """[start, end) of a STAC datetime; a date alone as an end covers that whole day."""
    first, _, last = text.partition("/")
    last = last or first

    def parse(value: str, *, end: bool) -> dt.datetime | None:
        if value in ("", ".."):
            return None
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"input.stac.datetime: {value!r} is not a date; write e.g. 2020-01-01 or 2020-01-01/2020-12-31") from None
        moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
        return moment + dt.timedelta(days=1) if end and len(value) == 10 else moment

    return parse(first, end=False), parse(last, end=True)


def _when(item: pystac.Item) -> dt.datetime | None:
    when = item.datetime or item.common_metadata.start_datetime
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when


def _drawing_order(items: list[pystac.Item], on_top: str) -> list[pystac.Item]:
    """Oldest first (so the newest is drawn on top) or the reverse; ties by id, for stable bytes."""
    never = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    ordered = sorted(items, key=lambda i: (_when(i) or never, i.id))
    return ordered if on_top == "newest" else ordered[::-1]


# --- items as tiles ------------------------------------------------------------------------------


def _href(item: pystac.Item, stac: StacQuery) -> Href:
    asset = item.assets.get(stac.asset)
    if asset is None:
        raise InputError(
            f"input.stac.asset: item {item.id} has no asset '{stac.asset}' (it has: {', '.join(item.assets) or 'none'}); "
            "set input.stac.asset"
        )
    # Never signed here: a plan outlives a token; the file is signed where it is opened (access.py).
    return Href.of(asset.get_absolute_href() or asset.href)


def _placement(item: pystac.Item, asset_key: str) -> tuple[str, Affine, tuple[int, int]] | None:
    """(CRS, transform, (rows, cols)) from the asset's or the item's proj fields; None if incomplete."""
    fields = {**item.properties, **item.assets[asset_key].extra_fields}
    code = fields.get("proj:code") or (f"EPSG:{fields['proj:epsg']}" if fields.get("proj:epsg") else None)
    transform, shape = fields.get("proj:transform"), fields.get("proj:shape")
    if code is None or transform is None or shape is None or len(transform) < 6 or len(shape) != 2:
        return None
    affine = Affine(*map(float, transform[:6]))
    if affine.b != 0 or affine.d != 0:
        raise InputError(f"item {item.id}: has a rotated proj:transform; only north-up imagery can be mosaicked")
    return _crs_name(code), affine, (int(shape[0]), int(shape[1]))


@lru_cache(maxsize=64)
def _crs_name(code: str) -> str:
    """The CRS as a file's header names it, so that items and opened files compare equal."""
    return CRS.from_user_input(code).to_string()


def _check_placement(header: Header, placed: tuple[str, Affine, tuple[int, int]] | None) -> None:
    """The opened item's file must sit where its metadata says, or every other item is misplaced."""
    if placed is None:
        return
    crs, transform, shape = placed
    if crs != header.crs or shape != (header.height, header.width) or not transform.almost_equals(header.transform, 1e-6):
        raise InputError(
            f"item {header.item} ({header.path}): its proj metadata ({crs}, shape {list(shape)}, transform "
            f"{list(transform)[:6]}) differs from the file ({header.crs}, shape {[header.height, header.width]}, "
            f"transform {list(header.transform)[:6]}); the catalog describes another asset: set input.stac.asset"
        )


def _check_bands(item: pystac.Item, asset_key: str, count: int) -> None:
    asset = item.assets[asset_key].extra_fields
    for key in ("raster:bands", "eo:bands", "bands"):
        bands = asset.get(key)
        if isinstance(bands, list) and bands and len(bands) != count:
            raise InputError(
                f"item {item.id}: {key} lists {len(bands)} band(s) but the first item's file has {count}; "
                "mosaic items of one product (narrow input.stac.collections)"
            )
