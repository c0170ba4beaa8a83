"""TIFF headers by hand: the IFDs of a tiled pyramid, given its tags and tile byte counts.

The COG's tiles are compressed on the workers (``cog``); what is left for the client is this
header: one IFD per level with the tile offsets and byte counts, classic TIFF or BigTIFF. The
georeferencing and GDAL's own tags (GeoKeys, GDAL_METADATA, GDAL_NODATA, the colour map) are
copied byte for byte from a one-pixel GeoTIFF that GDAL wrote with the same CRS, transform,
palette and tags, so every CRS GDAL can write is written the way GDAL writes it.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BYTE, ASCII, SHORT, LONG, DOUBLE, LONG8 = 1, 2, 3, 4, 12, 16
_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8, 17: 8, 18: 8}
_FORMATS = {SHORT: "H", LONG: "I", LONG8: "Q"}

TILE_OFFSETS, TILE_BYTE_COUNTS = 324, 325
# Copied from GDAL's template: colour map, GeoTIFF keys and GDAL's metadata and nodata.
COPIED_TAGS = (320, 33550, 33922, 34264, 34735, 34736, 34737, 42112, 42113)
CLASSIC_LIMIT = 2**32 - 1


@dataclass(frozen=True)
class Tag:
    code: int
    type: int
    count: int
    data: bytes
    """The value's bytes, little-endian."""


def tag(code: int, type_: int, values: Sequence[int]) -> Tag:
    return Tag(code, type_, len(values), struct.pack(f"<{len(values)}{_FORMATS[type_]}", *values))


def read_tags(path: Path, codes: Sequence[int] = COPIED_TAGS) -> list[Tag]:
    """The tags ``codes`` of the first IFD of a little-endian TIFF (classic or BigTIFF)."""
    data = path.read_bytes()
    if data[:2] != b"II":
        raise ValueError(f"{path}: not a little-endian TIFF")
    big = struct.unpack_from("<H", data, 2)[0] == 43
    ifd = struct.unpack_from("<Q" if big else "<I", data, 8 if big else 4)[0]
    count_format, entry_format, entry_size = ("<Q", "<HHQ", 20) if big else ("<H", "<HHI", 12)
    inline = 8 if big else 4
    n = struct.unpack_from(count_format, data, ifd)[0]
    start = ifd + struct.calcsize(count_format)
    tags = []
    for k in range(n):
        at = start + k * entry_size
        code, type_, count = struct.unpack_from(entry_format, data, at)
        if code not in codes:
            continue
        size = _SIZES[type_] * count
        value_at = at + struct.calcsize(entry_format)
        if size > inline:
            value_at = struct.unpack_from("<Q" if big else "<I", data, value_at)[0]
        tags.append(Tag(code, type_, count, data[value_at : value_at + size]))
    return tags


def header(ifds: Sequence[Sequence[Tag]], *, bigtiff: bool) -> bytes:
    """Header and IFDs, in order, each IFD followed by its out-of-line values; IFD i links to
    IFD i + 1. Tile offsets must already be absolute (see ``header_size``)."""
    out = bytearray(b"II" + (struct.pack("<HHHQ", 43, 8, 0, 16) if bigtiff else struct.pack("<HI", 42, 8)))
    for n, tags in enumerate(ifds):
        out += _ifd(sorted(tags, key=lambda t: t.code), len(out), bigtiff=bigtiff, last=n == len(ifds) - 1)
    return bytes(out)


def header_size(ifds: Sequence[Sequence[Tag]], *, bigtiff: bool) -> int:
    """The header's length, which depends on the tags' types and counts, not on their values."""
    return len(header(ifds, bigtiff=bigtiff))


def _ifd(tags: list[Tag], at: int, *, bigtiff: bool, last: bool) -> bytes:
    count_format, entry_format, offset_format = ("<Q", "<HHQ", "<Q") if bigtiff else ("<H", "<HHI", "<I")
    inline = 8 if bigtiff else 4
    entries_size = struct.calcsize(count_format) + len(tags) * (struct.calcsize(entry_format) + inline) + inline
    values = bytearray()
    entries = bytearray(struct.pack(count_format, len(tags)))
    for t in tags:
        entries += struct.pack(entry_format, t.code, t.type, t.count)
        if len(t.data) <= inline:
            entries += t.data.ljust(inline, b"\0")
        else:
            entries += struct.pack(offset_format, at + entries_size + len(values))
            values += t.data + b"\0" * (len(t.data) % 2)  # values start on a word boundary
    next_ifd = 0 if last else at + entries_size + len(values)
    entries += struct.pack(offset_format, next_ifd)
    return bytes(entries + values)
