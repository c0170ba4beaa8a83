"""The cleanup's windows in the write pass: each chunk's labels with ``halo`` pixels of its
neighbours' labels around it (cut where the raster ends), as plain graph tasks.

A chunk is cleaned only once its eight neighbours are labelled, so labels wait; whatever order
dask picks, a whole row or column of chunks waits at some point, which grows with the mosaic's
side (a ring of them with dask's order here). So each chunk's labels (and margin) are spilled to
the parts folder as they are made, and the tasks pass only their paths: each store task reads
the strips its window covers from the files (the page cache, mostly) and cleans it, and a
chunk's files are deleted once the stores of every window over it (its own included) are done.
Memory then holds the chunks in flight only, and a process cluster moves paths, not blocks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.algo.cleanup import Cleaned, Cleanup, clean_window, reused
from pipeline.runtime.memory import give_back_freed

Key = tuple
Span = tuple[int, int]
SPILL = "halo"  # the parts folder's sub-folder of spilled labels
SPILLED = ("labels", "margin")  # the label task's arrays that wait on disk


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

    def cleaners(
        self, labelled: dict[tuple[int, int], Key], chunks: Iterable[tuple[int, int]], *, cleanup: Cleanup, k: int
    ) -> dict[tuple[int, int], tuple[partial, list[list[Key]]]]:
        """Per chunk, the call that cleans it (``clean_spilled``) and the keys of the spilled label
        tasks ``labelled`` it takes, as rows of its window's pieces. The store task calls it: a
        separate task's result would wait in memory for the store (dask runs them far apart)."""
        calls = {}
        for i, j in chunks:
            (r0, r1), (c0, c1) = window = self.window(i, j)
            rows: dict[int, list[tuple[Key, tuple[slice, slice]]]] = {}
            for a, b in self.neighbours(i, j):
                (ar0, ar1), (ac0, ac1) = self.core(a, b)
                cut = (slice(max(r0, ar0) - ar0, min(r1, ar1) - ar0), slice(max(c0, ac0) - ac0, min(c1, ac1) - ac0))
                rows.setdefault(a, []).append((labelled[a, b], cut))
            (cr0, cr1), (cc0, cc1) = self.core(i, j)
            core = (slice(cr0 - window[0][0], cr1 - window[0][0]), slice(cc0 - window[1][0], cc1 - window[1][0]))
            pieces = [rows[a] for a in sorted(rows)]
            cuts = [[cut for _, cut in row] for row in pieces]
            clean = partial(clean_spilled, cuts=cuts, cleanup=cleanup, core=core, k=k, place=(r0, c0))
            calls[i, j] = (clean, [[key for key, _ in row] for row in pieces])
        return calls

    def release_tasks(self, chunks: Iterable[tuple[int, int]], labelled: Iterable[tuple[int, int]], *, folder: Path, name: str) -> dict:
        """Tasks ("release-<name>", a, b) deleting the spilled files of each ``labelled`` chunk
        once the stores (keys (name, i, j)) of every chunk whose window covers it are done."""
        users: dict[tuple[int, int], list[Key]] = {chunk: [] for chunk in labelled}
        for chunk in chunks:
            for neighbour in self.neighbours(*chunk):
                users[neighbour].append((name, *chunk))
        return {(f"release-{name}", *chunk): (release, done, folder, chunk) for chunk, done in users.items()}


def spill_path(folder: Path, index: tuple[int, int], what: str) -> Path:
    return folder / SPILL / f"{what}-{index[0]:05d}-{index[1]:05d}.npy"


def spill(labelled: dict[str, Any], *, folder: Path, index: tuple[int, int]) -> dict[str, Any]:
    """The label task's result with its arrays written to the parts folder and replaced by their paths."""
    spilled = dict(labelled)
    for what in SPILLED:
        if labelled[what] is not None:
            path = spill_path(folder, index, what)
            path.parent.mkdir(exist_ok=True)
            np.save(path, labelled[what], allow_pickle=False)
            spilled[what] = path
    return spilled


def unspill(labelled: dict[str, Any], wanted: Iterable[str]) -> dict[str, Any]:
    """``spill`` undone for the ``wanted`` arrays."""
    return {**labelled, **{what: np.load(labelled[what]) for what in wanted if labelled[what] is not None}}


def clean_spilled(
    rows: list[list[dict[str, Any]]], *, cuts: list[list[tuple[slice, slice]]], cleanup: Cleanup, core: tuple[slice, slice], k: int,
    place: tuple[int, int],
) -> Cleaned:
    """The cleanup of one chunk, from its window's spilled pieces (rows of column pieces, each cut
    from a label task's file) and where the window starts in the raster."""
    pieces = [[np.load(labelled["labels"], mmap_mode="r")[cut] for labelled, cut in zip(row, row_cuts)] for row, row_cuts in zip(rows, cuts)]
    window = reused("window", (sum(row[0].shape[0] for row in pieces), sum(piece.shape[1] for piece in pieces[0])))
    top = 0
    for row in pieces:
        left = 0
        for piece in row:
            window[top : top + piece.shape[0], left : left + piece.shape[1]] = piece
            left += piece.shape[1]
        top += row[0].shape[0]
    cleaned = clean_window(window, cleanup, core=core, k=k, place=place)
    give_back_freed()  # the window's temporaries: else each thread's heap keeps them (runtime/memory.py)
    return cleaned


def release(_stored: list, folder: Path, index: tuple[int, int]) -> None:
    """Delete a chunk's spilled files (called once the stores it lists are done)."""
    for what in SPILLED:
        spill_path(folder, index, what).unlink(missing_ok=True)
