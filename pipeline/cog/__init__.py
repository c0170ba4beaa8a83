"""The COG writer: the label pass writes the COG's own tiles; the client writes only the header.

Each chunk task cuts its layer (labels, or the confidence margin) into the COG's 512 x 512 tiles,
decimates it into the overview levels that fall inside the chunk, compresses every tile and writes
them as one part file per level. Coarser levels come from a quadtree: a node concatenates its
(up to) four children's decimated arrays (256 x 256 for 2048-pixel chunks), writes the tiles of its
level and passes its own decimated array up; the root writes the last levels. No full-resolution
pixel leaves a chunk task. The client then turns byte counts into offsets, writes the header (one
IFD per level, ``tiff``) and tasks copy the parts into place: the file is IFDs, then the levels'
tiles from the smallest overview to full resolution, as a COG reader expects.

Overviews of labels are MODE (``LABELS_MODE``, the default) or NEAREST (``LABELS``). NEAREST
decimates: level l is ``labels[::2**l, ::2**l]``. That costs a strided copy, never invents a
class, and composes exactly (a level decimated again is the next
level), so a chunk's, a node's and the root's arrays give the same bytes as one global pass in any
chunking. ``LABELS_MODE`` (``output.overviews: mode``) makes each level the 2 x 2 MODE of the one
before (``halve_mode``: nodata never votes, ties go to the pixel NEAREST keeps, else the smallest
class): a mode of modes, not the mode of the 2**l block, but as exact and as chunking-free, since a
block never straddles two chunks. Its branch-free numba kernel costs ~5 ms of CPU per 2048-pixel
chunk for levels 1-2 (NEAREST: 0.5 ms; compressing the chunk's 21 tiles: 22 ms). The margin
(continuous) is averaged 2 x 2, ignoring NaN, in a fixed order of additions, so its bytes never
depend on where a block was averaged.

DEFLATE is libdeflate's (imagecodecs), level 1: on the benchmark's 600 MP NAIP labels it took
1.6x less CPU than zlib level 1 (276 against 175 MB/s) for 16 % fewer bytes; zlib-ng level 1 was
faster still (480 MB/s) but 63 % larger. GDAL and every TIFF reader decode it as zlib. No
predictor: it hurts label rasters, and PREDICTOR=3 made the NAIP margin larger (2.76 against
2.66 MB).
"""

from pipeline.cog.encode import (
    halve,
    halve_mode,
    merge_node,
    part_path,
    place,
    place_parts,
    tiles_of,
    tree,
    write_levels,
)
from pipeline.cog.header import Placement, layout, write_header, write_template
from pipeline.cog.pyramid import (
    LABELS,
    LABELS_MODE,
    MARGIN,
    RAW,
    TILE,
    Grid,
    Layer,
    Node,
    Pyramid,
    linear_unit_metres,
)

__all__ = [
    "LABELS", "LABELS_MODE", "MARGIN", "RAW", "TILE", "Grid", "Layer", "Node", "Placement", "Pyramid", "halve", "halve_mode", "layout",
    "linear_unit_metres", "merge_node", "part_path",
    "place", "place_parts", "tiles_of", "tree", "write_header", "write_levels", "write_template",
]
