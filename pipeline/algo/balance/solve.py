"""The balance stage: corrections solved over the graph of overlapping pairs, put on the tiles' records,
and the record of them (``Balance``) that the model keeps and ``predict`` reuses."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import numpy as np

from pipeline.algo.balance.maths import (
    ESTIMATOR,
    pair_relation,
    seam_rms,
    solve_corrections,
)
from pipeline.algo.balance.pairs import (
    PairStats,
    measure_pairs,
    overlapping_pairs,
    seam_pairs,
)
from pipeline.algo.balance.record import BalanceRecord, TileCorrection
from pipeline.errors import DataError
from pipeline.io.mosaic import Mosaic, Tile
from pipeline.io.remote import Href, redact

log = logging.getLogger(__name__)


MAX_RATIO = 4.0  # a pair relating two tiles by a gain beyond 1/4..4 measures change, not radiometry


_DATE = re.compile(r"^m_\d+_[a-z]{2}_\d+_\d+_(\d{8})", re.IGNORECASE)


@dataclass(frozen=True)
class Balance:
    """The corrections of a mosaic's tiles and how well they close the seams."""

    method: str
    tiles: tuple[Tile, ...]
    """The tiles with their corrections (identity = gains None)."""
    groups: tuple[str, ...]
    """Per tile the name of the group sharing its correction (its acquisition date or its file)."""
    pairs: int
    isolated: int
    seam_before: tuple[float, ...]
    """Per band, RMS difference between the two tiles' values at paired overlap pixels."""
    seam_after: tuple[float, ...]
    band_count: int
    estimator: str = ESTIMATOR
    known: int | None = None
    """predict: tiles whose corrections came from the model (None in a run)."""

    @property
    def gains(self) -> np.ndarray:
        """(tile, band)."""
        return np.array([t.gains or (1.0,) * self.band_count for t in self.tiles])

    @property
    def offsets(self) -> np.ndarray:
        return np.array([t.offsets or (0.0,) * self.band_count for t in self.tiles])

    def record(self) -> BalanceRecord:
        """What the model keeps of it."""
        tiles = (
            TileCorrection(recorded_path(t.path), group, (t.row_off, t.col_off, t.height, t.width), tuple(map(float, g)), tuple(map(float, o)))
            for t, group, g, o in zip(self.tiles, self.groups, self.gains, self.offsets)
        )
        return BalanceRecord(
            method=self.method, estimator=self.estimator, pairs=self.pairs, isolated_tiles=self.isolated,
            seam_rms_before=tuple(round(v, 4) for v in self.seam_before), seam_rms_after=tuple(round(v, 4) for v in self.seam_after),
            tiles=tuple(tiles), known_tiles=self.known,
        )


def recorded_path(path: Href | str) -> str:
    """A tile's path as the model records it: redacted (no query, no credentials); a local name
    whole, even with a "?" in it."""
    return str(path) if isinstance(path, Href) else redact(path)


def acquisition_groups(paths: Sequence[Href | str]) -> tuple[str, ...]:
    """Per tile, the group sharing one correction: the date of a NAIP name, else the file itself."""
    out = []
    for path in paths:
        name = PurePosixPath(recorded_path(path)).name
        match = _DATE.match(name)
        out.append(match.group(1) if match else name)
    return tuple(out)


def balance(
    mosaic: Mosaic,
    *,
    method: str,
    seed: int,
    members: Sequence[int] | None = None,
    estimator: str = ESTIMATOR,
    key: str = "features.balance",
) -> tuple[Mosaic, Balance | None]:
    """The mosaic with each tile's correction on its record, and the record of them.

    ``method`` "none" returns the mosaic unchanged (and no record). ``members``: the tiles to
    balance (predict balances new tiles among themselves); the others keep their records.
    """
    if method == "none":
        return mosaic, None
    members = list(range(len(mosaic.tiles))) if members is None else list(members)
    first = mosaic.tiles[members[0]].path if members else mosaic.tiles[0].path
    if len(members) < 2:
        raise DataError(
            f"{key}: overlaps needs two or more overlapping tiles, but {first} is the only one to balance; "
            f"set {key}: none"
        )
    pairs = overlapping_pairs(mosaic, members)
    if not pairs:
        raise DataError(
            f"{key}: overlaps found no two overlapping tiles among {len(members)} (e.g. {first}); "
            f"set {key}: none, or give tiles that overlap (NAIP's buffered quarter-quads do)"
        )
    stats = measure_pairs(mosaic, seam_pairs(mosaic, pairs), seed=seed)
    if not stats:
        a, b = mosaic.tiles[pairs[0][0]].path, mosaic.tiles[pairs[0][1]].path
        raise DataError(
            f"{key}: no valid pixel where the tiles overlap ({len(pairs)} overlapping pair(s), e.g. {a} and {b}); "
            f"check input.nodata and the rasters' masks, or set {key}: none"
        )
    return _solve(mosaic, members, stats, method=method, estimator=estimator)


def _solve(mosaic: Mosaic, members: list[int], stats: list[PairStats], *, method: str, estimator: str) -> tuple[Mosaic, Balance]:
    tiles = [mosaic.tiles[m] for m in members]
    position = {m: p for p, m in enumerate(members)}
    names = acquisition_groups([t.path for t in tiles])
    group_names = sorted(set(names))
    group_of = np.array([group_names.index(g) for g in names])
    areas = np.zeros(len(group_names))
    np.add.at(areas, group_of, [t.height * t.width for t in tiles])

    gi = np.array([group_of[position[s.i]] for s in stats])
    gj = np.array([group_of[position[s.j]] for s in stats])
    alpha, cx, cy = (np.stack(v) for v in zip(*(pair_relation(s.moments, s.quantiles, estimator=estimator) for s in stats)))
    plausible = np.isfinite(alpha).all(axis=1) & (alpha > 1 / MAX_RATIO).all(axis=1) & (alpha < MAX_RATIO).all(axis=1)
    usable = (gi != gj) & plausible  # within one acquisition the shared correction cancels
    if ((gi != gj) & ~plausible).any():
        log.warning(
            "balance: %d overlapping pair(s) gave no usable relation (flat, inverted or beyond a gain of %g: "
            "land change?) and were left out", int(((gi != gj) & ~plausible).sum()), MAX_RATIO,
        )
    group_gains, group_offsets = solve_corrections(
        gi[usable], gj[usable], alpha[usable], cx[usable], cy[usable], len(group_names), areas=areas
    )

    measured = set(gi[usable]) | set(gj[usable])
    isolated = sum(1 for g in group_of if g not in measured)
    if isolated:
        log.warning("balance: %d tile(s) overlap no other tile usefully and keep their values as read", isolated)
    gains, offsets = group_gains[group_of], group_offsets[group_of]
    before = np.mean([seam_rms(s.moments, 1.0, 0.0, 1.0, 0.0) for s in stats], axis=0)
    after = np.mean(
        [seam_rms(s.moments, gains[position[s.i]], offsets[position[s.i]], gains[position[s.j]], offsets[position[s.j]]) for s in stats],
        axis=0,
    )
    new_tiles = list(mosaic.tiles)
    for p, m in enumerate(members):
        if (gains[p] != 1).any() or (offsets[p] != 0).any():  # the identity costs nothing to read
            new_tiles[m] = replace(
                mosaic.tiles[m], gains=tuple(float(g) for g in gains[p]), offsets=tuple(float(o) for o in offsets[p])
            )
    record = Balance(
        method=method,
        tiles=tuple(new_tiles[m] for m in members),
        groups=names,
        pairs=int(usable.sum()),
        isolated=isolated,
        seam_before=tuple(float(v) for v in before),
        seam_after=tuple(float(v) for v in after),
        band_count=len(mosaic.bands),
        estimator=estimator,
    )
    log.info(
        "balance: %d tile(s) in %d group(s), %d pair(s); seam RMS %s -> %s; gains %.3f..%.3f",
        len(tiles), len(group_names), record.pairs, _short(before), _short(after), gains.min(), gains.max(),
    )
    return replace(mosaic, tiles=tuple(new_tiles)), record


def _short(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


def balance_for_predict(mosaic: Mosaic, record: BalanceRecord | None, *, seed: int) -> tuple[Mosaic, Balance | None]:
    """``predict``: the model's corrections on the tiles it knows (matched by path without query);
    new tiles balanced among themselves where they overlap, else left as read."""
    if record is None or record.method == "none":
        return mosaic, None
    known = {_match_key(t.path): t for t in record.tiles}
    tiles, unknown = list(mosaic.tiles), []
    for n, tile in enumerate(tiles):
        entry = known.get(_match_key(tile.path))
        if entry is None:
            unknown.append(n)
        else:
            tiles[n] = replace(tile, gains=entry.gains, offsets=entry.offsets)
    mosaic = replace(mosaic, tiles=tuple(tiles))
    solved = None
    if len(unknown) >= 2 and overlapping_pairs(mosaic, unknown):
        mosaic, solved = balance(mosaic, method="overlaps", seed=seed, members=unknown, estimator=record.estimator)
    elif unknown:
        log.warning(
            "balance: %d tile(s) unknown to the model overlap no other new tile and keep their values as read", len(unknown)
        )
    log.info("balance: %d tile(s) corrected as the model recorded, %d new", len(tiles) - len(unknown), len(unknown))
    return mosaic, Balance(
        method=record.method,
        tiles=mosaic.tiles,
        groups=acquisition_groups([t.path for t in mosaic.tiles]),
        pairs=solved.pairs if solved else 0,
        isolated=solved.isolated if solved else len(unknown),
        seam_before=solved.seam_before if solved else (),
        seam_after=solved.seam_after if solved else (),
        band_count=len(mosaic.bands),
        estimator=record.estimator,
        known=len(tiles) - len(unknown),
    )


def _match_key(path: Href | str) -> str:
    path = recorded_path(path)
    return path if "://" in path or path.startswith("/vsi") else str(Path(path).resolve())
