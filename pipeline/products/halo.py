"""The cleanup's windows in the write pass: each chunk's labels with ``halo`` pixels of its
neighbours' labels around it (cut where the raster ends), as plain graph tasks.

Each chunk is labelled once; its neighbours take only the strips of it their halos cover, so a
process cluster moves strips between workers, not whole blocks, and a block is released once its
own store and its neighbours' strips are done.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from operator import getitem

import numpy as np

from pipeline.algo.cleanup import Cleaned, Cleanup, clean_window

Key = tuple
Span = tuple[int, int]


@dataclass(frozen=True)
class Halo:
    """The windows of a (height, width) raster in square chunks of ``side``, ``halo`` pixels wide."""

    shape: tuple[int, int]
    side: int
    halo: int

    def core(self, i: int, j: int) -> tuple[Span, Span]:
        """The chunk's rows and columns (start, stop) in the raster."""
        (height, width), side = self.shape, self.side
        return (i * side, min(height, (i + 1) * side)), (j * side, min(width, (j + 1) * side))

    def window(self, i: int, j: int) -> tuple[Span, Span]:
        """The chunk's window: its core and the halo, cut at the raster's edges."""
        return tuple((max(0, a - self.halo), min(n, b + self.halo)) for (a, b), n in zip(self.core(i, j), self.shape))

    def neighbours(self, i: int, j: int) -> list[tuple[int, int]]:
        """The chunks the window of chunk (i, j) overlaps, itself included."""
        (r0, r1), (c0, c1) = self.window(i, j)
        side = self.side
        return [(a, b) for a in range(r0 // side, (r1 - 1) // side + 1) for b in range(c0 // side, (c1 - 1) // side + 1)]

    def clean_tasks(
        self, raw: dict[tuple[int, int], Key], chunks: Iterable[tuple[int, int]], *, cleanup: Cleanup, k: int, name: str
    ) -> dict:
        """Tasks ("clean-<name>", i, j) → ``Cleaned`` of each chunk, from the labels' keys ``raw``."""
        graph: dict = {}
        for i, j in chunks:
            (r0, r1), (c0, c1) = window = self.window(i, j)
            pieces: dict[int, list[Key]] = {}
            for a, b in self.neighbours(i, j):
                (ar0, ar1), (ac0, ac1) = self.core(a, b)
                cut = (slice(max(r0, ar0) - ar0, min(r1, ar1) - ar0), slice(max(c0, ac0) - ac0, min(c1, ac1) - ac0))
                if (cut[0].stop - cut[0].start, cut[1].stop - cut[1].start) == (ar1 - ar0, ac1 - ac0):
                    piece = raw[a, b]  # the whole block
                else:
                    piece = (f"halo-{name}", i, j, a, b)
                    graph[piece] = (getitem, raw[a, b], cut)
                pieces.setdefault(a, []).append(piece)
            (cr0, cr1), (cc0, cc1) = self.core(i, j)
            core = (slice(cr0 - window[0][0], cr1 - window[0][0]), slice(cc0 - window[1][0], cc1 - window[1][0]))
            graph[f"clean-{name}", i, j] = (clean_pieces, [pieces[a] for a in sorted(pieces)], cleanup, core, k, (r0, c0))
        return graph


def clean_pieces(pieces: list[list[np.ndarray]], cleanup: Cleanup, core: tuple[slice, slice], k: int, place: tuple[int, int]) -> Cleaned:
    """The cleanup of one chunk, from its window's pieces (rows of column pieces) and where the
    window starts in the raster."""
    return clean_window(np.block(pieces), cleanup, core=core, k=k, place=place)
